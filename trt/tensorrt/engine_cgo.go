//go:build tensorrt && cgo

package tensorrt

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/cuda"
	"github.com/jetinfer/jetinfer/trt/gpuinfo"
)

var (
	_ trt.Engine       = (*Engine)(nil)
	_ trt.StagedRunner = (*Engine)(nil)
)

// Engine runs a deserialized TensorRT plan. See the package doc for its
// lifetime and concurrency rules.
type Engine struct {
	cfg      Config
	log      *slog.Logger
	dev      *cuda.Device
	alloc    cudaAllocator
	device   trt.Device
	hostCode bool // the runtime lets the plan run host code it carries

	rt  *C.jt_runtime
	eng *C.jt_engine

	spec     trt.Spec
	inIndex  []int // spec.Inputs[i] is IO tensor inIndex[i]
	outIndex []int
	elem     map[int]int // IO index -> element size

	pool   *slotPool[*slot]
	all    []*slot
	health health

	mu     sync.Mutex
	closed bool
}

// slot is one execution context with its stream and staging buffers; it
// belongs to one Run at a time.
type slot struct {
	ctx  *C.jt_context
	in   []staging
	out  []staging
	bind []C.jt_binding // inputs, then outputs
}

// Load checks plan against its manifest m (every rule of
// trt.Manifest.Check against this node: the linked TensorRT's full
// version, platform, CUDA major, the device's compute capability, model
// and MIG profile, host code, plugins; then the plan's size and SHA-256),
// deserializes it and prepares cfg.Contexts execution slots. A nil m skips
// the checks (a warning is logged): TensorRT then decides, and a plan for
// another version or GPU fails to deserialize. The runtime allows the
// plan's host code only for a version-compatible plan and only with
// cfg.AllowHostCode.
func Load(ctx context.Context, plan []byte, m *trt.Manifest, cfg Config) (*Engine, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(plan) == 0 {
		return nil, errors.New("loading engine plan: the plan is empty")
	}
	linked, err := LinkedVersion()
	if err != nil {
		return nil, err
	}
	if err := checkLinked(HeaderVersion(), linked); err != nil {
		return nil, fmt.Errorf("loading engine plan: %w", err)
	}
	dev, device, mig, err := openDevice(cfg)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.With("device", cfg.Device, "gpu", device.Name, "tensorrt", linked)
	hostCode := cfg.AllowHostCode
	if m != nil {
		if err := m.CheckPlan(plan); err != nil {
			return nil, fmt.Errorf("loading engine plan: %w", err)
		}
		if err := m.CompatibleWith(newNode(device, mig, linked, dev.Info().RuntimeVersion, cfg)); err != nil {
			return nil, fmt.Errorf("loading engine plan: %w", err)
		}
		hostCode = cfg.AllowHostCode && m.Compatibility.VersionCompatible
	} else {
		log.Warn("loading an engine plan without a manifest: its TensorRT version and GPU are not checked")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, log: log, dev: dev, alloc: cudaAllocator{dev}, device: device, hostCode: hostCode, elem: make(map[int]int)}
	if err := e.open(plan); err != nil {
		e.Close()
		return nil, err
	}
	for i := range cfg.Contexts {
		if err := ctx.Err(); err != nil {
			e.Close()
			return nil, err
		}
		s, err := e.newSlot()
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("creating execution slot %d: %w", i, err)
		}
		e.all = append(e.all, s)
	}
	e.pool = newSlotPool[*slot](len(e.all))
	for _, s := range e.all {
		e.pool.put(s, 0) // newSlot leaves every context on profile 0
	}
	log.Info("TensorRT engine loaded", "inputs", len(e.spec.Inputs), "outputs", len(e.spec.Outputs),
		"profiles", len(e.spec.Profiles), "contexts", len(e.all))
	return e, nil
}

