package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
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
	eng := loadEngine(t, "digits.onnx")
	d := loadDigits(t)
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
	c, _ := client.New(nc, client.Config{Model: "digits"})
	const n = 400
	for i := range n {
		lo := (i * 3) % (d.rows - 4)
		if _, err := c.PublishAsync(context.Background(), client.Request{ID: fmt.Sprintf("d%d", i), Job: "drain", Body: d.request(t, lo, lo+4)}); err != nil {
			t.Fatal(err)
		}
	}
	<-c.PublishComplete()

	// A stand-in wrapper slows the real engine so that the drain happens
	// mid-job.
	first, err := worker.New(nc, slowEngine{eng, 20 * time.Millisecond}, cfg)
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

	startWorker(t, nc, eng, cfg)
	got := collect(t, c, "drain", n)
	for id, r := range got {
		if r.Status != codec.CodeOK {
			t.Errorf("request %s: %s: %s", id, r.Status, r.Error)
		}
	}
	// No duplicates were stored either: the results stream holds n messages.
	waitFor(t, func() bool {
		info, err := res.Info(context.Background())
		return err == nil && info.State.Msgs == n
	}, fmt.Sprintf("results stream to hold exactly %d results", n))
}

// slowEngine is a stand-in that delays each call to the real engine.
type slowEngine struct {
	worker.Engine
	delay time.Duration
}

func (s slowEngine) Run(ctx context.Context, b *trt.Batch) error {
	time.Sleep(s.delay)
	return s.Engine.Run(ctx, b)
}
