package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
)

// flakyEngine is a stand-in that wraps the real ONNX Runtime engine and
// injects failures: the next failNext calls fail (armed by the test once
// the worker's warm-up measurements are done), and so does every call
// whose batch holds a row whose first pixel equals poison.
type flakyEngine struct {
	worker.Engine
	failNext atomic.Int64
	calls    atomic.Int64
	poison   float32
}

var errInjected = errors.New("injected engine failure")

func (f *flakyEngine) Run(ctx context.Context, b *trt.Batch) error {
	f.calls.Add(1)
	if f.failNext.Add(-1) >= 0 {
		return errInjected
	}
	if f.poison != 0 {
		px := floats(b.Inputs[0].Data)
		for r := 0; r < len(px); r += 64 {
			if px[r] == f.poison {
				return fmt.Errorf("row %d: %w", r/64, errInjected)
			}
		}
	}
	return f.Engine.Run(ctx, b)
}

func TestTransientEngineFailuresAreRetried(t *testing.T) {
	eng := &flakyEngine{Engine: loadEngine(t, "digits.onnx")}
	eng.failNext.Store(-1 << 40)
	d := loadDigits(t)
	ns := startServer(t)
	nc := connect(t, ns)
	startWorker(t, nc, eng, worker.Config{Model: "digits", RetryBackoff: 20 * time.Millisecond, MaxAttempts: 5})
	eng.calls.Store(0)
	eng.failNext.Store(2)
	c, _ := client.New(nc, client.Config{Model: "digits"})
	if _, err := c.PublishAsync(context.Background(), client.Request{ID: "r1", Job: "flaky", Body: d.request(t, 10, 15)}); err != nil {
		t.Fatal(err)
	}
	r := collect(t, c, "flaky", 1)["r1"]
	if r.Status != codec.CodeOK {
		t.Fatalf("status %s: %s; want OK after retries", r.Status, r.Error)
	}
	d.checkLogits(t, r.Body, 5)
	if n := eng.calls.Load(); n != 3 {
		t.Errorf("engine called %d times, want 3 (two failures, one success)", n)
	}
}

func TestPoisonRequestGetsInternalErrorOthersUnaffected(t *testing.T) {
	eng := &flakyEngine{Engine: loadEngine(t, "digits.onnx"), poison: 42}
	d := loadDigits(t)
	ns := startServer(t)
	nc := connect(t, ns)
	startWorker(t, nc, eng, worker.Config{Model: "digits", RetryBackoff: 10 * time.Millisecond, MaxAttempts: 3,
		MaxDelay: 50 * time.Millisecond})
	c, _ := client.New(nc, client.Config{Model: "digits"})
	poison := d.request(t, 0, 2)
	r, _ := codec.DecodeRequest(poison, codec.DefaultLimits())
	px, _ := r.Column("pixels")
	copy(px.Data, []byte{0, 0, 0x28, 0x42}) // float32 42, little-endian
	for i := range 6 {
		body := d.request(t, 20+i, 22+i)
		id := fmt.Sprintf("ok-%d", i)
		if i == 3 {
			body, id = poison, "poison"
		}
		if _, err := c.PublishAsync(context.Background(), client.Request{ID: id, Job: "poison", Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	got := collect(t, c, "poison", 6)
	r.Release()
	for id, res := range got {
		switch {
		case id == "poison" && res.Status != codec.CodeInternal:
			t.Errorf("poison request: status %s, want INTERNAL", res.Status)
		case id == "poison":
			if want := "attempt 3 of 3"; !strings.Contains(res.Error, want) {
				t.Errorf("poison error %q does not say %q", res.Error, want)
			}
		case res.Status != codec.CodeOK:
			t.Errorf("request %s: %s: %s", id, res.Status, res.Error)
		}
	}
}

func TestDeadlineExpiresWhileQueued(t *testing.T) {
	eng := loadEngine(t, "digits.onnx")
	d := loadDigits(t)
	ns := startServer(t)
	nc := connect(t, ns)
	c, _ := client.New(nc, client.Config{Model: "digits"})
	// Published before any worker runs, with a deadline that passes while
	// the request waits in the stream.
	js := mustJS(t, nc)
	if _, err := worker.EnsureStreams(context.Background(), js, worker.Config{Model: "digits"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishAsync(context.Background(), client.Request{ID: "late", Job: "dl", Body: d.request(t, 0, 1),
		Deadline: time.Now().Add(50 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishAsync(context.Background(), client.Request{ID: "timely", Job: "dl", Body: d.request(t, 0, 1),
		Deadline: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	<-c.PublishComplete()
	time.Sleep(100 * time.Millisecond) // let the first deadline pass while queued
	startWorker(t, nc, eng, worker.Config{Model: "digits"})
	got := collect(t, c, "dl", 2)
	if s := got["late"].Status; s != codec.CodeDeadlineExceeded {
		t.Errorf("late request: %s, want DEADLINE_EXCEEDED", s)
	}
	if s := got["timely"].Status; s != codec.CodeOK {
		t.Errorf("timely request: %s (%s), want OK", s, got["timely"].Error)
	}
}

func TestWarmUpSurvivesATransientEngineFailure(t *testing.T) {
	eng := &flakyEngine{Engine: loadEngine(t, "digits.onnx")}
	eng.failNext.Store(1) // the very first warm-up measurement fails
	d := loadDigits(t)
	ns := startServer(t)
	nc := connect(t, ns)
	startWorker(t, nc, eng, worker.Config{Model: "digits"})
	c, _ := client.New(nc, client.Config{Model: "digits"})
	if _, err := c.PublishAsync(context.Background(), client.Request{ID: "w", Job: "warm", Body: d.request(t, 0, 2)}); err != nil {
		t.Fatal(err)
	}
	if r := collect(t, c, "warm", 1)["w"]; r.Status != codec.CodeOK {
		t.Fatalf("status %s: %s", r.Status, r.Error)
	}
}
