package batcher

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jetinfer/jetinfer/trt"
)

// RunFunc runs the real engine once on a batch of batch rows padded to
// sequence length seq (0 without a sequence dimension) under profile and
// returns how long the engine took. The worker supplies it; Measure never
// touches an engine itself.
type RunFunc func(ctx context.Context, profile, batch, seq int) (time.Duration, error)

// Grid says which shapes Measure times.
type Grid struct {
	// Profiles lists, per profile in profile order, the batch sizes and
	// sequence lengths to time; the latency of every pair is measured.
	// Each axis must span the profile's [min, max] range.
	Profiles []ProfileGrid
	// Warmup runs per shape are discarded (default 1).
	Warmup int
	// Reps timed runs per shape, taken in Reps passes over the whole
	// grid; the median is kept (default 9).
	Reps int
}

// ProfileGrid is the measured shapes of one profile.
type ProfileGrid struct {
	Batches []int
	Seqs    []int // {0} for engines without a sequence dimension
}

// Points is the number of shapes the grid times, all profiles together.
func (g Grid) Points() int {
	n := 0
	for _, p := range g.Profiles {
		n += len(p.Batches) * len(p.Seqs)
	}
	return n
}

// DefaultGrid returns a modest grid for spec: per profile, batch sizes at
// powers of two plus the profile's min and max, and sequence lengths on a
// geometric ladder with ratio about √2 from the profile's min to its max.
// maxPoints > 0 thins the sequence ladder so that no profile times more
// than maxPoints shapes (the ends are always kept).
func DefaultGrid(spec trt.Spec, maxPoints int) (Grid, error) {
	l, err := analyze(spec, Config{}.withDefaults())
	if err != nil {
		return Grid{}, fmt.Errorf("analyzing engine spec: %w", err)
	}
	g := Grid{Warmup: 1, Reps: 9}
	for _, r := range l.profiles {
		if !r.usable {
			g.Profiles = append(g.Profiles, ProfileGrid{Batches: []int{1}, Seqs: []int{max(r.smin, 0)}})
			continue
		}
		var pg ProfileGrid
		pg.Batches = ladder(r.bmin, r.bmax, 2)
		if l.hasSeq {
			pg.Seqs = ladder(r.smin, r.smax, 1.41421356)
		} else {
			pg.Seqs = []int{0}
		}
		for maxPoints > 0 && len(pg.Batches)*len(pg.Seqs) > maxPoints && len(pg.Seqs) > 2 {
			pg.Seqs = thin(pg.Seqs)
		}
		g.Profiles = append(g.Profiles, pg)
	}
	return g, nil
}

// ladder returns lo, hi and the geometric points between them (rounded;
// for ratio 2 these are powers of two).
func ladder(lo, hi int, ratio float64) []int {
	out := []int{lo}
	for x := 1.0; ; x *= ratio {
		v := int(x + 0.5)
		if ratio == 2 {
			v = int(x)
		}
		if v >= hi {
			break
		}
		if v > out[len(out)-1] {
			out = append(out, v)
		}
	}
	if hi > out[len(out)-1] {
		out = append(out, hi)
	}
	return out
}

// thin drops every second interior point, keeping both ends.
func thin(xs []int) []int {
	out := []int{xs[0]}
	for i := 2; i < len(xs)-1; i += 2 {
		out = append(out, xs[i])
	}
	return append(out, xs[len(xs)-1])
}

