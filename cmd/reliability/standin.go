package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caarlos0/env/v10"
	"github.com/nats-io/nats.go"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/worker"
)

// Environment of a stand-in worker process, besides the JETINFER_* worker
// settings it shares with `jetinfer worker`.
const (
	envFailFirst = "RELIABILITY_ENGINE_FAIL_FIRST" // the first N engine calls fail
	envFailRate  = "RELIABILITY_ENGINE_FAIL_RATE"  // then each call fails with this probability
	envPoison    = "RELIABILITY_ENGINE_POISON"     // calls with a row whose first pixel equals this value fail
	envDelay     = "RELIABILITY_ENGINE_DELAY"      // every call first waits this long
)

// standInConfig is a stand-in worker's configuration.
type standInConfig struct {
	NATSURL    string        `env:"JETINFER_NATS_URL,required"`
	ModelPath  string        `env:"JETINFER_MODEL_PATH,required"`
	ORTLibrary string        `env:"JETINFER_ORT_LIBRARY"`
	FailFirst  int64         `env:"RELIABILITY_ENGINE_FAIL_FIRST"`
	FailRate   float64       `env:"RELIABILITY_ENGINE_FAIL_RATE"`
	Poison     float32       `env:"RELIABILITY_ENGINE_POISON"`
	Delay      time.Duration `env:"RELIABILITY_ENGINE_DELAY"`
	Worker     worker.Config `envPrefix:"JETINFER_"`
}

// runStandIn runs one worker, like `jetinfer worker`, whose engine is the
// real ONNX Runtime engine behind faultyEngine. It stops on SIGTERM
// (ctx) after the worker's drain and prints the engine's counters.
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
	fe := &faultyEngine{Engine: eng, failFirst: cfg.FailFirst, failRate: cfg.FailRate, poison: cfg.Poison,
		delay: cfg.Delay, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))}
	debug.SetMemoryLimit(worker.MemoryBound(cfg.Worker) - 64<<20) // as jetinfer worker does
	w, err := worker.New(nc, fe, cfg.Worker, worker.WithLogger(log))
	if err != nil {
		return err
	}
	// Failures start once the worker pulls requests: its warm-up (cost
	// model measurement) runs the engine first and is not under test.
	fe.armed = w.Ready
	err = w.Run(ctx)
	fmt.Fprintf(stderr, "stand-in engine: %d calls while serving, %d failed transiently (injected), %d failed on a poison row\n",
		fe.calls.Load(), fe.injected.Load(), fe.poisoned.Load())
	if err != nil {
		return err
	}
	return nc.Drain()
}

// faultyEngine is a stand-in engine, not a backend: it wraps the real ONNX
// Runtime engine and makes some calls wait (delay) and, once armed, some
// fail (the first failFirst calls, a failRate fraction at random, and every
// call whose batch holds a poison row) before running the real engine.
// calls counts the armed calls.
type faultyEngine struct {
	worker.Engine
	failFirst int64
	failRate  float64
	poison    float32
	delay     time.Duration
	armed     func() bool // failures are injected only while it returns true

	mu  sync.Mutex
	rng *rand.Rand

	calls, injected, poisoned atomic.Int64
}

var errInjected = errors.New("stand-in engine: injected transient failure")

// Run runs b on the real engine unless it injects a failure.
func (f *faultyEngine) Run(ctx context.Context, b *trt.Batch) error {
	if f.delay > 0 {
		t := time.NewTimer(f.delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if f.armed == nil || !f.armed() {
		return f.Engine.Run(ctx, b)
	}
	n := f.calls.Add(1)
	f.mu.Lock()
	unlucky := f.failRate > 0 && f.rng.Float64() < f.failRate
	f.mu.Unlock()
	if n <= f.failFirst || unlucky {
		f.injected.Add(1)
		return errInjected
	}
	if f.poison != 0 && len(b.Inputs) > 0 {
		px := b.Inputs[0].Data
		for r := 0; r+4 <= len(px); r += 256 {
			if math.Float32frombits(binary.LittleEndian.Uint32(px[r:])) == f.poison {
				f.poisoned.Add(1)
				return fmt.Errorf("stand-in engine: poison row %d", r/256)
			}
		}
	}
	return f.Engine.Run(ctx, b)
}

// poison returns a copy of a request body whose first row's first pixel
// is 42, the value the engine-faults scenario's stand-in engine fails on.
func poison(body []byte) []byte {
	req, err := codec.DecodeRequest(body, codec.DefaultLimits())
	if err != nil {
		panic(fmt.Sprintf("decoding a body this runner encoded: %v", err))
	}
	defer req.Release()
	px, _ := req.Column("pixels")
	data := bytes.Clone(px.Data)
	binary.LittleEndian.PutUint32(data, math.Float32bits(42))
	var buf bytes.Buffer
	if err := codec.EncodeRequest(&buf, []trt.Tensor{{Name: "pixels", DType: trt.Float32,
		Shape: trt.Shape{int64(req.Rows), 8, 8}, Data: data}}, req.IDs); err != nil {
		panic(fmt.Sprintf("encoding a poisoned body: %v", err))
	}
	return buf.Bytes()
}
