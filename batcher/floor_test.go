package batcher

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// TestDeadlineFloorBoundsTheDemandPass runs random traffic (deadline
// items near, far and shared, inserted out of order; batches taken;
// items expiring) and checks after every step that dlFloor, when set, is
// at most the least deadline − margin·(demand up to it) over the queued
// deadline items, and that where decide would skip the deadline-demand
// pass on it, the pass finds the same first item and at least that
// slack. Both the skip and the pass must occur.
func TestDeadlineFloorBoundsTheDemandPass(t *testing.T) {
	skipped, passes := 0, 0
	for seed := range 20 {
		b := newTestBatcher(t, Config{})
		rng := rand.New(rand.NewPCG(uint64(seed), 9))
		now := t0
		id := uint64(0)
		for range 400 {
			now = now.Add(time.Duration(rng.IntN(3000)) * time.Microsecond)
			if rng.IntN(10) < 6 {
				id++
				if err := b.Add(now, randomItem(rng, id, now)); err != nil {
					t.Fatal(err)
				}
			} else {
				b.Expired(now)
				if _, ok := b.Next(now); !ok && rng.IntN(2) == 0 {
					b.Flush(now)
				}
			}
			if !b.dlFloorOK {
				continue
			}
			var all float64
			least := int64(math.MaxInt64)
			for c := (cursor{}); b.dl.valid(c); c = b.dl.next(c) {
				x := b.dl.at(c)
				all += x.amort * b.margin
				least = min(least, x.deadline-int64(all))
			}
			if b.dlFloor > least {
				t.Fatalf("seed %d: dlFloor %d above the least deadline less demand %d", seed, b.dlFloor, least)
			}
			if b.dl.Len() == 0 || b.dlFloor-b.now < b.slackCap {
				passes++
				continue
			}
			skipped++
			pr := pressure{slack: math.MaxInt64}
			b.demand(&pr, int64(b.dlAmort*b.margin*(1+1e-6))+1000)
			if pr.d1 != b.dl.at(cursor{}) || pr.slack < b.dlFloor-b.now {
				t.Fatalf("seed %d: skipping the pass would give d1 %p and slack %d; the pass gives %p and %d",
					seed, b.dl.at(cursor{}), b.dlFloor-b.now, pr.d1, pr.slack)
			}
		}
	}
	if skipped == 0 || passes == 0 {
		t.Fatalf("%d steps could skip the pass and %d could not: want both", skipped, passes)
	}
	t.Logf("%d steps could skip the pass, %d could not", skipped, passes)
}

// TestDeadlineFloorChangesNoPlan drives two batchers with the same
// random traffic, one of them made to run the deadline-demand pass on
// every decision (its dlFloor forgotten before each), and checks that
// they return the same plans and expire the same items.
func TestDeadlineFloorChangesNoPlan(t *testing.T) {
	skips := 0
	for seed := range 10 {
		fast, full := newTestBatcher(t, Config{}), newTestBatcher(t, Config{})
		rng := rand.New(rand.NewPCG(uint64(seed), 11))
		now := t0
		id := uint64(0)
		for step := range 600 {
			now = now.Add(time.Duration(rng.IntN(2000)) * time.Microsecond)
			if rng.IntN(10) < 6 {
				id++
				it := randomItem(rng, id, now)
				for _, b := range []*Batcher{fast, full} {
					if err := b.Add(now, it); err != nil {
						t.Fatal(err)
					}
				}
				continue
			}
			full.dlFloorOK = false
			e1, e2 := fast.Expired(now), full.Expired(now)
			if !reflect.DeepEqual(e1, e2) {
				t.Fatalf("seed %d step %d: expired %v with the floor, %v without", seed, step, e1, e2)
			}
			full.dlFloorOK = false
			if fast.dl.Len() > 0 && fast.dlFloorOK && fast.dlFloor-fast.at(now) >= fast.slackCap {
				skips++
			}
			p1, ok1 := fast.Next(now)
			p2, ok2 := full.Next(now)
			if ok1 != ok2 || !reflect.DeepEqual(p1, p2) {
				t.Fatalf("seed %d step %d: plan %+v (%t) with the floor, %+v (%t) without", seed, step, p1, ok1, p2, ok2)
			}
		}
	}
	if skips == 0 {
		t.Fatal("no decision skipped the pass: the test does not reach the floor")
	}
	t.Logf("%d decisions could skip the pass", skips)
}

// randomItem returns an item of 1 to 8 rows of lengths 8 to 207, of
// priority 0 or 1, with no deadline, one 2–50 ms or 1–2 s away, or the
// deadline an hour after t0 that a scoring job's requests share.
func randomItem(rng *rand.Rand, id uint64, now time.Time) Item {
	n := 1 + rng.IntN(8)
	ls := make([]int, n)
	for i := range ls {
		ls[i] = 8 + rng.IntN(200)
	}
	it := Item{ID: id, Rows: n, SeqLens: ls, Priority: rng.IntN(2)}
	switch rng.IntN(5) {
	case 0:
		it.Deadline = now.Add(2*time.Millisecond + time.Duration(rng.Int64N(int64(48*time.Millisecond))))
	case 1:
		it.Deadline = now.Add(time.Second + time.Duration(rng.Int64N(int64(time.Second))))
	case 2:
		it.Deadline = t0.Add(time.Hour)
	}
	return it
}
