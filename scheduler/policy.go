package scheduler

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// PolicyConfig tunes the scaling policy of one model. The zero value is not
// valid; start from DefaultPolicyConfig. docs/scaling.md gives the formulas
// and the reasoning behind each default.
type PolicyConfig struct {
	// MinReplicas is the floor while the model is busy or not yet idle for
	// IdleAfter. Zero allows scaling to zero.
	MinReplicas int
	// MaxReplicas caps every decision. Must be ≥ max(1, MinReplicas).
	MaxReplicas int
	// TargetDrain is the time within which the backlog should be drained,
	// counted from the decision (new replicas lose their cold start).
	TargetDrain time.Duration
	// TargetUtilization is the fraction of a replica's service rate the
	// steady arrival flow may use, in (0,1]; the rest is headroom.
	TargetUtilization float64
	// Hysteresis is the fraction by which the need must fall below the
	// current replica count before a scale down is recommended: the policy
	// scales down to ceil(raw·(1+Hysteresis)).
	Hysteresis float64
	// ScaleDownWindow is the stabilization window: the policy scales down
	// only to the highest recommendation made within it (as the HPA does).
	// Scale up is immediate.
	ScaleDownWindow time.Duration
	// IdleAfter is how long a model must be idle (nothing pending, nothing
	// ack-pending, no arrivals) before it scales to MinReplicas, which may
	// be zero. Until then at least one replica is kept once one was asked
	// for.
	IdleAfter time.Duration
	// ArrivalTau is the time constant of the arrival-rate EWMA.
	ArrivalTau time.Duration
	// DefaultColdStart is assumed when no fresh report carries a cold start.
	DefaultColdStart time.Duration
	// DefaultServiceRate (messages/s per replica) is assumed when no fresh
	// report carries a service rate and none was learned recently. Zero
	// means no assumption: see FallbackReplicas.
	DefaultServiceRate float64
	// ServiceRateMemory is how long a service rate learned from fresh
	// reports stays usable after the last such report, so that a pool
	// scaled to zero can be sized from its last measurement.
	ServiceRateMemory time.Duration
	// FallbackReplicas is asked for when there is backlog but no service
	// rate is known (no fresh reports, nothing remembered, no default):
	// enough to start measuring, never the maximum.
	FallbackReplicas int
}

// DefaultPolicyConfig returns the defaults documented in docs/scaling.md.
func DefaultPolicyConfig() PolicyConfig {
	return PolicyConfig{
		MinReplicas:       0,
		MaxReplicas:       10,
		TargetDrain:       90 * time.Second,
		TargetUtilization: 0.85,
		Hysteresis:        0.1,
		ScaleDownWindow:   60 * time.Second,
		IdleAfter:         60 * time.Second,
		ArrivalTau:        60 * time.Second,
		DefaultColdStart:  30 * time.Second,
		ServiceRateMemory: 24 * time.Hour,
		FallbackReplicas:  1,
	}
}

// Validate reports the first setting out of range.
func (c PolicyConfig) Validate() error {
	switch {
	case c.MinReplicas < 0:
		return fmt.Errorf("min replicas %d: must not be negative", c.MinReplicas)
	case c.MaxReplicas < 1 || c.MaxReplicas < c.MinReplicas:
		return fmt.Errorf("max replicas %d: must be ≥ 1 and ≥ min replicas %d", c.MaxReplicas, c.MinReplicas)
	case c.TargetDrain <= 0:
		return fmt.Errorf("target drain %v: must be positive", c.TargetDrain)
	case !(c.TargetUtilization > 0 && c.TargetUtilization <= 1):
		return fmt.Errorf("target utilization %v: must be in (0,1]", c.TargetUtilization)
	case c.Hysteresis < 0 || c.Hysteresis > 1:
		return fmt.Errorf("hysteresis %v: must be in [0,1]", c.Hysteresis)
	case c.ScaleDownWindow < 0 || c.IdleAfter < 0 || c.DefaultColdStart < 0 || c.ServiceRateMemory < 0:
		return errors.New("windows and durations must not be negative")
	case c.ArrivalTau <= 0:
		return fmt.Errorf("arrival tau %v: must be positive", c.ArrivalTau)
	case c.DefaultServiceRate < 0:
		return fmt.Errorf("default service rate %v: must not be negative", c.DefaultServiceRate)
	case c.FallbackReplicas < 1 || c.FallbackReplicas > c.MaxReplicas:
		return fmt.Errorf("fallback replicas %d: must be in [1, max replicas %d]", c.FallbackReplicas, c.MaxReplicas)
	}
	return nil
}

