package batcher

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"
)

// costModelVersion is written into the JSON form; Parse rejects others.
const costModelVersion = 1

// ProfileCost is the measured latency grid of one optimization profile:
// Latency[i][j] is the engine latency of a batch of Batches[i] rows padded
// to sequence length Seqs[j]. Engines without a sequence dimension have
// Seqs == []int{0}.
type ProfileCost struct {
	Batches []int
	Seqs    []int
	Latency [][]time.Duration
}

// CostModel predicts engine latency for a padded batch shape under a
// profile, and the extra cost of switching an execution context from one
// profile to another. It is built by Measure from real engine runs, or
// restored with ParseCostModel from the JSON that MarshalJSON wrote.
//
// Between grid points latency is interpolated bilinearly in (batch, seq);
// beyond the grid it is extrapolated from the last segment. The grid is
// made monotone on construction (a larger batch or a longer sequence never
// predicts less time), which keeps noisy measurements from steering the
// batcher toward absurd shapes.
//
// A CostModel is immutable after construction and safe for concurrent use.
type CostModel struct {
	profiles []ProfileCost
	sw       [][]time.Duration // sw[from][to]
}

// NewCostModel builds a model from measured grids, one per profile in
// profile order, and a switch-cost matrix (nil, or len(profiles) rows of
// len(profiles) durations). Measure is the usual way to get one; this
// constructor serves tests and callers that measure by other means.
func NewCostModel(profiles []ProfileCost, switchCost [][]time.Duration) (*CostModel, error) {
	if len(profiles) == 0 {
		return nil, fmt.Errorf("cost model has no profiles")
	}
	m := &CostModel{profiles: make([]ProfileCost, len(profiles))}
	for i, p := range profiles {
		q, err := checkGrid(p)
		if err != nil {
			return nil, fmt.Errorf("checking profile %d grid: %w", i, err)
		}
		m.profiles[i] = q
	}
	m.sw = make([][]time.Duration, len(profiles))
	for i := range m.sw {
		m.sw[i] = make([]time.Duration, len(profiles))
	}
	if switchCost != nil {
		if len(switchCost) != len(profiles) {
			return nil, fmt.Errorf("switch cost has %d rows for %d profiles", len(switchCost), len(profiles))
		}
		for i, row := range switchCost {
			if len(row) != len(profiles) {
				return nil, fmt.Errorf("switch cost row %d has %d entries for %d profiles", i, len(row), len(profiles))
			}
			for j, d := range row {
				if d < 0 {
					return nil, fmt.Errorf("switch cost %d→%d is negative", i, j)
				}
				if i != j {
					m.sw[i][j] = d
				}
			}
		}
	}
	return m, nil
}

// checkGrid validates a grid and returns a monotone deep copy of it.
func checkGrid(p ProfileCost) (ProfileCost, error) {
	if len(p.Batches) == 0 || len(p.Seqs) == 0 {
		return p, fmt.Errorf("grid has no points")
	}
	for _, axis := range [][]int{p.Batches, p.Seqs} {
		for i, v := range axis {
			if v < 0 || (i > 0 && v <= axis[i-1]) {
				return p, fmt.Errorf("grid axis %v is not strictly ascending and non-negative", axis)
			}
		}
	}
	if len(p.Latency) != len(p.Batches) {
		return p, fmt.Errorf("latency has %d rows for %d batch sizes", len(p.Latency), len(p.Batches))
	}
	q := ProfileCost{Batches: slices.Clone(p.Batches), Seqs: slices.Clone(p.Seqs), Latency: make([][]time.Duration, len(p.Batches))}
	for i, row := range p.Latency {
		if len(row) != len(p.Seqs) {
			return p, fmt.Errorf("latency row %d has %d entries for %d sequence lengths", i, len(row), len(p.Seqs))
		}
		q.Latency[i] = make([]time.Duration, len(row))
		for j, d := range row {
			if d <= 0 {
				return p, fmt.Errorf("latency at batch %d seq %d is not positive", p.Batches[i], p.Seqs[j])
			}
			// Cumulative max along both axes: monotone non-decreasing.
			if i > 0 {
				d = max(d, q.Latency[i-1][j])
			}
			if j > 0 {
				d = max(d, q.Latency[i][j-1])
			}
			q.Latency[i][j] = d
		}
	}
	return q, nil
}

// Profiles returns the number of profiles the model covers.
func (m *CostModel) Profiles() int { return len(m.profiles) }

