package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/scheduler"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
)

// TestWorkerReportsMeasurementsForTheScheduler runs real traffic and reads
// the worker's report from the KV bucket the scheduler watches.
func TestWorkerReportsMeasurementsForTheScheduler(t *testing.T) {
	eng := newTestEngine(t)
	ns := startServer(t)
	nc := connect(t, ns)
	cfg := worker.Config{Model: "digits", WorkerID: "w1", ReportInterval: 50 * time.Millisecond}
	w, err := worker.New(nc, eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	js := mustJS(t, nc)
	if _, err := worker.EnsureStreams(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	c, _ := client.New(nc, client.Config{Model: "digits"})
	const n = 50
	for i := range n {
		if _, err := c.PublishAsync(context.Background(), client.Request{ID: fmt.Sprint(i), Job: "rep", Body: body(i, i+4)}); err != nil {
			t.Fatal(err)
		}
	}
	collect(t, c, "rep", n)

	kv, err := scheduler.OpenReportBucket(context.Background(), js, scheduler.DefaultReportBucket, 0)
	if err != nil {
		t.Fatal(err)
	}
	var rep scheduler.WorkerReport
	waitFor(t, func() bool {
		e, err := kv.Get(context.Background(), scheduler.ReportKey("digits", "w1"))
		if err != nil || json.Unmarshal(e.Value(), &rep) != nil {
			return false
		}
		return rep.ServiceRate > 0 && rep.SustainedRate > 0 && rep.SustainedMsgRate > 0 && rep.ColdStart > 0
	}, "a report with a measured service rate")
	// Capacity is measured end to end: the rows delivered per second of
	// wall time with work, never more than the reported service rate,
	// which is what the scheduler sizes the pool with.
	if rep.SustainedRate <= 0 || rep.SustainedMsgRate <= 0 || rep.EngineRate <= 0 {
		t.Errorf("report without end-to-end and engine rates: %+v", rep)
	}
	if rep.ServiceRate < rep.SustainedRate {
		t.Errorf("service rate %v below the measured sustained rate %v", rep.ServiceRate, rep.SustainedRate)
	}
	if rep.RowsPerMsg != 4 {
		t.Errorf("rows per message %v, want 4 (every request had 4 rows)", rep.RowsPerMsg)
	}
	if rep.Utilization < 0 || rep.Utilization > 1 || rep.InFlightMsgs < 0 {
		t.Errorf("report out of range: %+v", rep)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A worker that stopped cleanly removes its report at once.
	if _, err := kv.Get(context.Background(), scheduler.ReportKey("digits", "w1")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("report still present after shutdown: %v", err)
	}
}

// TestUseExistingStreams checks that a worker told not to manage streams
// refuses to start without its consumer, and serves once it exists.
func TestUseExistingStreams(t *testing.T) {
	eng := newTestEngine(t)
	ns := startServer(t)
	nc := connect(t, ns)
	cfg := worker.Config{Model: "digits", UseExistingStreams: true}
	w, err := worker.New(nc, eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "jetinfer streams") {
		t.Fatalf("Run without a consumer = %v, want an error pointing at `jetinfer streams`", err)
	}
	if _, err := worker.EnsureStreams(context.Background(), mustJS(t, nc), cfg); err != nil {
		t.Fatal(err)
	}
	startWorker(t, nc, eng, cfg)
	c, _ := client.New(nc, client.Config{Model: "digits"})
	if _, err := c.PublishAsync(context.Background(), client.Request{ID: "x", Job: "existing", Body: body(0, 1)}); err != nil {
		t.Fatal(err)
	}
	if r := collect(t, c, "existing", 1)["x"]; r.Status != codec.CodeOK {
		t.Fatalf("status %s: %s", r.Status, r.Error)
	}
}