// ConsumerStatus says what the scheduler could learn about a model's
// consumer.
type ConsumerStatus int

const (
	// ConsumerOK means the counters in the Observation are current.
	ConsumerOK ConsumerStatus = iota
	// ConsumerMissing means the stream or the consumer does not exist: no
	// worker could receive work, so scaling up cannot help.
	ConsumerMissing
	// ConsumerUnreadable means the JetStream API did not answer (timeout,
	// no leader, connection down): the state is unknown.
	ConsumerUnreadable
)

// String returns the status as used in logs.
func (s ConsumerStatus) String() string {
	switch s {
	case ConsumerOK:
		return "ok"
	case ConsumerMissing:
		return "missing"
	case ConsumerUnreadable:
		return "unreadable"
	}
	return fmt.Sprintf("ConsumerStatus(%d)", int(s))
}

// Observation is what the scheduler saw of one model at one instant.
type Observation struct {
	// At is the time of the observation; successive observations must not
	// go back in time (an earlier At is treated as no time passing).
	At time.Time
	// Consumer says whether the counters below are meaningful.
	Consumer ConsumerStatus
	// NumPending is the consumer's count of messages not yet delivered.
	NumPending uint64
	// NumAckPending is the count delivered and not yet acknowledged.
	NumAckPending int
	// Delivered is the consumer's delivered sequence (it counts
	// redeliveries too, which are load as well).
	Delivered uint64
	// WaitingPulls is the consumer's count of pull requests waiting for
	// messages (ConsumerInfo.NumWaiting): when positive, at least one
	// worker is pulling, whether or not it has reported yet.
	WaitingPulls int
	// Reports are the model's fresh worker reports (stale ones are filtered
	// out by the caller), one per worker.
	Reports []WorkerReport
}

// Reason names why a Decision came out as it did. Values are stable; they
// appear in hints, logs and metrics.
type Reason string

// Decision reasons.
const (
	ReasonSteady             Reason = "steady"              // desired equals the previous value
	ReasonScaleUp            Reason = "scale_up"            // need exceeds the current replicas
	ReasonScaleDown          Reason = "scale_down"          // need fell and the window agrees
	ReasonStabilizing        Reason = "stabilizing"         // need fell; held by window or hysteresis
	ReasonIdle               Reason = "idle"                // idle for IdleAfter: at MinReplicas
	ReasonConsumerMissing    Reason = "consumer_missing"    // no consumer: MinReplicas
	ReasonConsumerUnreadable Reason = "consumer_unreadable" // unknown state: previous value held
	ReasonNoServiceRate      Reason = "no_service_rate"     // backlog, rate unknown: fallback
)

// Decision is the outcome of one Policy step, with the inputs that
// produced it.
type Decision struct {
	// Desired is the replica count to run, within [MinReplicas,MaxReplicas].
	Desired int
	// Raw is the unrounded need before hysteresis and stabilization.
	Raw float64
	// Reason explains Desired.
	Reason Reason
	// Backlog is NumPending + NumAckPending − InFlight, at least 0.
	Backlog int64
	// InFlight is the sum of InFlightMsgs of the fresh reports.
	InFlight int
	// ArrivalRate is the EWMA of arrivals, messages/s.
	ArrivalRate float64
	// ServiceRate is the per-replica service rate used, messages/s (0 when
	// unknown).
	ServiceRate float64
	// ServiceRateSource is "reports", "remembered", "default" or "none".
	ServiceRateSource string
	// Ready is the number of fresh reports (workers known to be running).
	Ready int
	// ColdStart is the cold start assumed for new replicas.
	ColdStart time.Duration
	// IdleFor is how long the model has been idle (0 when busy).
	IdleFor time.Duration
}

// Policy decides the desired replicas of one model from successive
// observations. Not safe for concurrent use.
type Policy struct {
	cfg PolicyConfig

	last         time.Time // time of the previous OK observation
	lastPending  uint64
	lastDeliv    uint64
	haveCounters bool
	arrival      float64 // EWMA, messages/s
	prev         int     // previous desired
	idleSince    time.Time
	rate         float64 // last service rate learned from reports
	rateAt       time.Time
	coldStart    time.Duration // last cold start learned from reports
	history      []recommendation
	seeded       bool // prev was set from the workers running at the first OK observation
}

