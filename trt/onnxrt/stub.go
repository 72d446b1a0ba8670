//go:build !cgo

package onnxrt

import (
	"context"
	"fmt"

	"github.com/jetinfer/jetinfer/trt"
)

// errNoCgo is returned by every constructor in a build without cgo.
var errNoCgo = fmt.Errorf("onnxrt: built without cgo (CGO_ENABLED=0): %w", trt.ErrUnavailable)

// Runtime is the process-wide ONNX Runtime environment. In this build
// (no cgo) it cannot be created: NewRuntime returns an error wrapping
// trt.ErrUnavailable.
type Runtime struct{}

// NewRuntime always fails in a build without cgo.
func NewRuntime(libPath string) (*Runtime, error) { return nil, errNoCgo }

// Version returns "".
func (r *Runtime) Version() string { return "" }

// Close does nothing.
func (r *Runtime) Close() error { return nil }

// Load always fails in a build without cgo.
func (r *Runtime) Load(ctx context.Context, model []byte, opts Options) (*Engine, error) {
	return nil, errNoCgo
}

// LoadFile always fails in a build without cgo.
func (r *Runtime) LoadFile(ctx context.Context, path string, opts Options) (*Engine, error) {
	return nil, errNoCgo
}

// Engine runs one ONNX model on ONNX Runtime. In this build (no cgo) none
// can be created.
type Engine struct{}

var _ trt.Engine = (*Engine)(nil)

// Spec returns an empty Spec.
func (e *Engine) Spec() trt.Spec { return trt.Spec{} }

// Run always fails in a build without cgo.
func (e *Engine) Run(ctx context.Context, b *trt.Batch) error { return errNoCgo }

// Device returns the zero Device.
func (e *Engine) Device() trt.Device { return trt.Device{} }

// Close does nothing.
func (e *Engine) Close() error { return nil }
