package main

import (
	"context"
	"log/slog"

	"github.com/jetinfer/jetinfer/trt/backend"
	"github.com/jetinfer/jetinfer/worker"
)

// backendConfig chooses and configures the execution backend
// (JETINFER_BACKEND, JETINFER_PLAN_PATH, JETINFER_TRT_*, ...): the
// execution layer's own config, so that an embedding program reads the
// same variables.
type backendConfig = backend.Config

// engine is what the worker command needs of a backend.
type engine interface {
	worker.Engine
	Close() error
}

// openEngine opens the configured backend through backend.Open (TensorRT
// when a plan fits this node, else ONNX Runtime; a fallback is logged
// with every reason) and logs the choice. The returned function releases
// everything opened.
func openEngine(ctx context.Context, c backendConfig, log *slog.Logger) (engine, backend.Choice, func(), error) {
	eng, choice, err := backend.Open(ctx, c, log)
	if err != nil {
		return nil, choice, nil, err
	}
	log.Info("engine backend chosen", "backend", choice.Backend, "reason", choice.Reason, "device", eng.Device().Name)
	return eng, choice, func() { _ = eng.Close() }, nil
}
