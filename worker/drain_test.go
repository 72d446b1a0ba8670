package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/traffic"
	"github.com/jetinfer/jetinfer/worker/wire"
)

func mustJS(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestDrainHandsBackNothingLost stops a worker in the middle of a job and
// lets a second one finish it: every request ends with exactly one result.
func TestDrainHandsBackNothingLost(t *testing.T) {
	ns := startServer(t)
	nc := connect(t, ns)
	// A short drain timeout: the first worker, slowed down, cannot finish
	// what it holds, hands the rest back on shutdown, and the second one
	// must pick it up.
	cfg := worker.Config{Model: "digits", MaxBatchRows: 8, DrainTimeout: 300 * time.Millisecond}
	js := mustJS(t, nc)
	if _, err := worker.EnsureStreams(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}
	const n = 400
	reqs := make([]*traffic.Request, n)
	for i := range reqs {
		reqs[i] = traffic.NewRequest(synth, fmt.Sprintf("d%d", i), "drain", i*3, 4)
	}
	publishAll(t, js, reqs)

	// The first worker's engine takes 20 ms per batch, so that the drain
	// happens mid-job.
	slow := newTestEngine(t)
	slow.SetLatency(20 * time.Millisecond)
	first, err := worker.New(nc, slow, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	// Stop once some, but not all, results exist.
	res, _ := js.Stream(context.Background(), wire.DefaultResultStream)
	waitFor(t, func() bool {
		info, err := res.Info(context.Background())
		return err == nil && info.State.Msgs >= 20
	}, "first results")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not drain within 30s")
	}
	info, _ := res.Info(context.Background())
	t.Logf("first worker answered %d of %d before draining", info.State.Msgs, n)
	if info.State.Msgs >= n {
		t.Fatalf("first worker answered all %d requests; the test needs it stopped mid-job", n)
	}

	startWorker(t, nc, newTestEngine(t), cfg)
	if a := assertExactlyOnce(t, js, reqs); a.ByCode[codec.CodeOK] != n {
		t.Errorf("statuses %v: every request should be answered OK", a.ByCode)
	}
}
