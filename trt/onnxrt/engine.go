//go:build cgo

package onnxrt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/jetinfer/jetinfer/trt"
)

// envMu serializes creation and destruction of ONNX Runtime's process-wide
// environment, which onnxruntime_go keeps in package variables.
var envMu sync.Mutex

// Runtime is the process-wide ONNX Runtime environment: the dlopened
// library and its OrtEnv. Only one Runtime may exist in a process at a time
// (the binding keeps the environment in global state); a binary's main
// creates it, passes it to whatever loads models, and closes it last.
// Its methods are safe for concurrent use.
type Runtime struct {
	version string

	mu      sync.Mutex // guards closed and engines
	closed  bool
	engines int // open engines; Close refuses while any remain
}

// NewRuntime loads the ONNX Runtime shared library at libPath (see
// FindLibrary) and creates the process-wide environment. A missing or
// unloadable library yields an error wrapping trt.ErrUnavailable. It fails
// if another Runtime is open in this process.
func NewRuntime(libPath string) (*Runtime, error) {
	if libPath == "" {
		return nil, fmt.Errorf("onnxrt: no ONNX Runtime library path given: %w", trt.ErrUnavailable)
	}
	if _, err := os.Stat(libPath); err != nil {
		return nil, fmt.Errorf("onnxrt: opening ONNX Runtime library: %w: %w", trt.ErrUnavailable, err)
	}
	envMu.Lock()
	defer envMu.Unlock()
	if ort.IsInitialized() {
		return nil, errors.New("onnxrt: an ONNX Runtime environment already exists in this process; create one Runtime per process")
	}
	ort.SetSharedLibraryPath(libPath)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return nil, fmt.Errorf("onnxrt: initializing ONNX Runtime from %s: %w: %w", libPath, trt.ErrUnavailable, err)
	}
	return &Runtime{version: ort.GetVersion()}, nil
}

// Version is the ONNX Runtime library's version, e.g. "1.30.0".
func (r *Runtime) Version() string { return r.version }

// Close destroys the environment and unloads the library. It fails while
// engines loaded from r are still open. Closing twice is a no-op.
func (r *Runtime) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	if r.engines > 0 {
		return fmt.Errorf("onnxrt: closing runtime: %d engines still open", r.engines)
	}
	envMu.Lock()
	defer envMu.Unlock()
	if err := ort.DestroyEnvironment(); err != nil {
		return fmt.Errorf("onnxrt: destroying ONNX Runtime environment: %w", err)
	}
	r.closed = true
	return nil
}

// acquire counts one more open engine, unless r is closed.
func (r *Runtime) acquire() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("onnxrt: runtime: %w", ErrClosed)
	}
	r.engines++
	return nil
}

func (r *Runtime) release() {
	r.mu.Lock()
	r.engines--
	r.mu.Unlock()
}

// Load creates an engine from a serialized ONNX model held in memory (for
// example fetched from an object store). Loading is not interruptible: ctx
// is checked only before it starts. ONNX Runtime's Go binding reads the IO
// description of in-memory models through a short-lived second session
// with default options, so LoadFile loads a large model faster. Models whose
// weights live in external data files must be loaded with LoadFile.
func (r *Runtime) Load(ctx context.Context, model []byte, opts Options) (*Engine, error) {
	return r.load(ctx, model, "", opts)
}

// LoadFile creates an engine from the ONNX model file at path. External
// data files are resolved relative to path's directory.
func (r *Runtime) LoadFile(ctx context.Context, path string, opts Options) (*Engine, error) {
	model, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("onnxrt: reading model: %w", err)
	}
	return r.load(ctx, model, path, opts)
}

// dimSource says how one output dimension gets its size for a batch: a
// fixed size (fixed >= 0), the size of dimension dim of input number input
// (input >= 0), or neither (unknown until ONNX Runtime has run).
type dimSource struct {
	fixed int64
	input int
	dim   int
}

// Engine runs one ONNX model on ONNX Runtime's CPU execution provider. It
// implements trt.Engine. Run is safe for concurrent use; Close waits for
// Runs in flight and must be called once the engine is no longer needed.
type Engine struct {
	rt      *Runtime
	spec    trt.Spec
	device  trt.Device
	inTypes []ort.TensorElementDataType
	outType []ort.TensorElementDataType
	outDims [][]dimSource
	// sameDims lists groups of input dimensions that share a symbolic name
	// and so must have equal sizes in a batch: each entry is {input, dim}.
	sameDims [][][2]int

	mu   sync.RWMutex // Run holds it shared, Close exclusively
	sess *ort.DynamicAdvancedSession
}

var _ trt.Engine = (*Engine)(nil)

