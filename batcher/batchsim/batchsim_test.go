package batchsim

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/batcher"
	"github.com/jetinfer/jetinfer/trt"
)

func testSpec() trt.Spec {
	return trt.Spec{
		Inputs: []trt.TensorDesc{
			{Name: "x", DType: trt.Float32, Shape: trt.Shape{-1, -1, 16}},
			{Name: "mask", DType: trt.Float32, Shape: trt.Shape{-1, -1}},
		},
		Outputs: []trt.TensorDesc{{Name: "y", DType: trt.Float32, Shape: trt.Shape{-1, 8}}},
		Profiles: []trt.Profile{{
			Min: map[string]trt.Shape{"x": {1, 8, 16}, "mask": {1, 8}},
			Max: map[string]trt.Shape{"x": {64, 512, 16}, "mask": {64, 512}},
		}},
	}
}

// testCost is a stand-in for a measured model: 10µs per batch plus 80ns
// per padded position.
func testCost(t *testing.T) *batcher.CostModel {
	t.Helper()
	bs, ss := []int{1, 8, 64}, []int{8, 64, 512}
	p := batcher.ProfileCost{Batches: bs, Seqs: ss}
	for _, b := range bs {
		var row []time.Duration
		for _, s := range ss {
			row = append(row, 10*time.Microsecond+time.Duration(80*b*s))
		}
		p.Latency = append(p.Latency, row)
	}
	m, err := batcher.NewCostModel([]batcher.ProfileCost{p}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testTrace(seed uint64, d time.Duration, rate float64) TraceConfig {
	return TraceConfig{
		Seed: seed, Duration: d, RowsPerSec: rate,
		BurstEvery: 500 * time.Millisecond, BurstLen: 100 * time.Millisecond, BurstFactor: 3,
		MinRows: 1, MaxRows: 64, SeqMedian: 48, SeqSigma: 0.9, SeqMin: 8, SeqMax: 512,
		DeadlineFrac: 0.2, DeadlineMin: 20 * time.Millisecond, DeadlineMax: 100 * time.Millisecond,
		HighPriorityFrac: 0.1,
	}
}

func TestGenerate(t *testing.T) {
	tc := testTrace(7, 60*time.Second, 20000)
	a, err := Generate(tc)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate(tc)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different traces")
	}
	rows, dl, hi := 0, 0, 0
	for i, r := range a {
		if i > 0 && r.Arrival < a[i-1].Arrival {
			t.Fatal("arrivals out of order")
		}
		if r.Arrival < 0 || r.Arrival >= tc.Duration || r.Rows() < 1 || r.Rows() > 64 {
			t.Fatalf("request %+v outside the configured ranges", r)
		}
		for _, n := range r.Lens {
			if n < 8 || n > 512 {
				t.Fatalf("length %d outside [8, 512]", n)
			}
		}
		if r.HasDL {
			dl++
			if d := r.Deadline - r.Arrival; d < tc.DeadlineMin || d > tc.DeadlineMax {
				t.Fatalf("deadline %v after arrival", d)
			}
		}
		if r.Priority == 1 {
			hi++
		}
		rows += r.Rows()
	}
	rate := float64(rows) / tc.Duration.Seconds()
	if rate < 0.9*tc.RowsPerSec || rate > 1.1*tc.RowsPerSec {
		t.Fatalf("offered %.0f rows/s, configured %.0f", rate, tc.RowsPerSec)
	}
	if f := float64(dl) / float64(len(a)); f < 0.15 || f > 0.25 {
		t.Fatalf("deadline fraction %.2f, configured 0.2", f)
	}
	if f := float64(hi) / float64(len(a)); f < 0.05 || f > 0.15 {
		t.Fatalf("priority fraction %.2f, configured 0.1", f)
	}
	if _, err := Generate(TraceConfig{}); err == nil {
		t.Fatal("empty config accepted")
	}
}

func TestSimulateAccountsForEveryRequest(t *testing.T) {
	spec, cost := testSpec(), testCost(t)
	ep := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ideal := IdealRowsPerSec(spec, cost, testTrace(1, 0, 0).SeqSampler(seqRNG()), 2000)
	trace, err := Generate(testTrace(3, 2*time.Second, 0.5*ideal))
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for _, r := range trace {
		rows += r.Rows()
	}
	jet, err := NewJetinfer(spec, cost, batcher.Config{MaxDelay: 2 * time.Millisecond, Masks: []string{"mask"}}, ep)
	if err != nil {
		t.Fatal(err)
	}
	results := map[string]Result{}
	for _, p := range []Policy{
		jet,
		NewTriton(spec, TritonConfig{MaxBatch: 64, PreferredSizes: []int{16, 32, 64}, MaxQueueDelay: 2 * time.Millisecond}, ep),
		NewUnbatched(spec, 64, ep),
		NewBucketed("bucketed-32", spec, MultipleBuckets(32, 512), TritonConfig{MaxBatch: 64, PreferredSizes: []int{16, 32, 64}, MaxQueueDelay: 2 * time.Millisecond}, ep),
	} {
		r, err := Simulate(trace, p, Engine{Cost: cost, Jitter: 0.05, Seed: 1}, spec, ep)
		if err != nil {
			t.Fatal(err)
		}
		if r.Done+r.Expired != len(trace) {
			t.Fatalf("%s: %d done + %d expired of %d requests", r.Policy, r.Done, r.Expired, len(trace))
		}
		if r.Expired == 0 && r.Rows != rows {
			t.Fatalf("%s: %d rows done of %d", r.Policy, r.Rows, rows)
		}
		if r.P50 > r.P99 || r.P99 > r.Max || r.Padding < 0 || r.Padding >= 1 {
			t.Fatalf("%s: inconsistent result %+v", r.Policy, r)
		}
		if r.Planning <= 0 || r.PlanningCharged != 0 {
			t.Fatalf("%s: planning %v, charged %v without ChargePlanning", r.Policy, r.Planning, r.PlanningCharged)
		}
		results[r.Policy] = r
	}
	// Charged planning is part of the engine's busy time.
	jet2, err := NewJetinfer(spec, cost, batcher.Config{MaxDelay: 2 * time.Millisecond, Masks: []string{"mask"}}, ep)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Simulate(trace, jet2, Engine{Cost: cost, Jitter: 0.05, Seed: 1, ChargePlanning: true}, spec, ep)
	if err != nil {
		t.Fatal(err)
	}
	if c.PlanningCharged <= 0 || c.PlanningCharged > c.Planning || c.Busy <= c.PlanningCharged {
		t.Fatalf("charged planning %v of %v, busy %v", c.PlanningCharged, c.Planning, c.Busy)
	}
	j, tr := results["jetinfer"], results["triton-style"]
	// On a ragged trace the row-level buckets must beat padding to the
	// longest row, and jetinfer never runs a deadline item it predicts late.
	if j.Padding >= tr.Padding/2 {
		t.Fatalf("jetinfer padding %.3f vs Triton-style %.3f", j.Padding, tr.Padding)
	}
	if j.Capacity() <= tr.Capacity() {
		t.Fatalf("jetinfer rows per engine-second %.0f <= Triton-style %.0f", j.Capacity(), tr.Capacity())
	}
}

func TestTritonPreferredSizesAndDelay(t *testing.T) {
	spec := testSpec()
	ep := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := NewTriton(spec, TritonConfig{MaxBatch: 64, PreferredSizes: []int{16}, MaxQueueDelay: time.Millisecond}, ep)
	req := func(id uint64, at time.Duration, rows, l int) *Request {
		r := &Request{ID: id, Arrival: at, Lens: make([]int, rows)}
		for i := range r.Lens {
			r.Lens[i] = l
		}
		return r
	}
	_ = tr.Add(ep, req(1, 0, 10, 20))
	if _, ok := tr.Next(ep); ok {
		t.Fatal("sent 10 rows before the delay with preferred size 16")
	}
	if w, ok := tr.NextWakeup(); !ok || w != ep.Add(time.Millisecond) {
		t.Fatalf("wakeup %v %v, want after the max queue delay", w, ok)
	}
	_ = tr.Add(ep, req(2, 0, 6, 100))
	_ = tr.Add(ep, req(3, 0, 5, 30))
	b, ok := tr.Next(ep)
	if !ok || b.Size != 16 || len(b.Parts) != 2 || b.Seq != 100 {
		t.Fatalf("batch %+v, want the 16-row preferred prefix padded to 100", b)
	}
	if _, ok := tr.Next(ep.Add(500 * time.Microsecond)); ok {
		t.Fatal("sent the 5-row remainder before the delay")
	}
	if b, ok := tr.Next(ep.Add(time.Millisecond)); !ok || b.Size != 5 {
		t.Fatalf("after the delay: %+v %v", b, ok)
	}
	r := req(4, 0, 3, 10)
	r.HasDL, r.Deadline = true, 2*time.Millisecond
	_ = tr.Add(ep, r)
	if got := tr.Expired(ep.Add(3 * time.Millisecond)); !slices.Equal(got, []uint64{4}) {
		t.Fatalf("Expired = %v, want [4]", got)
	}
	if _, ok := tr.Next(ep.Add(3 * time.Millisecond)); ok {
		t.Fatal("a rejected request was sent")
	}
}

func seqRNG() *rand.Rand { return rand.New(rand.NewPCG(5, 6)) }

// TestBucketedSplitsByBucketAndBatchesIdenticalShapes checks the
// client-bucketing peer: a request's rows go to one queue per bucket,
// each batch holds one bucket's rows padded to that bucket's length, and
// the queues release batches independently under the Triton rules.
func TestBucketedSplitsByBucketAndBatchesIdenticalShapes(t *testing.T) {
	spec := testSpec()
	ep := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := MultipleBuckets(32, 100); !slices.Equal(got, []int{32, 64, 96, 128}) {
		t.Fatalf("MultipleBuckets(32, 100) = %v", got)
	}
	if got := PowerOfTwoBuckets(8, 100); !slices.Equal(got, []int{8, 16, 32, 64, 128}) {
		t.Fatalf("PowerOfTwoBuckets(8, 100) = %v", got)
	}
	bk := NewBucketed("bucketed-32", spec, []int{32, 64}, TritonConfig{MaxBatch: 64, PreferredSizes: []int{2}, MaxQueueDelay: time.Millisecond}, ep)
	if err := bk.Add(ep, &Request{ID: 1, Lens: []int{10, 40, 20}}); err != nil {
		t.Fatal(err)
	}
	b, ok := bk.Next(ep)
	if !ok || b.Seq != 32 || len(b.Parts) != 1 || b.Parts[0] != (Part{ID: 1, Rows: 2}) || b.Positions != 30 {
		t.Fatalf("first batch %+v %v, want the two short rows (preferred size 2) padded to 32", b, ok)
	}
	if _, ok := bk.Next(ep); ok {
		t.Fatal("sent the lone 40-long row before the max queue delay")
	}
	if w, ok := bk.NextWakeup(); !ok || !w.Equal(ep.Add(time.Millisecond)) {
		t.Fatalf("wakeup %v %v, want after the max queue delay", w, ok)
	}
	b, ok = bk.Next(ep.Add(time.Millisecond))
	if !ok || b.Seq != 64 || b.Parts[0] != (Part{ID: 1, Rows: 1}) || b.Positions != 40 {
		t.Fatalf("second batch %+v %v, want the 40-long row padded to 64", b, ok)
	}
	if err := bk.Add(ep, &Request{ID: 2, Lens: []int{65}}); err == nil {
		t.Fatal("a row longer than the largest bucket was accepted")
	}
}

// TestCeilingBoundsEveryPolicy checks Ceiling: on rows of one length it
// is the engine's rows/s in full 64-row batches, and at saturation no
// policy's rows per second of engine time exceeds it.
func TestCeilingBoundsEveryPolicy(t *testing.T) {
	spec, cost := testSpec(), testCost(t)
	ep := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	same := []Request{{ID: 1, Lens: slices.Repeat([]int{48}, 10)}, {ID: 2, Lens: []int{48}}}
	perRow := (10_000 + 80*64*48) / 64.0 // ns: testCost's latency at b=64, s=48, per row
	if got, want := Ceiling(spec, cost, same), 1e9/perRow; math.Abs(got-want) > 1e-6*want {
		t.Fatalf("ceiling of 48-long rows %.1f rows/s, want %.1f", got, want)
	}

	ideal := IdealRowsPerSec(spec, cost, testTrace(1, 0, 0).SeqSampler(seqRNG()), 2000)
	trace, err := Generate(testTrace(4, time.Second, 1.5*ideal))
	if err != nil {
		t.Fatal(err)
	}
	ceiling := Ceiling(spec, cost, trace)
	jet, err := NewJetinfer(spec, cost, batcher.Config{MaxDelay: 2 * time.Millisecond, Masks: []string{"mask"}, MaxQueueRows: 1 << 24}, ep)
	if err != nil {
		t.Fatal(err)
	}
	cfg := TritonConfig{MaxBatch: 64, PreferredSizes: []int{16, 32, 64}, MaxQueueDelay: 2 * time.Millisecond}
	for _, p := range []Policy{jet, NewBucketed("bucketed-32", spec, MultipleBuckets(32, 512), cfg, ep), NewTriton(spec, cfg, ep)} {
		r, err := Simulate(trace, p, Engine{Cost: cost, Seed: 1}, spec, ep)
		if err != nil {
			t.Fatal(err)
		}
		if c := r.Capacity(); c <= 0 || c > ceiling {
			t.Fatalf("%s: %.0f rows per engine-second, ceiling %.0f", r.Policy, c, ceiling)
		}
		t.Logf("%s: %.0f rows per engine-second = %.2f of the ceiling", r.Policy, r.Capacity(), r.Capacity()/ceiling)
	}
}
