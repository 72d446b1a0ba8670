//go:build !(tensorrt && cgo)

package tensorrt

import (
	"context"
	"errors"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
)

func TestStubUnavailable(t *testing.T) {
	ctx := context.Background()
	if Available {
		t.Fatal("stub build claims TensorRT is available")
	}
	if _, err := Load(ctx, []byte{1}, nil, Config{}); !errors.Is(err, trt.ErrUnavailable) {
		t.Errorf("Load: %v, want trt.ErrUnavailable", err)
	}
	if _, err := Build(ctx, []byte{1}, NewBuildOptions()); !errors.Is(err, trt.ErrUnavailable) {
		t.Errorf("Build: %v, want trt.ErrUnavailable", err)
	}
	if _, err := LinkedVersion(); !errors.Is(err, trt.ErrUnavailable) {
		t.Errorf("LinkedVersion: %v, want trt.ErrUnavailable", err)
	}
}
