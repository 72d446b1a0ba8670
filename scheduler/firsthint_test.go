package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestSchedulerFirstHintCountsRunningWorkers restarts the scheduler
// beside running workers: its first hint must be the workers that run,
// not MinReplicas (which KEDA would act on by removing them).
func TestSchedulerFirstHintCountsRunningWorkers(t *testing.T) {
	h := newHarness(t, testConfig("digits"))
	setupModel(t, h.js, "digits")

	// A first scheduler scales the pool up for a backlog; three workers
	// start, drain it, report, and keep one message each in flight.
	publishN(t, h.js, "digits", 1200)
	h.report(t, "digits", "w1", 10, 0, 0)
	if up := h.tick(t, 0, "digits"); up.DesiredReplicas < 3 {
		t.Fatalf("the first scheduler did not scale up for the backlog: %+v", up)
	}
	publishN(t, h.js, "digits", 3)
	fetchN(t, h.js, "digits", 1200, true)
	fetchN(t, h.js, "digits", 3, false)
	for _, w := range []string{"w1", "w2", "w3"} {
		h.report(t, "digits", w, 10, 1, 20)
	}

	// The scheduler restarts: a new one, same streams and buckets.
	h.clock.Set(25)
	s2, err := New(t.Context(), h.js, testConfig("digits"), WithClock(h.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Tick(t.Context()); err != nil {
		t.Fatal(err)
	}
	first, _ := s2.Hint("digits")
	if first.DesiredReplicas != 3 || first.ReadyWorkers != 3 || first.Backlog != 0 {
		t.Fatalf("first hint after a restart beside 3 running workers: %+v; want 3", first)
	}
	// It stays there through the stabilization window, then follows the
	// need (one replica for the three messages in flight).
	h.clock.Set(50)
	for _, w := range []string{"w1", "w2", "w3"} {
		h.report(t, "digits", w, 10, 1, 50)
	}
	if err := s2.Tick(t.Context()); err != nil {
		t.Fatal(err)
	}
	if held, _ := s2.Hint("digits"); held.DesiredReplicas != 3 || held.Reason != ReasonStabilizing {
		t.Fatalf("inside the window: %+v", held)
	}
	h.clock.Set(90)
	for _, w := range []string{"w1", "w2", "w3"} {
		h.report(t, "digits", w, 10, 1, 90)
	}
	if err := s2.Tick(t.Context()); err != nil {
		t.Fatal(err)
	}
	if down, _ := s2.Hint("digits"); down.DesiredReplicas != 1 || down.Reason != ReasonScaleDown {
		t.Fatalf("after the window: %+v", down)
	}
}

// TestSchedulerFirstHintCountsAPullingWorkerBeforeItReports starts the
// scheduler while a worker pulls but has not published its first report
// (a worker reports one interval after it starts): the consumer's waiting
// pull request shows that at least one worker runs.
func TestSchedulerFirstHintCountsAPullingWorkerBeforeItReports(t *testing.T) {
	h := newHarness(t, testConfig("digits"))
	setupModel(t, h.js, "digits")
	c, err := h.js.Consumer(t.Context(), DefaultRequestStream, "digits")
	if err != nil {
		t.Fatal(err)
	}
	// A worker's pull, waiting for messages until cancelled.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pulled := make(chan error, 1)
	go func() {
		b, err := c.Fetch(1, jetstream.FetchContext(ctx))
		if err == nil {
			for range b.Messages() {
			}
			err = b.Error()
		}
		pulled <- err
	}()
	for {
		info, err := c.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumWaiting > 0 {
			break
		}
		select {
		case err := <-pulled:
			t.Fatalf("the pull ended before the scheduler saw it: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	first := h.tick(t, 0, "digits")
	if first.DesiredReplicas != 1 || first.ReadyWorkers != 0 {
		t.Fatalf("first hint while a worker pulls before reporting: %+v; want 1", first)
	}
	cancel()
	<-pulled

	// Without any worker (no report, no pull) a fresh scheduler starts
	// from the minimum.
	h2 := newHarness(t, testConfig("digits"))
	setupModel(t, h2.js, "digits")
	if none := h2.tick(t, 0, "digits"); none.DesiredReplicas != 0 {
		t.Fatalf("first hint without workers: %+v; want 0", none)
	}
}
