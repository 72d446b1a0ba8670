package batcher

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"
)

func bilinearGrid(f func(b, s int) time.Duration, bs, ss []int) ProfileCost {
	p := ProfileCost{Batches: bs, Seqs: ss}
	for _, b := range bs {
		var row []time.Duration
		for _, s := range ss {
			row = append(row, f(b, s))
		}
		p.Latency = append(p.Latency, row)
	}
	return p
}

func TestLatencyInterpolatesBilinearExactly(t *testing.T) {
	f := func(b, s int) time.Duration {
		return time.Duration(5000 + 300*b + 20*s + 7*b*s)
	}
	m, err := NewCostModel([]ProfileCost{bilinearGrid(f, []int{1, 4, 16, 64}, []int{8, 64, 512})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []int{1, 3, 4, 10, 33, 64} {
		for _, s := range []int{8, 9, 100, 300, 512} {
			if got, want := m.Latency(0, b, s), f(b, s); got != want {
				t.Errorf("Latency(%d, %d) = %v, want %v", b, s, got, want)
			}
		}
	}
	fit := m.Fit(0)
	if math.Abs(fit.Base-5000) > 1 || math.Abs(fit.PerRow-300) > 0.1 || math.Abs(fit.PerStep-20) > 0.1 || math.Abs(fit.PerRowStep-7) > 0.01 || fit.R2 < 0.999999 {
		t.Fatalf("fit %+v does not recover the generating function", fit)
	}
}

func TestCostModelIsMonotone(t *testing.T) {
	p := ProfileCost{
		Batches: []int{1, 2, 4},
		Seqs:    []int{8, 16},
		Latency: [][]time.Duration{{100, 90}, {80, 200}, {300, 250}}, // noisy
	}
	m, err := NewCostModel([]ProfileCost{p}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for b := 1; b < 4; b++ {
		for s := 8; s < 16; s++ {
			if m.Latency(0, b+1, s) < m.Latency(0, b, s) || m.Latency(0, b, s+1) < m.Latency(0, b, s) {
				t.Fatalf("latency decreases around batch %d seq %d", b, s)
			}
		}
	}
	if p.Latency[0][1] != 90 {
		t.Fatal("NewCostModel modified its argument")
	}
}

func TestNewCostModelRejects(t *testing.T) {
	good := bilinearGrid(func(b, s int) time.Duration { return time.Duration(b*s + 1) }, []int{1, 2}, []int{8, 16})
	cases := map[string]func() ([]ProfileCost, [][]time.Duration){
		"no profiles": func() ([]ProfileCost, [][]time.Duration) { return nil, nil },
		"unsorted axis": func() ([]ProfileCost, [][]time.Duration) {
			p := good
			p.Batches = []int{2, 1}
			return []ProfileCost{p}, nil
		},
		"ragged grid": func() ([]ProfileCost, [][]time.Duration) {
			p := good
			p.Latency = p.Latency[:1]
			return []ProfileCost{p}, nil
		},
		"zero latency": func() ([]ProfileCost, [][]time.Duration) {
			p := bilinearGrid(func(int, int) time.Duration { return 0 }, []int{1}, []int{8})
			return []ProfileCost{p}, nil
		},
		"switch shape": func() ([]ProfileCost, [][]time.Duration) { return []ProfileCost{good, good}, [][]time.Duration{{0}} },
		"negative switch": func() ([]ProfileCost, [][]time.Duration) {
			return []ProfileCost{good, good}, [][]time.Duration{{0, -1}, {0, 0}}
		},
	}
	for name, c := range cases {
		ps, sw := c()
		if _, err := NewCostModel(ps, sw); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCostModelJSONRoundTrip(t *testing.T) {
	spec := seqSpec([4]int64{1, 32, 1, 256}, [4]int64{1, 8, 128, 1024})
	m := syntheticCost(t, spec, 100*time.Microsecond, 3*time.Microsecond, 50*time.Nanosecond, 400*time.Microsecond)
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseCostModel(data)
	if err != nil {
		t.Fatal(err)
	}
	for p := range 2 {
		for _, b := range []int{1, 5, 8} {
			for _, s := range []int{128, 200, 256} {
				if m.Latency(p, b, s) != back.Latency(p, b, s) {
					t.Fatalf("profile %d (%d, %d): %v before, %v after", p, b, s, m.Latency(p, b, s), back.Latency(p, b, s))
				}
			}
		}
	}
	if back.SwitchCost(0, 1) != 400*time.Microsecond || back.SwitchCost(1, 1) != 0 {
		t.Fatalf("switch costs %v %v after round trip", back.SwitchCost(0, 1), back.SwitchCost(1, 1))
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil || doc["version"] != float64(1) {
		t.Fatalf("JSON lacks its version: %s", data)
	}
	bad := []byte(`{"version":99,"profiles":[]}`)
	if _, err := ParseCostModel(bad); err == nil {
		t.Fatal("unknown version accepted")
	}
	if _, err := ParseCostModel([]byte(`{`)); err == nil {
		t.Fatal("truncated JSON accepted")
	}
}

// standInEngineTimer is a test stand-in for timing a real engine: it
// returns a latency computed from the shape, adds a switch penalty when
// the profile changes, and counts calls.
type standInEngineTimer struct {
	last, calls int
}

func (s *standInEngineTimer) run(_ context.Context, p, b, seq int) (time.Duration, error) {
	s.calls++
	d := time.Duration(10_000+(p+1)*500*b+3*b*seq) * time.Nanosecond
	if s.last >= 0 && s.last != p {
		d += 70 * time.Microsecond
	}
	s.last = p
	return d, nil
}

func TestMeasure(t *testing.T) {
	spec := seqSpec([4]int64{1, 16, 1, 128}, [4]int64{1, 4, 64, 512})
	grid, err := DefaultGrid(spec, 20)
	if err != nil {
		t.Fatal(err)
	}
	for p, pg := range grid.Profiles {
		r := []int{1, 16, 1, 128}
		if p == 1 {
			r = []int{1, 4, 64, 512}
		}
		if pg.Batches[0] != r[0] || pg.Batches[len(pg.Batches)-1] != r[1] || pg.Seqs[0] != r[2] || pg.Seqs[len(pg.Seqs)-1] != r[3] {
			t.Fatalf("grid of profile %d does not span its range: %+v", p, pg)
		}
		if n := len(pg.Batches) * len(pg.Seqs); n > 20 && len(pg.Seqs) > 2 {
			t.Fatalf("grid of profile %d has %d points, max 20", p, n)
		}
	}
	timer := &standInEngineTimer{last: -1}
	m, err := Measure(context.Background(), timer.run, grid)
	if err != nil {
		t.Fatal(err)
	}
	if timer.calls < grid.Points()*(grid.Reps+grid.Warmup) {
		t.Fatalf("%d runs for %d points", timer.calls, grid.Points())
	}
	// Every grid point is timed after shapes of its own profile most of
	// the time; the median removes the occasional switch penalty.
	for p, pg := range grid.Profiles {
		for _, b := range pg.Batches {
			for _, s := range pg.Seqs {
				want := time.Duration(10_000 + (p+1)*500*b + 3*b*s)
				if got := m.Latency(p, b, s); got != want {
					t.Errorf("profile %d (%d, %d): measured %v, want %v", p, b, s, got, want)
				}
			}
		}
	}
	if sw := m.SwitchCost(0, 1); sw != 70*time.Microsecond {
		t.Fatalf("switch cost %v, want 70µs", sw)
	}
	if _, err := New(spec, m, Config{}); err != nil {
		t.Fatalf("measured model rejected by New: %v", err)
	}
}

func TestMeasureStopsOnErrors(t *testing.T) {
	spec := seqSpec([4]int64{1, 4, 1, 16})
	grid, _ := DefaultGrid(spec, 0)
	boom := errors.New("engine fell over")
	_, err := Measure(context.Background(), func(context.Context, int, int, int) (time.Duration, error) { return 0, boom }, grid)
	if !errors.Is(err, boom) {
		t.Fatalf("Measure = %v, want the engine's error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Measure(ctx, func(context.Context, int, int, int) (time.Duration, error) { return time.Microsecond, nil }, grid)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Measure with a cancelled context = %v", err)
	}
}
