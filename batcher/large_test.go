package batcher

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestLargeRequestsFromClassLists checks what planning reads from the
// class lists instead of scanning a request's rows: while large requests
// of ragged rows (some with deadlines) are planned batch by batch, every
// queued request's largest remaining class (maxClass) and its first rows
// of each class (firstRows) match a scan of its rows.
func TestLargeRequestsFromClassLists(t *testing.T) {
	b := newTestBatcher(t, Config{MaxQueueRows: 1 << 16})
	rng := rand.New(rand.NewPCG(11, 12))
	now := t0
	id := uint64(0)
	add := func() {
		id++
		n := 65 + rng.IntN(3000)
		it := Item{ID: id, Rows: n, SeqLens: make([]int, n)}
		for i := range it.SeqLens {
			it.SeqLens[i] = min(512, 1+int(rng.ExpFloat64()*60))
		}
		if rng.IntN(3) == 0 {
			it.Deadline = now.Add(time.Duration(50+rng.IntN(500)) * time.Millisecond)
		}
		if err := b.Add(now, it); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		add()
	}
	plans := 0
	for plans < 600 {
		now = now.Add(200 * time.Microsecond)
		b.Expired(now)
		if _, ok := b.Next(now); !ok {
			if _, ok := b.Flush(now); !ok {
				break
			}
		}
		plans++
		if _, q := b.Len(); q < 4000 && id < 40 {
			add()
		}
		for _, x := range b.items {
			want, left := 0, false
			for r := range x.rows {
				if !x.taken[r] {
					want, left = max(want, x.ref(r).class()), true
				}
			}
			if !left {
				continue
			}
			if got := b.maxClass(x); got != want {
				t.Fatalf("plan %d, item %d: maxClass %d, its remaining rows' largest class %d", plans, x.id, got, want)
			}
			k := rng.IntN(want + 1)
			n := 1 + rng.IntN(70)
			var scan []rowRef
			for r := range x.rows {
				if !x.taken[r] && x.ref(r).class() == k && len(scan) < n {
					scan = append(scan, x.ref(r))
				}
			}
			if got := b.firstRows(nil, x, k, n); !slices.Equal(got, scan) {
				t.Fatalf("plan %d, item %d: firstRows(class %d, %d) = %d rows, a scan finds %d", plans, x.id, k, n, len(got), len(scan))
			}
		}
	}
	if plans < 100 {
		t.Fatalf("only %d plans", plans)
	}
}
