package schedsim

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// ClusterConfig describes the worker pool being scaled.
type ClusterConfig struct {
	// Capacity is what one ready replica serves, messages/s.
	Capacity float64
	// ColdStart is the seconds from a replica's creation to its readiness
	// (pod start and engine load).
	ColdStart int
	// HeldPerReplica is how many messages a ready replica holds delivered
	// but unacked while it batches and executes (ack-pending work in
	// progress).
	HeldPerReplica int
	// MaxReplicas caps every controller.
	MaxReplicas int
	// SLO is the job completion time (arrival → result) a job must meet,
	// seconds.
	SLO float64
	// InitialReady replicas are ready at second 0 (a warm fixed pool).
	InitialReady int
	// SeriesEvery, when positive, records a Point every that many seconds
	// into Result.Series.
	SeriesEvery int
}

// Point is one sample of a run's time series.
type Point struct {
	T               int
	Arrivals        int
	Queue, Held     float64
	Ready, Starting int
}

// Validate reports the first invalid setting.
func (c ClusterConfig) Validate() error {
	switch {
	case c.Capacity <= 0:
		return fmt.Errorf("capacity %v: must be positive", c.Capacity)
	case c.ColdStart < 0 || c.HeldPerReplica < 0 || c.InitialReady < 0:
		return errors.New("cold start, held messages and initial replicas must not be negative")
	case c.MaxReplicas < 1:
		return fmt.Errorf("max replicas %d: must be ≥ 1", c.MaxReplicas)
	case c.SLO <= 0:
		return fmt.Errorf("SLO %v: must be positive", c.SLO)
	}
	return nil
}

// State is what a controller can see at the start of a second.
type State struct {
	// T is the second.
	T int
	// Queue is every message not yet completed: undelivered plus held.
	Queue float64
	// Held is the part of Queue that ready replicas hold (ack-pending).
	Held float64
	// Delivered counts messages ever delivered to a replica.
	Delivered float64
	// Ready and Starting count replicas.
	Ready, Starting int
}

// Pods is the replica count the orchestrator runs (ready and starting).
func (s State) Pods() int { return s.Ready + s.Starting }

// Controller decides the replica count. Desired is called once per
// simulated second, in order, before that second's work is served.
type Controller interface {
	Name() string
	Desired(s State) int
}

// Result summarizes one run.
type Result struct {
	Name string
	// ReplicaSeconds sums replicas (ready and starting) over time: the
	// bill.
	ReplicaSeconds float64
	// Jobs is the number of messages in the trace.
	Jobs int
	// P50, P99 and Max are job completion times (arrival → completion), s.
	P50, P99, Max float64
	// SLOMisses counts jobs completed later than the SLO, plus jobs still
	// unfinished at the end whose age exceeds it.
	SLOMisses int64
	// Unfinished counts jobs not completed when the trace ended.
	Unfinished int64
	// DrainTimes[i] is the seconds from burst i's start until its last
	// message completed (NaN if it never did).
	DrainTimes []float64
	// PeakReplicas is the highest replica count used.
	PeakReplicas int
	// Series holds samples when ClusterConfig.SeriesEvery > 0.
	Series []Point
}

// SLOAttainment is the fraction of jobs that met the SLO.
func (r Result) SLOAttainment() float64 {
	if r.Jobs == 0 {
		return 1
	}
	return 1 - float64(r.SLOMisses)/float64(r.Jobs)
}

// MaxDrain returns the longest burst drain time (NaN if one never
// drained, 0 without bursts).
func (r Result) MaxDrain() float64 {
	m := 0.0
	for _, d := range r.DrainTimes {
		if math.IsNaN(d) {
			return math.NaN()
		}
		m = max(m, d)
	}
	return m
}

// MeanDrain returns the mean burst drain time.
func (r Result) MeanDrain() float64 {
	if len(r.DrainTimes) == 0 {
		return 0
	}
	s := 0.0
	for _, d := range r.DrainTimes {
		s += d
	}
	return s / float64(len(r.DrainTimes))
}

type cohort struct {
	arrive float64
	n      float64
	burst  int
}

type sample struct{ latency, n float64 }

