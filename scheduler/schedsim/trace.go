package schedsim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// TraceConfig shapes a synthetic arrival trace: one compressed daily cycle
// (a quiet night with no traffic, a morning ramp, an afternoon peak) plus
// bursts dumped by batch producers at random times. docs/scaling.md records
// the defaults used for the published numbers.
type TraceConfig struct {
	// Seconds is the trace length; one step is one second.
	Seconds int
	// DayPeriod is the length of one compressed day in seconds.
	DayPeriod int
	// PeakRate is the base arrival rate at the daily peak, messages/s.
	PeakRate float64
	// NightFraction is the share of each day with no base traffic, in
	// [0,1).
	NightFraction float64
	// Bursts is how many bursts are placed (uniformly over the trace,
	// skipping its last 10%).
	Bursts int
	// BurstMin and BurstMax bound a burst's size in messages.
	BurstMin, BurstMax int
	// BurstSpread is the number of seconds over which a burst is published.
	BurstSpread int
	// Seed makes the trace reproducible.
	Seed uint64
}

// DefaultTraceConfig returns the trace used for the published numbers.
func DefaultTraceConfig() TraceConfig {
	return TraceConfig{
		Seconds:       4 * 3600,
		DayPeriod:     4 * 3600,
		PeakRate:      400,
		NightFraction: 0.25,
		Bursts:        8,
		BurstMin:      5_000,
		BurstMax:      30_000,
		BurstSpread:   30,
		Seed:          1,
	}
}

// Validate reports the first invalid setting.
func (c TraceConfig) Validate() error {
	switch {
	case c.Seconds <= 0 || c.DayPeriod <= 0:
		return errors.New("trace length and day period must be positive")
	case c.PeakRate < 0:
		return fmt.Errorf("peak rate %v: must not be negative", c.PeakRate)
	case c.NightFraction < 0 || c.NightFraction >= 1:
		return fmt.Errorf("night fraction %v: must be in [0,1)", c.NightFraction)
	case c.Bursts < 0 || c.BurstMin < 0 || c.BurstMax < c.BurstMin:
		return errors.New("burst count and sizes must be non-negative with min ≤ max")
	case c.Bursts > 0 && c.BurstSpread <= 0:
		return fmt.Errorf("burst spread %d: must be positive", c.BurstSpread)
	}
	return nil
}

// Burst is one producer dump inside a trace.
type Burst struct {
	// Start and End are the first and last second it publishes in.
	Start, End int
	// Messages is its size.
	Messages int
}

// Trace is a per-second arrival count. Base and burst arrivals are kept
// apart so that drain times can be measured per burst.
type Trace struct {
	// Base[t] is the number of base-traffic messages arriving in second t.
	Base []int
	// BurstAt[t] is the number of burst messages arriving in second t and
	// BurstID[t] which burst they belong to (-1 for none).
	BurstAt []int
	BurstID []int
	// Bursts lists the bursts in time order.
	Bursts []Burst
}

// Total returns the number of messages in the trace.
func (tr Trace) Total() int {
	n := 0
	for t := range tr.Base {
		n += tr.Base[t] + tr.BurstAt[t]
	}
	return n
}

// PeakRate returns the highest arrival rate averaged over any window of w
// seconds.
func (tr Trace) PeakRate(w int) float64 {
	w = max(w, 1)
	sum, best := 0, 0
	for t := range tr.Base {
		sum += tr.Base[t] + tr.BurstAt[t]
		if t >= w {
			sum -= tr.Base[t-w] + tr.BurstAt[t-w]
		}
		best = max(best, sum)
	}
	return float64(best) / float64(w)
}

// DailyRate is the base rate at second t of the cycle: zero during the
// night, then a raised-cosine day peaking at the middle of the day part.
func (c TraceConfig) DailyRate(t int) float64 {
	phase := float64(t%c.DayPeriod) / float64(c.DayPeriod)
	// The night is centred on phase 0 (midnight).
	half := c.NightFraction / 2
	if phase < half || phase >= 1-half {
		return 0
	}
	x := (phase - half) / (1 - c.NightFraction) // 0..1 across the day part
	return c.PeakRate * (1 - math.Cos(2*math.Pi*x)) / 2
}

// GenerateTrace draws a trace from c: Poisson arrivals around DailyRate and
// bursts spread evenly over BurstSpread seconds.
func GenerateTrace(c TraceConfig) (Trace, error) {
	if err := c.Validate(); err != nil {
		return Trace{}, fmt.Errorf("validating trace config: %w", err)
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0x6a657469))
	tr := Trace{Base: make([]int, c.Seconds), BurstAt: make([]int, c.Seconds), BurstID: make([]int, c.Seconds)}
	for t := range tr.Base {
		tr.Base[t] = poisson(rng, c.DailyRate(t))
		tr.BurstID[t] = -1
	}
	last := c.Seconds*9/10 - c.BurstSpread
	starts := make([]int, 0, c.Bursts)
	for range c.Bursts {
		if last <= 0 {
			break
		}
		starts = append(starts, rng.IntN(last))
	}
	slices.Sort(starts)
	for _, s := range starts {
		// Bursts do not overlap: push a start past the previous burst.
		if n := len(tr.Bursts); n > 0 && s <= tr.Bursts[n-1].End {
			s = tr.Bursts[n-1].End + 1
		}
		if s+c.BurstSpread > c.Seconds {
			break
		}
		size := c.BurstMin + rng.IntN(c.BurstMax-c.BurstMin+1)
		b := Burst{Start: s, End: s + c.BurstSpread - 1, Messages: size}
		id := len(tr.Bursts)
		tr.Bursts = append(tr.Bursts, b)
		per, rem := size/c.BurstSpread, size%c.BurstSpread
		for i := range c.BurstSpread {
			n := per
			if i < rem {
				n++
			}
			tr.BurstAt[s+i] = n
			tr.BurstID[s+i] = id
		}
	}
	return tr, nil
}

// poisson draws from Poisson(lambda): Knuth's method for small lambda, a
// rounded normal approximation above 30.
func poisson(rng *rand.Rand, lambda float64) int {
	switch {
	case lambda <= 0:
		return 0
	case lambda > 30:
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*rng.NormFloat64())))
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
