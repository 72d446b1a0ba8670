#!/usr/bin/env bash
# check-tensorrt.sh HEADERS_DIR...
#
# Compile-checks jetinfer's TensorRT backend against real TensorRT header
# sets, on a machine that has neither TensorRT nor a GPU. For each
# TensorRT include directory given (the one holding NvInfer.h):
#
#   1. g++ -std=c++17 -Wall -Wextra -Werror compiles trt/tensorrt/shim.cpp
#      (runtime half, which includes NvInferPlugin.h for the standard
#      plugins), and builder.cpp (ONNX -> plan) when the directory
#      also holds NvOnnxParser.h, with TensorRT's headers as -isystem.
#   2. gcc -std=c99 and g++ compile trt/cuda/jcuda.h with -Werror.
#   3. go vet -tags tensorrt type-checks the cgo packages trt/tensorrt and
#      trt/cuda against shim.h/jcuda.h.
#   4. go build -tags tensorrt compiles every Go, C and C++ file of those
#      packages and of cmd/jetinfer exactly as a real build does (C++ with
#      -Werror), and go test -c links the tagged test binary. Nothing real
#      is linked: libnvinfer, libnvinfer_plugin, libnvonnxparser and libcudart are empty stub
#      libraries and unresolved symbols are ignored, so the binaries it
#      makes are thrown away and must never be run.
#
# What it cannot check: that the code behaves right, which needs a GPU and
# TensorRT at run time.
#
# CUDA headers: CUDA_INCLUDE=/path (default /usr/local/cuda/include if it
# exists). Without them a small stand-in <cuda_runtime_api.h> written by
# this script declares just the types and functions the shim and TensorRT's
# headers use (TensorRT's headers need only cudaStream_t and cudaEvent_t).
#
# Fetched TensorRT headers must stay outside the repository.
set -euo pipefail

if [ $# -eq 0 ]; then
	echo "usage: $0 TENSORRT_INCLUDE_DIR..." >&2
	exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cuda_inc=${CUDA_INCLUDE:-}
if [ -z "$cuda_inc" ] && [ -f /usr/local/cuda/include/cuda_runtime_api.h ]; then
	cuda_inc=/usr/local/cuda/include
fi
if [ -z "$cuda_inc" ]; then
	cuda_inc=$work/cuda-stub
	mkdir -p "$cuda_inc"
	cat >"$cuda_inc/cuda_runtime_api.h" <<'EOF'
/* Stand-in for the CUDA runtime header, written by check-tensorrt.sh for
 * compile checks only: declarations of what jetinfer's shim and TensorRT's
 * headers use. Never link or run what it compiles. */
#ifndef JETINFER_CUDA_RUNTIME_STUB_H
#define JETINFER_CUDA_RUNTIME_STUB_H
#include <stddef.h>
#define CUDART_VERSION 12000
typedef enum cudaError { cudaSuccess = 0, cudaErrorNotReady = 600 } cudaError_t;
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
typedef struct CUlib_st *cudaLibrary_t;
typedef struct CUkern_st *cudaKernel_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2 };
enum cudaJitOption { cudaJitMaxRegisters = 0 };
enum cudaLibraryOption { cudaLibraryHostUniversalFunctionAndDataTable = 0 };
#define cudaHostAllocPortable 0x01
#define cudaStreamNonBlocking 0x01
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02
typedef struct dim3 { unsigned int x, y, z; } dim3;
typedef struct CUuuid_st { char bytes[16]; } cudaUUID_t;
struct cudaDeviceProp {
	char name[256];
	cudaUUID_t uuid;
	size_t totalGlobalMem;
	int major, minor, multiProcessorCount, asyncEngineCount, pciBusID;
};
#ifdef __cplusplus
extern "C" {
#endif
const char *cudaGetErrorString(cudaError_t error);
const char *cudaGetErrorName(cudaError_t error);
cudaError_t cudaRuntimeGetVersion(int *runtimeVersion);
cudaError_t cudaDriverGetVersion(int *driverVersion);
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device);
cudaError_t cudaHostAlloc(void **pHost, size_t size, unsigned int flags);
cudaError_t cudaFreeHost(void *ptr);
cudaError_t cudaMalloc(void **devPtr, size_t size);
cudaError_t cudaFree(void *devPtr);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *pStream, unsigned int flags);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaLaunchKernel(const void *func, dim3 gridDim, dim3 blockDim, void **args, size_t sharedMem, cudaStream_t stream);
cudaError_t cudaLibraryLoadData(cudaLibrary_t *library, const void *code, enum cudaJitOption *jitOptions,
                                void **jitOptionsValues, unsigned int numJitOptions,
                                enum cudaLibraryOption *libraryOptions, void **libraryOptionValues,
                                unsigned int numLibraryOptions);
