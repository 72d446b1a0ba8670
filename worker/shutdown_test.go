package worker_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt/testengine"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/traffic"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// TestShutdownOrder checks the shutdown order the package documentation
// promises, with the engine holding batches while shutdown begins: stop
// pulling → flush the batcher → finish in-flight engine work → publish and
// ack → return. Every request the worker had taken in is answered (none
// handed back or redelivered, although most were still queued in the
// batcher), Run does not return while the engine holds batches, and
// requests published once the pulls in flight have ended are not taken.
func TestShutdownOrder(t *testing.T) {
	ns := startServer(t)
	nc := connect(t, ns)
	js := mustJS(t, nc)
	// One-row requests and batches of at most 4 rows: with both executors
	// held, 8 requests are in the engine and the rest wait in the batcher.
	cfg := worker.Config{Model: "digits", MaxBatchRows: 4, Executors: 2}
	if _, err := worker.EnsureStreams(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}
	eng := newTestEngine(t)
	w, err := worker.New(nc, eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	waitFor(t, w.Ready, "the worker to pull")
	release := make(chan struct{})
	eng.ResetStats()
	eng.SetFault(testengine.Block(release))

	early := make([]*traffic.Request, 40)
	for i := range early {
		early[i] = traffic.NewRequest(synth, fmt.Sprintf("early-%d", i), "shutdown", i, 1)
	}
	publishAll(t, js, early)
	cons, err := js.Consumer(context.Background(), wire.DefaultRequestStream, "digits")
	if err != nil {
		t.Fatal(err)
	}
	info := func() *jetstream.ConsumerInfo {
		ci, err := cons.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return ci
	}
	waitFor(t, func() bool { return eng.Stats().Running == 2 && info().NumAckPending == len(early) },
		"both executors to be held and every request taken in")

	// Shutdown begins while the engine holds two batches.
	cancel()
	waitFor(t, func() bool { return !w.Ready() }, "the worker to report not ready")
	// The pulls in flight when shutdown began end (their server-side
	// wait expires) and no new pull is made.
	waitFor(t, func() bool { return info().NumWaiting == 0 }, "the pulls in flight to end")
	late := okRequests("late", "shutdown-late", 10)
	publishAll(t, js, late)
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while the engine still held batches", err)
	default:
	}

	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	// Every early request was answered and acked before Run returned, none
	// handed back; the late ones were never delivered. Run flushes its
	// fire-and-forget acks before returning, but the server applies acks
	// asynchronously: wait until it has (a handed-back or unacked request
	// never gets there and fails the checks below).
	waitFor(t, func() bool { return info().NumAckPending == 0 }, "the server to apply the worker's acks")
	ci := info()
	if ci.NumAckPending != 0 || ci.NumPending != uint64(len(late)) || ci.Delivered.Consumer != uint64(len(early)) {
		t.Errorf("after Run: %d ack-pending, %d pending, %d delivered; want 0, %d (the late requests), %d (the early ones, once each)",
			ci.NumAckPending, ci.NumPending, ci.Delivered.Consumer, len(late), len(early))
	}
	a, err := model.Audit(context.Background(), js, early)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Err(); err != nil || a.ByCode[codec.CodeOK] != len(early) {
		t.Errorf("early requests: %v, statuses %v", err, a.ByCode)
	}
	if st := eng.Stats(); st.Rows < int64(len(early)) || st.Failed != 0 {
		t.Errorf("engine stats %+v: the queued rows were not all run", st)
	}
	// The late requests are served by the next worker.
	startWorker(t, nc, newTestEngine(t), cfg)
	assertExactlyOnce(t, js, append(early, late...))
}
