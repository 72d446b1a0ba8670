package worker

import (
	"testing"
	"time"
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
	if got := a.takeBytes(1000); got != 100 {
		t.Fatalf("an oversized request took %d bytes, want the whole budget 100", got)
	}
	if a.bytes.TryAcquire(1) {
		t.Fatal("budget not spent after taking all of it")
	}
	a.give(100, 0)
	if got := a.takeRows(25); got != 10 {
		t.Fatalf("took %d rows, want the whole budget 10", got)
	}
	a.give(0, 10)
	if !a.rows.TryAcquire(10) || !a.bytes.TryAcquire(100) {
		t.Fatal("budget not given back")
	}
}

func TestHoldingReportsStaleRequestsOnce(t *testing.T) {
	h := newHolding()
	t0 := time.Unix(1000, 0)
	r1, r2 := &request{}, &request{}
	h.add(r1, t0)
	h.add(r2, t0.Add(5*time.Second))
	stale := h.stale(t0.Add(time.Second), t0.Add(10*time.Second))
	if len(stale) != 1 || stale[0] != r1 {
		t.Fatalf("stale = %v, want only the older request", stale)
	}
	if again := h.stale(t0.Add(time.Second), t0.Add(10*time.Second)); len(again) != 0 {
		t.Fatalf("a request just touched is stale again: %v", again)
	}
	h.remove(r1)
	if h.len() != 1 {
		t.Fatalf("len = %d after removing one of two", h.len())
	}
}
