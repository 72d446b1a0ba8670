//go:build tensorrt && cgo

package tensorrt

/*
#include <stdlib.h>
#include <string.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"unsafe"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/cuda"
)

// cmem tracks C allocations made to pass build options; free releases them.
type cmem struct{ ptrs []unsafe.Pointer }

func (m *cmem) alloc(n int) unsafe.Pointer {
	p := C.calloc(1, C.size_t(max(n, 1)))
	if p == nil {
		panic("tensorrt: out of C memory while preparing build options")
	}
	m.ptrs = append(m.ptrs, p)
	return p
}

func (m *cmem) bytes(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	p := m.alloc(len(b))
	C.memcpy(p, unsafe.Pointer(unsafe.SliceData(b)), C.size_t(len(b)))
	return p
}

func (m *cmem) str(s string) *C.char {
	p := m.alloc(len(s) + 1)
	b := unsafe.Slice((*byte)(p), len(s)+1)
	copy(b, s)
	return (*C.char)(p)
}

func (m *cmem) free() {
	for _, p := range m.ptrs {
		C.free(p)
	}
	m.ptrs = nil
}

func (m *cmem) shapeRange(name string, lo, opt, hi trt.Shape) (C.jt_shape_range, error) {
	var r C.jt_shape_range
	if len(lo) > C.JT_MAX_DIMS {
		return r, fmt.Errorf("input %s has rank %d, more than %d", name, len(lo), C.JT_MAX_DIMS)
	}
	r.name = m.str(name)
	r.nb_dims = C.int32_t(len(lo))
	for k := range lo {
		r.min[k], r.opt[k], r.max[k] = C.int64_t(lo[k]), C.int64_t(opt[k]), C.int64_t(hi[k])
	}
	return r, nil
}

var hardwareCompat = map[string]C.int32_t{
	"":                            C.JT_HWCOMPAT_NONE,
	trt.HardwareCompatNone:        C.JT_HWCOMPAT_NONE,
	trt.HardwareCompatAmperePlus:  C.JT_HWCOMPAT_AMPERE_PLUS,
	trt.HardwareCompatSameCompute: C.JT_HWCOMPAT_SAME_COMPUTE_CAPABILITY,
}

// Build parses an ONNX model and builds a serialized plan on o.Device.
// It takes minutes for large models; ctx is checked before the build
// starts, not during it (TensorRT's builder cannot be interrupted).
func Build(ctx context.Context, onnx []byte, o BuildOptions) (BuildResult, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	linked, err := LinkedVersion()
	if err != nil {
		return BuildResult{}, err
	}
	var major int
	fmt.Sscanf(linked, "%d.", &major)
	if err := o.Check(major); err != nil {
		return BuildResult{}, err
	}
	if len(onnx) == 0 {
		return BuildResult{}, fmt.Errorf("building a plan: the ONNX model is empty")
	}
	cudaRuntime, _, err := cuda.RuntimeVersion()
	if err != nil {
		return BuildResult{}, fmt.Errorf("building a plan: %w", err)
	}
	// Plugins before anything slow: a missing or broken library fails
	// here, not after minutes of building.
	if err := LoadPlugins(o.Device, o.Plugins); err != nil {
		return BuildResult{}, fmt.Errorf("building a plan: %w", err)
	}
	var m cmem
	defer m.free()
	var opts C.jt_build_options
	opts.device = C.int32_t(o.Device)
	opts.strongly_typed = boolInt(o.StronglyTyped)
	if o.Precision.FP16 {
		opts.precision |= C.JT_PRECISION_FP16
	}
	if o.Precision.BF16 {
		opts.precision |= C.JT_PRECISION_BF16
	}
	if o.Precision.INT8 {
		opts.precision |= C.JT_PRECISION_INT8
	}
	opts.workspace_bytes = C.uint64_t(o.WorkspaceBytes)
	opts.optimization_level = C.int32_t(o.optimizationLevel())
	opts.hardware_compat = hardwareCompat[o.HardwareCompat]
	opts.version_compatible = boolInt(o.VersionCompatible)
	opts.exclude_lean_runtime = boolInt(o.ExcludeLeanRuntime)
	opts.timing_cache = m.bytes(o.TimingCache)
	opts.timing_cache_size = C.uint64_t(len(o.TimingCache))
	if o.ONNXPath != "" {
		opts.onnx_path = m.str(o.ONNXPath)
	}
	if len(o.Plugins) > 0 {
		paths := unsafe.Slice((**C.char)(m.alloc(len(o.Plugins)*int(unsafe.Sizeof((*C.char)(nil))))), len(o.Plugins))
		for i, p := range o.Plugins {
			paths[i] = m.str(p)
		}
		opts.plugin_paths = &paths[0]
		opts.n_plugins = C.int32_t(len(o.Plugins))
	}
	profs := unsafe.Slice((*C.jt_build_profile)(m.alloc(len(o.Profiles)*C.sizeof_jt_build_profile)), len(o.Profiles))
	for i, p := range o.Profiles {
		ranges := unsafe.Slice((*C.jt_shape_range)(m.alloc(len(p.Min)*C.sizeof_jt_shape_range)), len(p.Min))
		k := 0
		for name, lo := range p.Min {
			r, err := m.shapeRange(name, lo, p.Opt[name], p.Max[name])
			if err != nil {
				return BuildResult{}, fmt.Errorf("building a plan: profile %d: %w", i, err)
			}
			ranges[k] = r
			k++
		}
		profs[i].inputs = &ranges[0]
		profs[i].n_inputs = C.int32_t(len(ranges))
	}
	opts.profiles = &profs[0]
	opts.n_profiles = C.int32_t(len(profs))
	if c := o.Calibration; c != nil {
		cal := (*C.jt_calibration)(m.alloc(C.sizeof_jt_calibration))
		cal.cache = m.bytes(c.Cache)
		cal.cache_size = C.uint64_t(len(c.Cache))
		if len(c.Batches) > 0 {
			first := c.Batches[0]
			nIn := len(first)
			shapes := unsafe.Slice((*C.jt_shape_range)(m.alloc(nIn*C.sizeof_jt_shape_range)), nIn)
			sizes := unsafe.Slice((*C.uint64_t)(m.alloc(nIn*8)), nIn)
			for k, t := range first {
				r, err := m.shapeRange(t.Name, t.Shape, t.Shape, t.Shape)
				if err != nil {
					return BuildResult{}, fmt.Errorf("building a plan: calibration: %w", err)
				}
				shapes[k] = r
				sizes[k] = C.uint64_t(len(t.Data))
			}
			ptrs := unsafe.Slice((*unsafe.Pointer)(m.alloc(len(c.Batches)*nIn*int(unsafe.Sizeof(unsafe.Pointer(nil))))), len(c.Batches)*nIn)
			for b, batch := range c.Batches {
				for k, t := range batch {
					ptrs[b*nIn+k] = m.bytes(t.Data)
				}
			}
			cal.n_inputs = C.int32_t(nIn)
			cal.shapes = &shapes[0]
			cal.input_bytes = &sizes[0]
			cal.n_batches = C.int32_t(len(c.Batches))
			cal.batches = &ptrs[0]
		}
		opts.calibration = cal
	}
	if err := ctx.Err(); err != nil {
		return BuildResult{}, err
	}
	setLogLevel(o.Verbose)
	log.Info("building TensorRT plan", "tensorrt", linked, "device", o.Device, "profiles", len(o.Profiles),
		"strongly_typed", o.StronglyTyped || major >= 11, "fp16", o.Precision.FP16, "bf16", o.Precision.BF16, "int8", o.Precision.INT8)
	var res C.jt_build_result
	var st C.jt_status
	rc := C.jt_build(unsafe.Pointer(unsafe.SliceData(onnx)), C.uint64_t(len(onnx)), &opts, &res, &st)
	drainLog(log)
	if rc != C.JT_OK {
		return BuildResult{}, statusError("building a plan", &st)
	}
	out := BuildResult{
		Plan:             goBytes(res.plan),
		TimingCache:      goBytes(res.timing_cache),
		CalibrationCache: goBytes(res.calibration_cache),
		TensorRT:         linked,
		CUDARuntime:      cudaRuntime,
	}
	C.jt_buffer_free(&res.plan)
	C.jt_buffer_free(&res.timing_cache)
	C.jt_buffer_free(&res.calibration_cache)
	log.Info("built TensorRT plan", "bytes", len(out.Plan), "timing_cache_bytes", len(out.TimingCache),
		"plugins", strings.Join(o.Plugins, ","))
	return out, nil
}

func goBytes(b C.jt_buffer) []byte {
	if b.data == nil || b.size == 0 {
		return nil
	}
	return C.GoBytes(b.data, C.int(b.size))
}
