package batcher

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/trt"
)

// itemData is a test item with recognizable values: position s of row r
// of item id holds x = [id, r, s, 0.5, ...].
type itemData struct {
	Item
	x   []byte
	off []int32
}

func makeItem(id uint64, lens []int, arrival, deadline time.Time, prio int) itemData {
	d := itemData{Item: Item{ID: id, Rows: len(lens), SeqLens: lens, Arrival: arrival, Deadline: deadline, Priority: prio}}
	d.off = make([]int32, len(lens)+1)
	for r, n := range lens {
		d.off[r+1] = d.off[r] + int32(n)
	}
	d.x = make([]byte, int(d.off[len(lens)])*16*4)
	for r, n := range lens {
		for s := range n {
			base := (int(d.off[r]) + s) * 16
			putF32(d.x, base, float32(id))
			putF32(d.x, base+1, float32(r))
			putF32(d.x, base+2, float32(s))
			for c := 3; c < 16; c++ {
				putF32(d.x, base+c, 0.5)
			}
		}
	}
	return d
}

// standInEngine computes, per batch row b, y = [x[b,0,0], x[b,0,1],
// Σ mask, #positions with mask=1 and x[s,2]=s, Σ x[·,0] at mask=0,
// #positions with mask=1 and x[s,0]≠x[0,0], 0, 0]. It is a test stand-in
// that makes leaks and misplacements visible, not a model.
func standInEngine(xs, mask []byte, batch, seq int) []byte {
	y := make([]byte, batch*8*4)
	for b := range batch {
		id := f32(xs, b*seq*16)
		var sum, okPos, padSum, wrong float32
		for s := range seq {
			m := f32(mask, b*seq+s)
			v0 := f32(xs, (b*seq+s)*16)
			v2 := f32(xs, (b*seq+s)*16+2)
			sum += m
			if m == 1 && v2 == float32(s) {
				okPos++
			}
			if m == 0 {
				padSum += v0
			}
			if m == 1 && v0 != id {
				wrong++
			}
		}
		out := []float32{id, f32(xs, b*seq*16+1), sum, okPos, padSum, wrong, 0, 0}
		for i, v := range out {
			putF32(y, b*8+i, v)
		}
	}
	return y
}

type simOutcome struct {
	plans     []Plan
	expired   []uint64
	completed map[uint64]time.Time
	results   map[uint64][]Result
}

