package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var (
	tensorrtCgo = filepath.Join("..", "..", "trt", "tensorrt", "cgo.go")
	gpuDocker   = filepath.Join("..", "Dockerfile.gpu")
)

// TestGPUImageHasLinkedLibraries: the GPU image's runtime stage installs a
// package for each TensorRT library the tensorrt build links.
func TestGPUImageHasLinkedLibraries(t *testing.T) {
	pkgs, err := checkGPUImage(tensorrtCgo, gpuDocker)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"libnvinfer10", "libnvinfer-plugin10", "libnvonnxparsers10"} {
		if !slices.Contains(pkgs, want) {
			t.Errorf("packages checked %v, want %s among them", pkgs, want)
		}
	}
}

// TestGPUImageCheckCatchesMissingPackage: a runtime stage without the ONNX
// parser package (the binary would not start) is refused, naming it.
func TestGPUImageCheckCatchesMissingPackage(t *testing.T) {
	df, err := os.ReadFile(gpuDocker)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.ReplaceAll(string(df), `"libnvonnxparsers10=${TRT_VERSION}"`, "")
	if broken == string(df) {
		t.Fatal("Dockerfile.gpu does not install libnvonnxparsers10 as expected")
	}
	path := filepath.Join(t.TempDir(), "Dockerfile.gpu")
	if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = checkGPUImage(tensorrtCgo, path)
	if err == nil || !strings.Contains(err.Error(), "libnvonnxparsers10") {
		t.Fatalf("checkGPUImage = %v, want an error naming libnvonnxparsers10", err)
	}
}
