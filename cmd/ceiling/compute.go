package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/nats-io/nats.go"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// The compute-bound model: 256 features in, three hidden layers of 1536,
// 10 out; about 10.2 Mflop per row, ~650 Mflop per 64-row batch.
const (
	mlpIn, mlpHidden, mlpOut, mlpLayers = 256, 1536, 10, 4
	mlpRows                             = 64 // rows per request and per batch
)

// measureCompute compares a worker at default settings serving n 64-row
// requests of the compute-bound MLP with the same engine alone running
// 64-row batches at the worker's concurrency (its default executor count).
// The two alternate in rounds, so that other load on a shared machine
// falls on both alike. It returns worker rows/s ÷ engine-alone rows/s.
func measureCompute(rt *onnxrt.Runtime, n int, set settings) (float64, error) {
	eng, err := rt.Load(context.Background(), mlpModel(mlpIn, mlpHidden, mlpOut, mlpLayers, 1), onnxrt.Options{IntraOpThreads: set.intraOp})
	if err != nil {
		return 0, fmt.Errorf("loading the MLP: %w", err)
	}
	defer eng.Close()
	cfg := set.workerConfig("mlp")
	executors := set.concurrency()
	x := randomFloats(rand.New(rand.NewPCG(2, 3)), mlpRows*mlpIn, 1)
	body, err := mlpRequest(x)
	if err != nil {
		return 0, err
	}

	nc, js, closeBroker, err := openBroker()
	if err != nil {
		return 0, err
	}
	defer closeBroker()
	ctx := context.Background()
	if _, err := worker.EnsureStreams(ctx, js, cfg); err != nil {
		return 0, err
	}
	// Measuring starts once the worker is ready: its warm-up (the
	// engine's cost model) is start-up cost, not throughput.
	stop, err := startWorker(ctx, nc, eng, cfg)
	if err != nil {
		return 0, err
	}
	defer stop()

	const rounds = 5
	per := max(executors, n/rounds)
	var engineTime, workerTime time.Duration
	for round := range rounds {
		d, err := engineAlone(eng, x, per, executors)
		if err != nil {
			return 0, fmt.Errorf("engine alone: %w", err)
		}
		engineTime += d
		job := fmt.Sprintf("compute%d", round)
		read, err := reader(ctx, js, wire.ResultSubject(wire.DefaultPrefix, "mlp", job), per)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		p := newPublisher(js, "compute")
		for i := range per {
			h := nats.Header{}
			h.Set(wire.HeaderJob, job)
			if err := p.publish(&nats.Msg{Subject: wire.RequestSubject(wire.DefaultPrefix, "mlp"), Header: h, Data: body}, fmt.Sprintf("%s-%d", job, i)); err != nil {
				return 0, err
			}
		}
		if err := p.close(); err != nil {
			return 0, err
		}
		if err := read(); err != nil {
			return 0, err
		}
		workerTime += time.Since(start)
	}
	if err := stop(); err != nil {
		return 0, err
	}
	total := float64(rounds * per * mlpRows)
	engineRows, workerRows := total/engineTime.Seconds(), total/workerTime.Seconds()
	ratio := workerRows / engineRows
	fmt.Printf("compute: MLP %d-%d×%d-%d, %d-row requests, %d rounds of %d: engine alone (%d concurrent) %.2f ms per batch, %.0f rows/s; worker %.0f rows/s = %.2f of the engine alone\n",
		mlpIn, mlpHidden, mlpLayers-1, mlpOut, mlpRows, rounds, per, executors,
		engineTime.Seconds()*1000*float64(executors)/float64(rounds*per), engineRows, workerRows, ratio)
	return ratio, nil
}

// engineAlone runs n 64-row batches of x on eng from executors goroutines
// and returns the wall time.
func engineAlone(eng *onnxrt.Engine, x []byte, n, executors int) (time.Duration, error) {
	var wg sync.WaitGroup
	errs := make([]error, executors)
	start := time.Now()
	for e := range executors {
		wg.Go(func() {
			in := trt.Tensor{Name: "x", DType: trt.Float32, Shape: trt.Shape{mlpRows, mlpIn}, Data: x}
			out := trt.Tensor{Name: "y", DType: trt.Float32, Shape: trt.Shape{mlpRows, mlpOut}, Data: make([]byte, mlpRows*mlpOut*4)}
			for i := e; i < n; i += executors {
				if err := eng.Run(context.Background(), &trt.Batch{Inputs: []trt.Tensor{in}, Outputs: []trt.Tensor{out}}); err != nil {
					errs[e] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

// mlpRequest encodes one 64-row request of x with int64 ids.
func mlpRequest(x []byte) ([]byte, error) {
	ids := array.NewInt64Builder(memory.DefaultAllocator)
	defer ids.Release()
	for i := range mlpRows {
		ids.Append(int64(i))
	}
	idArr := ids.NewInt64Array()
	defer idArr.Release()
	w := &byteWriter{}
	err := codec.EncodeRequest(w, []trt.Tensor{{Name: "x", DType: trt.Float32, Shape: trt.Shape{mlpRows, mlpIn}, Data: x}}, idArr)
	return w.b, err
}
