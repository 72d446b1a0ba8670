package batchsim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	"github.com/jetinfer/jetinfer/batcher"
	"github.com/jetinfer/jetinfer/trt"
)

// Engine is the simulated engine: a batch takes the cost model's latency
// for its padded shape and profile (plus the switch cost when the profile
// changes), multiplied by lognormal jitter of shape Jitter.
type Engine struct {
	Cost   *batcher.CostModel
	Jitter float64
	Seed   uint64
	// ChargePlanning makes planning cost engine time: the CPU time of
	// each Next call that returns a batch (the thread's CPU clock on
	// Linux, measured on this machine) is added to that batch's latency,
	// as in a worker whose one goroutine plans before the engine can
	// start. The outcome then depends on the machine; Result.Planning
	// reports the time spent and PlanningCharged the time charged.
	ChargePlanning bool
}

// Result is one policy's outcome on a trace.
type Result struct {
	Policy          string
	Requests        int
	Done            int // requests whose every row ran
	Rows            int // rows of done requests
	Span            time.Duration
	RowsPerSec      float64 // Rows / (last completion - first arrival)
	P50, P99, Max   time.Duration
	Padding         float64 // padded positions / computed positions
	Batches         int
	MeanBatch       float64 // real rows per batch
	Busy            time.Duration
	DeadlineReqs    int
	Expired         int // given up by the policy (DEADLINE_EXCEEDED)
	Late            int // ran but completed after the deadline
	AvoidableMisses int // missed though running alone at arrival would have met the deadline
	// Planning is the CPU time spent in the policy's Add, Next and
	// Expired calls; PlanningCharged the part added to batch latencies
	// (Engine.ChargePlanning).
	Planning, PlanningCharged time.Duration
}

// Capacity is the rows completed per second of engine time: what the
// policy's batches make of the engine, independent of the offered load.
func (r Result) Capacity() float64 {
	if r.Busy <= 0 {
		return 0
	}
	return float64(r.Rows) / r.Busy.Seconds()
}

// Misses is the number of deadline requests that did not complete in time.
func (r Result) Misses() int { return r.Expired + r.Late }

// String is a one-line summary.
func (r Result) String() string {
	return fmt.Sprintf("%-14s rows/s=%6.0f p50=%9v p99=%9v padding=%5.1f%% batches=%6d mean_batch=%4.1f busy=%5.1f%% rows/busy-s=%6.0f deadline_misses=%d/%d (late=%d expired=%d avoidable=%d)",
		r.Policy, r.RowsPerSec, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), 100*r.Padding, r.Batches, r.MeanBatch,
		100*float64(r.Busy)/float64(max(r.Span, 1)), r.Capacity(), r.Misses(), r.DeadlineReqs, r.Late, r.Expired, r.AvoidableMisses) +
		fmt.Sprintf(" plan=%.1fµs/batch", float64(r.Planning)/1e3/float64(max(r.Batches, 1)))
}

// Simulate replays trace (sorted by arrival) through policy on eng, one
// batch at a time, and measures the outcome. epoch must be the time zero
// the policy was built with.
func Simulate(trace []Request, policy Policy, eng Engine, spec trt.Spec, epoch time.Time) (Result, error) {
	res := Result{Policy: policy.Name(), Requests: len(trace)}
	if len(trace) == 0 {
		return res, nil
	}
	runtime.LockOSThread() // threadCPU reads this thread's clock
	defer runtime.UnlockOSThread()
	rng := rand.New(rand.NewPCG(eng.Seed, 0x3c6ef372fe94f82b))
	byID := make(map[uint64]*Request, len(trace))
	left := make(map[uint64]int, len(trace))
	for i := range trace {
		byID[trace[i].ID] = &trace[i]
		left[trace[i].ID] = trace[i].Rows()
		if trace[i].HasDL {
			res.DeadlineReqs++
		}
	}
	finished := map[uint64]bool{}
	var lat []time.Duration
	var padded, real float64
	lastProfile := -1
	now := epoch.Add(trace[0].Arrival)
	next := 0
	var running *Batch
	var busyUntil, lastDone time.Time
	expire := func(ids []uint64) {
		for _, id := range ids {
			if finished[id] {
				continue
			}
			finished[id] = true
			res.Expired++
			if r := byID[id]; r.HasDL && r.Arrival+solo(spec, eng.Cost, r) <= r.Deadline {
				res.AvoidableMisses++
			}
		}
	}
	for steps := 0; ; steps++ {
		if steps > 50_000_000 {
			return res, fmt.Errorf("simulating %s: no progress", policy.Name())
		}
		if running != nil && !now.Before(busyUntil) {
			for _, p := range running.Parts {
				left[p.ID] -= p.Rows
				if left[p.ID] == 0 && !finished[p.ID] {
					finished[p.ID] = true
					r := byID[p.ID]
					res.Done++
					res.Rows += r.Rows()
					lat = append(lat, now.Sub(epoch.Add(r.Arrival)))
					lastDone = now
					if r.HasDL && now.After(epoch.Add(r.Deadline)) {
						res.Late++
						if r.Arrival+solo(spec, eng.Cost, r) <= r.Deadline {
							res.AvoidableMisses++
						}
					}
				}
			}
			running = nil
		}
		t0 := threadCPU()
		for next < len(trace) && !epoch.Add(trace[next].Arrival).After(now) {
			if err := policy.Add(now, &trace[next]); err != nil {
				return res, fmt.Errorf("simulating %s: adding request %d: %w", policy.Name(), trace[next].ID, err)
			}
			next++
		}
		expire(policy.Expired(now))
		res.Planning += threadCPU() - t0
		if running == nil {
			t1 := threadCPU()
			b, ok := policy.Next(now)
			plan := threadCPU() - t1
			res.Planning += plan
			if ok {
				d := eng.Cost.Latency(b.Profile, b.Size, b.Seq) + eng.Cost.SwitchCost(lastProfile, b.Profile)
				if eng.Jitter > 0 {
					d = time.Duration(float64(d) * math.Exp(eng.Jitter*rng.NormFloat64()))
				}
				if eng.ChargePlanning {
					d += plan
					res.PlanningCharged += plan
				}
				lastProfile = b.Profile
				res.Batches++
				res.Busy += d
				rows := 0
				for _, p := range b.Parts {
					rows += p.Rows
				}
				res.MeanBatch += float64(rows)
				padded += float64(b.Size * max(b.Seq, 1))
				real += float64(b.Positions)
				running, busyUntil = &b, now.Add(d)
				continue
			}
			expire(policy.Expired(now))
		}
		var ev []time.Time
		if next < len(trace) {
			ev = append(ev, epoch.Add(trace[next].Arrival))
		}
		if running != nil {
			ev = append(ev, busyUntil)
		} else if w, ok := policy.NextWakeup(); ok {
			ev = append(ev, maxTime(w, now.Add(time.Nanosecond)))
		}
		if len(ev) == 0 {
			break
		}
		now = slices.MinFunc(ev, func(a, b time.Time) int { return a.Compare(b) })
	}
	if n := len(finished); n != len(trace) {
		return res, fmt.Errorf("simulating %s: %d of %d requests never finished", policy.Name(), len(trace)-n, len(trace))
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		res.P50 = lat[len(lat)/2]
		res.P99 = lat[min(len(lat)-1, int(math.Ceil(0.99*float64(len(lat))))-1)]
		res.Max = lat[len(lat)-1]
	}
	res.Span = lastDone.Sub(epoch.Add(trace[0].Arrival))
	if res.Span > 0 {
		res.RowsPerSec = float64(res.Rows) / res.Span.Seconds()
	}
	if padded > 0 {
		res.Padding = 1 - real/padded
	}
	if res.Batches > 0 {
		res.MeanBatch /= float64(res.Batches)
	}
	return res, nil
}

