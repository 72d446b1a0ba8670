//go:build !cgo

package onnxrt

import (
	"context"
	"errors"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
)

func TestStubUnavailable(t *testing.T) {
	if _, err := NewRuntime("/usr/lib/libonnxruntime.so.1"); !errors.Is(err, trt.ErrUnavailable) {
		t.Errorf("NewRuntime = %v, want ErrUnavailable", err)
	}
	var rt *Runtime
	if _, err := rt.Load(context.Background(), nil, Options{}); !errors.Is(err, trt.ErrUnavailable) {
		t.Errorf("Load = %v, want ErrUnavailable", err)
	}
	var e Engine
	if err := e.Run(context.Background(), &trt.Batch{}); !errors.Is(err, trt.ErrUnavailable) {
		t.Errorf("Run = %v, want ErrUnavailable", err)
	}
}
