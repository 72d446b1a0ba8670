package worker

import (
	"context"
	"testing"
	"testing/synctest"

	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestAttemptsCountOnlyFailuresAndExpire(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := newAttempts(10*time.Minute, 3)
	if n := a.fail("r1", t0, "boom"); n != 1 {
		t.Fatalf("first failure counted %d", n)
	}
	if n := a.fail("r1", t0.Add(time.Minute), "boom"); n != 2 {
		t.Fatalf("second failure counted %d", n)
	}
	if n := a.failures("r2", t0); n != 0 {
		t.Fatalf("a request that never failed has %d failures", n)
	}
	// Settled: forgotten.
	a.forget("r1")
	if n := a.failures("r1", t0.Add(time.Minute)); n != 0 {
		t.Fatalf("forgotten request still has %d failures", n)
	}
	// Expiry: a failure older than the ttl no longer counts.
	a.fail("r3", t0, "boom")
	if n := a.failures("r3", t0.Add(9*time.Minute)); n != 1 {
		t.Fatalf("failure expired early: %d", n)
	}
	if n := a.fail("r3", t0.Add(11*time.Minute), "boom"); n != 1 {
		t.Fatalf("failure older than the ttl still counted: %d", n)
	}
	// Bounded: the oldest id is dropped beyond the limit.
	now := t0.Add(12 * time.Minute)
	for _, id := range []string{"a", "b", "c", "d"} {
		a.fail(id, now, "boom")
	}
	if a.failures("r3", now) != 0 || a.failures("a", now) != 0 || a.failures("d", now) != 1 {
		t.Fatalf("limit of 3 ids not kept: r3=%d a=%d d=%d", a.failures("r3", now), a.failures("a", now), a.failures("d", now))
	}
}

func TestAdmissionLetsAnOversizedRequestRunAlone(t *testing.T) {
	a := newAdmission(100, 10)
	if got := a.takeRows(25); got != 10 {
		t.Fatalf("took %d rows, want the whole budget 10", got)
	}
	a.give(0, 10)
	if got := a.takeRows(4); got != 4 {
		t.Fatalf("took %d rows, want 4", got)
	}
}

func TestBudgetTakesWhatIsFreeAndWaits(t *testing.T) {
	synctest.Test(t, testBudget)
}

func testBudget(t *testing.T) {
	b := newBudget(100)
	if n, ok := b.take(context.Background(), 10, 60); !ok || n != 60 {
		t.Fatalf("take(10, 60) = %d, %v; want 60", n, ok)
	}
	if n, _ := b.take(context.Background(), 10, 60); n != 40 {
		t.Fatalf("take(10, 60) with 40 free = %d; want 40", n)
	}
	// Nothing free: a taker waits until enough is given back.
	got := make(chan int64)
	go func() {
		n, _ := b.take(context.Background(), 30, 50)
		got <- n
	}()
	b.give(20)
	synctest.Wait() // the taker is durably blocked, or has taken
	select {
	case n := <-got:
		t.Fatalf("took %d with only 20 of the 30 needed free", n)
	default:
	}
	b.give(20)
	if n := <-got; n != 40 {
		t.Fatalf("took %d after 40 were given back; want 40", n)
	}
	// A cancelled wait takes nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n, ok := b.take(ctx, 1, 1); ok || n != 0 {
		t.Fatalf("take with a cancelled context = %d, %v", n, ok)
	}
	// Asking for more than the whole budget waits for all of it.
	b.give(100)
	if n, ok := b.take(context.Background(), 500, 500); !ok || n != 100 {
		t.Fatalf("take(500) = %d, %v; want the whole budget", n, ok)
	}
}

func TestHoldingReportsStaleMessagesOnce(t *testing.T) {
	h := newHolding()
	t0 := time.Unix(1000, 0)
	// Any jetstream.Msg will do as a key; the keeper only calls InProgress.
	m1, m2 := jetstream.Msg(&fakeMsg{name: "a"}), jetstream.Msg(&fakeMsg{name: "b"})
	h.add(m1, t0)
	h.add(m2, t0.Add(5*time.Second))
	stale := h.stale(t0.Add(time.Second), t0.Add(10*time.Second))
	if len(stale) != 1 || stale[0] != m1 {
		t.Fatalf("stale = %v, want only the older message", stale)
	}
	if again := h.stale(t0.Add(time.Second), t0.Add(10*time.Second)); len(again) != 0 {
		t.Fatalf("a message just touched is stale again: %v", again)
	}
	h.remove(m1)
	if h.len() != 1 {
		t.Fatalf("len = %d after removing one of two", h.len())
	}
}

// fakeMsg is a jetstream.Msg for holding's bookkeeping only.
type fakeMsg struct {
	jetstream.Msg
	name string
}
