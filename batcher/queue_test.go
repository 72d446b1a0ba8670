package batcher

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
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