// Inspect deserializes plan on cfg.Device and returns its Spec without
// creating execution contexts (no manifest check).
func Inspect(ctx context.Context, plan []byte, cfg Config) (trt.Spec, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return trt.Spec{}, err
	}
	if len(plan) == 0 {
		return trt.Spec{}, errors.New("inspecting engine plan: the plan is empty")
	}
	dev, device, _, err := openDevice(cfg)
	if err != nil {
		return trt.Spec{}, err
	}
	if err := ctx.Err(); err != nil {
		return trt.Spec{}, err
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, dev: dev, alloc: cudaAllocator{dev}, device: device, hostCode: cfg.AllowHostCode, elem: make(map[int]int)}
	defer e.Close()
	if err := e.open(plan); err != nil {
		return trt.Spec{}, err
	}
	return e.spec, nil
}

// openDevice opens CUDA device cfg.Device and names it as trt.Device, with
// its UUID from the CUDA runtime and, where NVML is there, the MIG
// profile of the instance (and NVML's spelling of the UUID, "MIG-…" for
// an instance).
func openDevice(cfg Config) (*cuda.Device, trt.Device, string, error) {
	dev, err := cuda.Open(cfg.Device)
	if err != nil {
		return nil, trt.Device{}, "", fmt.Errorf("loading engine plan: %w", err)
	}
	d, mig, err := describeDevice(dev.Info(), gpuinfo.Probe)
	if err != nil {
		cfg.Logger.Debug("NVML unavailable; the MIG profile of the device is unknown", "err", err)
	}
	return dev, d, mig, nil
}

// open creates the runtime, loads plugins, deserializes and introspects.
func (e *Engine) open(plan []byte) error {
	setLogLevel(e.cfg.Verbose)
	defer drainLog(e.log)
	var st C.jt_status
	if C.jt_runtime_create(C.int32_t(e.cfg.Device), boolInt(e.hostCode), &e.rt, &st) != C.JT_OK {
		return statusError("creating the TensorRT runtime", &st)
	}
	if err := LoadPlugins(e.cfg.Device, e.cfg.Plugins); err != nil {
		return err
	}
	if C.jt_engine_deserialize(e.rt, unsafe.Pointer(unsafe.SliceData(plan)), C.uint64_t(len(plan)), &e.eng, &st) != C.JT_OK {
		return statusError("deserializing the plan", &st)
	}
	return e.introspect()
}

// LoadPlugins registers the plugin libraries at paths with TensorRT's
// process-wide plugin registry, each library once per process; loading one
// again (a reload, a second model, a build followed by a load) succeeds
// without registering it twice. Libraries stay registered until the
// process exits. TensorRT's standard plugins are registered by every
// runtime and build; list only your own libraries.
func LoadPlugins(device int, paths []string) error {
	for _, p := range paths {
		var st C.jt_status
		cp := C.CString(p)
		rc := C.jt_plugin_load(C.int32_t(device), cp, &st)
		C.free(unsafe.Pointer(cp))
		if rc != C.JT_OK {
			return statusError("loading plugin library "+p, &st)
		}
	}
	return nil
}

func boolInt(b bool) C.int32_t {
	if b {
		return 1
	}
	return 0
}

var dtypes = map[C.int32_t]trt.DType{
	C.JT_DTYPE_FLOAT32: trt.Float32, C.JT_DTYPE_FLOAT16: trt.Float16, C.JT_DTYPE_BFLOAT16: trt.BFloat16,
	C.JT_DTYPE_INT8: trt.Int8, C.JT_DTYPE_UINT8: trt.Uint8, C.JT_DTYPE_INT32: trt.Int32,
	C.JT_DTYPE_INT64: trt.Int64, C.JT_DTYPE_BOOL: trt.Bool,
}