// Measure times the engine through run on every shape of grid and returns
// the fitted cost model. For engines with several profiles it also times
// each profile switch: the first batch under profile p right after a batch
// under q, minus p's steady latency at the same shape.
//
// Measure calls run sequentially from the calling goroutine and stops at
// the first error or when ctx is done.
func Measure(ctx context.Context, run RunFunc, grid Grid) (*CostModel, error) {
	if len(grid.Profiles) == 0 {
		return nil, fmt.Errorf("measuring: grid has no profiles")
	}
	warm, reps := grid.Warmup, grid.Reps
	if warm <= 0 {
		warm = 1
	}
	if reps <= 0 {
		reps = 9
	}
	// Time every shape of a profile once per pass, over reps passes, so
	// that a slow spell of the machine spreads over many shapes instead of
	// skewing a few; keep each shape's median.
	type point struct{ p, i, j, b, s int }
	var points []point
	costs := make([]ProfileCost, len(grid.Profiles))
	samples := make([][][][]time.Duration, len(grid.Profiles))
	for p, pg := range grid.Profiles {
		costs[p] = ProfileCost{Batches: pg.Batches, Seqs: pg.Seqs, Latency: make([][]time.Duration, len(pg.Batches))}
		samples[p] = make([][][]time.Duration, len(pg.Batches))
		for i, b := range pg.Batches {
			costs[p].Latency[i] = make([]time.Duration, len(pg.Seqs))
			samples[p][i] = make([][]time.Duration, len(pg.Seqs))
			for j, s := range pg.Seqs {
				points = append(points, point{p, i, j, b, s})
			}
		}
	}
	for _, pt := range points {
		for range warm {
			if _, err := run(ctx, pt.p, pt.b, pt.s); err != nil {
				return nil, fmt.Errorf("warming profile %d batch %d seq %d: %w", pt.p, pt.b, pt.s, err)
			}
		}
	}
	// Shapes follow each other in a shuffled order, as batches of varying
	// shapes do in service (a backend may pay for a change of shape), but
	// profile by profile: in service the batcher rarely switches profiles,
	// and the switch cost is measured on its own below.
	rng := rand.New(rand.NewPCG(uint64(len(points)), uint64(reps)))
	for p := range grid.Profiles {
		var order []point
		for _, pt := range points {
			if pt.p == p {
				order = append(order, pt)
			}
		}
		for range reps {
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for _, pt := range order {
				if err := ctx.Err(); err != nil {
					return nil, fmt.Errorf("measuring: %w", err)
				}
				d, err := run(ctx, pt.p, pt.b, pt.s)
				if err != nil {
					return nil, fmt.Errorf("timing profile %d batch %d seq %d: %w", pt.p, pt.b, pt.s, err)
				}
				samples[pt.p][pt.i][pt.j] = append(samples[pt.p][pt.i][pt.j], max(d, time.Nanosecond))
			}
		}
	}
	for _, pt := range points {
		costs[pt.p].Latency[pt.i][pt.j] = median(samples[pt.p][pt.i][pt.j])
	}
	var sw [][]time.Duration
	if n := len(grid.Profiles); n > 1 {
		sw = make([][]time.Duration, n)
		for q := range n {
			sw[q] = make([]time.Duration, n)
			for p := range n {
				if p == q {
					continue
				}
				d, err := measureSwitch(ctx, run, grid, costs, q, p, reps)
				if err != nil {
					return nil, err
				}
				sw[q][p] = d
			}
		}
	}
	m, err := NewCostModel(costs, sw)
	if err != nil {
		return nil, fmt.Errorf("building cost model: %w", err)
	}
	return m, nil
}

// measureSwitch times profile p's middle shape right after a run of q.
func measureSwitch(ctx context.Context, run RunFunc, grid Grid, costs []ProfileCost, q, p, reps int) (time.Duration, error) {
	mid := func(g ProfileGrid) (int, int, int, int) {
		i, j := len(g.Batches)/2, len(g.Seqs)/2
		return g.Batches[i], g.Seqs[j], i, j
	}
	qb, qs, _, _ := mid(grid.Profiles[q])
	pb, ps, pi, pj := mid(grid.Profiles[p])
	ts := make([]time.Duration, 0, reps)
	for range reps {
		if _, err := run(ctx, q, qb, qs); err != nil {
			return 0, fmt.Errorf("timing switch %d→%d: %w", q, p, err)
		}
		d, err := run(ctx, p, pb, ps)
		if err != nil {
			return 0, fmt.Errorf("timing switch %d→%d: %w", q, p, err)
		}
		ts = append(ts, d)
	}
	return max(median(ts)-costs[p].Latency[pi][pj], 0), nil
}

func median(ts []time.Duration) time.Duration {
	s := slices.Clone(ts)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
