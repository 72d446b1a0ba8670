package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/caarlos0/env/v10"
	"github.com/nats-io/nats.go"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/worker"
)

// envDelay is the environment variable of a stand-in worker process,
// besides the JETINFER_* worker settings it shares with `jetinfer
// worker`: every engine call first waits this long.
const envDelay = "RELIABILITY_ENGINE_DELAY"

// standInConfig is a stand-in worker's configuration.
type standInConfig struct {
	NATSURL    string        `env:"JETINFER_NATS_URL,required"`
	ModelPath  string        `env:"JETINFER_MODEL_PATH,required"`
	ORTLibrary string        `env:"JETINFER_ORT_LIBRARY"`
	Delay      time.Duration `env:"RELIABILITY_ENGINE_DELAY"`
	Worker     worker.Config `envPrefix:"JETINFER_"`
}

// runStandIn runs one worker, like `jetinfer worker`, whose engine is the
// real ONNX Runtime engine behind slowEngine (the results stay the real
// model's, so the audit checks them against the PyTorch references). It
// stops on SIGTERM (ctx) after the worker's drain and prints how many
// engine calls it made.
func runStandIn(ctx context.Context, stderr io.Writer) error {
	var cfg standInConfig
	if err := env.Parse(&cfg); err != nil {
		return fmt.Errorf("reading the stand-in worker's environment: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	lib, err := onnxrt.FindLibrary(cfg.ORTLibrary)
	if err != nil {
		return err
	}
	rt, err := onnxrt.NewRuntime(lib)
	if err != nil {
		return err
	}
	defer rt.Close()
	eng, err := rt.LoadFile(ctx, cfg.ModelPath, onnxrt.Options{IntraOpThreads: 1})
	if err != nil {
		return fmt.Errorf("loading %s: %w", cfg.ModelPath, err)
	}
	defer eng.Close()
	nc, err := nats.Connect(cfg.NATSURL, nats.Name("stand-in worker"), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", cfg.NATSURL, err)
	}
	defer nc.Close()
	se := &slowEngine{Engine: eng, delay: cfg.Delay}
	debug.SetMemoryLimit(worker.MemoryBound(cfg.Worker) - 64<<20) // as jetinfer worker does
	w, err := worker.New(nc, se, cfg.Worker, worker.WithLogger(log))
	if err != nil {
		return err
	}
	err = w.Run(ctx)
	fmt.Fprintf(stderr, "stand-in engine: %d calls, each delayed %v\n", se.calls.Load(), cfg.Delay)
	if err != nil {
		return err
	}
	return nc.Drain()
}

// slowEngine is a stand-in engine, not a backend: it wraps the real ONNX
// Runtime engine and makes every call wait delay first, for scenarios
// about a worker slower than its traffic (process-level: memory under a
// flood, a drain that outlasts its timeout). In-process fault injection
// is trt/testengine's, in the worker's tests.
type slowEngine struct {
	worker.Engine
	delay time.Duration
	calls atomic.Int64
}

// Run waits delay (or until ctx ends), then runs b on the real engine.
func (s *slowEngine) Run(ctx context.Context, b *trt.Batch) error {
	s.calls.Add(1)
	if s.delay > 0 {
		t := time.NewTimer(s.delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return s.Engine.Run(ctx, b)
}
