package batchsim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// TraceConfig describes a synthetic arrival trace.
type TraceConfig struct {
	Seed     uint64
	Duration time.Duration // arrivals happen in [0, Duration)
	// RowsPerSec is the mean offered load over the whole trace, bursts
	// included.
	RowsPerSec float64
	// Bursts: the arrival rate is multiplied by BurstFactor for BurstLen,
	// with exponentially distributed gaps of mean BurstEvery between
	// bursts. BurstFactor <= 1 disables bursts.
	BurstEvery, BurstLen time.Duration
	BurstFactor          float64
	// Request sizes are uniform in [MinRows, MaxRows].
	MinRows, MaxRows int
	// Sequence lengths per row: lognormal with median SeqMedian and shape
	// SeqSigma, rounded and clipped to [SeqMin, SeqMax].
	SeqMedian        float64
	SeqSigma         float64
	SeqMin, SeqMax   int
	DeadlineFrac     float64       // fraction of requests with a deadline
	DeadlineMin      time.Duration // deadline = arrival + U[DeadlineMin, DeadlineMax]
	DeadlineMax      time.Duration
	HighPriorityFrac float64 // fraction of requests with priority 1 (else 0)
}

// Request is one traced request. Times are offsets from the trace start.
type Request struct {
	ID       uint64
	Arrival  time.Duration
	Lens     []int // one sequence length per row
	Deadline time.Duration
	HasDL    bool
	Priority int
}

// Rows is the request's row count.
func (r *Request) Rows() int { return len(r.Lens) }

// MaxLen is the request's longest row.
func (r *Request) MaxLen() int {
	m := 0
	for _, n := range r.Lens {
		m = max(m, n)
	}
	return m
}

// Validate reports the first unusable setting.
func (c TraceConfig) Validate() error {
	switch {
	case c.Duration <= 0 || c.RowsPerSec <= 0:
		return fmt.Errorf("trace needs a positive duration and rate")
	case c.MinRows < 1 || c.MaxRows < c.MinRows:
		return fmt.Errorf("request sizes [%d, %d] are not a range of positive sizes", c.MinRows, c.MaxRows)
	case c.SeqMin < 1 || c.SeqMax < c.SeqMin || c.SeqMedian <= 0 || c.SeqSigma < 0:
		return fmt.Errorf("sequence lengths: median %g sigma %g range [%d, %d] unusable", c.SeqMedian, c.SeqSigma, c.SeqMin, c.SeqMax)
	case c.DeadlineFrac > 0 && (c.DeadlineMin <= 0 || c.DeadlineMax < c.DeadlineMin):
		return fmt.Errorf("deadline range [%v, %v] unusable", c.DeadlineMin, c.DeadlineMax)
	}
	return nil
}

// SeqSampler draws sequence lengths from the trace's distribution.
func (c TraceConfig) SeqSampler(rng *rand.Rand) func() int {
	mu := math.Log(c.SeqMedian)
	return func() int {
		v := int(math.Round(math.Exp(mu + c.SeqSigma*rng.NormFloat64())))
		return min(max(v, c.SeqMin), c.SeqMax)
	}
}

// Generate draws the trace: a Poisson process whose rate switches between
// a base rate and BurstFactor times it, scaled so that the mean offered
// load is RowsPerSec.
func Generate(c TraceConfig) ([]Request, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(c.Seed, c.Seed^0x6a09e667f3bcc908))
	seq := c.SeqSampler(rng)
	meanRows := float64(c.MinRows+c.MaxRows) / 2
	burstShare := 0.0
	if c.BurstFactor > 1 && c.BurstLen > 0 {
		burstShare = float64(c.BurstLen) / float64(c.BurstLen+c.BurstEvery)
	}
	base := c.RowsPerSec / meanRows / (1 + (c.BurstFactor-1)*burstShare) // requests/s outside bursts
	var out []Request
	t := time.Duration(0)
	nextBurst := time.Duration(math.MaxInt64)
	burstEnd := time.Duration(0)
	if burstShare > 0 {
		nextBurst = time.Duration(rng.ExpFloat64() * float64(c.BurstEvery))
	}
	for {
		rate := base
		if t >= nextBurst {
			burstEnd = nextBurst + c.BurstLen
			nextBurst = burstEnd + time.Duration(rng.ExpFloat64()*float64(c.BurstEvery))
		}
		if t < burstEnd {
			rate *= c.BurstFactor
		}
		gap := time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		// A rate change inside the gap: restart from the change (memoryless).
		edge := nextBurst
		if t < burstEnd {
			edge = burstEnd
		}
		if t+gap > edge {
			t = edge
			continue
		}
		t += gap
		if t >= c.Duration {
			break
		}
		r := Request{ID: uint64(len(out) + 1), Arrival: t}
		n := c.MinRows + rng.IntN(c.MaxRows-c.MinRows+1)
		r.Lens = make([]int, n)
		for i := range r.Lens {
			r.Lens[i] = seq()
		}
		if rng.Float64() < c.DeadlineFrac {
			r.HasDL = true
			r.Deadline = t + c.DeadlineMin + time.Duration(rng.Float64()*float64(c.DeadlineMax-c.DeadlineMin))
		}
		if rng.Float64() < c.HighPriorityFrac {
			r.Priority = 1
		}
		out = append(out, r)
	}
	return out, nil
}
