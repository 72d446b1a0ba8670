package batcher

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/trt"
)

func newTestBatcher(t testing.TB, cfg Config, profiles ...[4]int64) *Batcher {
	t.Helper()
	if len(profiles) == 0 {
		profiles = [][4]int64{{1, 64, 1, 512}}
	}
	spec := seqSpec(profiles...)
	b, err := New(spec, syntheticCost(t, spec, 200*time.Microsecond, 5*time.Microsecond, 100*time.Nanosecond, 0), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func lens(n, l int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = l
	}
	return out
}

// drain calls Flush until the queue is empty and returns every plan.
func drain(t *testing.T, b *Batcher, now time.Time) []Plan {
	t.Helper()
	var out []Plan
	for {
		p, ok := b.Flush(now)
		if !ok {
			break
		}
		out = append(out, p)
		now = now.Add(p.Cost)
	}
	if _, rows := b.Len(); rows != 0 {
		t.Fatalf("%d rows left after draining", rows)
	}
	return out
}

func TestAddRejects(t *testing.T) {
	b := newTestBatcher(t, Config{MaxQueueRows: 10})
	cases := []struct {
		name string
		it   Item
		want error
	}{
		{"no rows", Item{ID: 1}, ErrInvalidItem},
		{"lens missing", Item{ID: 2, Rows: 2, SeqLens: []int{3}}, ErrInvalidItem},
		{"too long", Item{ID: 3, Rows: 1, SeqLens: []int{513}}, ErrInvalidItem},
		{"zero length", Item{ID: 4, Rows: 1, SeqLens: []int{0}}, ErrInvalidItem},
		{"queue full", Item{ID: 5, Rows: 11, SeqLens: lens(11, 4)}, ErrQueueFull},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := b.Add(t0, c.it); !errors.Is(err, c.want) {
				t.Fatalf("Add = %v, want %v", err, c.want)
			}
		})
	}
	if err := b.Add(t0, Item{ID: 9, Rows: 1, SeqLens: []int{4}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(t0, Item{ID: 9, Rows: 1, SeqLens: []int{4}}); !errors.Is(err, ErrInvalidItem) {
		t.Fatalf("duplicate ID: %v", err)
	}
	if items, rows := b.Len(); items != 1 || rows != 1 {
		t.Fatalf("Len = %d, %d after rejected adds", items, rows)
	}
}

func TestNewRejectsForeignCostModel(t *testing.T) {
	small := seqSpec([4]int64{1, 16, 1, 128})
	cost := syntheticCost(t, small, time.Microsecond, time.Microsecond, time.Nanosecond, 0)
	if _, err := New(seqSpec([4]int64{1, 64, 1, 512}), cost, Config{}); !errors.Is(err, ErrCostMismatch) {
		t.Fatalf("New with a model of another engine: %v", err)
	}
	two := seqSpec([4]int64{1, 16, 1, 128}, [4]int64{1, 16, 64, 512})
	if _, err := New(two, cost, Config{}); !errors.Is(err, ErrCostMismatch) {
		t.Fatalf("New with a model of fewer profiles: %v", err)
	}
}

func TestSplitsLargeItemInOrder(t *testing.T) {
	b := newTestBatcher(t, Config{})
	if err := b.Add(t0, Item{ID: 7, Rows: 150, SeqLens: lens(150, 32)}); err != nil {
		t.Fatal(err)
	}
	plans := drain(t, b, t0)
	if len(plans) != 3 {
		t.Fatalf("150 rows in %d plans, want 3 (max batch 64)", len(plans))
	}
	next := 0
	for _, p := range plans {
		if p.Batch > 64 {
			t.Fatalf("batch %d exceeds the profile max", p.Batch)
		}
		for _, s := range p.Slots {
			if s.ItemRow != next {
				t.Fatalf("rows of one length are not taken in order: slot %+v after row %d", s, next)
			}
			next += s.Rows
		}
	}
	if next != 150 {
		t.Fatalf("planned %d of 150 rows", next)
	}
}

func TestSimilarLengthsTravelTogether(t *testing.T) {
	b := newTestBatcher(t, Config{})
	// Two items, each half short and half long rows, interleaved.
	for id := uint64(1); id <= 2; id++ {
		ls := make([]int, 64)
		for i := range ls {
			ls[i] = 16
			if i%2 == 1 {
				ls[i] = 480
			}
		}
		if err := b.Add(t0, Item{ID: id, Rows: 64, SeqLens: ls}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range drain(t, b, t0) {
		if pad := p.Padding(); pad > 0.1 {
			t.Fatalf("plan seq %d rows %d has padding %.2f; short and long rows were mixed", p.Seq, p.Rows, pad)
		}
	}
}

func TestBucketsAreHonoured(t *testing.T) {
	buckets := []int{64, 128, 512}
	b := newTestBatcher(t, Config{Buckets: buckets, MaxPadding: 1})
	if got := b.Buckets(); !slices.Equal(got, buckets) {
		t.Fatalf("Buckets = %v", got)
	}
	if err := b.Add(t0, Item{ID: 1, Rows: 5, SeqLens: []int{3, 70, 64, 200, 512}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range drain(t, b, t0) {
		if !slices.Contains(buckets, p.Seq) {
			t.Fatalf("plan padded to %d, not a bucket", p.Seq)
		}
	}
}

func TestPriorityGoesFirst(t *testing.T) {
	b := newTestBatcher(t, Config{MaxDelay: time.Millisecond}, [4]int64{1, 4, 1, 512})
	if err := b.Add(t0, Item{ID: 1, Rows: 4, SeqLens: lens(4, 40)}); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(t0.Add(time.Microsecond), Item{ID: 2, Rows: 4, SeqLens: lens(4, 40), Priority: 1}); err != nil {
		t.Fatal(err)
	}
	p, ok := b.Next(t0.Add(5 * time.Millisecond))
	if !ok {
		t.Fatal("no plan with both items due")
	}
	if len(p.Slots) != 1 || p.Slots[0].Item != 2 {
		t.Fatalf("first plan %+v, want the priority-1 item 2", p.Slots)
	}
}

func TestEarliestDeadlineFirst(t *testing.T) {
	b := newTestBatcher(t, Config{MaxDelay: time.Millisecond}, [4]int64{1, 4, 1, 512})
	if err := b.Add(t0, Item{ID: 1, Rows: 4, SeqLens: lens(4, 40), Priority: 5}); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(t0, Item{ID: 2, Rows: 4, SeqLens: lens(4, 40), Deadline: t0.Add(3 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(1500 * time.Microsecond)
	p, ok := b.Next(now)
	if !ok || p.Slots[0].Item != 2 {
		t.Fatalf("plan %+v ok=%v, want the deadline item 2 first", p.Slots, ok)
	}
	if end := now.Add(p.Cost); end.After(t0.Add(3 * time.Millisecond)) {
		t.Fatalf("deadline item planned to end at %v, after its deadline", end.Sub(t0))
	}
}

func TestExpiredNeverRuns(t *testing.T) {
	b := newTestBatcher(t, Config{})
	// Far shorter than any batch takes.
	if err := b.Add(t0, Item{ID: 1, Rows: 64, SeqLens: lens(64, 500), Deadline: t0.Add(10 * time.Microsecond)}); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(t0, Item{ID: 2, Rows: 1, SeqLens: []int{10}, Deadline: t0.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	for _, p := range drain(t, b, t0) {
		for _, s := range p.Slots {
			if s.Item == 1 {
				t.Fatal("an item that cannot meet its deadline was planned")
			}
		}
	}
	if got := b.Expired(t0); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("Expired = %v, want [1]", got)
	}
	if got := b.Expired(t0); len(got) != 0 {
		t.Fatalf("Expired repeats %v", got)
	}
}

func TestWaitsForCompanyThenGoes(t *testing.T) {
	b := newTestBatcher(t, Config{MaxDelay: 10 * time.Millisecond})
	if err := b.Add(t0, Item{ID: 1, Rows: 1, SeqLens: []int{8}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Next(t0); ok {
		t.Fatal("a lone short row went at once; fixed cost dominates it and MaxDelay allows waiting")
	}
	w, ok := b.NextWakeup()
	if !ok || !w.After(t0) || w.After(t0.Add(10*time.Millisecond)) {
		t.Fatalf("NextWakeup = %v, %v; want within MaxDelay", w.Sub(t0), ok)
	}
	if _, ok := b.Next(w.Add(-time.Nanosecond)); ok {
		t.Fatal("planned before the wakeup time")
	}
	if p, ok := b.Next(w); !ok || p.Rows != 1 {
		t.Fatalf("at the wakeup: plan %+v ok=%v", p, ok)
	}
	if _, ok := b.NextWakeup(); ok {
		t.Fatal("wakeup with an empty queue")
	}
}

func TestRemove(t *testing.T) {
	b := newTestBatcher(t, Config{})
	for id := uint64(1); id <= 2; id++ {
		if err := b.Add(t0, Item{ID: id, Rows: 3, SeqLens: lens(3, 20)}); err != nil {
			t.Fatal(err)
		}
	}
	if !b.Remove(1) || b.Remove(1) {
		t.Fatal("Remove should report the item once")
	}
	for _, p := range drain(t, b, t0) {
		for _, s := range p.Slots {
			if s.Item == 1 {
				t.Fatal("removed item planned")
			}
		}
	}
}

func TestPaddingCap(t *testing.T) {
	b := newTestBatcher(t, Config{MaxPadding: 0.05})
	if err := b.Add(t0, Item{ID: 1, Rows: 6, SeqLens: []int{10, 200, 30, 400, 12, 90}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range drain(t, b, t0) {
		if len(p.Slots) > 1 && p.Padding() > 0.05 {
			t.Fatalf("plan of rows %v padded to %d: padding %.2f over the cap", p.Lens, p.Seq, p.Padding())
		}
	}
}

func TestNoSequenceDimension(t *testing.T) {
	spec := trt.Spec{
		Inputs:   []trt.TensorDesc{{Name: "x", DType: trt.Float32, Shape: trt.Shape{-1, 4}}},
		Outputs:  []trt.TensorDesc{{Name: "y", DType: trt.Float32, Shape: trt.Shape{-1, 2}}},
		Profiles: []trt.Profile{{Min: map[string]trt.Shape{"x": {2, 4}}, Max: map[string]trt.Shape{"x": {8, 4}}}},
	}
	b, err := New(spec, syntheticCost(t, spec, 50*time.Microsecond, time.Microsecond, 0, 0), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if b.Buckets() != nil {
		t.Fatal("buckets without a sequence dimension")
	}
	if err := b.Add(t0, Item{ID: 1, Rows: 1, SeqLens: []int{3}}); !errors.Is(err, ErrInvalidItem) {
		t.Fatalf("lengths for a model without a sequence dim: %v", err)
	}
	if err := b.Add(t0, Item{ID: 1, Rows: 11}); err != nil {
		t.Fatal(err)
	}
	var rows int
	for _, p := range drain(t, b, t0) {
		if p.Seq != 0 || p.Lens != nil || p.Batch < 2 || p.Batch > 8 || p.Rows > p.Batch {
			t.Fatalf("plan %+v", p)
		}
		rows += p.Rows
	}
	if rows != 11 {
		t.Fatalf("planned %d rows of 11", rows)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{MaxDelay: -1},
		{PadMultiple: -2},
		{Buckets: []int{8, 4}},
		{Buckets: []int{0, 4}},
		{MaxPadding: 1.5},
		{Masks: []string{"m"}, Lengths: []string{"m"}},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
	spec := seqSpec([4]int64{1, 8, 1, 64})
	cost := syntheticCost(t, spec, time.Microsecond, time.Microsecond, time.Nanosecond, 0)
	for _, c := range []Config{
		{Masks: []string{"nope"}},
		{Masks: []string{"x"}, Lengths: []string{"mask"}},
		{PadValues: map[string][]byte{"x": {1, 2}}},
	} {
		if _, err := New(spec, cost, c); err == nil {
			t.Errorf("New with %+v = nil error", c)
		}
	}
}