func (r *Runtime) load(ctx context.Context, model []byte, path string, opts Options) (_ *Engine, err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("onnxrt: loading model: %w", err)
	}
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, err
	}
	dims, err := readGraphDims(model)
	if err != nil {
		return nil, fmt.Errorf("onnxrt: loading model: %w", err)
	}
	if err := r.acquire(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			r.release()
		}
	}()

	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnxrt: creating session options: %w", err)
	}
	defer so.Destroy()
	if err := so.SetIntraOpNumThreads(opts.IntraOpThreads); err != nil {
		return nil, fmt.Errorf("onnxrt: setting intra-op threads: %w", err)
	}
	if err := so.SetInterOpNumThreads(opts.InterOpThreads); err != nil {
		return nil, fmt.Errorf("onnxrt: setting inter-op threads: %w", err)
	}

	var ins, outs []ort.InputOutputInfo
	if path != "" {
		ins, outs, err = ort.GetInputOutputInfoWithOptions(path, so)
	} else {
		ins, outs, err = ort.GetInputOutputInfoWithONNXData(model)
	}
	if err != nil {
		return nil, fmt.Errorf("onnxrt: reading model inputs and outputs: %w", err)
	}
	e, err := newEngine(r, ins, outs, dims, opts)
	if err != nil {
		return nil, err
	}
	inNames := make([]string, len(ins))
	for i, in := range ins {
		inNames[i] = in.Name
	}
	outNames := make([]string, len(outs))
	for i, out := range outs {
		outNames[i] = out.Name
	}
	if path != "" {
		e.sess, err = ort.NewDynamicAdvancedSession(path, inNames, outNames, so)
	} else {
		e.sess, err = ort.NewDynamicAdvancedSessionWithONNXData(model, inNames, outNames, so)
	}
	if err != nil {
		return nil, fmt.Errorf("onnxrt: creating session: %w", err)
	}
	return e, nil
}

// newEngine builds the engine's Spec and output shape plan from ONNX
// Runtime's IO description and the model's dimension names.
func newEngine(r *Runtime, ins, outs []ort.InputOutputInfo, dims graphDims, opts Options) (*Engine, error) {
	if len(ins) == 0 || len(outs) == 0 {
		return nil, fmt.Errorf("onnxrt: model has %d inputs and %d outputs; need at least one of each", len(ins), len(outs))
	}
	e := &Engine{
		rt:     r,
		device: trt.Device{Kind: "cpu", Name: "onnxruntime " + r.version},
	}
	prof := trt.Profile{Min: map[string]trt.Shape{}, Opt: map[string]trt.Shape{}, Max: map[string]trt.Shape{}}
	byParam := map[string][][2]int{} // dim_param -> input dimensions that carry it
	for i, in := range ins {
		desc, typ, err := describe(in, "input")
		if err != nil {
			return nil, err
		}
		names := dims.inputs[in.Name]
		if len(names) != len(desc.Shape) {
			names = make([]string, len(desc.Shape))
		}
		lo, opt, hi := make(trt.Shape, len(desc.Shape)), make(trt.Shape, len(desc.Shape)), make(trt.Shape, len(desc.Shape))
		for d, n := range desc.Shape {
			switch {
			case n != trt.Dynamic:
				lo[d], opt[d], hi[d] = n, n, n
			case d == 0:
				lo[d], opt[d], hi[d] = 1, int64(opts.MaxBatch), int64(opts.MaxBatch)
			default:
				rg := opts.dimRange(in.Name, d, names[d])
				lo[d], opt[d], hi[d] = rg.Min, rg.Opt, rg.Max
			}
			if n == trt.Dynamic && d > 0 && names[d] != "" {
				byParam[names[d]] = append(byParam[names[d]], [2]int{i, d})
			}
		}
		prof.Min[in.Name], prof.Opt[in.Name], prof.Max[in.Name] = lo, opt, hi
		e.spec.Inputs = append(e.spec.Inputs, desc)
		e.inTypes = append(e.inTypes, typ)
	}
	for _, group := range byParam {
		if len(group) > 1 {
			e.sameDims = append(e.sameDims, group)
		}
	}
	e.spec.Profiles = []trt.Profile{prof}

	for _, out := range outs {
		desc, typ, err := describe(out, "output")
		if err != nil {
			return nil, err
		}
		names := dims.outputs[out.Name]
		if len(names) != len(desc.Shape) {
			names = make([]string, len(desc.Shape))
		}
		plan := make([]dimSource, len(desc.Shape))
		known := true
		for d, n := range desc.Shape {
			switch {
			case n != trt.Dynamic:
				plan[d] = dimSource{fixed: n, input: -1, dim: -1}
			case d == 0:
				plan[d] = dimSource{fixed: -1, input: 0, dim: 0}
			case names[d] != "" && len(byParam[names[d]]) > 0:
				src := byParam[names[d]][0]
				plan[d] = dimSource{fixed: -1, input: src[0], dim: src[1]}
			default:
				plan[d] = dimSource{fixed: -1, input: -1, dim: -1}
				known = false
			}
		}
		if !known && !ortAllocates(desc.DType) {
			return nil, fmt.Errorf("onnxrt: output %q (%v %v) has a dynamic dimension that follows no input dimension; "+
				"ONNX Runtime's Go binding cannot allocate %v outputs of unknown shape", out.Name, desc.DType, desc.Shape, desc.DType)
		}
		e.spec.Outputs = append(e.spec.Outputs, desc)
		e.outType = append(e.outType, typ)
		e.outDims = append(e.outDims, plan)
	}
	return e, nil
}