// Grid returns a copy of profile p's (monotone) measured grid.
func (m *CostModel) Grid(p int) ProfileCost {
	g := m.profiles[p]
	out := ProfileCost{Batches: slices.Clone(g.Batches), Seqs: slices.Clone(g.Seqs), Latency: make([][]time.Duration, len(g.Latency))}
	for i, row := range g.Latency {
		out.Latency[i] = slices.Clone(row)
	}
	return out
}

// Latency predicts the engine latency of a batch of batch rows padded to
// sequence length seq (0 without a sequence dimension) under profile p.
func (m *CostModel) Latency(p, batch, seq int) time.Duration {
	return time.Duration(math.Round(m.latencyNS(p, batch, seq)))
}

func (m *CostModel) latencyNS(p, batch, seq int) float64 {
	g := &m.profiles[p]
	bi, bt := segment(g.Batches, batch)
	si, st := segment(g.Seqs, seq)
	at := func(i, j int) float64 { return float64(g.Latency[i][j]) }
	if len(g.Batches) == 1 && len(g.Seqs) == 1 {
		return at(0, 0)
	}
	if len(g.Batches) == 1 {
		return lerp(at(0, si), at(0, si+1), st)
	}
	if len(g.Seqs) == 1 {
		return lerp(at(bi, 0), at(bi+1, 0), bt)
	}
	lo := lerp(at(bi, si), at(bi, si+1), st)
	hi := lerp(at(bi+1, si), at(bi+1, si+1), st)
	v := lerp(lo, hi, bt)
	return max(v, 1)
}

// segment finds the grid segment [xs[i], xs[i+1]] holding x and x's
// position t in it; t < 0 or t > 1 extrapolates from the end segments.
func segment(xs []int, x int) (int, float64) {
	if len(xs) == 1 {
		return 0, 0
	}
	i, _ := slices.BinarySearch(xs, x)
	i = min(max(i-1, 0), len(xs)-2)
	return i, float64(x-xs[i]) / float64(xs[i+1]-xs[i])
}

func lerp(a, b, t float64) float64 { return a + (b-a)*t }

// SwitchCost is the extra latency of the first batch run under profile to
// on a context that last ran profile from (0 when from == to).
func (m *CostModel) SwitchCost(from, to int) time.Duration {
	if from < 0 || from == to {
		return 0
	}
	return m.sw[from][to]
}

// Fit is a least-squares summary of one profile's grid:
// latency ≈ Base + PerRow·b + PerStep·s + PerRowStep·b·s, in nanoseconds,
// with R2 its coefficient of determination. It is for people (docs,
// logs); predictions use the grid itself.
type Fit struct {
	Base       float64 `json:"base_ns"`
	PerRow     float64 `json:"per_row_ns"`
	PerStep    float64 `json:"per_step_ns"`
	PerRowStep float64 `json:"per_row_step_ns"`
	R2         float64 `json:"r2"`
}

// Fit returns the least-squares summary of profile p.
func (m *CostModel) Fit(p int) Fit {
	g := &m.profiles[p]
	var xs [][4]float64
	var ys []float64
	for i, b := range g.Batches {
		for j, s := range g.Seqs {
			xs = append(xs, [4]float64{1, float64(b), float64(s), float64(b * s)})
			ys = append(ys, float64(g.Latency[i][j]))
		}
	}
	// Drop columns that carry no information (single-point axes).
	use := []int{0}
	if len(g.Batches) > 1 {
		use = append(use, 1)
	}
	if len(g.Seqs) > 1 {
		use = append(use, 2)
	}
	if len(g.Batches) > 1 && len(g.Seqs) > 1 {
		use = append(use, 3)
	}
	coef := leastSquares(xs, ys, use)
	var f Fit
	f.Base, f.PerRow, f.PerStep, f.PerRowStep = coef[0], coef[1], coef[2], coef[3]
	var mean, ssTot, ssRes float64
	for _, y := range ys {
		mean += y
	}
	mean /= float64(len(ys))
	for k, x := range xs {
		pred := coef[0]*x[0] + coef[1]*x[1] + coef[2]*x[2] + coef[3]*x[3]
		ssRes += (ys[k] - pred) * (ys[k] - pred)
		ssTot += (ys[k] - mean) * (ys[k] - mean)
	}
	f.R2 = 1
	if ssTot > 0 {
		f.R2 = 1 - ssRes/ssTot
	}
	return f
}

