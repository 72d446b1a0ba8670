package trt

import (
	"errors"
	"strings"
	"testing"
)

func testManifest() Manifest {
	plan := []byte("not a real plan, just bytes to hash")
	m := Manifest{
		Schema:        ManifestSchema,
		TensorRT:      "10.8.0",
		GPU:           ManifestGPU{Name: "NVIDIA H100 80GB HBM3", ComputeCapability: "9.0"},
		DriverVersion: "580.159.04",
		Compatibility: Compatibility{Hardware: HardwareCompatNone},
		Precision:     Precision{StronglyTyped: true},
		PlanSHA256:    SHA256Hex(plan),
		PlanBytes:     int64(len(plan)),
		Build:         BuildInfo{OptimizationLevel: -1},
	}
	m.SetSpec(Spec{
		Inputs:  []TensorDesc{{Name: "x", DType: Float16, Shape: Shape{-1, 3, 224, 224}}},
		Outputs: []TensorDesc{{Name: "y", DType: Float32, Shape: Shape{-1, 1000}}},
		Profiles: []Profile{{
			Min: map[string]Shape{"x": {1, 3, 224, 224}},
			Opt: map[string]Shape{"x": {8, 3, 224, 224}},
			Max: map[string]Shape{"x": {32, 3, 224, 224}},
		}},
	})
	return m
}

func h100() Device {
	return Device{Kind: "cuda", Name: "NVIDIA H100 80GB HBM3", Compute: "9.0", UUID: "GPU-1"}
}

func TestManifestRoundTrip(t *testing.T) {
	m := testManifest()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := got.Spec()
	if err != nil {
		t.Fatal(err)
	}
	if spec.Inputs[0].DType != Float16 || !spec.Inputs[0].Shape.Equal(Shape{-1, 3, 224, 224}) ||
		!spec.Profiles[0].Max["x"].Equal(Shape{32, 3, 224, 224}) || spec.Outputs[0].Name != "y" {
		t.Fatalf("spec after round trip: %+v", spec)
	}
	for _, key := range []string{`"tensorrt_version": "10.8.0"`, `"compute_capability": "9.0"`, `"plan_sha256"`, `"strongly_typed": true`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("manifest JSON lacks %s:\n%s", key, b)
		}
	}
}

func TestManifestValidate(t *testing.T) {
	for name, mutate := range map[string]func(*Manifest){
		"schema":   func(m *Manifest) { m.Schema = ManifestSchema + 1 },
		"version":  func(m *Manifest) { m.TensorRT = "10.8" },
		"compute":  func(m *Manifest) { m.GPU.ComputeCapability = "sm_90" },
		"hardware": func(m *Manifest) { m.Compatibility.Hardware = "any" },
		"sha":      func(m *Manifest) { m.PlanSHA256 = "abc" },
		"dtype":    func(m *Manifest) { m.Inputs[0].DType = "float8" },
		"empty":    func(m *Manifest) { m.Profiles = nil },
	} {
		t.Run(name, func(t *testing.T) {
			m := testManifest()
			mutate(&m)
			if err := m.Validate(); err == nil {
				t.Fatal("invalid manifest accepted")
			}
			b, _ := m.Marshal()
			if _, err := ParseManifest(b); err == nil {
				t.Fatal("ParseManifest accepted an invalid manifest")
			}
		})
	}
	if err := testManifest().Validate(); err != nil {
		t.Fatalf("valid manifest rejected: %v", err)
	}
}

func TestManifestCheckPlan(t *testing.T) {
	m := testManifest()
	if err := m.CheckPlan([]byte("not a real plan, just bytes to hash")); err != nil {
		t.Fatal(err)
	}
	for _, plan := range [][]byte{[]byte("not a real plan, just bytes to hasH"), []byte("short")} {
		if err := m.CheckPlan(plan); !errors.Is(err, ErrIncompatible) {
			t.Errorf("CheckPlan(%q) = %v, want ErrIncompatible", plan, err)
		}
	}
}

