package onnxrt

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jetinfer/jetinfer/trt"
)

// LibraryName is the file name of ONNX Runtime's shared library on Linux,
// as scripts/install-onnxruntime.sh installs it.
const LibraryName = "libonnxruntime.so.1"

// libraryNames are the file names looked for inside a directory.
var libraryNames = []string{LibraryName, "libonnxruntime.so"}

// InstalledVersion is the ONNX Runtime version that `make ort`
// (scripts/install-onnxruntime.sh via the Makefile) installs under the
// user's cache directory.
const InstalledVersion = "1.30.0"

// userCacheLibrary is where `make ort` puts the library:
// <user cache dir>/jetinfer/onnxruntime-<InstalledVersion>/lib, the user
// cache dir being $XDG_CACHE_HOME or ~/.cache (os.UserCacheDir). It
// returns "" when there is no user cache directory.
func userCacheLibrary() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "jetinfer", "onnxruntime-"+InstalledVersion, "lib", LibraryName)
}

// systemLibraryDirs are searched last.
var systemLibraryDirs = []string{"/usr/lib", "/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64"}

// FindLibrary returns the path of ONNX Runtime's shared library. It looks,
// in order, at each candidate (a file, or a directory holding
// libonnxruntime.so.1 or libonnxruntime.so; empty candidates are skipped),
// then at .cache/onnxruntime/lib/libonnxruntime.so.1 under the working
// directory and each of its parents (where scripts/install-onnxruntime.sh
// puts it by default), then at
// <user cache dir>/jetinfer/onnxruntime-<InstalledVersion>/lib/libonnxruntime.so.1
// (where `make ort` puts it; the user cache dir is os.UserCacheDir's), then
// in /usr/lib, /usr/local/lib, /usr/lib/x86_64-linux-gnu and /usr/lib64.
// Callers pass configured paths as candidates; apart from the user cache
// directory's location this function reads no environment variables. The
// error wraps trt.ErrUnavailable and lists what was searched.
func FindLibrary(candidates ...string) (string, error) {
	var searched []string
	for _, c := range candidates {
		if c == "" {
			continue
		}
		searched = append(searched, c)
		if p, ok := libraryAt(c); ok {
			return p, nil
		}
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; {
			p := filepath.Join(dir, ".cache", "onnxruntime", "lib", LibraryName)
			searched = append(searched, p)
			if isFile(p) {
				return p, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	if p := userCacheLibrary(); p != "" {
		searched = append(searched, p)
		if isFile(p) {
			return p, nil
		}
	}
	for _, d := range systemLibraryDirs {
		searched = append(searched, d)
		if p, ok := libraryAt(d); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("ONNX Runtime library not found (run `make ort` in a jetinfer checkout, or pass the path of %s; searched %s): %w",
		LibraryName,
		strings.Join(searched, ", "), trt.ErrUnavailable)
}

// libraryAt reports the library at path p: p itself if it is a file, or a
// library file inside p if it is a directory.
func libraryAt(p string) (string, bool) {
	st, err := os.Stat(p)
	if err != nil {
		return "", false
	}
	if !st.IsDir() {
		return p, st.Mode().IsRegular()
	}
	for _, n := range libraryNames {
		if q := filepath.Join(p, n); isFile(q) {
			return q, true
		}
	}
	return "", false
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