// simulate feeds items (sorted by arrival) to a batcher driving one
// stand-in engine whose latency equals the plan's predicted cost, the way
// a worker does, and checks every plan as it goes.
func simulate(t *testing.T, spec trt.Spec, cost *CostModel, cfg Config, items []itemData) simOutcome {
	t.Helper()
	b, err := New(spec, cost, cfg)
	if err != nil {
		t.Fatal(err)
	}
	asm, err := NewAssembler(spec)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[uint64]*itemData{}
	for i := range items {
		byID[items[i].ID] = &items[i]
	}
	out := simOutcome{completed: map[uint64]time.Time{}, results: map[uint64][]Result{}}
	seen := map[uint64][]int{}
	ins := b.Inputs()
	now := items[0].Arrival
	next := 0
	var busyUntil time.Time
	var running *Plan
	finish := func() {
		p := *running
		running = nil
		bufs := make([][]byte, len(ins))
		for i, in := range ins {
			bufs[i] = make([]byte, in.Size(p))
			err := in.Gather(bufs[i], p, func(id uint64) (Rows, bool) {
				d, ok := byID[id]
				if !ok {
					return Rows{}, false
				}
				if in.Name == "x" {
					return Rows{Data: d.x, Offsets: d.off}, true
				}
				return Rows{}, false
			})
			if err != nil {
				t.Fatalf("gather: %v", err)
			}
		}
		y := standInEngine(bufs[0], bufs[1], p.Batch, p.Seq)
		done, err := asm.Scatter(p, []trt.Tensor{{Name: "y", DType: trt.Float32, Shape: trt.Shape{int64(p.Batch), 8}, Data: y}})
		if err != nil {
			t.Fatalf("scatter: %v", err)
		}
		for _, id := range done {
			res, ok := asm.Take(id)
			if !ok {
				t.Fatalf("item %d complete but Take failed", id)
			}
			out.completed[id] = now
			out.results[id] = res
		}
	}
	for steps := 0; ; steps++ {
		if steps > 1_000_000 {
			t.Fatal("simulation does not terminate")
		}
		if running != nil && !now.Before(busyUntil) {
			finish()
		}
		for next < len(items) && !items[next].Arrival.After(now) {
			it := items[next].Item
			if err := b.Add(now, it); err != nil {
				t.Fatalf("add %d: %v", it.ID, err)
			}
			if err := asm.Add(it); err != nil {
				t.Fatal(err)
			}
			next++
		}
		for _, id := range b.Expired(now) {
			out.expired = append(out.expired, id)
			asm.Drop(id)
		}
		if running == nil {
			if p, ok := b.Next(now); ok {
				checkPlan(t, spec, p, byID, seen)
				maxPad := cfg.MaxPadding
				if maxPad == 0 {
					maxPad = DefaultMaxPadding
				}
				if p.Padding() > maxPad+1e-9 && p.Slots[0].Item != p.Slots[len(p.Slots)-1].Item {
					t.Fatalf("plan of several items pads %.3f, cap %.3f", p.Padding(), maxPad)
				}
				out.plans = append(out.plans, p)
				running = &out.plans[len(out.plans)-1]
				busyUntil = now.Add(p.Cost)
				continue // engine starts; re-evaluate events
			}
			for _, id := range b.Expired(now) {
				out.expired = append(out.expired, id)
				asm.Drop(id)
			}
		}
		// Next event.
		var ev []time.Time
		if next < len(items) {
			ev = append(ev, items[next].Arrival)
		}
		if running != nil {
			ev = append(ev, busyUntil)
		} else if w, ok := b.NextWakeup(); ok {
			if !w.After(now) {
				t.Fatalf("wakeup %v not after now %v with an idle engine", w, now)
			}
			ev = append(ev, w)
		} else if _, rows := b.Len(); rows > 0 {
			t.Fatalf("%d rows queued but no wakeup", rows)
		}
		if len(ev) == 0 {
			break
		}
		now = slices.MinFunc(ev, func(a, b time.Time) int { return a.Compare(b) })
	}
	// Every item either completed or expired; rows of completed items ran
	// exactly once, rows of expired items at most once.
	exp := map[uint64]bool{}
	for _, id := range out.expired {
		if exp[id] {
			t.Fatalf("item %d expired twice", id)
		}
		exp[id] = true
	}
	for _, d := range items {
		_, done := out.completed[d.ID]
		if done == exp[d.ID] {
			t.Fatalf("item %d: completed=%v expired=%v", d.ID, done, exp[d.ID])
		}
		for r, c := range seen[d.ID] {
			if c > 1 || (done && c != 1) {
				t.Fatalf("item %d row %d planned %d times", d.ID, r, c)
			}
		}
		if !done {
			continue
		}
		// Results in request order, no padding leaked.
		y := out.results[d.ID][0]
		if !y.Shape.Equal(trt.Shape{int64(d.Rows), 8}) {
			t.Fatalf("item %d result shape %v", d.ID, y.Shape)
		}
		for r, n := range d.SeqLens {
			got := []float32{f32(y.Data, r*8), f32(y.Data, r*8+1), f32(y.Data, r*8+2), f32(y.Data, r*8+3), f32(y.Data, r*8+4), f32(y.Data, r*8+5)}
			want := []float32{float32(d.ID), float32(r), float32(n), float32(n), 0, 0}
			if !slices.Equal(got, want) {
				t.Fatalf("item %d row %d: engine saw %v, want %v", d.ID, r, got, want)
			}
		}
		if !d.Deadline.IsZero() && out.completed[d.ID].After(d.Deadline) {
			t.Fatalf("item %d completed at %v after its deadline %v", d.ID, out.completed[d.ID], d.Deadline)
		}
	}
	return out
}

