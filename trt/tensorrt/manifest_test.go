package tensorrt

import (
	"errors"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
)

func TestNewManifest(t *testing.T) {
	res := BuildResult{Plan: []byte("plan bytes"), TensorRT: "10.8.0.43", CUDARuntime: 12080, CalibrationCache: []byte("cache")}
	spec := trt.Spec{
		Inputs:   []trt.TensorDesc{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{-1, 8, 8}}},
		Outputs:  []trt.TensorDesc{{Name: "logits", DType: trt.Float32, Shape: trt.Shape{-1, 10}}},
		Profiles: []trt.Profile{profileX()},
	}
	o := NewBuildOptions()
	o.Profiles = spec.Profiles
	o.Precision.INT8 = true
	o.Calibration = &CalibrationData{Batches: make([][]trt.Tensor, 3)}
	gpu := trt.Device{Kind: "cuda", Name: "NVIDIA H100 80GB HBM3", Compute: "9.0", UUID: "GPU-x"}
	m := NewManifest(res, spec, o, []byte("onnx"), BuiltOn{GPU: gpu, Driver: "580.159.04"})
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := m.CheckPlan(res.Plan); err != nil {
		t.Fatal(err)
	}
	if m.Precision.StronglyTyped || !m.Precision.INT8 || m.Precision.Calibration.Batches != 3 ||
		m.Precision.Calibration.CacheSHA256 != trt.SHA256Hex([]byte("cache")) || m.ONNXSHA256 != trt.SHA256Hex([]byte("onnx")) {
		t.Fatalf("manifest %+v", m)
	}
	if m.TensorRTCUDAMajor != 12 || m.Platform != Platform() || m.CUDARuntime != "12.8" || m.Build.OptimizationLevel != -1 {
		t.Fatalf("manifest does not record the build node: %+v", m)
	}
	here := newNode(gpu, "", "10.8.0.43", 12080, Config{})
	if err := m.CompatibleWith(here); err != nil {
		t.Fatalf("a plan is incompatible with the node that built it: %v", err)
	}
	if err := m.CompatibleWith(newNode(gpu, "", "10.9.0.34", 12080, Config{})); !errors.Is(err, trt.ErrIncompatible) {
		t.Fatalf("another TensorRT version accepted: %v", err)
	}
	o.OptimizationLevel = OptimizationLevel(0)
	if m := NewManifest(res, spec, o, nil, BuiltOn{GPU: gpu}); m.Build.OptimizationLevel != 0 {
		t.Fatalf("optimization level 0 recorded as %d", m.Build.OptimizationLevel)
	}
	res.TensorRT = "11.1.0.106"
	o = NewBuildOptions()
	o.Profiles = spec.Profiles
	if m := NewManifest(res, spec, o, nil, BuiltOn{GPU: gpu}); !m.Precision.StronglyTyped || m.ONNXSHA256 != "" {
		t.Fatalf("TensorRT 11 plan not recorded as strongly typed: %+v", m.Precision)
	}
}