// describe converts ONNX Runtime's description of an input or output.
func describe(info ort.InputOutputInfo, what string) (trt.TensorDesc, ort.TensorElementDataType, error) {
	if info.OrtValueType != ort.ONNXTypeTensor {
		return trt.TensorDesc{}, 0, fmt.Errorf("onnxrt: %s %q is a %v; only tensors are supported", what, info.Name, info.OrtValueType)
	}
	dt, ok := fromORT[info.DataType]
	if !ok {
		return trt.TensorDesc{}, 0, fmt.Errorf("onnxrt: %s %q has unsupported element type %v", what, info.Name, info.DataType)
	}
	if len(info.Dimensions) == 0 {
		return trt.TensorDesc{}, 0, fmt.Errorf("onnxrt: %s %q is a scalar; engines need a leading batch dimension", what, info.Name)
	}
	shape := make(trt.Shape, len(info.Dimensions))
	for i, d := range info.Dimensions {
		if d < 0 {
			d = trt.Dynamic
		}
		shape[i] = d
	}
	return trt.TensorDesc{Name: info.Name, DType: dt, Shape: shape}, info.DataType, nil
}

var fromORT = map[ort.TensorElementDataType]trt.DType{
	ort.TensorElementDataTypeFloat:    trt.Float32,
	ort.TensorElementDataTypeFloat16:  trt.Float16,
	ort.TensorElementDataTypeBFloat16: trt.BFloat16,
	ort.TensorElementDataTypeDouble:   trt.Float64,
	ort.TensorElementDataTypeInt8:     trt.Int8,
	ort.TensorElementDataTypeUint8:    trt.Uint8,
	ort.TensorElementDataTypeInt32:    trt.Int32,
	ort.TensorElementDataTypeInt64:    trt.Int64,
	ort.TensorElementDataTypeBool:     trt.Bool,
}

// ortAllocates reports whether an output of type d may be left for ONNX
// Runtime to allocate: onnxruntime_go v1.27 sizes the copy of a float16 or
// bfloat16 output by its element count, not its byte count, and fails.
func ortAllocates(d trt.DType) bool {
	return d != trt.Float16 && d != trt.BFloat16
}

// Spec returns the engine's IO description and its single optimization
// profile. The returned value is a copy the caller may keep or modify.
func (e *Engine) Spec() trt.Spec { return cloneSpec(e.spec) }

// Device reports {Kind: "cpu", Name: "onnxruntime <version>"}.
func (e *Engine) Device() trt.Device { return e.device }

// Close destroys the session, after waiting for Runs in flight. Later Runs
// fail with ErrClosed. Closing twice is a no-op.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sess == nil {
		return nil
	}
	err := e.sess.Destroy()
	e.sess = nil
	e.rt.release()
	if err != nil {
		return fmt.Errorf("onnxrt: destroying session: %w", err)
	}
	return nil
}