// solo is the predicted time to run r alone on an idle engine: its rows
// padded to its longest, in batches as large as a profile allows.
func solo(spec trt.Spec, cost *batcher.CostModel, r *Request) time.Duration {
	rows, seq := r.Rows(), r.MaxLen()
	var total time.Duration
	for rows > 0 {
		n := rows
		p, bn, bs := profileFor(spec, n, seq)
		for n > 1 && !fits(spec, p, bn, bs) {
			n--
			p, bn, bs = profileFor(spec, n, seq)
		}
		total += cost.Latency(p, bn, bs)
		rows -= n
	}
	return total
}

func fits(spec trt.Spec, p, n, s int) bool {
	pr := spec.Profiles[p]
	for _, in := range spec.Inputs {
		sh := in.Shape.Clone()
		sh[0] = int64(n)
		for d := 1; d < len(sh); d++ {
			if sh[d] == trt.Dynamic {
				sh[d] = int64(s)
			}
		}
		if !pr.Contains(in.Name, sh) {
			return false
		}
	}
	return true
}

// IdealRowsPerSec is the throughput the engine would reach if every row
// ran in a full batch of rows of exactly its length: the reciprocal of the
// mean best per-row cost (over batch sizes that are powers of two) over
// lengths drawn by sample. It sets the simulations' offered load.
func IdealRowsPerSec(spec trt.Spec, cost *batcher.CostModel, sample func() int, n int) float64 {
	best := rowCosts(spec, cost, func(b int) int { return 2 * b })
	var total float64
	for range n {
		total += best(sample())
	}
	return float64(n) / (total / float64(time.Second))
}

// Ceiling is the saturated rows/s that no batching policy can exceed on
// trace: every row runs in a batch of rows of exactly its length at the
// batch size and profile with the least engine time per row, with no
// padding, planning, profile switches or jitter. It assumes the cost does
// not fall as rows get longer, so that padding a row never makes it
// cheaper; jitter's mean adds a further 0.1 % (σ 0.05) to every policy.
func Ceiling(spec trt.Spec, cost *batcher.CostModel, trace []Request) float64 {
	best := rowCosts(spec, cost, func(b int) int { return b + 1 })
	var total float64
	rows := 0
	for i := range trace {
		for _, s := range trace[i].Lens {
			total += best(s)
		}
		rows += trace[i].Rows()
	}
	return float64(rows) / (total / float64(time.Second))
}

// rowCosts returns the least engine time per row, in nanoseconds, of a row
// of length s: the minimum over profiles and the batch sizes 1, next(1),
// next(next(1)), … up to 4096 that fit of the batch's latency over its
// size. Results are kept per length.
func rowCosts(spec trt.Spec, cost *batcher.CostModel, next func(b int) int) func(s int) float64 {
	seen := map[int]float64{}
	return func(s int) float64 {
		if c, ok := seen[s]; ok {
			return c
		}
		best := math.Inf(1)
		for p := range spec.Profiles {
			in := false // a profile's batch sizes are one range
			for b := 1; b <= 4096; b = next(b) {
				if !fits(spec, p, b, s) {
					if in {
						break
					}
					continue
				}
				in = true
				best = min(best, float64(cost.Latency(p, b, s))/float64(b))
			}
		}
		seen[s] = best
		return best
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
