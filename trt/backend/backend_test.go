package backend

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/trt/tensorrt"
)

const digits = "../../testdata/models/digits.onnx"

// writePlan writes a stand-in plan (bytes TensorRT would refuse) and a
// manifest that describes it, built for an A100 with TensorRT 10.8.
func writePlan(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "digits.plan")
	plan := []byte("not a real plan")
	m := trt.Manifest{
		Schema: trt.ManifestSchema, TensorRT: "10.8.0.43", TensorRTCUDAMajor: 12, Platform: tensorrt.Platform(),
		GPU:           trt.ManifestGPU{Name: "NVIDIA A100-SXM4-80GB", ComputeCapability: "8.0"},
		Compatibility: trt.Compatibility{Hardware: trt.HardwareCompatNone},
		PlanSHA256:    trt.SHA256Hex(plan), PlanBytes: int64(len(plan)),
	}
	m.SetSpec(trt.Spec{
		Inputs:   []trt.TensorDesc{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{-1, 8, 8}}},
		Outputs:  []trt.TensorDesc{{Name: "logits", DType: trt.Float32, Shape: trt.Shape{-1, 10}}},
		Profiles: []trt.Profile{{Min: map[string]trt.Shape{"pixels": {1, 8, 8}}, Opt: map[string]trt.Shape{"pixels": {8, 8, 8}}, Max: map[string]trt.Shape{"pixels": {64, 8, 8}}}},
	})
	mb, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, plan, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".json", mb, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func ortOrSkip(t *testing.T) string {
	t.Helper()
	lib, err := onnxrt.FindLibrary(os.Getenv("JETINFER_ORT_LIBRARY"))
	if err != nil {
		t.Skipf("ONNX Runtime library not available (%v); run `make ort`", err)
	}
	return lib
}

// TestOpenRefuses: "tensorrt" with a plan that cannot run here (no
// TensorRT in this build, or a manifest for another GPU) is an error
// saying why; an unknown backend and a missing manifest are refused.
func TestOpenRefuses(t *testing.T) {
	plan := writePlan(t)
	ctx := context.Background()
	_, ch, err := Open(ctx, Config{Backend: TensorRT, PlanPath: plan, TRTContexts: 1}, nil)
	if err == nil || ch.TensorRTErr == nil {
		t.Fatal("tensorrt backend with an unusable plan succeeded")
	}
	if !errors.Is(err, trt.ErrUnavailable) && !errors.Is(err, trt.ErrIncompatible) {
		t.Errorf("tensorrt refusal %v matches neither ErrUnavailable nor ErrIncompatible", err)
	}
	if _, _, err := Open(ctx, Config{Backend: "bogus"}, nil); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("unknown backend: %v", err)
	}
	if err := os.Remove(plan + ".json"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(ctx, Config{Backend: TensorRT, PlanPath: plan}, nil); err == nil || !strings.Contains(err.Error(), "every plan needs one") {
		t.Fatalf("plan without a manifest: %v", err)
	}
	if _, _, err := Open(ctx, Config{Backend: TensorRT}, nil); err == nil || !strings.Contains(err.Error(), "JETINFER_PLAN_PATH") {
		t.Fatalf("tensorrt without a plan: %v", err)
	}
}

// TestOpenFallsBack: "auto" with a plan that cannot run here opens ONNX
// Runtime, returns the reason in the Choice and logs it at warning level.
func TestOpenFallsBack(t *testing.T) {
	lib := ortOrSkip(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	c := Config{Backend: Auto, PlanPath: writePlan(t), TRTContexts: 1, ModelPath: digits, ORTLibrary: lib, IntraOpThreads: 1}
	eng, ch, err := Open(context.Background(), c, log)
	if err != nil {
		t.Fatalf("auto backend: %v", err)
	}
	if d := eng.Device(); d.Kind != "cpu" || ch.Backend != ONNXRuntime {
		t.Errorf("auto chose %s on %+v, want the ONNX Runtime CPU engine", ch.Backend, d)
	}
	if ch.TensorRTErr == nil || !strings.Contains(ch.Reason, "fell back to ONNX Runtime") {
		t.Errorf("choice does not say why: %+v", ch)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "NOT used; falling back to ONNX Runtime") {
		t.Errorf("fallback not logged as a warning with its reason; logs:\n%s", logs.String())
	}

	// One ONNX Runtime environment per process: closing the engine
	// closes its runtime, so a second Open works.
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	c.PlanPath = ""
	eng2, ch, err := Open(context.Background(), c, log)
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close()
	if ch.Backend != ONNXRuntime || ch.TensorRTErr != nil || !strings.Contains(ch.Reason, "no TensorRT plan configured") {
		t.Errorf("auto without a plan: %+v", ch)
	}
}

// TestLogFallbackNamesRules: a plan refused by compatibility rules is
// logged with one warning per refused rule.
func TestLogFallbackNamesRules(t *testing.T) {
	m, _, err := ReadPlan(writePlan(t))
	if err != nil {
		t.Fatal(err)
	}
	node := trt.Node{GPU: trt.Device{Kind: "cuda", Name: "NVIDIA H100 80GB HBM3", Compute: "9.0"}, TensorRT: "10.9.0.34",
		TensorRTCUDAMajor: 12, Platform: tensorrt.Platform()}
	var logs bytes.Buffer
	logFallback(slog.New(slog.NewTextHandler(&logs, nil)), "digits.plan", m.CompatibleWith(node))
	for _, rule := range []string{trt.RuleVersion, trt.RuleCompute, trt.RuleGPUModel} {
		if !strings.Contains(logs.String(), `rule="`+rule+`"`) {
			t.Errorf("refused rule %q not logged; logs:\n%s", rule, logs.String())
		}
	}
}

// TestExecutorsDefault checks the default batch concurrency: two for
// TensorRT whatever the CPUs, half the usable CPUs (at least two) for
// ONNX Runtime.
func TestExecutorsDefault(t *testing.T) {
	prev := runtime.GOMAXPROCS(16)
	defer runtime.GOMAXPROCS(prev)
	if got := Executors(ONNXRuntime); got != 8 {
		t.Errorf("ONNX Runtime on 16 CPUs: %d executors, want 8", got)
	}
	if got := Executors(TensorRT); got != 2 {
		t.Errorf("TensorRT on 16 CPUs: %d executors, want 2", got)
	}
	runtime.GOMAXPROCS(3)
	if got := Executors(ONNXRuntime); got != 2 {
		t.Errorf("ONNX Runtime on 3 CPUs: %d executors, want 2", got)
	}
}
