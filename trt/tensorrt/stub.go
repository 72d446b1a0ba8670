//go:build !(tensorrt && cgo)

package tensorrt

import (
	"context"
	"fmt"

	"github.com/jetinfer/jetinfer/trt"
)

// Available reports whether this binary was built with TensorRT.
const Available = false

var errUnavailable = fmt.Errorf("TensorRT is not compiled in (rebuild with CGO_ENABLED=1 -tags tensorrt on a machine with TensorRT 10.0+ or 11.x and CUDA): %w", trt.ErrUnavailable)

// Engine runs a TensorRT plan; none can exist in this build.
type Engine struct{}

var (
	_ trt.Engine       = (*Engine)(nil)
	_ trt.StagedRunner = (*Engine)(nil)
)

// Load fails: this binary has no TensorRT.
func Load(ctx context.Context, plan []byte, m *trt.Manifest, cfg Config) (*Engine, error) {
	return nil, fmt.Errorf("loading engine plan: %w", errUnavailable)
}

// Inspect fails: this binary has no TensorRT.
func Inspect(ctx context.Context, plan []byte, cfg Config) (trt.Spec, error) {
	return trt.Spec{}, fmt.Errorf("inspecting engine plan: %w", errUnavailable)
}

// Build fails: this binary has no TensorRT.
func Build(ctx context.Context, onnx []byte, o BuildOptions) (BuildResult, error) {
	return BuildResult{}, fmt.Errorf("building engine plan: %w", errUnavailable)
}

// LinkedVersion fails: this binary has no TensorRT.
func LinkedVersion() (string, error) { return "", errUnavailable }

// HeaderVersion returns "" in this build.
func HeaderVersion() string { return "" }

// Spec returns the zero Spec.
func (e *Engine) Spec() trt.Spec { return trt.Spec{} }

// Run fails: this binary has no TensorRT.
func (e *Engine) Run(ctx context.Context, b *trt.Batch) error { return errUnavailable }

// Device returns the zero Device.
func (e *Engine) Device() trt.Device { return trt.Device{} }

// Close does nothing.
func (e *Engine) Close() error { return nil }

// RunStaged fails: this binary has no TensorRT.
func (e *Engine) RunStaged(ctx context.Context, profile int, shapes []trt.Shape, fill func([][]byte) error, outputs []trt.Tensor) error {
	return errUnavailable
}

// LoadPlugins fails: this binary has no TensorRT.
func LoadPlugins(device int, paths []string) error {
	return fmt.Errorf("loading plugin libraries: %w", errUnavailable)
}

// ThisNode describes what it can without TensorRT and CUDA (the platform
// and cfg's loader settings) and fails: this binary has no TensorRT.
func ThisNode(cfg Config) (trt.Node, error) {
	return trt.Node{Platform: Platform(), HostCodeAllowed: cfg.AllowHostCode, Plugins: cfg.Plugins},
		fmt.Errorf("describing this node: %w", errUnavailable)
}
