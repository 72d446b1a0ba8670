package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/scheduler"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/trttest"
	"github.com/jetinfer/jetinfer/worker/models"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestModelCommands drives `jetinfer model` against an embedded JetStream
// server: push, the version table as text and JSON, promote, rm refused
// while active, rollback, show and resolve.
func TestModelCommands(t *testing.T) {
	ns, err := startEmbedded(-1, t.TempDir(), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	t.Setenv("JETINFER_MODEL_CACHE_DIR", t.TempDir())
	url := ns.ClientURL()
	model := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), append(append([]string{"model"}, args...), "--nats", url), &stdout, &stderr)
		return stdout.String(), err
	}
	mustModel := func(args ...string) string {
		t.Helper()
		out, err := model(args...)
		if err != nil {
			t.Fatalf("model %v: %v\n%s", args, err, out)
		}
		return out
	}

	// A stand-in plan (bytes; nothing here deserializes it) with a real
	// manifest for an H100 and TensorRT 10.9.0.
	dir := t.TempDir()
	planBytes := []byte("stand-in plan for the CLI test")
	plan := filepath.Join(dir, "h100.plan")
	if err := os.WriteFile(plan, planBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	m := trt.Manifest{Schema: trt.ManifestSchema, TensorRT: "10.9.0.34", Platform: "linux/amd64", TensorRTCUDAMajor: 12,
		GPU:           trt.ManifestGPU{Name: "NVIDIA H100 80GB HBM3", ComputeCapability: "9.0"},
		Compatibility: trt.Compatibility{Hardware: trt.HardwareCompatNone}, Precision: trt.Precision{FP16: true},
		PlanSHA256: trt.SHA256Hex(planBytes), PlanBytes: int64(len(planBytes)), Build: trt.BuildInfo{OptimizationLevel: -1}}
	m.SetSpec(trt.Spec{
		Inputs:  []trt.TensorDesc{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{-1, 8, 8}}},
		Outputs: []trt.TensorDesc{{Name: "logits", DType: trt.Float32, Shape: trt.Shape{-1, 10}}},
		Profiles: []trt.Profile{{Min: map[string]trt.Shape{"pixels": {1, 8, 8}}, Opt: map[string]trt.Shape{"pixels": {64, 8, 8}},
			Max: map[string]trt.Shape{"pixels": {256, 8, 8}}}},
	})
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plan+".json", b, 0o644); err != nil {
		t.Fatal(err)
	}

	mustModel("push", "digits", "1", "../../testdata/models/digits.onnx", "--plan", plan, "--reference", "../../testdata/digits_gate.arrow")
	mustModel("push", "digits", "2", "../../testdata/models/digits_fp16.onnx")
	if out := mustModel("promote", "digits", "1"); !strings.Contains(out, "accuracy gate: digits 1 on digits.onnx") || !strings.Contains(out, "passed: 3600 elements") {
		t.Fatalf("promote 1 said %q, want the accuracy gate passed", out)
	}
	if out := mustModel("promote", "digits", "2"); !strings.Contains(out, "no reference data") {
		t.Fatalf("promote 2 said %q, want the gate not run", out)
	}
	mustModel("alias", "digits", "stable", "1")

	// Workers report the version they serve in the report bucket, as
	// running workers do: a live one on version 2, one that stopped
	// reporting a minute ago on version 1, and one serving another model.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	jsCtx, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := scheduler.OpenReportBucket(t.Context(), jsCtx, scheduler.DefaultReportBucket, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []scheduler.WorkerReport{
		{Model: "digits", WorkerID: "pod-live", At: time.Now(), Version: "2"},
		{Model: "digits", WorkerID: "pod-gone", At: time.Now().Add(-time.Minute), Version: "1"},
		{Model: "other", WorkerID: "pod-other", At: time.Now(), Version: "1"},
	} {
		if err := scheduler.PublishReport(t.Context(), kv, r); err != nil {
			t.Fatal(err)
		}
	}

	table := mustModel("ls", "digits")
	t.Logf("model ls digits:\n%s", table)
	for _, want := range []string{"2 (active)", "1 (stable)", "h100.plan", "NVIDIA H100 80GB HBM3", "10.9.0.34", "fp16", "1-256", "digits_gate.arrow", "SERVED BY", "pod-live"} {
		if !strings.Contains(table, want) {
			t.Errorf("version table lacks %q:\n%s", want, table)
		}
	}
	for _, stale := range []string{"pod-gone", "pod-other"} {
		if strings.Contains(table, stale) {
			t.Errorf("version table lists %s, which is not a live worker of digits:\n%s", stale, table)
		}
	}
	var js modelTableJSON
	if err := json.Unmarshal([]byte(mustModel("ls", "digits", "--json")), &js); err != nil {
		t.Fatal(err)
	}
	if js.Active == nil || js.Active.Version != "2" || js.Aliases["stable"] != "1" || len(js.Versions) != 2 || len(js.Versions[0].Artifacts) != 4 {
		t.Fatalf("ls --json = %+v, want version 2 active and 4 artifacts in version 1 (onnx, plan, manifest, reference)", js)
	}
	if !slices.Equal(js.Serving["2"], []string{"pod-live"}) || len(js.Serving["1"]) != 0 {
		t.Fatalf("ls --json serving = %v, want version 2 served by pod-live only", js.Serving)
	}
	if a, ok := js.Versions[0].Artifact("h100.plan"); !ok || a.Manifest == nil || a.Manifest.GPU.ComputeCapability != "9.0" {
		t.Fatalf("plan in ls --json = %+v", a)
	}

	if out, err := model("rm", "digits", "1"); err == nil || !strings.Contains(err.Error(), "stable") {
		t.Fatalf("rm of the stable version: %v\n%s", err, out)
	}
	mustModel("alias", "digits", "stable", "--delete")
	if out, err := model("rm", "digits", "2"); err == nil || !strings.Contains(err.Error(), "active") {
		t.Fatalf("rm of the active version: %v\n%s", err, out)
	}
	if out := mustModel("rollback", "digits"); !strings.Contains(out, "rolled back to version 1") {
		t.Fatalf("rollback said %q", out)
	}
	mustModel("rm", "digits", "2")
	if out := mustModel("ls"); !strings.Contains(out, "digits") || !strings.Contains(out, "1 ") {
		t.Fatalf("ls said %q", out)
	}
	if out := mustModel("show", "digits", "1"); !strings.Contains(out, "(active)") || !strings.Contains(out, "TensorRT 10.9.0") {
		t.Fatalf("show said %q", out)
	}
	// This node: the plan is skipped (no GPU here, or a GPU other than
	// the plan's at TensorRT 9.9.9) and the ONNX model chosen.
	out := mustModel("resolve", "digits", "--tensorrt-version", "9.9.9")
	t.Logf("model resolve digits:\n%s", out)
	if !strings.Contains(out, "skipped:  h100.plan") || !strings.Contains(out, "chosen:   digits 1: digits.onnx (onnx)") {
		t.Fatalf("resolve said %q", out)
	}
}