// leastSquares solves the normal equations for the columns in use and
// returns the four coefficients (zero for unused columns).
func leastSquares(xs [][4]float64, ys []float64, use []int) [4]float64 {
	n := len(use)
	a := make([][]float64, n)
	for r := range a {
		a[r] = make([]float64, n+1)
	}
	for k, x := range xs {
		for r, cr := range use {
			for c, cc := range use {
				a[r][c] += x[cr] * x[cc]
			}
			a[r][n] += x[cr] * ys[k]
		}
	}
	// Gaussian elimination with partial pivoting.
	for c := 0; c < n; c++ {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(a[r][c]) > math.Abs(a[p][c]) {
				p = r
			}
		}
		a[c], a[p] = a[p], a[c]
		if a[c][c] == 0 {
			continue
		}
		for r := 0; r < n; r++ {
			if r == c {
				continue
			}
			f := a[r][c] / a[c][c]
			for k := c; k <= n; k++ {
				a[r][k] -= f * a[c][k]
			}
		}
	}
	var out [4]float64
	for r, cr := range use {
		if a[r][r] != 0 {
			out[cr] = a[r][n] / a[r][r]
		}
	}
	return out
}

type costJSON struct {
	Version  int           `json:"version"`
	Profiles []profileJSON `json:"profiles"`
	SwitchNS [][]int64     `json:"switch_ns,omitempty"`
}

type profileJSON struct {
	Batches   []int     `json:"batches"`
	Seqs      []int     `json:"seqs"`
	LatencyNS [][]int64 `json:"latency_ns"`
	Fit       Fit       `json:"fit"`
}

// MarshalJSON writes the model in a versioned form that ParseCostModel
// reads back, so a restarted worker need not measure again. Each profile
// also carries its least-squares Fit for people reading the file.
func (m *CostModel) MarshalJSON() ([]byte, error) {
	out := costJSON{Version: costModelVersion}
	for i, p := range m.profiles {
		pj := profileJSON{Batches: p.Batches, Seqs: p.Seqs, Fit: m.Fit(i)}
		for _, row := range p.Latency {
			r := make([]int64, len(row))
			for j, d := range row {
				r[j] = int64(d)
			}
			pj.LatencyNS = append(pj.LatencyNS, r)
		}
		out.Profiles = append(out.Profiles, pj)
	}
	if len(m.profiles) > 1 {
		for _, row := range m.sw {
			r := make([]int64, len(row))
			for j, d := range row {
				r[j] = int64(d)
			}
			out.SwitchNS = append(out.SwitchNS, r)
		}
	}
	return json.Marshal(out)
}

// UnmarshalJSON restores a model written by MarshalJSON.
func (m *CostModel) UnmarshalJSON(data []byte) error {
	var in costJSON
	if err := json.Unmarshal(data, &in); err != nil {
		return fmt.Errorf("decoding cost model: %w", err)
	}
	if in.Version != costModelVersion {
		return fmt.Errorf("cost model version %d, want %d", in.Version, costModelVersion)
	}
	ps := make([]ProfileCost, len(in.Profiles))
	for i, pj := range in.Profiles {
		ps[i] = ProfileCost{Batches: pj.Batches, Seqs: pj.Seqs}
		for _, row := range pj.LatencyNS {
			r := make([]time.Duration, len(row))
			for j, v := range row {
				r[j] = time.Duration(v)
			}
			ps[i].Latency = append(ps[i].Latency, r)
		}
	}
	var sw [][]time.Duration
	for _, row := range in.SwitchNS {
		r := make([]time.Duration, len(row))
		for j, v := range row {
			r[j] = time.Duration(v)
		}
		sw = append(sw, r)
	}
	got, err := NewCostModel(ps, sw)
	if err != nil {
		return fmt.Errorf("restoring cost model: %w", err)
	}
	*m = *got
	return nil
}

// ParseCostModel restores a model from the JSON that MarshalJSON wrote.
func ParseCostModel(data []byte) (*CostModel, error) {
	m := new(CostModel)
	if err := m.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	return m, nil
}

// covers reports why the model cannot serve the engine described by l, or
// nil if every usable profile's range lies inside its measured grid.
func (m *CostModel) covers(l layout) error {
	if len(m.profiles) != len(l.profiles) {
		return fmt.Errorf("%w: model has %d profiles, engine %d", ErrCostMismatch, len(m.profiles), len(l.profiles))
	}
	for i, r := range l.profiles {
		if !r.usable {
			continue
		}
		g := m.profiles[i]
		if g.Batches[0] > r.bmin || g.Batches[len(g.Batches)-1] < r.bmax {
			return fmt.Errorf("%w: profile %d batch range [%d,%d] outside measured %v", ErrCostMismatch, i, r.bmin, r.bmax, g.Batches)
		}
		if l.hasSeq && (g.Seqs[0] > r.smin || g.Seqs[len(g.Seqs)-1] < r.smax) {
			return fmt.Errorf("%w: profile %d sequence range [%d,%d] outside measured %v", ErrCostMismatch, i, r.smin, r.smax, g.Seqs)
		}
	}
	return nil
}
