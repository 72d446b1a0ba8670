package batcher

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestRatioBoundMatchesEveryRowCount: the bound evaluated at the breaks
// alone equals the largest ratio over every row count, on cost models
// whose slope changes at each grid batch size, with two profiles of
// different batch ranges and a switch cost between them.
func TestRatioBoundMatchesEveryRowCount(t *testing.T) {
	spec := seqSpec([4]int64{1, 64, 1, 512}, [4]int64{8, 48, 1, 128})
	rng := rand.New(rand.NewPCG(7, 11))
	for trial := range 20 {
		g, err := DefaultGrid(spec, 0)
		if err != nil {
			t.Fatal(err)
		}
		var ps []ProfileCost
		for _, pg := range g.Profiles {
			c := ProfileCost{Batches: pg.Batches, Seqs: pg.Seqs}
			lat := time.Duration(5000 + rng.IntN(50000))
			for range pg.Batches {
				var row []time.Duration
				step := time.Duration(1000 + rng.IntN(100000)) // a new slope at every grid size
				lat += step
				for j := range pg.Seqs {
					row = append(row, lat+time.Duration(j)*step/3)
				}
				c.Latency = append(c.Latency, row)
			}
			ps = append(ps, c)
		}
		sw := [][]time.Duration{{0, time.Duration(rng.IntN(40000))}, {time.Duration(rng.IntN(40000)), 0}}
		cost, err := NewCostModel(ps, sw)
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(spec, cost, Config{})
		if err != nil {
			t.Fatal(err)
		}
		for last := -1; last < len(b.l.profiles); last++ {
			for q := range b.l.profiles {
				b.swBuf[q] = float64(b.cost.SwitchCost(last, q))
			}
			for top := range b.classes {
				for a := 0; a <= b.maxN[top]+1; a++ {
					anchor := float64(a) * b.ideal[0]
					want := 0.0
					for n := max(a, 1); n <= b.maxN[top]; n++ {
						c := math.Inf(1)
						for q := range b.l.profiles {
							c = min(c, b.table[q][top][n]+b.swBuf[q])
						}
						if !math.IsInf(c, 1) && c > 0 {
							want = max(want, (anchor+float64(n-a)*b.idealMax[top])/c)
						}
					}
					if got := b.ratioBound(top, a, anchor); math.Abs(got-want) > 1e-12*max(want, 1) {
						t.Fatalf("trial %d, last profile %d, class %d, %d anchor rows: bound %v, want %v (every row count)", trial, last, top, a, got, want)
					}
				}
			}
		}
	}
}
