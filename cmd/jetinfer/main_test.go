package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/trt/onnxrt"
)

// TestDemoScoresDigits runs the README's first command end to end: an
// embedded JetStream server, the worker on ONNX Runtime, and the producer.
func TestDemoScoresDigits(t *testing.T) {
	lib, err := onnxrt.FindLibrary(os.Getenv("JETINFER_ORT_LIBRARY"))
	if err != nil {
		t.Skipf("ONNX Runtime library not available (%v); run `make ort`", err)
	}
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"demo", "-repeat", "2", "-ort-library", lib,
		"-model-path", "../../testdata/models/digits.onnx", "-data", "../../testdata/digits_test.arrow"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("demo: %v\nstderr: %s", err, stderr.String())
	}
	var rows int
	var acc, rps, p50, p99 float64
	line := strings.TrimSpace(stdout.String())
	if _, err := fmt.Sscanf(line, "demo: rows=%d accuracy=%f rows_per_s=%f p50_ms=%f p99_ms=%f", &rows, &acc, &rps, &p50, &p99); err != nil {
		t.Fatalf("summary line %q: %v", line, err)
	}
	if rows != 720 {
		t.Errorf("rows=%d, want 720 (the 360-row test split twice)", rows)
	}
	if acc < 0.9 {
		t.Errorf("accuracy %.4f, want ≥ 0.9", acc)
	}
	if rps <= 0 || p50 <= 0 || p99 < p50 {
		t.Errorf("implausible timings in %q", line)
	}
}

func TestUnknownCommandFails(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"frobnicate"}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "frobnicate") {
		t.Fatalf("run(frobnicate) = %v, want an error naming the command", err)
	}
	if err := run(context.Background(), nil, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), "Commands:") {
		t.Fatalf("run() = %v with output %q, want usage", err, stdout.String())
	}
}
