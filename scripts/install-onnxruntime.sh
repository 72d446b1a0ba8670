#!/usr/bin/env bash
# install-onnxruntime.sh [DEST_DIR]
#
# Fetches the ONNX Runtime CPU shared library (linux x86-64) that the
# trt/onnxrt backend dlopens at run time, and places it at
# DEST_DIR/lib/libonnxruntime.so.1. DEST_DIR defaults to .cache/onnxruntime
# under the repository root (git-ignored).
#
# The library comes from the npm package onnxruntime-node, fetched with
# `npm pack`, which downloads the tarball without running any install
# script. Only the one library file is extracted. If the library is already
# in place, nothing is fetched.
#
# On success the script prints the library's absolute path on stdout, so
# callers can do: ORT_LIB=$(scripts/install-onnxruntime.sh).
set -euo pipefail

ORT_VERSION=1.30.0
PKG="onnxruntime-node@${ORT_VERSION}"
MEMBER="package/bin/napi-v6/linux/x64/libonnxruntime.so.1"

say() { printf 'install-onnxruntime: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-${repo_root}/.cache/onnxruntime}"
mkdir -p "${dest}/lib"
dest="$(cd "${dest}" && pwd)"
lib="${dest}/lib/libonnxruntime.so.1"

if [[ -f "${lib}" ]]; then
  say "using cached ${lib}"
  printf '%s\n' "${lib}"
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *) say "warning: this script fetches the linux x86-64 library; this host is $(uname -s)/$(uname -m)" ;;
esac

command -v npm >/dev/null 2>&1 || die "npm not found; install Node.js/npm, or place libonnxruntime.so.1 (ONNX Runtime ${ORT_VERSION}, CPU) at ${lib} yourself"
command -v tar >/dev/null 2>&1 || die "tar not found"

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT

say "fetching ${PKG} with npm pack (no install scripts run)"
(cd "${tmp}" && npm pack --silent "${PKG}" >/dev/null) || die "npm pack ${PKG} failed"
tgz="$(ls "${tmp}"/onnxruntime-node-*.tgz 2>/dev/null | head -n1)"
[[ -n "${tgz}" ]] || die "npm pack produced no tarball"

say "extracting ${MEMBER}"
tar -xzf "${tgz}" -C "${tmp}" "${MEMBER}" || die "${MEMBER} not found in ${tgz}"

so="${tmp}/${MEMBER}"
if command -v file >/dev/null 2>&1; then
  desc="$(file -b "${so}")"
  [[ "${desc}" == *"ELF 64-bit"*"shared object"*"x86-64"* ]] || die "unexpected file type: ${desc}"
else
  # No file(1): check the ELF header by hand: magic, 64-bit class,
  # little-endian, type ET_DYN (3), machine EM_X86_64 (62 = 0x3e).
  hdr="$(od -An -tx1 -N20 "${so}" | tr -d ' \n')"
  [[ "${hdr:0:8}" == "7f454c46" && "${hdr:8:2}" == "02" && "${hdr:10:2}" == "01" ]] || die "not a 64-bit little-endian ELF file"
  [[ "${hdr:32:4}" == "0300" && "${hdr:36:4}" == "3e00" ]] || die "not an x86-64 shared object"
fi

# Move into place atomically so a concurrent run never sees half a file.
cp "${so}" "${lib}.tmp.$$"
chmod 0644 "${lib}.tmp.$$"
mv -f "${lib}.tmp.$$" "${lib}"
say "installed ONNX Runtime ${ORT_VERSION} at ${lib}"
printf '%s\n' "${lib}"
