package batcher

import (
	"cmp"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// TestSortedListMatchesASortedSlice drives a sortedList and a plain
// sorted slice with the same random inserts (in order and out of order,
// with duplicates), front pops and run removals, and compares their
// contents after every step, across chunk splits and emptied chunks.
func TestSortedListMatchesASortedSlice(t *testing.T) {
	type entry struct{ key, id int }
	order := func(a, b entry) int {
		if c := cmp.Compare(a.key, b.key); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	}
	rng := rand.New(rand.NewPCG(7, 9))
	l := newSortedList(order)
	var ref []entry
	id := 0
	check := func(step int) {
		t.Helper()
		var got []entry
		for c := (cursor{}); l.valid(c); c = l.next(c) {
			got = append(got, l.at(c))
		}
		if l.Len() != len(ref) || !slices.Equal(got, ref) {
			t.Fatalf("step %d: list has %d entries (Len %d), want %d; equal=%v", step, len(got), l.Len(), len(ref), slices.Equal(got, ref))
		}
		for _, ch := range l.chunks {
			if len(ch) == 0 || len(ch) > chunkCap {
				t.Fatalf("step %d: chunk of %d entries", step, len(ch))
			}
		}
	}
	for step := range 60000 {
		op := rng.IntN(1000)
		switch {
		case op < 750: // insert, mostly at the end
			key := step
			if rng.IntN(3) == 0 {
				key = rng.IntN(step + 1)
			}
			id++
			e := entry{key, id}
			l.insert(e)
			i, _ := slices.BinarySearchFunc(ref, e, order)
			ref = slices.Insert(ref, i, e)
		case op < 997: // pop an entry or two off the front
			n := rng.IntN(3)
			k := 0
			l.popFrontWhile(func(entry) bool { k++; return k <= n })
			ref = ref[min(n, len(ref)):]
		default: // remove a run starting at a random entry
			if len(ref) == 0 {
				continue
			}
			i := rng.IntN(len(ref))
			n := 1 + rng.IntN(700)
			end := min(i+n, len(ref))
			stop := entry{}
			if end < len(ref) {
				stop = ref[end]
			}
			last := end < len(ref)
			l.removeRun(ref[i], func(e entry) bool { return !last || order(e, stop) < 0 })
			ref = slices.Delete(ref, i, end)
		}
		if step%64 == 0 || op >= 997 {
			check(step)
		}
	}
}

// TestTimeGoingBackwardsReevaluatesDueItems checks that items judged due
// at a later time are not treated as due when a caller then passes an
// earlier time: the batcher answers as a fresh one given the same items
// would.
func TestTimeGoingBackwardsReevaluatesDueItems(t *testing.T) {
	build := func() *Batcher {
		b := newTestBatcher(t, Config{MaxDelay: 5 * time.Millisecond})
		for id, l := range []int{8, 500, 9} {
			if err := b.Add(t0, Item{ID: uint64(id + 1), Rows: 1, SeqLens: []int{l}}); err != nil {
				t.Fatal(err)
			}
		}
		return b
	}
	early, late := t0.Add(time.Millisecond), t0.Add(6*time.Millisecond)
	moved := build()
	moved.Expired(late)
	if w, ok := moved.NextWakeup(); !ok || w.After(late) {
		t.Fatalf("wakeup %v %v at %v: the items are due", w, ok, late)
	}
	fresh := build()
	p1, ok1 := moved.Next(early)
	p2, ok2 := fresh.Next(early)
	if ok1 != ok2 || !reflect.DeepEqual(p1, p2) {
		t.Fatalf("after a later time: %v %+v; fresh: %v %+v", ok1, p1, ok2, p2)
	}
	w1, wok1 := moved.NextWakeup()
	w2, wok2 := fresh.NextWakeup()
	if wok1 != wok2 || !w1.Equal(w2) {
		t.Fatalf("wakeup after a later time %v %v; fresh %v %v", w1, wok1, w2, wok2)
	}
}