type recommendation struct {
	at       time.Time
	replicas int
}

// NewPolicy returns a Policy in its initial state: no history, previous
// desired = MinReplicas until the first observation of a readable
// consumer, which sets it to the workers running then (see Decide).
func NewPolicy(cfg PolicyConfig) (*Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validating policy config: %w", err)
	}
	return &Policy{cfg: cfg, prev: cfg.MinReplicas}, nil
}

// Config returns the policy's configuration.
func (p *Policy) Config() PolicyConfig { return p.cfg }

// Desired returns the last decided replica count (MinReplicas before the
// first decision).
func (p *Policy) Desired() int { return p.prev }

// Decide folds one observation into the policy's state and returns the
// decision. See docs/scaling.md for the formulas. The first observation
// of a readable consumer takes the workers running then (fresh reports;
// at least one while pull requests wait) as the current replica count.
func (p *Policy) Decide(o Observation) Decision {
	d := Decision{ServiceRateSource: "none"}
	switch o.Consumer {
	case ConsumerMissing:
		// Nothing can be delivered: scale to the floor, forget counters so
		// that a recreated consumer does not produce a bogus rate sample.
		p.haveCounters = false
		p.arrival = 0
		p.idleSince = time.Time{}
		p.history = p.history[:0]
		d.Desired = p.cfg.MinReplicas
		d.Reason = ReasonConsumerMissing
		p.prev = d.Desired
		return d
	case ConsumerUnreadable:
		// Unknown state: never grow on it, hold what we had.
		d.Desired = p.prev
		d.Reason = ReasonConsumerUnreadable
		d.ArrivalRate = p.arrival
		return d
	}

	if !p.seeded {
		p.seed(o)
	}

	// Arrival rate: arrivals between two observations are the growth of
	// the undelivered count plus the deliveries made meanwhile.
	var arrivals float64
	if p.haveCounters {
		if dt := o.At.Sub(p.last).Seconds(); dt > 0 && o.Delivered >= p.lastDeliv {
			arrivals = float64(int64(o.NumPending)-int64(p.lastPending)) + float64(o.Delivered-p.lastDeliv)
			arrivals = max(arrivals, 0)
			alpha := 1 - math.Exp(-dt/p.cfg.ArrivalTau.Seconds())
			p.arrival += alpha * (arrivals/dt - p.arrival)
		}
	}
	if !p.haveCounters || !o.At.Before(p.last) {
		p.last = o.At
	}
	p.lastPending, p.lastDeliv, p.haveCounters = o.NumPending, o.Delivered, true
	d.ArrivalRate = p.arrival

	// Fleet picture from fresh reports.
	var rateSum float64
	var rated int
	var cold time.Duration
	for _, r := range o.Reports {
		d.InFlight += r.InFlightMsgs
		if mr := r.MsgRate(); mr > 0 {
			rateSum += mr
			rated++
		}
		cold = max(cold, r.ColdStart)
	}
	d.Ready = len(o.Reports)
	switch {
	case rated > 0:
		p.rate, p.rateAt = rateSum/float64(rated), o.At
		d.ServiceRate, d.ServiceRateSource = p.rate, "reports"
	case p.rate > 0 && o.At.Sub(p.rateAt) <= p.cfg.ServiceRateMemory:
		d.ServiceRate, d.ServiceRateSource = p.rate, "remembered"
	case p.cfg.DefaultServiceRate > 0:
		d.ServiceRate, d.ServiceRateSource = p.cfg.DefaultServiceRate, "default"
	}
	if cold > 0 {
		p.coldStart = cold
	}
	d.ColdStart = p.cfg.DefaultColdStart
	if p.coldStart > 0 {
		d.ColdStart = p.coldStart
	}

	backlog := int64(o.NumPending) + int64(o.NumAckPending) - int64(d.InFlight)
	d.Backlog = max(backlog, 0)

	// Idle: nothing queued, nothing held, nothing arrived since last time.
	busy := o.NumPending > 0 || o.NumAckPending > 0 || arrivals > 0
	if busy {
		p.idleSince = time.Time{}
	} else if p.idleSince.IsZero() {
		p.idleSince = o.At
	}
	if !p.idleSince.IsZero() {
		d.IdleFor = o.At.Sub(p.idleSince)
	}

	if !busy && d.IdleFor >= p.cfg.IdleAfter {
		p.history = p.history[:0]
		return p.finish(&d, p.cfg.MinReplicas, ReasonIdle, o.At, true)
	}

	if d.ServiceRate <= 0 {
		// No measurement to size with: never more than the fallback, never
		// less than what runs now (its reports may only be late).
		if d.Backlog == 0 && o.NumAckPending == 0 {
			return p.finish(&d, p.clamp(p.prev), ReasonSteady, o.At, true)
		}
		target := max(p.prev, p.cfg.FallbackReplicas)
		return p.finish(&d, p.clamp(target), ReasonNoServiceRate, o.At, true)
	}

	d.Raw = p.need(d)
	target := ceilInt(d.Raw)
	if d.Backlog > 0 || o.NumAckPending > 0 || p.prev > 0 {
		// Work exists, or replicas run and the idle period has not passed.
		target = max(target, 1)
	}
	target = p.clamp(target)
	if target > p.prev {
		p.record(o.At, target)
		return p.finish(&d, target, ReasonScaleUp, o.At, false)
	}
	// Scale down only past the hysteresis band and the window's maximum.
	down := p.clamp(max(ceilInt(d.Raw*(1+p.cfg.Hysteresis)), target))
	p.record(o.At, min(down, p.prev))
	desired := min(p.windowMax(o.At), p.prev)
	switch {
	case desired == p.prev && target < p.prev:
		return p.finish(&d, desired, ReasonStabilizing, o.At, false)
	case desired < p.prev:
		return p.finish(&d, desired, ReasonScaleDown, o.At, false)
	}
	return p.finish(&d, desired, ReasonSteady, o.At, false)
}

