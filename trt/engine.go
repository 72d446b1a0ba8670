package trt

import (
	"context"
	"errors"
	"fmt"
)

// TensorDesc describes one input or output of an engine. Shape[0] is the
// batch dimension (Dynamic for engines with a dynamic batch).
type TensorDesc struct {
	Name  string
	DType DType
	Shape Shape
}

// RowShape is the shape of one sample: Shape without the batch dimension.
func (t TensorDesc) RowShape() Shape {
	if len(t.Shape) == 0 {
		return nil
	}
	return t.Shape[1:]
}

// Profile is an optimization profile: for every input, the smallest,
// preferred and largest concrete shape (batch dimension included) that the
// engine accepts while this profile is selected.
type Profile struct {
	Min, Opt, Max map[string]Shape
}

// Contains reports whether the concrete shape of input name lies inside the
// profile's [Min, Max] box.
func (p Profile) Contains(name string, s Shape) bool {
	lo, ok1 := p.Min[name]
	hi, ok2 := p.Max[name]
	if !ok1 || !ok2 || len(lo) != len(s) || len(hi) != len(s) {
		return false
	}
	for i := range s {
		if s[i] < lo[i] || s[i] > hi[i] {
			return false
		}
	}
	return true
}

// Spec is what an engine accepts and produces.
type Spec struct {
	Inputs   []TensorDesc
	Outputs  []TensorDesc
	Profiles []Profile // at least one; index is the profile number
}

// Input returns the input named name.
func (s Spec) Input(name string) (TensorDesc, bool) {
	for _, t := range s.Inputs {
		if t.Name == name {
			return t, true
		}
	}
	return TensorDesc{}, false
}

// ProfileFor returns the index of the first profile that contains every
// input shape in shapes (keyed by input name).
func (s Spec) ProfileFor(shapes map[string]Shape) (int, error) {
	for i, p := range s.Profiles {
		ok := true
		for name, sh := range shapes {
			if !p.Contains(name, sh) {
				ok = false
				break
			}
		}
		if ok {
			return i, nil
		}
	}
	return -1, fmt.Errorf("no optimization profile accepts input shapes %v", shapes)
}

// Tensor is a concrete tensor: raw little-endian row-major bytes. Data is
// exactly ByteSize(DType, Shape) long.
//
// A ragged tensor (rows of their own length, as in codec's List columns)
// has Shape [rows, Dynamic, dims...] and Offsets set: rows+1 cumulative
// position counts starting at 0, row i holding positions Offsets[i] to
// Offsets[i+1]; Data then holds Offsets[rows] positions of dims each.
// Engines never see ragged tensors.
type Tensor struct {
	Name    string
	DType   DType
	Shape   Shape
	Data    []byte
	Offsets []int32
}

// Batch is one unit of engine work. Inputs are given in Spec().Inputs order
// with concrete shapes. Outputs are filled by Run in Spec().Outputs order:
// an output whose Data already has the exact byte size is written in place
// (caller-provided buffer); otherwise Run allocates it.
type Batch struct {
	Profile int
	Inputs  []Tensor
	Outputs []Tensor
}

// Device identifies where an engine runs, for manifests, result headers
// and scaling reports.
type Device struct {
	Kind    string // "cpu" or "cuda"
	Name    string // e.g. "NVIDIA H100 80GB HBM3" or the CPU backend's name
	UUID    string // GPU UUID; empty on CPU
	Compute string // compute capability "9.0"; empty on CPU
}

// Engine runs batches. Implementations document their own concurrency; the
// ONNX Runtime and TensorRT backends accept concurrent Run calls.
type Engine interface {
	// Spec describes the engine's IO tensors and optimization profiles.
	Spec() Spec
	// Run executes one batch. It returns an error wrapping ErrInvalidInput
	// when the batch itself is wrong, and any other error for failures
	// that a retry may cure.
	Run(ctx context.Context, b *Batch) error
	// Device reports where the engine runs.
	Device() Device
	// Close releases the engine. No Run may be in flight.
	Close() error
}

// ErrInvalidInput marks an engine error caused by the batch, not by the
// engine: retrying the same input cannot succeed.
var ErrInvalidInput = errors.New("invalid engine input")

// ErrUnavailable is returned by backends that were not compiled into this
// binary (for example TensorRT without the "tensorrt" build tag) or whose
// runtime library is missing on this node.
var ErrUnavailable = errors.New("engine backend unavailable")

// ErrDeviceLost marks an engine that can no longer run anything: its
// device is in a sticky error state (for example an illegal memory access
// inside a kernel or plugin) and every later call in this process would
// fail too. It is not the batch's fault: the caller hands the batch's
// requests back without charging them an attempt and stops, so that the
// orchestrator replaces the process.
var ErrDeviceLost = errors.New("engine device lost")

// StagedRunner is implemented by engines that stage inputs in host memory
// they own, such as the TensorRT backend's pinned buffers. The caller
// writes each input straight into that memory instead of handing over its
// own buffers, which saves one copy of every batch.
type StagedRunner interface {
	// RunStaged reserves an execution slot, calls fill with one buffer per
	// input (in Spec().Inputs order, each exactly ByteSize(dtype, shape)
	// long for the given concrete shapes), then runs the batch as Run
	// does, filling outputs. fill must not keep the buffers.
	RunStaged(ctx context.Context, profile int, shapes []Shape, fill func(inputs [][]byte) error, outputs []Tensor) error
}
