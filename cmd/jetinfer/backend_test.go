package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
)

// TestBackendSelection checks the backend choice on a node where the
// configured TensorRT plan cannot run (no TensorRT in this build, or no
// GPU): "tensorrt" refuses with the reason, "auto" falls back to ONNX
// Runtime and logs why, and an unknown backend is refused.
func TestBackendSelection(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "digits.plan")
	if err := os.WriteFile(plan, []byte("not a real plan"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := trt.Manifest{}
	mb, _ := m.Marshal()
	if err := os.WriteFile(plan+".json", mb, 0o600); err != nil {
		t.Fatal(err)
	}
	base := backendConfig{PlanPath: plan, ModelPath: "../../testdata/models/digits.onnx", IntraOpThreads: 1, TRTContexts: 1}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	c := base
	c.Backend = "tensorrt"
	if _, _, err := openEngine(context.Background(), c, log); err == nil {
		t.Fatal("tensorrt backend with an unusable plan succeeded")
	}

	c.Backend = "bogus"
	if _, _, err := openEngine(context.Background(), c, log); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("unknown backend: %v", err)
	}

	lib, err := onnxrt.FindLibrary(os.Getenv("JETINFER_ORT_LIBRARY"))
	if err != nil {
		t.Skipf("ONNX Runtime library not available (%v); run `make ort`", err)
	}
	c = base
	c.Backend, c.ORTLibrary = "auto", lib
	eng, closeEngine, err := openEngine(context.Background(), c, log)
	if err != nil {
		t.Fatalf("auto backend: %v", err)
	}
	defer closeEngine()
	if d := eng.Device(); d.Kind != "cpu" {
		t.Errorf("auto fell back to %+v, want the ONNX Runtime CPU engine", d)
	}
	if !strings.Contains(logs.String(), "falling back to ONNX Runtime") {
		t.Errorf("fallback not logged with its reason; logs:\n%s", logs.String())
	}
}
