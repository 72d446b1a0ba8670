package schedsim

import (
	"math"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/scheduler"
)

// burstTrace is one burst of n messages published over spread seconds at
// second start, in a trace of length seconds with no other traffic.
func burstTrace(seconds, start, spread, n int) Trace {
	tr := Trace{Base: make([]int, seconds), BurstAt: make([]int, seconds), BurstID: make([]int, seconds)}
	for i := range tr.BurstID {
		tr.BurstID[i] = -1
	}
	for i := range spread {
		tr.BurstAt[start+i] = n / spread
		tr.BurstID[start+i] = 0
	}
	tr.Bursts = []Burst{{Start: start, End: start + spread - 1, Messages: n / spread * spread}}
	return tr
}

func TestGenerateTraceDeterministicAndShaped(t *testing.T) {
	c := DefaultTraceConfig()
	a, err := GenerateTrace(c)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateTrace(c)
	if a.Total() != b.Total() || len(a.Bursts) != len(b.Bursts) {
		t.Fatal("same seed, different traces")
	}
	c.Seed++
	d, _ := GenerateTrace(c)
	if d.Total() == a.Total() {
		t.Fatal("different seed, same total")
	}
	// Night: no base traffic around midnight; day: close to the peak at noon.
	if a.Base[0] != 0 || c.DailyRate(0) != 0 {
		t.Fatalf("traffic at midnight: %d", a.Base[0])
	}
	if r := c.DailyRate(c.DayPeriod / 2); math.Abs(r-c.PeakRate) > 1e-9 {
		t.Fatalf("rate at noon %.1f; want peak %.1f", r, c.PeakRate)
	}
	for i := 1; i < len(a.Bursts); i++ {
		if a.Bursts[i].Start <= a.Bursts[i-1].End {
			t.Fatalf("bursts overlap: %+v", a.Bursts)
		}
	}
	burstSum := 0
	for _, n := range a.BurstAt {
		burstSum += n
	}
	want := 0
	for _, b := range a.Bursts {
		want += b.Messages
	}
	if burstSum != want {
		t.Fatalf("burst messages %d; bursts list %d", burstSum, want)
	}
}

func TestFixedPoolAccounting(t *testing.T) {
	tr := burstTrace(600, 100, 10, 5000)
	cc := ClusterConfig{Capacity: 50, ColdStart: 30, HeldPerReplica: 8, MaxReplicas: 10, SLO: 60, InitialReady: 5}
	r, err := Run(tr, cc, Fixed{N: 5})
	if err != nil {
		t.Fatal(err)
	}
	if r.ReplicaSeconds != 5*600 {
		t.Fatalf("replica-seconds %.0f; want %d", r.ReplicaSeconds, 5*600)
	}
	// 5000 messages at 250/s: the last one completes ≈ 20 s after the
	// burst's start, and waits ≈ 20 − 10 = 10 s at most.
	if d := r.MaxDrain(); math.Abs(d-20) > 1 {
		t.Fatalf("drain %.1f s; want ≈20", d)
	}
	if r.Max > 12 || r.SLOMisses != 0 || r.Unfinished != 0 {
		t.Fatalf("latency/misses: %+v", r)
	}
	// An undersized pool misses the SLO and leaves work unfinished.
	r2, _ := Run(burstTrace(120, 10, 10, 50000), cc, Fixed{N: 5})
	if r2.SLOMisses == 0 || r2.Unfinished == 0 {
		t.Fatalf("undersized pool: %+v", r2)
	}
}

func TestKEDAHoldsForStabilizationWindowAndCooldown(t *testing.T) {
	tr := burstTrace(1500, 60, 30, 30000)
	cc := ClusterConfig{Capacity: 50, ColdStart: 30, HeldPerReplica: 8, MaxReplicas: 40, SLO: 300, SeriesEvery: 1}
	r, err := Run(tr, cc, NewKEDALag(DefaultKEDA(40), 10))
	if err != nil {
		t.Fatal(err)
	}
	drained := tr.Bursts[0].Start + int(r.MaxDrain()) + 1
	// The lag is gone at `drained`; the HPA keeps its peak for 300 s after
	// its last high recommendation, and KEDA scales to zero only after
	// 300 s without activity.
	peakAfter := 0
	zeroAt := -1
	for _, p := range r.Series {
		if p.T > drained && p.T < drained+250 {
			peakAfter = max(peakAfter, p.Ready+p.Starting)
		}
		if p.T > drained && zeroAt < 0 && p.Ready+p.Starting == 0 {
			zeroAt = p.T
		}
	}
	if peakAfter != r.PeakReplicas {
		t.Fatalf("KEDA scaled down within the window: %d after drain, peak %d", peakAfter, r.PeakReplicas)
	}
	// (KEDA saw the lag last at its poll before `drained`: at most one
	// polling interval earlier.)
	if zeroAt < drained-30+300 {
		t.Fatalf("KEDA reached zero at %d, drained at %d: cooldown not applied", zeroAt, drained)
	}
}

func TestPolicyCheaperThanKEDAOnBurst(t *testing.T) {
	tr := burstTrace(1800, 60, 30, 30000)
	cc := ClusterConfig{Capacity: 50, ColdStart: 30, HeldPerReplica: 8, MaxReplicas: 40, SLO: 180}
	pc := scheduler.DefaultPolicyConfig()
	pc.MaxReplicas = 40
	pc.DefaultServiceRate = 50 // as if learned from an earlier run
	pc.DefaultColdStart = 30 * time.Second
	ours, err := NewPolicyController(pc, ChartKEDA(40), 5, cc.Capacity, cc.ColdStart)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Run(tr, cc, ours)
	if err != nil {
		t.Fatal(err)
	}
	k, err := Run(tr, cc, NewKEDALag(DefaultKEDA(40), 10))
	if err != nil {
		t.Fatal(err)
	}
	if a.Unfinished != 0 || a.SLOMisses > k.SLOMisses {
		t.Fatalf("policy worse on SLO: %+v vs KEDA %+v", a, k)
	}
	if a.ReplicaSeconds >= k.ReplicaSeconds {
		t.Fatalf("policy replica-seconds %.0f ≥ KEDA %.0f", a.ReplicaSeconds, k.ReplicaSeconds)
	}
	// Lower bound: the work itself (messages / capacity).
	if work := float64(tr.Total()) / cc.Capacity; a.ReplicaSeconds < work {
		t.Fatalf("replica-seconds %.0f below the work %.0f: accounting broken", a.ReplicaSeconds, work)
	}
}