func checkPlan(t *testing.T, spec trt.Spec, p Plan, items map[uint64]*itemData, seen map[uint64][]int) {
	t.Helper()
	prof := spec.Profiles[p.Profile]
	for _, in := range spec.Inputs {
		sh := in.Shape.Clone()
		sh[0], sh[1] = int64(p.Batch), int64(p.Seq)
		if !prof.Contains(in.Name, sh) {
			t.Fatalf("plan shape %v of %q outside profile %d", sh, in.Name, p.Profile)
		}
	}
	if p.Rows < 1 || p.Rows > p.Batch || len(p.Lens) != p.Batch {
		t.Fatalf("plan rows %d batch %d lens %d", p.Rows, p.Batch, len(p.Lens))
	}
	row := 0
	for _, s := range p.Slots {
		if s.BatchRow != row || s.Rows < 1 {
			t.Fatalf("slots not contiguous: %+v", p.Slots)
		}
		d := items[s.Item]
		if seen[s.Item] == nil {
			seen[s.Item] = make([]int, d.Rows)
		}
		for j := range s.Rows {
			seen[s.Item][s.ItemRow+j]++
			n := d.SeqLens[s.ItemRow+j]
			if p.Lens[s.BatchRow+j] != n || n > p.Seq {
				t.Fatalf("batch row %d: len %d, item row len %d, seq %d", s.BatchRow+j, p.Lens[s.BatchRow+j], n, p.Seq)
			}
		}
		row += s.Rows
	}
	if row != p.Rows {
		t.Fatalf("slots cover %d rows, plan says %d", row, p.Rows)
	}
	for br := p.Rows; br < p.Batch; br++ {
		if p.Lens[br] != 0 {
			t.Fatalf("padding row %d has length %d", br, p.Lens[br])
		}
	}
}

// genItems draws a bursty arrival trace: sizes 1–maxRows, lognormal-ish
// lengths clipped to [1, maxLen], some deadlines and priorities.
func genItems(seed uint64, n, maxRows, maxLen int, deadlineFrac float64, tight time.Duration) []itemData {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var out []itemData
	at := t0
	for i := range n {
		gap := time.Duration(rng.ExpFloat64() * float64(300*time.Microsecond))
		if rng.IntN(10) == 0 {
			gap = 0 // burst
		}
		at = at.Add(gap)
		rows := 1 + rng.IntN(maxRows)
		lens := make([]int, rows)
		for r := range lens {
			v := int(24 * (1 + rng.ExpFloat64()*rng.ExpFloat64()*2))
			lens[r] = min(max(v, 1), maxLen)
		}
		var dl time.Time
		if rng.Float64() < deadlineFrac {
			dl = at.Add(time.Duration(rng.Int64N(int64(tight))))
		}
		out = append(out, makeItem(uint64(i+1), lens, at, dl, rng.IntN(3)-1))
	}
	return out
}

func TestPropertiesSingleProfile(t *testing.T) {
	spec := seqSpec([4]int64{1, 64, 1, 512})
	cost := syntheticCost(t, spec, 200*time.Microsecond, 5*time.Microsecond, 100*time.Nanosecond, 0)
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			items := genItems(seed, 300, 100, 512, 0.3, 30*time.Millisecond)
			a := simulate(t, spec, cost, Config{MaxDelay: 2 * time.Millisecond, Masks: []string{"mask"}}, items)
			if len(a.plans) == 0 {
				t.Fatal("no plans")
			}
			// Deterministic: the same inputs and clock give the same plans.
			b := simulate(t, spec, cost, Config{MaxDelay: 2 * time.Millisecond, Masks: []string{"mask"}}, genItems(seed, 300, 100, 512, 0.3, 30*time.Millisecond))
			if !reflect.DeepEqual(a.plans, b.plans) || !slices.Equal(a.expired, b.expired) {
				t.Fatal("two runs on the same trace planned differently")
			}
		})
	}
}

func TestPropertiesTwoProfiles(t *testing.T) {
	// Short sequences may use big batches; long ones only small batches.
	spec := seqSpec([4]int64{1, 64, 1, 128}, [4]int64{2, 16, 64, 512})
	cost := syntheticCost(t, spec, 150*time.Microsecond, 4*time.Microsecond, 80*time.Nanosecond, 300*time.Microsecond)
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			items := genItems(100+seed, 200, 80, 512, 0.2, 50*time.Millisecond)
			out := simulate(t, spec, cost, Config{MaxDelay: 3 * time.Millisecond, Masks: []string{"mask"}}, items)
			used := map[int]bool{}
			for _, p := range out.plans {
				used[p.Profile] = true
			}
			if !used[0] || !used[1] {
				t.Fatalf("profiles used %v; the trace needs both", used)
			}
		})
	}
}