// TestModelPromoteRefusesPerturbedModel: `model promote` runs the accuracy
// gate and refuses a version whose model (digits.onnx with one weight
// tensor scaled by 1.1) does not reproduce its reference outputs, stating
// the measured error; --no-gate promotes it anyway.
func TestModelPromoteRefusesPerturbedModel(t *testing.T) {
	ns, err := startEmbedded(-1, t.TempDir(), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	t.Setenv("JETINFER_MODEL_CACHE_DIR", t.TempDir())
	model := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), append(append([]string{"model"}, args...), "--nats", ns.ClientURL()), &stdout, &stderr)
		return stdout.String(), err
	}
	orig, err := os.ReadFile("../../testdata/models/digits.onnx")
	if err != nil {
		t.Fatal(err)
	}
	perturbed, _, err := trttest.PerturbONNX(orig, 1.1)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "digits.onnx")
	if err := os.WriteFile(path, perturbed, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := model("push", "digits", "1", path, "--reference", "../../testdata/digits_gate.arrow"); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	out, err := model("promote", "digits", "1")
	if err == nil || !errors.Is(err, models.ErrAccuracy) || !strings.Contains(err.Error(), "max abs error") || !strings.Contains(out, "FAILED") {
		t.Fatalf("promote of the perturbed model: %v\n%s\nwant a refusal stating the error", err, out)
	}
	t.Logf("refused: %v", err)
	if out, err := model("ls"); err != nil || !strings.Contains(out, "digits  -") {
		t.Fatalf("after the refusal: %v\n%s (nothing may be active)", err, out)
	}
	// A looser tolerance than the error passes; --no-gate skips the gate.
	if out, err := model("promote", "digits", "1", "--rtol", "1", "--atol", "10"); err != nil || !strings.Contains(out, "passed") {
		t.Fatalf("promote with rtol 1, atol 10: %v\n%s", err, out)
	}
	if out, err := model("promote", "digits", "1", "--no-gate"); err != nil || !strings.Contains(out, "skipped") {
		t.Fatalf("promote --no-gate: %v\n%s", err, out)
	}
}
