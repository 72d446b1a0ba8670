package tensorrt

import (
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
)

func profileX() trt.Profile {
	return trt.Profile{
		Min: map[string]trt.Shape{"x": {1, 16}},
		Opt: map[string]trt.Shape{"x": {8, 16}},
		Max: map[string]trt.Shape{"x": {64, 16}},
	}
}

func TestBuildOptionsCheck(t *testing.T) {
	calib := &CalibrationData{Batches: [][]trt.Tensor{
		{{Name: "x", DType: trt.Float32, Shape: trt.Shape{8, 16}, Data: make([]byte, 8*16*4)}},
		{{Name: "x", DType: trt.Float32, Shape: trt.Shape{8, 16}, Data: make([]byte, 8*16*4)}},
	}}
	for _, tc := range []struct {
		name   string
		mutate func(*BuildOptions)
		major  int
		want   string // "" means valid
	}{
		{"strongly typed 10", func(o *BuildOptions) { o.StronglyTyped = true }, 10, ""},
		{"strongly typed 11", func(o *BuildOptions) { o.StronglyTyped = true }, 11, ""},
		{"fp16 on 10", func(o *BuildOptions) { o.Precision.FP16 = true }, 10, ""},
		{"fp16 on 11", func(o *BuildOptions) { o.Precision.FP16 = true }, 11, "QuantizeLinear/DequantizeLinear"},
		{"int8 calibration on 10", func(o *BuildOptions) { o.Precision.INT8 = true; o.Calibration = calib }, 10, ""},
		{"int8 calibration on 11", func(o *BuildOptions) { o.Precision.INT8 = true; o.Calibration = calib }, 11, "TensorRT 11 has no fp16/bf16/int8"},
		{"flags with strongly typed", func(o *BuildOptions) { o.StronglyTyped = true; o.Precision.BF16 = true }, 10, "weakly typed"},
		{"calibration without int8", func(o *BuildOptions) { o.Calibration = calib }, 10, "without int8"},
		{"ragged calibration", func(o *BuildOptions) {
			o.Precision.INT8 = true
			o.Calibration = &CalibrationData{Batches: [][]trt.Tensor{calib.Batches[0],
				{{Name: "x", DType: trt.Float32, Shape: trt.Shape{4, 16}, Data: make([]byte, 4*16*4)}}}}
		}, 10, "batch 1 tensor 0"},
		{"short calibration data", func(o *BuildOptions) {
			o.Precision.INT8 = true
			o.Calibration = &CalibrationData{Batches: [][]trt.Tensor{
				{{Name: "x", DType: trt.Float32, Shape: trt.Shape{8, 16}, Data: make([]byte, 10)}}}}
		}, 10, "has 10 bytes"},
		{"no profile", func(o *BuildOptions) { o.Profiles = nil }, 10, "at least one optimization profile"},
		{"min > opt", func(o *BuildOptions) { o.Profiles[0].Min["x"] = trt.Shape{9, 16} }, 10, "min <= opt <= max"},
		{"missing max", func(o *BuildOptions) { delete(o.Profiles[0].Max, "x") }, 10, "needs min, opt and max"},
		{"rank mismatch", func(o *BuildOptions) { o.Profiles[0].Max["x"] = trt.Shape{64} }, 10, "different ranks"},
		{"opt level", func(o *BuildOptions) { o.OptimizationLevel = OptimizationLevel(6) }, 10, "0..5"},
		{"opt level negative", func(o *BuildOptions) { o.OptimizationLevel = OptimizationLevel(-1) }, 10, "0..5"},
		{"opt level 0", func(o *BuildOptions) { o.OptimizationLevel = OptimizationLevel(0) }, 10, ""},
		{"calibration cache without batches", func(o *BuildOptions) {
			o.Precision.INT8 = true
			o.Calibration = &CalibrationData{Cache: []byte("cache")}
		}, 10, "needs its batches"},
		{"hardware", func(o *BuildOptions) { o.HardwareCompat = "turing_plus" }, 10, "hardware compatibility"},
		{"lean runtime", func(o *BuildOptions) { o.ExcludeLeanRuntime = true }, 10, "version-compatible"},
		{"version compatible ampere plus", func(o *BuildOptions) {
			o.VersionCompatible = true
			o.HardwareCompat = trt.HardwareCompatAmperePlus
		}, 10, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewBuildOptions()
			o.Profiles = []trt.Profile{profileX()}
			tc.mutate(&o)
			err := o.Check(tc.major)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}

// TestBuildOptionsZeroValue: the zero BuildOptions means TensorRT's
// defaults, optimization level included (not level 0, TensorRT's
// fastest build and slowest engine).
func TestBuildOptionsZeroValue(t *testing.T) {
	var o BuildOptions
	if got := o.optimizationLevel(); got != -1 {
		t.Fatalf("zero BuildOptions hands the shim optimization level %d, want -1 (TensorRT's default)", got)
	}
	o.OptimizationLevel = OptimizationLevel(0)
	if got := o.optimizationLevel(); got != 0 {
		t.Fatalf("explicit level 0 handed over as %d", got)
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil || c.Contexts != 2 || c.Logger == nil {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	if _, err := (Config{Contexts: -1}).withDefaults(); err == nil {
		t.Error("negative contexts accepted")
	}
	if _, err := (Config{Device: -1}).withDefaults(); err == nil {
		t.Error("negative device accepted")
	}
}

func TestFormatVersion(t *testing.T) {
	for v, want := range map[int]string{100800: "10.8.0", 101601: "10.16.1", 110100: "11.1.0"} {
		if got := FormatVersion(v); got != want {
			t.Errorf("FormatVersion(%d) = %q, want %q", v, got, want)
		}
	}
	if got := FormatFullVersion(100800, 43); got != "10.8.0.43" {
		t.Errorf("FormatFullVersion = %q", got)
	}
}