// seed takes the workers running at the first observation of a readable
// consumer as the current replica count, so that a freshly started (or
// restarted) scheduler does not start from MinReplicas and advise
// removing workers it simply has not counted: a running worker is one
// with a fresh report, and a worker that pulls but has not reported yet
// (its first report comes one report interval after it starts) shows as
// waiting pull requests, which prove at least one. From there the count
// moves as always: up at once, down through hysteresis and the
// stabilization window, to MinReplicas after IdleAfter of idleness.
func (p *Policy) seed(o Observation) {
	p.seeded = true
	running := len(o.Reports)
	if running == 0 && o.WaitingPulls > 0 {
		running = 1
	}
	if running == 0 {
		return
	}
	p.prev = p.clamp(running)
	p.record(o.At, p.prev)
}

// need computes the unrounded replica need (docs/scaling.md, "Sizing").
// Over the horizon T the pool must process the backlog plus the arrivals
// (inflated by 1/TargetUtilization). Ready replicas work all of T; new ones
// work T − cold start, but at least T/4.
func (p *Policy) need(d Decision) float64 {
	mu := d.ServiceRate
	t := p.cfg.TargetDrain.Seconds()
	work := float64(d.Backlog) + d.ArrivalRate*t/p.cfg.TargetUtilization
	ready := float64(d.Ready)
	if work <= ready*mu*t {
		return work / (mu * t)
	}
	tNew := max(t-d.ColdStart.Seconds(), t/4)
	return ready + (work-ready*mu*t)/(mu*tNew)
}

// finish stores the decision as the new previous value. Paths that did not
// record a recommendation themselves (record true) record their result in
// the stabilization history here.
func (p *Policy) finish(d *Decision, desired int, why Reason, now time.Time, record bool) Decision {
	if record {
		p.record(now, desired)
	}
	d.Desired = desired
	d.Reason = why
	p.prev = desired
	return *d
}

func (p *Policy) record(now time.Time, replicas int) {
	// Drop recommendations older than the window; keep the slice small.
	cut := 0
	for cut < len(p.history) && now.Sub(p.history[cut].at) > p.cfg.ScaleDownWindow {
		cut++
	}
	p.history = append(p.history[:0], p.history[cut:]...)
	p.history = append(p.history, recommendation{at: now, replicas: replicas})
}

func (p *Policy) windowMax(now time.Time) int {
	m := 0
	for _, r := range p.history {
		if now.Sub(r.at) <= p.cfg.ScaleDownWindow {
			m = max(m, r.replicas)
		}
	}
	return m
}

func (p *Policy) clamp(n int) int {
	return min(max(n, p.cfg.MinReplicas), p.cfg.MaxReplicas)
}

// ceilInt rounds up, forgiving float noise just above an integer.
func ceilInt(x float64) int {
	if x <= 0 || math.IsNaN(x) {
		return 0
	}
	if x > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(math.Ceil(x - 1e-9))
}
