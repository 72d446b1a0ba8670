package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/backend"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// demoCmd runs the whole flow in one process: an embedded JetStream
// server, a worker serving the digits classifier on ONNX Runtime, and a
// producer that publishes the digits test split as jobs, collects the
// results and checks them against the labels.
func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := newFlagSet("demo", "[flags]", "Start an embedded JetStream server and a worker serving the digits classifier\n"+
		"on ONNX Runtime, publish the digits test split as jobs, collect the results\n"+
		"and print a summary line (rows, accuracy, rows/s, latency).", stderr)
	modelPath := fs.String("model-path", "testdata/models/digits.onnx", "digits classifier (ONNX)")
	dataPath := fs.String("data", "testdata/digits_test.arrow", "test split: Arrow IPC with id, pixels, label")
	ortLib := fs.String("ort-library", os.Getenv("JETINFER_ORT_LIBRARY"), "ONNX Runtime shared library (default: search)")
	rowsPerReq := fs.Int("rows-per-request", 4, "rows in each published request")
	repeat := fs.Int("repeat", 20, "publish the test split this many times (throughput needs volume)")
	threads := fs.Int("threads", 1, "ONNX Runtime intra-op threads")
	verbose := fs.Bool("v", false, "log the worker's lifecycle")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*verbose {
		log = slog.New(slog.DiscardHandler)
	}

	data, err := os.ReadFile(*dataPath)
	if err != nil {
		return fmt.Errorf("reading demo data: %w", err)
	}
	table, err := codec.DecodeRequest(data, codec.Limits{MaxBodyBytes: len(data) + 1})
	if err != nil {
		return fmt.Errorf("decoding %s: %w", *dataPath, err)
	}
	defer table.Release()
	pixels, ok1 := table.Column("pixels")
	labels, ok2 := table.Column("label")
	if !ok1 || !ok2 || table.IDs == nil || labels.DType != trt.Int64 {
		return fmt.Errorf("%s must hold id, pixels and int64 label columns", *dataPath)
	}

	dir, err := os.MkdirTemp("", "jetinfer-demo-")
	if err != nil {
		return fmt.Errorf("creating demo store dir: %w", err)
	}
	defer os.RemoveAll(dir)
	ns, err := startEmbedded(-1, dir, 8<<20)
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return fmt.Errorf("connecting to the embedded server: %w", err)
	}
	defer nc.Close()

	eng, err := backend.OpenONNX(ctx, backend.Config{ORTLibrary: *ortLib, ModelPath: *modelPath, IntraOpThreads: *threads})
	if err != nil {
		return err
	}
	defer func() { _ = eng.Close() }()
	w, err := worker.New(nc, eng, worker.Config{Model: "digits"}, worker.WithLogger(log))
	if err != nil {
		return err
	}
	wctx, stopWorker := context.WithCancel(ctx)
	defer stopWorker()
	var wg sync.WaitGroup
	var workerErr error
	wg.Go(func() { workerErr = w.Run(wctx) })
	defer wg.Wait()

	// The worker creates the streams; wait until the consumer exists so
	// that the first requests are not published into nothing.
	if err := waitForStreams(ctx, nc); err != nil {
		return err
	}

	pc, err := client.New(nc, client.Config{Model: "digits", MaxPending: 256})
	if err != nil {
		return err
	}
	n := table.Rows
	pixelRow := pixels.RowBytes()
	type sent struct {
		lo, hi int
		at     time.Time
	}
	var mu sync.Mutex
	sentAt := map[string]sent{}
	var reqs int
	job := "demo-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	start := time.Now()
	for rep := range *repeat {
		for lo := 0; lo < n; lo += *rowsPerReq {
			hi := min(n, lo+*rowsPerReq)
			ids := array.NewSlice(table.IDs, int64(lo), int64(hi))
			var body bytes.Buffer
			err := codec.EncodeRequest(&body, []trt.Tensor{{
				Name: "pixels", DType: pixels.DType,
				Shape: append(trt.Shape{int64(hi - lo)}, pixels.RowShape...),
				Data:  pixels.Data[lo*pixelRow : hi*pixelRow],
			}}, ids)
			ids.Release()
			if err != nil {
				return fmt.Errorf("encoding request: %w", err)
			}
			id := fmt.Sprintf("%s-%d-%d", job, rep, lo)
			mu.Lock()
			sentAt[id] = sent{lo, hi, time.Now()}
			mu.Unlock()
			if _, err := pc.PublishAsync(ctx, client.Request{ID: id, Job: job, Body: body.Bytes()}); err != nil {
				return err
			}
			reqs++
		}
	}

	var latencies []float64
	correct, scored, failed := 0, 0, 0
	labelAt := func(i int) int64 { return int64(binary.LittleEndian.Uint64(labels.Data[8*i:])) }
	var collectErr error
	err = pc.Results(ctx, job, func(r client.Result) bool {
		mu.Lock()
		s, ok := sentAt[r.RequestID]
		mu.Unlock()
		if !ok {
			collectErr = fmt.Errorf("result for unknown request %q", r.RequestID)
			return false
		}
		latencies = append(latencies, float64(r.Received.Sub(s.at).Microseconds())/1000)
		if r.Status != codec.CodeOK {
			failed++
			fmt.Fprintf(stderr, "demo: request %s: %s: %s\n", r.RequestID, r.Status, r.Error)
			return len(latencies) < reqs
		}
		res, err := codec.DecodeResult(r.Body, codec.DefaultLimits())
		if err != nil {
			collectErr = fmt.Errorf("decoding result of %s: %w", r.RequestID, err)
			return false
		}
		logits, ok := res.Column("logits")
		if !ok || logits.DType != trt.Float32 || res.Rows != s.hi-s.lo {
			res.Release()
			collectErr = fmt.Errorf("result of %s: want %d rows of float32 logits", r.RequestID, s.hi-s.lo)
			return false
		}
		for i := range res.Rows {
			if argmax(logits.Data[i*40:(i+1)*40]) == labelAt(s.lo+i) {
				correct++
			}
			scored++
		}
		res.Release()
		return len(latencies) < reqs
	})
	elapsed := time.Since(start)
	if err != nil {
		return err
	}
	if collectErr != nil {
		return collectErr
	}
	stopWorker()
	wg.Wait()
	if workerErr != nil {
		return fmt.Errorf("worker: %w", workerErr)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d requests failed", failed, reqs)
	}
	slices.Sort(latencies)
	fmt.Fprintf(stdout, "demo: rows=%d accuracy=%.4f rows_per_s=%.0f p50_ms=%.2f p99_ms=%.2f\n",
		scored, float64(correct)/float64(scored), float64(scored)/elapsed.Seconds(),
		quantile(latencies, 0.50), quantile(latencies, 0.99))
	return nil
}

// argmax returns the index of the largest of the little-endian float32
// values in b.
func argmax(b []byte) int64 {
	best, bi := float32(math.Inf(-1)), int64(0)
	for i := 0; i+4 <= len(b); i += 4 {
		v := math.Float32frombits(binary.LittleEndian.Uint32(b[i:]))
		if v > best {
			best, bi = v, int64(i/4)
		}
	}
	return bi
}

// quantile returns the q-quantile of sorted values (nearest rank).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// waitForStreams waits until the worker has created the digits consumer.
func waitForStreams(ctx context.Context, nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("creating JetStream context: %w", err)
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := js.Consumer(ctx, wire.DefaultRequestStream, "digits"); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("waiting for the worker's consumer: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
