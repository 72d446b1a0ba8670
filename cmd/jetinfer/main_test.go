package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/worker"
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

// TestHelpIsPerCommandAndSucceeds checks that every command's -h prints
// that command's own usage and exits 0.
func TestHelpIsPerCommandAndSucceeds(t *testing.T) {
	for _, args := range [][]string{
		{"worker", "-h"}, {"streams", "-h"}, {"demo", "-h"}, {"submit", "-h"},
		{"scheduler", "-h"}, {"scheduler", "--help"}, {"version", "-h"}, {"drain", "-h"},
		{"engine", "-h"}, {"engine", "build", "-h"}, {"engine", "inspect", "-h"}, {"engine", "check", "-h"},
		{"-h"}, {"help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), args, &stdout, &stderr)
			if code := exitCode(err, &stderr); code != 0 {
				t.Fatalf("exit code %d (err %v), want 0", code, err)
			}
			out := stdout.String() + stderr.String()
			name := strings.Join(args[:len(args)-1], " ")
			if name != "" && !strings.Contains(out, name) {
				t.Errorf("usage does not name %q:\n%s", name, out)
			}
			for _, other := range []string{"worker", "streams", "scheduler"} {
				if other != args[0] && strings.Contains(out, "Usage: jetinfer "+other) {
					t.Errorf("usage of %q prints %s's:\n%s", name, other, out)
				}
			}
			if !strings.Contains(strings.ToLower(out), "usage") {
				t.Errorf("no usage printed:\n%s", out)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	var stderr bytes.Buffer
	if code := exitCode(nil, &stderr); code != 0 || stderr.Len() != 0 {
		t.Errorf("exitCode(nil) = %d, printed %q", code, stderr.String())
	}
	if code := exitCode(fmt.Errorf("parsing flags: %w", flag.ErrHelp), &stderr); code != 0 || stderr.Len() != 0 {
		t.Errorf("exitCode(ErrHelp) = %d, printed %q", code, stderr.String())
	}
	if code := exitCode(errors.New("boom"), &stderr); code != 1 || !strings.Contains(stderr.String(), "boom") {
		t.Errorf("exitCode(boom) = %d, printed %q", code, stderr.String())
	}
}

// TestConfigErrorsNameTheVariable checks that a bad setting is reported by
// its environment variable, every bad one at once, and that byte sizes
// take units.
func TestConfigErrorsNameTheVariable(t *testing.T) {
	t.Setenv("JETINFER_MAX_DELAY", "abc")
	t.Setenv("JETINFER_EXECUTORS", "two")
	t.Setenv("JETINFER_MAX_PULL_BYTES", "lots")
	t.Setenv("JETINFER_MAX_MSG_SIZE", "8MiB")
	var cfg workerConfig
	err := cfg.parse("worker", nil, io.Discard)
	if err == nil {
		t.Fatal("parse succeeded with bad settings")
	}
	for _, want := range []string{
		`JETINFER_MAX_DELAY: "abc" is not a duration`,
		`JETINFER_EXECUTORS: "two" is not an integer`,
		`JETINFER_MAX_PULL_BYTES: "lots" is not a byte size`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "MAX_MSG_SIZE") || strings.Contains(err.Error(), "MaxDelay") {
		t.Errorf("error %q names a good setting or a Go field", err)
	}

	t.Setenv("JETINFER_MAX_DELAY", "5ms")
	t.Setenv("JETINFER_EXECUTORS", "3")
	t.Setenv("JETINFER_MAX_PULL_BYTES", "96MiB")
	cfg = workerConfig{}
	if err := cfg.parse("worker", nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	if cfg.Worker.MaxMsgSize != 8*worker.MiB || cfg.Worker.MaxPullBytes != 96*worker.MiB {
		t.Errorf("MaxMsgSize %v, MaxPullBytes %v; want 8MiB, 96MiB", cfg.Worker.MaxMsgSize, cfg.Worker.MaxPullBytes)
	}

	t.Setenv("JETINFER_SCHEDULER_TARGET_DRAIN", "soon")
	var sc schedulerConfig
	if err := parseEnv(&sc); err == nil || !strings.Contains(err.Error(), `JETINFER_SCHEDULER_TARGET_DRAIN: "soon" is not a duration`) {
		t.Errorf("scheduler config error = %v", err)
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	out := stdout.String()
	for _, want := range []string{"jetinfer ", "commit ", "go           " + runtime.Version(), "onnxruntime ", "tensorrt "} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
	if _, err := onnxrt.FindLibrary(os.Getenv("JETINFER_ORT_LIBRARY")); err == nil && strings.Contains(out, "not found") {
		t.Errorf("the ONNX Runtime library is installed, but version says:\n%s", out)
	}
}
