//go:build !((cuda || tensorrt) && cgo)

package cuda

import (
	"errors"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
)

func TestStubUnavailable(t *testing.T) {
	if Available {
		t.Fatal("stub build claims CUDA is available")
	}
	if _, err := Open(0); !errors.Is(err, trt.ErrUnavailable) {
		t.Fatalf("Open: %v, want trt.ErrUnavailable", err)
	}
	if _, err := DeviceCount(); !errors.Is(err, trt.ErrUnavailable) {
		t.Fatalf("DeviceCount: %v, want trt.ErrUnavailable", err)
	}
}