func (e *Engine) introspect() error {
	var st C.jt_status
	var nIO, nProf C.int32_t
	if C.jt_engine_counts(e.eng, &nIO, &nProf, &st) != C.JT_OK {
		return statusError("counting IO tensors", &st)
	}
	if nProf < 1 {
		return errors.New("introspecting the plan: it has no optimization profile")
	}
	var refuse []string
	for i := range int(nIO) {
		var ti C.jt_tensor_info
		if C.jt_engine_tensor(e.eng, C.int32_t(i), &ti, &st) != C.JT_OK {
			return statusError("describing IO tensor "+strconv.Itoa(i), &st)
		}
		name := C.GoString(&ti.name[0])
		shape := make(trt.Shape, int(ti.nb_dims))
		for k := range shape {
			shape[k] = int64(ti.dims[k])
		}
		dt, ok := dtypes[ti.dtype]
		switch {
		case !ok:
			refuse = append(refuse, fmt.Sprintf("%s has TensorRT data type %d, which jetinfer cannot carry", name, int(ti.trt_dtype)))
		case ti.linear == 0:
			refuse = append(refuse, fmt.Sprintf("%s uses the non-linear (vectorized) TensorRT format %d; rebuild with linear IO formats", name, int(ti.trt_format)))
		case ti.shape_tensor != 0 || ti.on_host != 0:
			refuse = append(refuse, fmt.Sprintf("%s is a shape tensor or lives in host memory; jetinfer supports device execution tensors only", name))
		}
		e.elem[i] = int(ti.elem_size)
		desc := trt.TensorDesc{Name: name, DType: dt, Shape: shape}
		switch ti.mode {
		case C.JT_IO_INPUT:
			e.spec.Inputs = append(e.spec.Inputs, desc)
			e.inIndex = append(e.inIndex, i)
		case C.JT_IO_OUTPUT:
			e.spec.Outputs = append(e.spec.Outputs, desc)
			e.outIndex = append(e.outIndex, i)
		}
	}
	if len(refuse) > 0 {
		return fmt.Errorf("introspecting the plan: unsupported IO: %s", strings.Join(refuse, "; "))
	}
	for p := range int(nProf) {
		prof := trt.Profile{Min: map[string]trt.Shape{}, Opt: map[string]trt.Shape{}, Max: map[string]trt.Shape{}}
		for k, in := range e.spec.Inputs {
			if in.Shape.IsConcrete() {
				prof.Min[in.Name], prof.Opt[in.Name], prof.Max[in.Name] = in.Shape.Clone(), in.Shape.Clone(), in.Shape.Clone()
				continue
			}
			for which, dst := range []map[string]trt.Shape{prof.Min, prof.Opt, prof.Max} {
				var nb C.int32_t
				var dims [C.JT_MAX_DIMS]C.int64_t
				if C.jt_engine_profile_shape(e.eng, C.int32_t(e.inIndex[k]), C.int32_t(p), C.int32_t(which), &nb, &dims[0], &st) != C.JT_OK {
					return statusError(fmt.Sprintf("reading profile %d of %s", p, in.Name), &st)
				}
				s := make(trt.Shape, int(nb))
				for d := range s {
					s[d] = int64(dims[d])
				}
				dst[in.Name] = s
			}
		}
		e.spec.Profiles = append(e.spec.Profiles, prof)
	}
	return nil
}

// newSlot creates an execution context and buffers sized for the largest
// shapes of every profile. It sizes the profiles last to first, so that
// the context is left on profile 0, where the pool expects it.
func (e *Engine) newSlot() (*slot, error) {
	var st C.jt_status
	s := &slot{}
	if C.jt_context_create(e.eng, &s.ctx, &st) != C.JT_OK {
		return nil, statusError("creating an execution context", &st)
	}
	nIn, nOut := len(e.spec.Inputs), len(e.spec.Outputs)
	s.in, s.out = make([]staging, nIn), make([]staging, nOut)
	s.bind = make([]C.jt_binding, nIn+nOut)
	inBytes, outBytes := make([]int, nIn), make([]int, nOut)
	for p := len(e.spec.Profiles) - 1; p >= 0; p-- {
		prof := e.spec.Profiles[p]
		for i, in := range e.spec.Inputs {
			n, err := trt.ByteSize(in.DType, prof.Max[in.Name])
			if err != nil {
				e.freeSlot(s)
				return nil, fmt.Errorf("sizing input %s for profile %d: %w", in.Name, p, err)
			}
			inBytes[i] = max(inBytes[i], n)
			b := &s.bind[i]
			b.index = C.int32_t(e.inIndex[i])
			b.nb_dims = C.int32_t(len(prof.Max[in.Name]))
			for k, d := range prof.Max[in.Name] {
				b.dims[k] = C.int64_t(d)
			}
			b.bytes = C.uint64_t(n)
		}
		for i := range e.spec.Outputs {
			s.bind[nIn+i].index = C.int32_t(e.outIndex[i])
		}
		if C.jt_context_shapes(s.ctx, C.int32_t(p), &s.bind[0], C.int32_t(nIn), &s.bind[nIn], C.int32_t(nOut), &st) != C.JT_OK {
			e.freeSlot(s)
			return nil, statusError(fmt.Sprintf("inferring output shapes at the max of profile %d", p), &st)
		}
		for i := range e.spec.Outputs {
			outBytes[i] = max(outBytes[i], int(s.bind[nIn+i].bytes))
		}
	}
	for i, n := range inBytes {
		if err := s.in[i].grow(e.alloc, n); err != nil {
			e.freeSlot(s)
			return nil, err
		}
	}
	for i, n := range outBytes {
		if err := s.out[i].grow(e.alloc, n); err != nil {
			e.freeSlot(s)
			return nil, err
		}
	}
	return s, nil
}

