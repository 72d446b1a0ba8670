package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/scheduler"
	"github.com/jetinfer/jetinfer/worker"
)

// TestWorkerReportsMeasurementsForTheScheduler runs real traffic and reads
// the worker's report from the KV bucket the scheduler watches.
func TestWorkerReportsMeasurementsForTheScheduler(t *testing.T) {
	eng := loadEngine(t, "digits.onnx")
	d := loadDigits(t)
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

	c, _ := worker.NewClient(nc, "", "", "digits", 0)
	const n = 50
	for i := range n {
		if _, err := c.PublishAsync(context.Background(), worker.Request{ID: fmt.Sprint(i), Job: "rep", Body: d.request(t, i, i+4)}); err != nil {
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
		return rep.ServiceRate > 0 && rep.ColdStart > 0
	}, "a report with a measured service rate")
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