cudaError_t cudaLibraryGetKernel(cudaKernel_t *pKernel, cudaLibrary_t library, const char *name);
cudaError_t cudaLibraryUnload(cudaLibrary_t library);
#ifdef __cplusplus
}
#endif
#endif
EOF
	echo "CUDA headers: none found; using a stand-in cuda_runtime_api.h (declarations only)"
else
	echo "CUDA headers: $cuda_inc"
fi

# Empty libraries for the link steps of the Go build.
mkdir -p "$work/lib"
for l in nvinfer nvinfer_plugin nvonnxparser cudart; do
	echo 'int jetinfer_check_stub;' | gcc -shared -x c - -o "$work/lib/lib$l.so"
done

# jcuda.h alone, as C and as C++.
printf '#include "jcuda.h"\nint main(void) { return 0; }\n' >"$work/jcuda.c"
gcc -std=c99 -Wall -Wextra -Werror -fsyntax-only -Itrt/cuda -isystem "$cuda_inc" "$work/jcuda.c"
g++ -std=c++17 -Wall -Wextra -Werror -fsyntax-only -x c++ -Itrt/cuda -isystem "$cuda_inc" "$work/jcuda.c"
echo "jcuda.h: compiles as C99 and C++17 with -Werror"

status=0
summary=()
for dir in "$@"; do
	dir=$(cd "$dir" && pwd)
	if [ ! -f "$dir/NvInfer.h" ]; then
		echo "$dir: no NvInfer.h" >&2
		exit 2
	fi
	version=$(printf '#include <NvInferVersion.h>\nNV_TENSORRT_MAJOR.NV_TENSORRT_MINOR.NV_TENSORRT_PATCH.NV_TENSORRT_BUILD\n' |
		g++ -E -P -isystem "$dir" - | tail -1 | tr -d ' ')
	echo "== TensorRT $version headers in $dir"
	line="TensorRT $version:"
	cxx=(g++ -std=c++17 -Wall -Wextra -Werror -c -o /dev/null -Itrt/tensorrt -Itrt/cuda -isystem "$dir" -isystem "$cuda_inc")
	if "${cxx[@]}" trt/tensorrt/shim.cpp; then
		line+=" shim.cpp ok"
	else
		line+=" shim.cpp FAILED"
		status=1
	fi
	if [ -f "$dir/NvOnnxParser.h" ]; then
		if "${cxx[@]}" trt/tensorrt/builder.cpp; then
			line+=", builder.cpp ok"
		else
			line+=", builder.cpp FAILED"
			status=1
		fi
	else
		line+=", builder.cpp not checked (no NvOnnxParser.h here)"
	fi
	export CGO_ENABLED=1
	export CGO_CFLAGS="-idirafter $cuda_inc"
	export CGO_CXXFLAGS="-isystem $dir -idirafter $cuda_inc -Wall -Wextra -Werror"
	export CGO_LDFLAGS="-L$work/lib -Wl,--unresolved-symbols=ignore-all"
	if [ ! -f "$dir/NvOnnxParser.h" ]; then
		line+=", go build/vet skipped (the package compiles builder.cpp)"
		summary+=("$line")
		continue
	fi
	if go vet -tags tensorrt ./trt/tensorrt ./trt/cuda 2>"$work/vet.log"; then
		line+=", go vet ok"
	else
		grep -v 'deprecated\|note:\|cgo-gcc-prolog\|nvml\.h\|^ *[0-9]* |\|^ *|\|^In file\|go-nvml' "$work/vet.log" >&2 || true
		line+=", go vet FAILED"
		status=1
	fi
	if go build -tags tensorrt ./trt/tensorrt ./trt/cuda 2>"$work/build.log" &&
		go build -tags tensorrt -o "$work/jetinfer" ./cmd/jetinfer 2>>"$work/build.log" &&
		go test -c -tags tensorrt -o "$work/tensorrt.test" ./trt/tensorrt 2>>"$work/build.log"; then
		line+=", go build + test -c ok"
	else
		grep -v 'deprecated\|note:\|cgo-gcc-prolog\|nvml\.h\|^ *[0-9]* |\|^ *|\|^In file\|go-nvml' "$work/build.log" >&2 || true
		line+=", go build FAILED"
		status=1
	fi
	rm -f "$work/jetinfer" "$work/tensorrt.test"
	summary+=("$line")
done
echo
echo "summary (CUDA headers: $cuda_inc):"
printf '  %s\n' "${summary[@]}"
exit $status