func (e *Engine) freeSlot(s *slot) error {
	var errs []error
	if s.ctx != nil {
		var st C.jt_status
		if C.jt_context_destroy(s.ctx, &st) != C.JT_OK {
			errs = append(errs, statusError("destroying an execution context", &st))
		}
		s.ctx = nil
	}
	for _, list := range [][]staging{s.in, s.out} {
		for i := range list {
			errs = append(errs, list[i].free())
		}
	}
	return errors.Join(errs...)
}

// Spec describes the engine's IO tensors and optimization profiles.
func (e *Engine) Spec() trt.Spec { return e.spec }

// Device reports the GPU the engine runs on.
func (e *Engine) Device() trt.Device { return e.device }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", trt.ErrInvalidInput, fmt.Sprintf(format, args...))
}

func (e *Engine) checkBatch(b *trt.Batch) error {
	if len(b.Inputs) != len(e.spec.Inputs) {
		return invalid("batch has %d inputs, engine takes %d", len(b.Inputs), len(e.spec.Inputs))
	}
	if b.Profile < 0 || b.Profile >= len(e.spec.Profiles) {
		return invalid("optimization profile %d out of range (engine has %d)", b.Profile, len(e.spec.Profiles))
	}
	prof := e.spec.Profiles[b.Profile]
	for i, t := range b.Inputs {
		want := e.spec.Inputs[i]
		if t.Name != want.Name || t.DType != want.DType || !want.Shape.Matches(t.Shape) || !t.Shape.IsConcrete() {
			return invalid("input %d is %s %v %v, engine expects %s %v %v", i, t.Name, t.DType, t.Shape, want.Name, want.DType, want.Shape)
		}
		if !prof.Contains(t.Name, t.Shape) {
			return invalid("input %s shape %v is outside profile %d (min %v, max %v)", t.Name, t.Shape, b.Profile, prof.Min[t.Name], prof.Max[t.Name])
		}
		n, err := trt.ByteSize(t.DType, t.Shape)
		if err != nil || n != len(t.Data) {
			return invalid("input %s has %d bytes, shape %v needs %d", t.Name, len(t.Data), t.Shape, n)
		}
	}
	if len(b.Outputs) != 0 && len(b.Outputs) != len(e.spec.Outputs) {
		return invalid("batch has %d output buffers, engine produces %d", len(b.Outputs), len(e.spec.Outputs))
	}
	return nil
}

// acquire takes a free slot, preferring one whose context is on profile.
// It fails at once when the engine is closed or its device lost.
func (e *Engine) acquire(ctx context.Context, profile int) (*slot, error) {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return nil, errors.New("running a batch: engine closed")
	}
	if err := e.health.check(); err != nil {
		return nil, err
	}
	s, _, err := e.pool.get(ctx, profile)
	return s, err
}