// Run executes one batch. Inputs are wrapped without copying. Each output
// whose Data already has the exact byte size is written in place; other
// outputs get a new buffer. A batch that does not fit the Spec yields an
// error wrapping trt.ErrInvalidInput. Cancelling ctx terminates a Run in
// progress between operators.
func (e *Engine) Run(ctx context.Context, b *trt.Batch) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("onnxrt: running batch: %w", err)
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.sess == nil {
		return fmt.Errorf("onnxrt: running batch: %w", ErrClosed)
	}
	if err := checkBatch(&e.spec, e.sameDims, b); err != nil {
		return fmt.Errorf("onnxrt: running batch: %w: %w", trt.ErrInvalidInput, err)
	}
	if len(b.Outputs) == 0 {
		b.Outputs = make([]trt.Tensor, len(e.spec.Outputs))
	}

	// Go memory handed to ONNX Runtime stays pinned for the whole call.
	var pin runtime.Pinner
	defer pin.Unpin()
	values := make([]ort.Value, len(b.Inputs)+len(b.Outputs))
	defer func() {
		for _, v := range values {
			if v != nil {
				_ = v.Destroy()
			}
		}
	}()
	for i, in := range b.Inputs {
		pin.Pin(&in.Data[0])
		v, err := ort.NewCustomDataTensor(ort.Shape(in.Shape), in.Data, e.inTypes[i])
		if err != nil {
			return fmt.Errorf("onnxrt: wrapping input %q: %w", e.spec.Inputs[i].Name, err)
		}
		values[i] = v
	}
	outValues := values[len(b.Inputs):]
	for i, desc := range e.spec.Outputs {
		shape, ok := e.outputShape(i, b.Inputs)
		if !ok {
			continue // ONNX Runtime allocates; see below
		}
		size, err := trt.ByteSize(desc.DType, shape)
		if err != nil {
			return fmt.Errorf("onnxrt: sizing output %q: %w", desc.Name, err)
		}
		if size == 0 {
			return fmt.Errorf("onnxrt: output %q has shape %v: empty outputs are not supported", desc.Name, shape)
		}
		buf := b.Outputs[i].Data
		if len(buf) != size {
			buf = make([]byte, size)
		}
		pin.Pin(&buf[0])
		v, err := ort.NewCustomDataTensor(ort.Shape(shape), buf, e.outType[i])
		if err != nil {
			return fmt.Errorf("onnxrt: wrapping output %q: %w", desc.Name, err)
		}
		outValues[i] = v
		b.Outputs[i] = trt.Tensor{Name: desc.Name, DType: desc.DType, Shape: shape, Data: buf}
	}
	// RunWithOptions stores the values it allocates into outValues (and so
	// into values, which the deferred cleanup destroys).
	allocated := make([]bool, len(outValues))
	for i, v := range outValues {
		allocated[i] = v == nil
	}

	if err := e.runSession(ctx, values[:len(b.Inputs)], outValues); err != nil {
		return err
	}
	for i, alloc := range allocated {
		if !alloc {
			continue
		}
		desc := e.spec.Outputs[i]
		data, shape, err := ortOutput(outValues[i])
		if err != nil {
			return fmt.Errorf("onnxrt: reading output %q: %w", desc.Name, err)
		}
		if len(b.Outputs[i].Data) == len(data) {
			copy(b.Outputs[i].Data, data)
			data = b.Outputs[i].Data
		}
		b.Outputs[i] = trt.Tensor{Name: desc.Name, DType: desc.DType, Shape: shape, Data: data}
	}
	return nil
}

// runSession runs the session, terminating it if ctx is cancelled.
func (e *Engine) runSession(ctx context.Context, ins, outs []ort.Value) error {
	var ro *ort.RunOptions
	if ctx.Done() != nil {
		var err error
		ro, err = ort.NewRunOptions()
		if err != nil {
			return fmt.Errorf("onnxrt: creating run options: %w", err)
		}
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			_ = ro.Terminate()
			close(fired)
		})
		defer func() {
			if !stop() {
				<-fired // Terminate is running or ran: let it finish before Destroy
			}
			_ = ro.Destroy()
		}()
	}
	if err := e.sess.RunWithOptions(ins, outs, ro); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("onnxrt: running session: %w", cerr)
		}
		return fmt.Errorf("onnxrt: running session: %w", err)
	}
	return nil
}

// outputShape computes output i's shape from the batch's input shapes, or
// reports false if only ONNX Runtime knows it.
func (e *Engine) outputShape(i int, ins []trt.Tensor) (trt.Shape, bool) {
	plan := e.outDims[i]
	shape := make(trt.Shape, len(plan))
	for d, src := range plan {
		switch {
		case src.fixed >= 0:
			shape[d] = src.fixed
		case src.input >= 0:
			shape[d] = ins[src.input].Shape[src.dim]
		default:
			return nil, false
		}
	}
	return shape, true
}

// ortOutput returns the bytes and shape of an output that ONNX Runtime
// allocated. The binding has already copied the data into Go memory, so the
// bytes stay valid after the value is destroyed.
func ortOutput(v ort.Value) ([]byte, trt.Shape, error) {
	shape := trt.Shape(v.GetShape())
	var data []byte
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		data = sliceBytes(t.GetData())
	case *ort.Tensor[float64]:
		data = sliceBytes(t.GetData())
	case *ort.Tensor[int8]:
		data = sliceBytes(t.GetData())
	case *ort.Tensor[uint8]:
		data = sliceBytes(t.GetData())
	case *ort.Tensor[int32]:
		data = sliceBytes(t.GetData())
	case *ort.Tensor[int64]:
		data = sliceBytes(t.GetData())
	case *ort.Tensor[bool]:
		data = sliceBytes(t.GetData())
	default:
		return nil, nil, fmt.Errorf("unexpected output value %T", v)
	}
	return data, shape, nil
}

// sliceBytes views s as bytes without copying.
func sliceBytes[T any](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(zero)))
}
