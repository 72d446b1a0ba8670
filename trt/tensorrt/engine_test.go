//go:build tensorrt && cgo

package tensorrt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/cuda"
	"github.com/jetinfer/jetinfer/trt/gpuinfo"
	"github.com/jetinfer/jetinfer/trt/trttest"
)

const testdata = "../../testdata"

// gpuOrSkip skips on machines without a CUDA device.
func gpuOrSkip(t *testing.T) *cuda.Device {
	t.Helper()
	n, err := cuda.DeviceCount()
	if err != nil || n == 0 {
		t.Skipf("no CUDA device (%v)", err)
	}
	d, err := cuda.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func shapes(lo, opt, hi trt.Shape) (trt.Shape, trt.Shape, trt.Shape) { return lo, opt, hi }

// profileFor returns the optimization profile the tests build each model with.
func profileFor(model string) trt.Profile {
	p := trt.Profile{Min: map[string]trt.Shape{}, Opt: map[string]trt.Shape{}, Max: map[string]trt.Shape{}}
	switch model {
	case trttest.Digits, trttest.DigitsFP16:
		p.Min["pixels"], p.Opt["pixels"], p.Max["pixels"] = shapes(trt.Shape{1, 8, 8}, trt.Shape{32, 8, 8}, trt.Shape{256, 8, 8})
	case trttest.SeqEncoder:
		p.Min["x"], p.Opt["x"], p.Max["x"] = shapes(trt.Shape{1, 1, 16}, trt.Shape{16, 64, 16}, trt.Shape{64, 256, 16})
		p.Min["mask"], p.Opt["mask"], p.Max["mask"] = shapes(trt.Shape{1, 1}, trt.Shape{16, 64}, trt.Shape{64, 256})
	}
	return p
}

// buildPlan builds a strongly typed plan for a test model and its manifest.
func buildPlan(t *testing.T, model string) ([]byte, trt.Manifest) {
	t.Helper()
	path := filepath.Join(testdata, "models", model+".onnx")
	onnx, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	o := NewBuildOptions()
	o.Profiles = []trt.Profile{profileFor(model)}
	o.StronglyTyped = true
	o.ONNXPath = path
	res, err := Build(t.Context(), onnx, o)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := Inspect(t.Context(), res.Plan, Config{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := cuda.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	gpu, mig, err := describeDevice(d.Info(), gpuinfo.Probe)
	if err != nil {
		t.Logf("NVML: %v", err)
	}
	m := NewManifest(res, spec, o, onnx, BuiltOn{GPU: gpu, MIG: mig})
	return res.Plan, m
}

func TestConformance(t *testing.T) {
	gpuOrSkip(t)
	models, err := trttest.LoadModels(testdata)
	if err != nil {
		t.Fatal(err)
	}
	trttest.Run(t, func(t *testing.T, model string) trt.Engine {
		plan, m := buildPlan(t, model)
		e, err := Load(t.Context(), plan, &m, Config{Contexts: 3})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}, models...)
}

func TestLoadRefusesMismatch(t *testing.T) {
	gpuOrSkip(t)
	plan, m := buildPlan(t, trttest.Digits)
	for name, mutate := range map[string]func(*trt.Manifest){
		"version":  func(m *trt.Manifest) { m.TensorRT = "9.0.0.1" },
		"build":    func(m *trt.Manifest) { m.TensorRT += "0" },
		"compute":  func(m *trt.Manifest) { m.GPU.ComputeCapability = "5.0" },
		"model":    func(m *trt.Manifest) { m.GPU.Name = "NVIDIA Imaginary" },
		"platform": func(m *trt.Manifest) { m.Platform = "windows/amd64" },
		"lean": func(m *trt.Manifest) {
			m.Compatibility.VersionCompatible, m.Compatibility.ExcludeLeanRuntime = true, true
		},
	} {
		t.Run(name, func(t *testing.T) {
			bad := m
			mutate(&bad)
			_, err := Load(t.Context(), plan, &bad, Config{})
			if !errors.Is(err, trt.ErrIncompatible) || !strings.Contains(err.Error(), "expected") {
				t.Fatalf("Load with a mismatched manifest = %v, want ErrIncompatible naming what was expected", err)
			}
		})
	}
	_, err := Load(t.Context(), append([]byte{0}, plan...), &m, Config{})
	if !errors.Is(err, trt.ErrIncompatible) {
		t.Fatalf("Load of a plan that does not match the manifest's hash = %v, want ErrIncompatible", err)
	}
}

func TestLegacyPrecisionFlags(t *testing.T) {
	gpuOrSkip(t)
	onnx, err := os.ReadFile(filepath.Join(testdata, "models", "digits.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	linked, err := LinkedVersion()
	if err != nil {
		t.Fatal(err)
	}
	o := NewBuildOptions()
	o.Profiles = []trt.Profile{profileFor(trttest.Digits)}
	o.Precision.FP16 = true
	_, err = Build(t.Context(), onnx, o)
	if strings.HasPrefix(linked, "10.") {
		if err != nil {
			t.Fatalf("FP16 flag on TensorRT %s: %v", linked, err)
		}
	} else if err == nil || !strings.Contains(err.Error(), "QuantizeLinear") {
		t.Fatalf("FP16 flag on TensorRT %s = %v, want a refusal saying to use Q/DQ or FP16 weights", linked, err)
	}
}

// TestPluginLoadedOnce: a plugin library given twice (a reload, a second
// model, a build followed by a load) registers once and both calls
// succeed. JETINFER_TEST_PLUGIN names a TensorRT plugin library.
func TestPluginLoadedOnce(t *testing.T) {
	gpuOrSkip(t)
	lib := os.Getenv("JETINFER_TEST_PLUGIN")
	if lib == "" {
		t.Skip("JETINFER_TEST_PLUGIN (a TensorRT plugin library) not set")
	}
	for i := range 2 {
		if err := LoadPlugins(0, []string{lib}); err != nil {
			t.Fatalf("load %d of %s: %v", i+1, lib, err)
		}
	}
	if err := LoadPlugins(0, []string{filepath.Join(t.TempDir(), "missing.so")}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("missing plugin library: %v", err)
	}
}
