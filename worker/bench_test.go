package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// BenchmarkWorkerOverhead compares end-to-end rows/s through an embedded
// JetStream server (publish → worker → result stored and delivered) with
// the engine alone on batches of the same size, in the same run. The
// ratio metric is end-to-end ÷ engine-only; 1.0 means the worker adds
// nothing.
func BenchmarkWorkerOverhead(b *testing.B) {
	for _, rowsPerReq := range []int{1, 8} {
		b.Run(fmt.Sprintf("rows_per_request=%d", rowsPerReq), func(b *testing.B) {
			benchOverhead(b, rowsPerReq, 64)
		})
	}
}

func benchOverhead(b *testing.B, rowsPerReq, batchRows int) {
	eng := loadEngine(b, "digits.onnx")
	d := loadDigits(b)

	// Engine alone, batches of batchRows rows.
	req, err := codec.DecodeRequest(d.Body(0, batchRows), codec.DefaultLimits())
	if err != nil {
		b.Fatal(err)
	}
	defer req.Release()
	px, _ := req.Column("pixels")
	in := trt.Tensor{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{int64(batchRows), 8, 8}, Data: px.Data}
	out := trt.Tensor{Name: "logits", DType: trt.Float32, Shape: trt.Shape{int64(batchRows), 10}, Data: make([]byte, batchRows*40)}
	engineStart := time.Now()
	engineRuns := 0
	for time.Since(engineStart) < 500*time.Millisecond {
		if err := eng.Run(context.Background(), &trt.Batch{Inputs: []trt.Tensor{in}, Outputs: []trt.Tensor{out}}); err != nil {
			b.Fatal(err)
		}
		engineRuns++
	}
	engineRowsPerSec := float64(engineRuns*batchRows) / time.Since(engineStart).Seconds()

	ns := startServer(b)
	nc := connect(b, ns)
	startWorker(b, nc, eng, worker.Config{Model: "digits", MaxBatchRows: batchRows, MaxDelay: 2 * time.Millisecond})
	pub, err := client.New(connect(b, ns), client.Config{Model: "digits", MaxPending: 512})
	if err != nil {
		b.Fatal(err)
	}
	results := make(chan *nats.Msg, 4096)
	sub, err := connect(b, ns).ChanSubscribe(wire.ResultSubject("jetinfer", "digits", "bench"), results)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sub.Unsubscribe() })
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i] = d.Body(i*rowsPerReq, rowsPerReq)
	}
	const perRound = 512
	round := 0
	b.SetBytes(int64(perRound * rowsPerReq * px.RowBytes()))
	b.ResetTimer()
	for b.Loop() {
		for i := range perRound {
			_, err := pub.PublishAsync(context.Background(), client.Request{
				ID: fmt.Sprintf("b%d-%d", round, i), Job: "bench", Body: bodies[i%len(bodies)]})
			if err != nil {
				b.Fatal(err)
			}
		}
		for range perRound {
			select {
			case m := <-results:
				if m.Header.Get(wire.HeaderStatus) != "OK" {
					b.Fatalf("result %s: %s", m.Header.Get(wire.HeaderStatus), m.Header.Get(wire.HeaderError))
				}
			case <-time.After(30 * time.Second):
				b.Fatal("no result within 30s")
			}
		}
		round++
	}
	e2e := float64(round*perRound*rowsPerReq) / b.Elapsed().Seconds()
	b.ReportMetric(e2e, "rows/s")
	b.ReportMetric(engineRowsPerSec, "engine_rows/s")
	b.ReportMetric(e2e/engineRowsPerSec, "ratio")
}
