package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/caarlos0/env/v10"

	"github.com/jetinfer/jetinfer/trt/onnxrt"
)

// TestBackendWiring checks that the worker command reads the backend's
// JETINFER_* variables into backend.Config and logs the backend chosen.
func TestBackendWiring(t *testing.T) {
	t.Setenv("JETINFER_BACKEND", "onnxruntime")
	t.Setenv("JETINFER_TRT_PLUGINS", "/opt/a.so,/opt/b.so")
	t.Setenv("JETINFER_TRT_ALLOW_HOST_CODE", "false")
	t.Setenv("JETINFER_MODEL_PATH", "../../testdata/models/digits.onnx")
	var c backendConfig
	if err := env.ParseWithOptions(&c, env.Options{Prefix: "JETINFER_"}); err != nil {
		t.Fatal(err)
	}
	if c.Backend != "onnxruntime" || len(c.TRTPlugins) != 2 || c.TRTPlugins[1] != "/opt/b.so" || c.TRTAllowHostCode || c.TRTContexts != 2 {
		t.Fatalf("parsed %+v", c)
	}
	lib, err := onnxrt.FindLibrary(os.Getenv("JETINFER_ORT_LIBRARY"))
	if err != nil {
		t.Skipf("ONNX Runtime library not available (%v); run `make ort`", err)
	}
	c.ORTLibrary = lib
	var logs bytes.Buffer
	eng, _, closeEngine, err := openEngine(context.Background(), c, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeEngine()
	if eng.Device().Kind != "cpu" || !strings.Contains(logs.String(), "engine backend chosen") ||
		!strings.Contains(logs.String(), "backend=onnxruntime") {
		t.Fatalf("device %+v; logs:\n%s", eng.Device(), logs.String())
	}
}
