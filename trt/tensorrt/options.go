package tensorrt

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/jetinfer/jetinfer/trt"
)

// Config configures Load.
type Config struct {
	// Device is the CUDA device ordinal.
	Device int
	// Contexts is the number of execution slots (execution context, CUDA
	// stream, staging buffers); batches on different slots overlap. 0
	// means 2.
	Contexts int
	// AllowHostCode lets version-compatible plans run the lean runtime
	// they carry (IRuntime::setEngineHostCodeAllowed). Only enable it for
	// plans you trust: the plan's code runs in this process.
	AllowHostCode bool
	// Plugins are plugin libraries to load before deserializing.
	Plugins []string
	// Verbose queues TensorRT's info lines too (default: warnings and errors).
	Verbose bool
	// Logger receives TensorRT's log lines and lifecycle events. nil
	// discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Contexts == 0 {
		c.Contexts = 2
	}
	if c.Contexts < 1 || c.Contexts > 64 {
		return c, fmt.Errorf("validating TensorRT config: contexts must be 1..64, got %d", c.Contexts)
	}
	if c.Device < 0 {
		return c, fmt.Errorf("validating TensorRT config: device ordinal %d is negative", c.Device)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// HardwareCompat is a plan's hardware compatibility level; the values are
// trt.HardwareCompat*.
type HardwareCompat string

// Precision selects TensorRT 10's builder precision flags for a weakly
// typed network. TensorRT 11 has none of them: there the precision is in
// the ONNX model (strongly typed network).
type Precision struct {
	FP16, BF16, INT8 bool
}

// Any reports whether any flag is set.
func (p Precision) Any() bool { return p.FP16 || p.BF16 || p.INT8 }

// CalibrationData feeds INT8 entropy calibration (TensorRT 10, weakly
// typed networks, Precision.INT8). Every batch holds one tensor per network
// input, in the same order and with the same shape in every batch; that
// shape becomes the calibration profile.
type CalibrationData struct {
	Batches [][]trt.Tensor
	// Cache is a calibration cache from an earlier build; when it matches,
	// TensorRT skips running the batches. A cache without batches is
	// refused (the batches' shape is the calibration profile).
	Cache []byte
}

func (c *CalibrationData) check() error {
	if len(c.Batches) == 0 {
		// The calibration profile is the batches' shape, so a cache alone
		// cannot set it; TensorRT skips running the batches when the
		// cache is valid, so giving them costs only reading the files.
		return errors.New("INT8 calibration needs its batches (-calib files) even with a calibration cache: " +
			"the batches' shape is the calibration profile, and when the cache matches TensorRT does not run them")
	}
	first := c.Batches[0]
	if len(first) == 0 {
		return errors.New("calibration batch 0 has no tensors")
	}
	for i, b := range c.Batches {
		if len(b) != len(first) {
			return fmt.Errorf("calibration batch %d has %d tensors, batch 0 has %d", i, len(b), len(first))
		}
		for k, t := range b {
			f := first[k]
			if t.Name != f.Name || t.DType != f.DType || !t.Shape.Equal(f.Shape) {
				return fmt.Errorf("calibration batch %d tensor %d is %s %v %v, batch 0 has %s %v %v",
					i, k, t.Name, t.DType, t.Shape, f.Name, f.DType, f.Shape)
			}
			n, err := trt.ByteSize(t.DType, t.Shape)
			if err != nil {
				return fmt.Errorf("calibration batch %d tensor %s: %w", i, t.Name, err)
			}
			if n != len(t.Data) {
				return fmt.Errorf("calibration batch %d tensor %s has %d bytes, its shape needs %d", i, t.Name, len(t.Data), n)
			}
		}
	}
	return nil
}

// BuildOptions configures Build.
type BuildOptions struct {
	Device int
	// Profiles are the optimization profiles: for every dynamic network
	// input its min, opt and max shape. At least one.
	Profiles []trt.Profile
	// StronglyTyped builds a strongly typed network: the precision of every
	// tensor comes from the ONNX model (FP16/BF16 weights and casts, Q/DQ
	// nodes for INT8/FP8). Always so on TensorRT 11. Works on 10.x and
	// 11.x; the recommended path.
	StronglyTyped bool
	// Precision: TensorRT 10 legacy flags for weakly typed networks.
	Precision Precision
	// Calibration: INT8 entropy calibration data (TensorRT 10, Precision.INT8).
	Calibration *CalibrationData
	// WorkspaceBytes limits the builder's scratch memory; 0: TensorRT's default.
	WorkspaceBytes int64
	// OptimizationLevel is the builder optimization level 0..5 (0 builds
	// fastest and runs slowest); nil means TensorRT's default, 3.
	OptimizationLevel *int
	// TimingCache is a timing cache from an earlier build; Build returns the
	// updated cache.
	TimingCache []byte
	// Plugins are plugin libraries the network needs. Build loads each
	// once per process (TensorRT's plugin registry is process-wide) before
	// parsing, so a missing or broken library fails before the long build.
	// TensorRT's standard plugins (libnvinfer_plugin) are always
	// registered.
	Plugins []string
	// HardwareCompat: trt.HardwareCompatNone (default), AmperePlus or
	// SameCompute; the latter two are slower.
	HardwareCompat string
	// VersionCompatible builds a plan that later TensorRT versions of the
	// same major can run (with Config.AllowHostCode); slower.
	VersionCompatible  bool
	ExcludeLeanRuntime bool
	// ONNXPath is where the model came from; TensorRT resolves external
	// weight files relative to it. May be empty.
	ONNXPath string
	// Logger receives TensorRT's build log. nil discards it.
	Logger *slog.Logger
	// Verbose queues TensorRT's info lines too.
	Verbose bool
}

// NewBuildOptions returns options with TensorRT's defaults; the zero
// BuildOptions means the same.
func NewBuildOptions() BuildOptions {
	return BuildOptions{HardwareCompat: trt.HardwareCompatNone}
}

// OptimizationLevel returns a pointer to level, for
// BuildOptions.OptimizationLevel.
func OptimizationLevel(level int) *int { return &level }

// optimizationLevel is the level to hand the shim: -1 for TensorRT's
// default.
func (o BuildOptions) optimizationLevel() int {
	if o.OptimizationLevel == nil {
		return -1
	}
	return *o.OptimizationLevel
}

// Check validates the options without TensorRT. tensorRTMajor is the
// linked TensorRT major version (0 if unknown): on 11 and later the legacy
// precision flags and calibration are refused with a message saying what to
// do instead.
func (o BuildOptions) Check(tensorRTMajor int) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	legacy := o.Precision.Any() || o.Calibration != nil
	if legacy && tensorRTMajor >= 11 {
		bad("TensorRT %d has no fp16/bf16/int8 builder flags and no INT8 calibration: networks are always "+
			"strongly typed, so put the precision into the ONNX model (FP16/BF16 weights, or "+
			"QuantizeLinear/DequantizeLinear nodes for INT8/FP8) and build without precision flags", tensorRTMajor)
	}
	if legacy && o.StronglyTyped {
		bad("a strongly typed network takes its precision from the ONNX model; the fp16/bf16/int8 flags " +
			"and calibration apply only to weakly typed networks (TensorRT 10)")
	}
	if o.Calibration != nil {
		if !o.Precision.INT8 {
			bad("calibration data given without int8 precision")
		}
		if err := o.Calibration.check(); err != nil {
			bad("%v", err)
		}
	}
	if len(o.Profiles) == 0 {
		bad("at least one optimization profile is needed")
	}
	for i, p := range o.Profiles {
		if len(p.Min) == 0 {
			bad("profile %d names no input", i)
		}
		for name, lo := range p.Min {
			opt, ok1 := p.Opt[name]
			hi, ok2 := p.Max[name]
			if !ok1 || !ok2 {
				bad("profile %d: input %q needs min, opt and max", i, name)
				continue
			}
			if len(lo) != len(opt) || len(lo) != len(hi) || len(lo) > 8 {
				bad("profile %d: input %q has min/opt/max of different ranks or rank > 8", i, name)
				continue
			}
			for k := range lo {
				if lo[k] < 0 || lo[k] > opt[k] || opt[k] > hi[k] {
					bad("profile %d: input %q needs 0 <= min <= opt <= max in every dimension, got %v %v %v", i, name, lo, opt, hi)
					break
				}
			}
		}
		if len(p.Opt) != len(p.Min) || len(p.Max) != len(p.Min) {
			bad("profile %d: min, opt and max name different inputs", i)
		}
	}
	if l := o.OptimizationLevel; l != nil && (*l < 0 || *l > 5) {
		bad("optimization level must be 0..5 (or unset for TensorRT's default), got %d", *l)
	}
	if o.WorkspaceBytes < 0 {
		bad("workspace limit must not be negative")
	}
	switch o.HardwareCompat {
	case "", trt.HardwareCompatNone, trt.HardwareCompatAmperePlus, trt.HardwareCompatSameCompute:
	default:
		bad("hardware compatibility %q is not one of %q, %q, %q", o.HardwareCompat,
			trt.HardwareCompatNone, trt.HardwareCompatAmperePlus, trt.HardwareCompatSameCompute)
	}
	if o.ExcludeLeanRuntime && !o.VersionCompatible {
		bad("excluding the lean runtime only applies to version-compatible plans")
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("checking build options: %w", err)
	}
	return nil
}

// BuildResult is what Build produces.
type BuildResult struct {
	Plan             []byte
	TimingCache      []byte // updated timing cache, to save for the next build
	CalibrationCache []byte // INT8 calibration cache, if calibration ran
	TensorRT         string // full version ("major.minor.patch.build") of the TensorRT that built the plan
	CUDARuntime      int    // CUDA runtime version of the build (1000*major + 10*minor)
}