// Run executes one batch: it stages the inputs in a free slot's pinned
// buffers, queues copies, inference and copies back with one C call, and
// sleeps until the slot's event fires. Outputs are written in place when
// b.Outputs[i].Data has the exact size, else allocated.
func (e *Engine) Run(ctx context.Context, b *trt.Batch) error {
	if err := e.checkBatch(b); err != nil {
		return err
	}
	s, err := e.acquire(ctx, b.Profile)
	if err != nil {
		return err
	}
	defer e.pool.put(s, b.Profile) // the shim selected b.Profile, or failed before
	shapes := make([]trt.Shape, len(b.Inputs))
	for i, t := range b.Inputs {
		if err := s.in[i].grow(e.alloc, len(t.Data)); err != nil {
			return e.health.observe(err)
		}
		copy(s.in[i].host.Bytes(), t.Data)
		shapes[i] = t.Shape
	}
	if len(b.Outputs) == 0 {
		b.Outputs = make([]trt.Tensor, len(e.spec.Outputs))
	}
	return e.runSlot(s, b.Profile, shapes, b.Outputs)
}

// RunStaged implements trt.StagedRunner: fill writes the batch straight
// into the slot's pinned staging buffers.
func (e *Engine) RunStaged(ctx context.Context, profile int, shapes []trt.Shape, fill func([][]byte) error, outputs []trt.Tensor) error {
	if len(shapes) != len(e.spec.Inputs) || len(outputs) != len(e.spec.Outputs) {
		return &Error{Op: "staging a batch", Code: CodeInvalid,
			Msg: fmt.Sprintf("%d input shapes and %d outputs for an engine of %d inputs and %d outputs", len(shapes), len(outputs), len(e.spec.Inputs), len(e.spec.Outputs))}
	}
	if profile < 0 || profile >= len(e.spec.Profiles) {
		return &Error{Op: "staging a batch", Code: CodeInvalid, Msg: fmt.Sprintf("profile %d out of range", profile)}
	}
	bufs := make([][]byte, len(shapes))
	sizes := make([]int, len(shapes))
	for i, sh := range shapes {
		n, err := trt.ByteSize(e.spec.Inputs[i].DType, sh)
		if err != nil || !e.spec.Profiles[profile].Contains(e.spec.Inputs[i].Name, sh) {
			return &Error{Op: "staging a batch", Code: CodeInvalid,
				Msg: fmt.Sprintf("input %q: shape %v is not inside profile %d", e.spec.Inputs[i].Name, sh, profile)}
		}
		sizes[i] = n
	}
	s, err := e.acquire(ctx, profile)
	if err != nil {
		return err
	}
	defer e.pool.put(s, profile)
	for i, n := range sizes {
		if err := s.in[i].grow(e.alloc, n); err != nil {
			return e.health.observe(err)
		}
		bufs[i] = s.in[i].host.Bytes()[:n:n]
	}
	if err := fill(bufs); err != nil {
		return fmt.Errorf("staging a batch: %w", err)
	}
	return e.runSlot(s, profile, shapes, outputs)
}

// runSlot binds the staged inputs of shapes, enqueues the batch on the
// slot's context, waits for it and copies the outputs out. An error that
// says the device is lost marks the engine lost for every later call.
func (e *Engine) runSlot(s *slot, profile int, shapes []trt.Shape, outputs []trt.Tensor) error {
	return e.health.observe(e.runSlotOnce(s, profile, shapes, outputs))
}

