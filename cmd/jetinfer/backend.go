package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/tensorrt"
	"github.com/jetinfer/jetinfer/worker"
)

// backendConfig chooses and configures the execution backend.
type backendConfig struct {
	// Backend is "auto" (TensorRT when a plan is configured and fits this
	// node, otherwise ONNX Runtime), "tensorrt" or "onnxruntime".
	Backend string `env:"BACKEND" envDefault:"auto"`
	// PlanPath is a TensorRT plan; its manifest is <plan>.json.
	PlanPath string `env:"PLAN_PATH"`
	// GPUDevice is the CUDA device ordinal for TensorRT.
	GPUDevice int `env:"GPU_DEVICE"`
	// TRTContexts is the number of TensorRT execution contexts (streams).
	TRTContexts int `env:"TRT_CONTEXTS" envDefault:"2"`
	// ModelPath is the ONNX model run by ONNX Runtime.
	ModelPath string `env:"MODEL_PATH" envDefault:"testdata/models/digits.onnx"`
	// ORTLibrary is libonnxruntime.so.1 (default: search the usual places).
	ORTLibrary string `env:"ORT_LIBRARY"`
	// IntraOpThreads is ONNX Runtime's per-session thread count.
	IntraOpThreads int `env:"ORT_INTRA_OP_THREADS" envDefault:"1"`
}

// engine is what the worker command needs of a backend.
type engine interface {
	worker.Engine
	Close() error
}

// openEngine opens the configured backend. In "auto" mode a plan that does
// not fit this node (wrong GPU or TensorRT version, or a binary built
// without -tags tensorrt) falls back to ONNX Runtime, and the reason is
// logged. The returned function releases everything opened.
func openEngine(ctx context.Context, c backendConfig, log *slog.Logger) (engine, func(), error) {
	switch c.Backend {
	case "auto", "tensorrt", "onnxruntime":
	default:
		return nil, nil, fmt.Errorf("JETINFER_BACKEND=%q: want auto, tensorrt or onnxruntime", c.Backend)
	}
	var trtErr error
	if c.Backend == "tensorrt" || (c.Backend == "auto" && c.PlanPath != "") {
		eng, err := openTensorRT(ctx, c, log)
		if err == nil {
			return eng, func() { _ = eng.Close() }, nil
		}
		if c.Backend == "tensorrt" {
			return nil, nil, err
		}
		trtErr = err
		log.Warn("TensorRT plan not usable on this node; falling back to ONNX Runtime", "plan", c.PlanPath, "reason", err)
	}
	eng, closeEngine, err := openONNX(ctx, c.ORTLibrary, c.ModelPath, c.IntraOpThreads)
	if err != nil {
		return nil, nil, errors.Join(trtErr, err)
	}
	return eng, closeEngine, nil
}

// openTensorRT loads the plan at c.PlanPath after checking its manifest
// against this node.
func openTensorRT(ctx context.Context, c backendConfig, log *slog.Logger) (*tensorrt.Engine, error) {
	if c.PlanPath == "" {
		return nil, errors.New("JETINFER_BACKEND=tensorrt needs JETINFER_PLAN_PATH")
	}
	plan, err := os.ReadFile(c.PlanPath)
	if err != nil {
		return nil, fmt.Errorf("reading TensorRT plan: %w", err)
	}
	mb, err := os.ReadFile(c.PlanPath + ".json")
	if err != nil {
		return nil, fmt.Errorf("reading the plan's manifest (every plan needs one): %w", err)
	}
	m, err := trt.ParseManifest(mb)
	if err != nil {
		return nil, fmt.Errorf("parsing %s.json: %w", c.PlanPath, err)
	}
	eng, err := tensorrt.Load(ctx, plan, &m, tensorrt.Config{Device: c.GPUDevice, Contexts: c.TRTContexts, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("loading TensorRT plan %s: %w", c.PlanPath, err)
	}
	return eng, nil
}
