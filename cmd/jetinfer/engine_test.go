package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/tensorrt"
)

// TestEngineCheckPrintsRules: `jetinfer engine check` prints every
// compatibility rule it applied, with the verdict and the reason, and
// fails when one refuses.
func TestEngineCheckPrintsRules(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.plan")
	plan := []byte("plan bytes")
	m := trt.Manifest{
		Schema: trt.ManifestSchema, TensorRT: "10.8.0.43", TensorRTCUDAMajor: 12, Platform: tensorrt.Platform(),
		GPU:           trt.ManifestGPU{Name: "NVIDIA H100 80GB HBM3", ComputeCapability: "9.0"},
		Compatibility: trt.Compatibility{Hardware: trt.HardwareCompatNone, VersionCompatible: true},
		PlanSHA256:    trt.SHA256Hex(plan), PlanBytes: int64(len(plan)),
		Build: trt.BuildInfo{Plugins: []string{"/opt/libmine.so"}},
	}
	m.SetSpec(trt.Spec{
		Inputs:   []trt.TensorDesc{{Name: "x", DType: trt.Float32, Shape: trt.Shape{-1, 4}}},
		Outputs:  []trt.TensorDesc{{Name: "y", DType: trt.Float32, Shape: trt.Shape{-1, 2}}},
		Profiles: []trt.Profile{{Min: map[string]trt.Shape{"x": {1, 4}}, Opt: map[string]trt.Shape{"x": {4, 4}}, Max: map[string]trt.Shape{"x": {8, 4}}}},
	})
	mb, _ := m.Marshal()
	if err := os.WriteFile(path, plan, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".json", mb, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := engineCmd(t.Context(), []string{"check", path + ".json", "-tensorrt-version", "11.1.0.106", "-tensorrt-cuda", "12",
		"-allow-host-code=false"}, &out, &errOut, nil)
	if !errors.Is(err, trt.ErrIncompatible) {
		t.Fatalf("engine check = %v, want ErrIncompatible; output:\n%s", err, out.String())
	}
	got := out.String()
	for _, rule := range []string{trt.RuleDevice, trt.RulePlatform, trt.RuleVersion, trt.RuleCUDAMajor, trt.RuleLeanRuntime, trt.RuleHostCode, trt.RulePlugins} {
		if !strings.Contains(got, "rule "+rule+":") {
			t.Errorf("rule %q not printed; output:\n%s", rule, got)
		}
	}
	for _, want := range []string{
		"TensorRT 10 version-compatible plan (built with 10.8.0.43) runs on TensorRT 11", // accepted across majors
		"REFUSED  a version-compatible plan runs host code",                              // -allow-host-code=false
		"serialized into the version-compatible plan",                                    // plugins travel in the plan
		"plan:            ok",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