// Run plays trace tr against a pool governed by ctrl and measures it. The
// pool is a fluid FIFO queue: each second every ready replica serves
// Capacity messages in arrival order, so a job completes when everything
// queued before it has been served. Replicas asked for become ready after
// ColdStart; replicas removed go starting-first, then ready (their held
// messages return to the queue's head, as on a drain that hands work back).
func Run(tr Trace, cc ClusterConfig, ctrl Controller) (Result, error) {
	if err := cc.Validate(); err != nil {
		return Result{}, fmt.Errorf("validating cluster config: %w", err)
	}
	res := Result{Name: ctrl.Name(), Jobs: tr.Total(), DrainTimes: make([]float64, len(tr.Bursts))}
	for i := range res.DrainTimes {
		res.DrainTimes[i] = math.NaN()
	}
	burstLeft := make([]float64, len(tr.Bursts))
	for i, b := range tr.Bursts {
		burstLeft[i] = float64(b.Messages)
	}
	var (
		queue     []cohort
		head      int
		total     float64 // messages in queue
		completed float64
		ready     = min(cc.InitialReady, cc.MaxReplicas)
		starting  []int // ready times, oldest first
		samples   []sample
	)
	for t := range tr.Base {
		// Replicas finishing their cold start.
		n := 0
		for n < len(starting) && starting[n] <= t {
			n++
		}
		ready += n
		starting = starting[n:]

		if a := tr.Base[t]; a > 0 {
			queue = append(queue, cohort{arrive: float64(t), n: float64(a), burst: -1})
			total += float64(a)
		}
		if a := tr.BurstAt[t]; a > 0 {
			queue = append(queue, cohort{arrive: float64(t), n: float64(a), burst: tr.BurstID[t]})
			total += float64(a)
		}
		held := min(total, float64(ready*cc.HeldPerReplica))
		st := State{T: t, Queue: total, Held: held, Delivered: completed + held, Ready: ready, Starting: len(starting)}

		want := min(max(ctrl.Desired(st), 0), cc.MaxReplicas)
		switch pods := ready + len(starting); {
		case want > pods:
			for range want - pods {
				starting = append(starting, t+cc.ColdStart)
			}
		case want < pods:
			drop := pods - want
			k := min(drop, len(starting))
			starting = starting[:len(starting)-k] // newest first
			ready -= drop - k
		}
		pods := ready + len(starting)
		if cc.SeriesEvery > 0 && t%cc.SeriesEvery == 0 {
			res.Series = append(res.Series, Point{T: t, Arrivals: tr.Base[t] + tr.BurstAt[t], Queue: total, Held: held,
				Ready: ready, Starting: len(starting)})
		}
		res.ReplicaSeconds += float64(pods)
		res.PeakReplicas = max(res.PeakReplicas, pods)

		// Serve this second's capacity in FIFO order.
		capacity := float64(ready) * cc.Capacity
		done := 0.0
		for head < len(queue) && done < capacity {
			c := &queue[head]
			x := min(c.n, capacity-done)
			finish := float64(t) + (done+x/2)/capacity
			samples = append(samples, sample{latency: finish - c.arrive, n: x})
			done += x
			c.n -= x
			if c.burst >= 0 {
				burstLeft[c.burst] -= x
				if burstLeft[c.burst] <= 1e-6 && math.IsNaN(res.DrainTimes[c.burst]) {
					res.DrainTimes[c.burst] = float64(t) + (done)/capacity - float64(tr.Bursts[c.burst].Start)
				}
			}
			if c.n <= 1e-9 {
				head++
			}
		}
		total = max(total-done, 0)
		completed += done
		if head > 4096 && head*2 > len(queue) {
			queue = append(queue[:0], queue[head:]...)
			head = 0
		}
	}
	end := float64(len(tr.Base))
	var unfinished float64
	for _, c := range queue[head:] {
		unfinished += c.n
		if end-c.arrive > cc.SLO {
			samples = append(samples, sample{latency: end - c.arrive, n: c.n})
		}
	}
	res.Unfinished = int64(math.Round(unfinished))
	res.P50, res.P99, res.Max, res.SLOMisses = summarize(samples, cc.SLO)
	return res, nil
}

// summarize returns weighted percentiles, the maximum and the count above
// slo.
func summarize(s []sample, slo float64) (p50, p99, maxLat float64, misses int64) {
	if len(s) == 0 {
		return 0, 0, 0, 0
	}
	slices.SortFunc(s, func(a, b sample) int {
		switch {
		case a.latency < b.latency:
			return -1
		case a.latency > b.latency:
			return 1
		}
		return 0
	})
	var tot, miss float64
	for _, x := range s {
		tot += x.n
		if x.latency > slo {
			miss += x.n
		}
	}
	q := func(p float64) float64 {
		want, acc := p*tot, 0.0
		for _, x := range s {
			acc += x.n
			if acc >= want {
				return x.latency
			}
		}
		return s[len(s)-1].latency
	}
	return q(0.50), q(0.99), s[len(s)-1].latency, int64(math.Round(miss))
}
