package worker_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
)

// stagingEngine is a stand-in for an engine with staging memory of its
// own (as TensorRT's pinned buffers are): it implements trt.StagedRunner
// over the test engine, so the worker must gather each batch into the
// buffers it hands out.
type stagingEngine struct {
	worker.Engine
	staged atomic.Int64
}

func (s *stagingEngine) RunStaged(ctx context.Context, profile int, shapes []trt.Shape, fill func([][]byte) error, outputs []trt.Tensor) error {
	s.staged.Add(1)
	spec := s.Spec()
	b := &trt.Batch{Profile: profile, Outputs: outputs}
	bufs := make([][]byte, len(shapes))
	for i, sh := range shapes {
		n, err := trt.ByteSize(spec.Inputs[i].DType, sh)
		if err != nil {
			return err
		}
		// Poison the staging memory: a worker that does not overwrite
		// every byte produces wrong results.
		bufs[i] = make([]byte, n)
		for k := range bufs[i] {
			bufs[i][k] = 0x7f
		}
		b.Inputs = append(b.Inputs, trt.Tensor{Name: spec.Inputs[i].Name, DType: spec.Inputs[i].DType, Shape: sh, Data: bufs[i]})
	}
	if err := fill(bufs); err != nil {
		return err
	}
	return s.Run(ctx, b)
}

func TestWorkerGathersStraightIntoEngineStagingMemory(t *testing.T) {
	eng := &stagingEngine{Engine: newTestEngine(t)}
	ns := startServer(t)
	nc := connect(t, ns)
	startWorker(t, nc, eng, worker.Config{Model: "digits"})
	before := eng.staged.Load() // warm-up measurements run through Run, not RunStaged
	c, _ := client.New(nc, client.Config{Model: "digits"})
	for i := range 20 {
		if _, err := c.PublishAsync(context.Background(), client.Request{ID: fmt.Sprint(i), Job: "staged", Body: body(3*i, 3*i+3)}); err != nil {
			t.Fatal(err)
		}
	}
	got := collect(t, c, "staged", 20)
	for i := range 20 {
		r := got[fmt.Sprint(i)]
		if r.Status != codec.CodeOK {
			t.Fatalf("request %d: %s: %s", i, r.Status, r.Error)
		}
		checkRows(t, r.Body, 3*i, 3*i+3)
	}
	if eng.staged.Load() == before {
		t.Fatal("the worker never used the engine's staging memory")
	}
}