func (e *Engine) runSlotOnce(s *slot, profile int, shapes []trt.Shape, outputs []trt.Tensor) error {
	nIn := len(e.spec.Inputs)
	for i, sh := range shapes {
		n, err := trt.ByteSize(e.spec.Inputs[i].DType, sh)
		if err != nil {
			return &Error{Op: "binding inputs", Code: CodeInvalid, Msg: err.Error()}
		}
		bd := &s.bind[i]
		bd.nb_dims = C.int32_t(len(sh))
		for k, d := range sh {
			bd.dims[k] = C.int64_t(d)
		}
		bd.bytes = C.uint64_t(n)
		setBuffers(bd, s.in[i])
	}
	for i := range e.spec.Outputs {
		setBuffers(&s.bind[nIn+i], s.out[i])
	}
	var st C.jt_status
	rc := C.jt_context_enqueue(s.ctx, C.int32_t(profile), &s.bind[0], C.int32_t(nIn), &s.bind[nIn], C.int32_t(len(e.spec.Outputs)), &st)
	if rc == C.JT_ERR_CAPACITY {
		// An output is larger than at the profile's max input shapes:
		// grow to the sizes the shim filled in and try once more.
		// A failed grow keeps the old buffers, so the slot stays usable.
		for i := range e.spec.Outputs {
			if err := s.out[i].grow(e.alloc, int(s.bind[nIn+i].bytes)); err != nil {
				return err
			}
			setBuffers(&s.bind[nIn+i], s.out[i])
		}
		rc = C.jt_context_enqueue(s.ctx, C.int32_t(profile), &s.bind[0], C.int32_t(nIn), &s.bind[nIn], C.int32_t(len(e.spec.Outputs)), &st)
	}
	if st.log_queued > 0 {
		drainLog(e.log)
	}
	if rc != C.JT_OK {
		return statusError("queueing a batch", &st)
	}
	if C.jt_context_wait(s.ctx, &st) != C.JT_OK {
		return statusError("waiting for a batch", &st)
	}
	for i, desc := range e.spec.Outputs {
		bd := &s.bind[nIn+i]
		shape := make(trt.Shape, int(bd.nb_dims))
		for k := range shape {
			shape[k] = int64(bd.dims[k])
		}
		n := int(bd.bytes)
		o := &outputs[i]
		if len(o.Data) != n {
			o.Data = make([]byte, n)
		}
		copy(o.Data, s.out[i].host.Bytes()[:n])
		o.Name, o.DType, o.Shape = desc.Name, desc.DType, shape
	}
	e.log.Debug("batch done", "profile", profile)
	return nil
}

func setBuffers(b *C.jt_binding, st staging) {
	b.device, b.device_bytes, b.host, b.host_bytes = 0, 0, nil, 0
	if st.dev != nil && st.host != nil { // never nil in a pooled slot; the shim refuses a binding without buffers
		b.device = C.uint64_t(st.dev.Ptr())
		b.device_bytes = C.uint64_t(st.dev.Len())
		b.host = st.host.Pointer()
		b.host_bytes = C.uint64_t(st.host.Len())
	}
}

// Close waits for in-flight batches, then releases the contexts, buffers,
// engine and runtime.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	var errs []error
	if e.pool != nil {
		for range e.all {
			e.pool.get(context.Background(), 0) // every slot back: no Run in flight
		}
	}
	for _, s := range e.all {
		errs = append(errs, e.freeSlot(s))
	}
	if e.eng != nil {
		C.jt_engine_destroy(e.eng)
		e.eng = nil
	}
	if e.rt != nil {
		C.jt_runtime_destroy(e.rt)
		e.rt = nil
	}
	drainLog(e.log)
	return errors.Join(errs...)
}

// ThisNode describes this process for trt.Manifest.Check: the CUDA device
// cfg.Device (a CUDA ordinal, CUDA_VISIBLE_DEVICES respected) with its
// MIG profile, the linked TensorRT, the platform, and cfg's loader
// settings (host code, plugins). Load checks plans against the same.
//
// On an error the node holds what was found before it (the platform, the
// loader settings, the linked TensorRT and CUDA runtime when readable).
func ThisNode(cfg Config) (trt.Node, error) {
	n := trt.Node{Platform: Platform(), HostCodeAllowed: cfg.AllowHostCode, Plugins: cfg.Plugins}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return n, err
	}
	linked, err := LinkedVersion()
	if err != nil {
		return n, err
	}
	n.TensorRT = linked
	if rt, _, err := cuda.RuntimeVersion(); err == nil {
		n.TensorRTCUDAMajor = CUDAMajor(rt)
	}
	dev, device, mig, err := openDevice(cfg)
	if err != nil {
		return n, err
	}
	return newNode(device, mig, linked, dev.Info().RuntimeVersion, cfg), nil
}
