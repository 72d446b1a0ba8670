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
	"github.com/jetinfer/jetinfer/trt/testengine"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
	"github.com/jetinfer/jetinfer/worker/traffic"
)

var errInjected = errors.New("injected engine failure")

func TestTransientEngineFailuresAreRetried(t *testing.T) {
	// A fixed cost per call (see TestQueuedRowsAreCoalesced) makes the
	// batcher run the request's 5 rows as one batch, whatever the load.
	eng, err := testengine.New(testengine.Config{Latency: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	ns := startServer(t)
	nc := connect(t, ns)
	startWorker(t, nc, eng, worker.Config{Model: "digits", RetryBackoff: 20 * time.Millisecond, MaxAttempts: 5})
	// Armed once the worker's warm-up measurements are done.
	eng.ResetStats()
	eng.SetFault(testengine.FailFirst(2, errInjected))
	c, _ := client.New(nc, client.Config{Model: "digits"})
	if _, err = c.PublishAsync(context.Background(), client.Request{ID: "r1", Job: "flaky", Body: body(10, 15)}); err != nil {
		t.Fatal(err)
	}
	r := collect(t, c, "flaky", 1)["r1"]
	if r.Status != codec.CodeOK {
		t.Fatalf("status %s: %s; want OK after retries", r.Status, r.Error)
	}
	checkRows(t, r.Body, 10, 15)
	// The request is the unit of retry (were its rows split over batches,
	// those of a batch that succeeded would run again with the rest): two
	// failed calls, then one that computes the 5 rows.
	if st := eng.Stats(); st.Failed != 2 || st.Rows != 5 || st.Calls != 3 {
		t.Errorf("engine stats %+v, want two failed calls, then the 5 rows computed once", st)
	}
}

func TestPoisonRequestGetsInternalErrorOthersUnaffected(t *testing.T) {
	eng := newTestEngine(t)
	eng.SetFault(testengine.FailRows(testengine.FirstValue(42), errInjected))
	ns := startServer(t)
	nc := connect(t, ns)
	startWorker(t, nc, eng, worker.Config{Model: "digits", RetryBackoff: 10 * time.Millisecond, MaxAttempts: 3,
		MaxDelay: 50 * time.Millisecond})
	c, _ := client.New(nc, client.Config{Model: "digits"})
	poison, err := traffic.SetValue(body(0, 2), 0, 42)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		b := body(20+i, 22+i)
		id := fmt.Sprintf("ok-%d", i)
		if i == 3 {
			b, id = poison, "poison"
		}
		if _, err := c.PublishAsync(context.Background(), client.Request{ID: id, Job: "poison", Body: b}); err != nil {
			t.Fatal(err)
		}
	}
	got := collect(t, c, "poison", 6)
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
		default:
			var i int
			fmt.Sscanf(id, "ok-%d", &i)
			checkRows(t, res.Body, 20+i, 22+i)
		}
	}
}

func TestDeadlineExpiresWhileQueued(t *testing.T) {
	eng := newTestEngine(t)
	ns := startServer(t)
	nc := connect(t, ns)
	c, _ := client.New(nc, client.Config{Model: "digits"})
	// Published before any worker runs, with a deadline that passes while
	// the request waits in the stream.
	js := mustJS(t, nc)
	if _, err := worker.EnsureStreams(context.Background(), js, worker.Config{Model: "digits"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishAsync(context.Background(), client.Request{ID: "late", Job: "dl", Body: body(0, 1),
		Deadline: time.Now().Add(50 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishAsync(context.Background(), client.Request{ID: "timely", Job: "dl", Body: body(0, 1),
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
	eng := newTestEngine(t)
	eng.SetFault(testengine.FailFirst(1, errInjected)) // the very first warm-up measurement fails
	ns := startServer(t)
	nc := connect(t, ns)
	startWorker(t, nc, eng, worker.Config{Model: "digits"})
	if st := eng.Stats(); st.Failed != 1 {
		t.Fatalf("engine stats %+v: the warm-up did not meet the injected failure", st)
	}
	c, _ := client.New(nc, client.Config{Model: "digits"})
	if _, err := c.PublishAsync(context.Background(), client.Request{ID: "w", Job: "warm", Body: body(0, 2)}); err != nil {
		t.Fatal(err)
	}
	if r := collect(t, c, "warm", 1)["w"]; r.Status != codec.CodeOK {
		t.Fatalf("status %s: %s", r.Status, r.Error)
	}
}

// TestDeviceLostStopsTheWorkerAndHandsWorkBack makes the engine's device
// fail (trt.ErrDeviceLost) on the first batch: the worker's Run must
// return that error, hand every request it held back uncharged (no
// INTERNAL result, no attempt counted), and a second worker must answer
// them all, exactly once.
func TestDeviceLostStopsTheWorkerAndHandsWorkBack(t *testing.T) {
	ns := startServer(t)
	nc := connect(t, ns)
	js := mustJS(t, nc)
	cfg := worker.Config{Model: "digits", MaxAttempts: 1}
	if _, err := worker.EnsureStreams(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}
	reqs := okRequests("lost", "lost", 50)
	publishAll(t, js, reqs)

	sick := newTestEngine(t)
	w, err := worker.New(nc, sick, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Warm-up runs first; the device is lost at the first batch of
	// requests, and stays lost, as a device in a sticky error state does.
	var lost atomic.Bool
	sick.SetFault(func(context.Context, testengine.Call) error {
		if lost.Load() || w.Ready() {
			lost.Store(true)
			return trt.ErrDeviceLost
		}
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, trt.ErrDeviceLost) {
			t.Fatalf("Run = %v, want an error wrapping trt.ErrDeviceLost", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the worker kept running on a lost device")
	}
	if n, _ := model.CountResults(context.Background(), js); n != 0 {
		t.Fatalf("%d results stored by the worker whose device was lost; want none (MaxAttempts 1 would make a charged failure INTERNAL)", n)
	}
	startWorker(t, nc, newTestEngine(t), cfg)
	if a := assertExactlyOnce(t, js, reqs); a.ByCode[codec.CodeOK] != len(reqs) {
		t.Errorf("statuses %v: a lost device is nobody's fault, every request should be answered OK", a.ByCode)
	}
}
