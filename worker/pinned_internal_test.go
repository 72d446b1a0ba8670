package worker

import (
	"strings"
	"testing"
	"time"
)

// The hand-back schedule of pinned requests: delays grow from 250 ms to
// 5 s, each spread over [step/2, step], and pinWaited counts the least
// time waited, so a request is answered only after at least PinnedWait.
func TestPinnedHandBackSchedule(t *testing.T) {
	steps := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i, want := range steps {
		n := uint64(i + 1)
		if got := pinStep(n); got != want {
			t.Fatalf("pinStep(%d) = %v, want %v", n, got, want)
		}
		for range 50 {
			if d := pinDelay(n); d < want/2 || d > want {
				t.Fatalf("pinDelay(%d) = %v, outside [%v, %v]", n, d, want/2, want)
			}
		}
	}
	if got := pinWaited(1); got != 0 {
		t.Fatalf("pinWaited(1) = %v", got)
	}
	if got, want := pinWaited(4), (250*time.Millisecond+500*time.Millisecond+time.Second)/2; got != want {
		t.Fatalf("pinWaited(4) = %v, want %v", got, want)
	}
	n := pinDeliveries(2 * time.Minute)
	if pinWaited(n) < 2*time.Minute || pinWaited(n-1) >= 2*time.Minute {
		t.Fatalf("pinDeliveries(2m) = %d: waited %v at it, %v one before", n, pinWaited(n), pinWaited(n-1))
	}
	if err := (Config{Model: "m"}).Validate(); err != nil {
		t.Fatalf("defaults: %v (%d deliveries for the default pinned wait)", err, n)
	}
	err := (Config{Model: "m", PinnedWait: 10 * time.Minute}).Validate()
	if err == nil || !strings.Contains(err.Error(), "pinned wait") {
		t.Fatalf("a pinned wait reaching max deliveries: %v", err)
	}
}