func TestCompatibleWith(t *testing.T) {
	a100 := Device{Kind: "cuda", Name: "NVIDIA A100-SXM4-80GB", Compute: "8.0"}
	t4 := Device{Kind: "cuda", Name: "Tesla T4", Compute: "7.5"}
	h200 := Device{Kind: "cuda", Name: "NVIDIA H200", Compute: "9.0"}
	for _, tc := range []struct {
		name    string
		mutate  func(*Manifest)
		gpu     Device
		trt     string
		wantErr []string // substrings of the error; nil: compatible
	}{
		{"exact", nil, h100(), "10.8.0", nil},
		{"same cc other model", nil, h200, "10.8.0", nil},
		{"patch differs", nil, h100(), "10.8.1",
			[]string{"tensorrt version: expected 10.8.0, found 10.8.1", "version-compatible"}},
		{"older trt", nil, h100(), "10.7.0", []string{"expected 10.8.0, found 10.7.0"}},
		{"cc differs", nil, a100, "10.8.0",
			[]string{"compute capability: expected 9.0 (plan built on NVIDIA H100 80GB HBM3), found 8.0 on NVIDIA A100-SXM4-80GB"}},
		{"both differ", nil, a100, "11.1.0", []string{"compute capability", "tensorrt version"}},
		{"no gpu", nil, Device{Kind: "cpu", Name: "onnxruntime"}, "10.8.0", []string{"device: expected a CUDA GPU, found cpu"}},
		{"no trt", nil, h100(), "", []string{"found none linked"}},
		{"version compatible later minor", func(m *Manifest) { m.Compatibility.VersionCompatible = true }, h100(), "10.12.1", nil},
		{"version compatible same", func(m *Manifest) { m.Compatibility.VersionCompatible = true }, h100(), "10.8.0", nil},
		{"version compatible older", func(m *Manifest) { m.Compatibility.VersionCompatible = true }, h100(), "10.7.9",
			[]string{"expected 10.x at or after 10.8.0 (plan built version-compatible), found 10.7.9"}},
		{"version compatible next major", func(m *Manifest) { m.Compatibility.VersionCompatible = true }, h100(), "11.0.0",
			[]string{"found 11.0.0"}},
		{"ampere plus on a100", func(m *Manifest) { m.Compatibility.Hardware = HardwareCompatAmperePlus }, a100, "10.8.0", nil},
		{"ampere plus on t4", func(m *Manifest) { m.Compatibility.Hardware = HardwareCompatAmperePlus }, t4, "10.8.0",
			[]string{"expected 8.0 or newer (plan built ampere_plus), found 7.5 on Tesla T4"}},
		{"same cc on h200", func(m *Manifest) { m.Compatibility.Hardware = HardwareCompatSameCompute }, h200, "10.8.0", nil},
		{"same cc on a100", func(m *Manifest) { m.Compatibility.Hardware = HardwareCompatSameCompute }, a100, "10.8.0",
			[]string{"expected 9.0 (plan built same_compute_capability), found 8.0"}},
		{"unknown gpu cc", nil, Device{Kind: "cuda", Name: "mystery"}, "10.8.0", []string{"compute capability is unknown"}},
		{"garbage trt version", nil, h100(), "ten", []string{`"ten" (unparsable)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testManifest()
			if tc.mutate != nil {
				tc.mutate(&m)
			}
			err := m.CompatibleWith(tc.gpu, tc.trt)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("want compatible, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error containing %q, got nil", tc.wantErr)
			}
			if !errors.Is(err, ErrIncompatible) {
				t.Errorf("error does not match ErrIncompatible: %v", err)
			}
			var ie *IncompatibleError
			if !errors.As(err, &ie) || len(ie.Mismatches) == 0 {
				t.Errorf("error is not an *IncompatibleError with mismatches: %v", err)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}
