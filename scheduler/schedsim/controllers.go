package schedsim

import (
	"fmt"
	"math"
	"time"

	"github.com/jetinfer/jetinfer/scheduler"
)

// Fixed is a pool of constant size.
type Fixed struct{ N int }

// Name implements Controller.
func (f Fixed) Name() string { return fmt.Sprintf("fixed(%d)", f.N) }

// Desired implements Controller.
func (f Fixed) Desired(State) int { return f.N }

// HPAConfig models the Kubernetes HorizontalPodAutoscaler that KEDA feeds.
type HPAConfig struct {
	// SyncPeriod is the controller's resync, seconds (kube default 15).
	SyncPeriod int
	// Tolerance: no change while |metric/target − 1| ≤ Tolerance (0.1).
	Tolerance float64
	// ScaleDownWindow is the scale-down stabilization window, seconds
	// (default 300): scale down only to the highest recommendation in it.
	ScaleDownWindow int
	// ScaleUpPods and ScaleUpPercent limit one scale-up step (per
	// SyncPeriod): at most max(current+Pods, current·(1+Percent/100)).
	// Kubernetes defaults: 4 pods, 100%.
	ScaleUpPods    int
	ScaleUpPercent float64
}

// KEDAConfig models a ScaledObject: KEDA's own activation loop around an
// HPA.
type KEDAConfig struct {
	// PollingInterval is how often KEDA checks triggers for activation,
	// seconds (default 30).
	PollingInterval int
	// CooldownPeriod is how long all triggers must be inactive before KEDA
	// scales to zero, seconds (default 300).
	CooldownPeriod int
	// MinReplicas is minReplicaCount (0 allows zero).
	MinReplicas int
	// MaxReplicas is maxReplicaCount.
	MaxReplicas int
	// HPA is the HPA KEDA creates.
	HPA HPAConfig
}

// DefaultKEDA returns KEDA's and Kubernetes' documented defaults.
func DefaultKEDA(maxReplicas int) KEDAConfig {
	return KEDAConfig{
		PollingInterval: 30,
		CooldownPeriod:  300,
		MaxReplicas:     maxReplicas,
		HPA:             HPAConfig{SyncPeriod: 15, Tolerance: 0.1, ScaleDownWindow: 300, ScaleUpPods: 4, ScaleUpPercent: 100},
	}
}

// ChartKEDA returns the ScaledObject settings deploy/helm/jetinfer uses
// with the scheduler's metrics-api trigger: fast polling (the scheduler
// already decided), a short cooldown (the scheduler already waited for
// IdleAfter), no HPA scale-down window (the scheduler stabilizes), and a
// permissive scale-up.
func ChartKEDA(maxReplicas int) KEDAConfig {
	return KEDAConfig{
		PollingInterval: 5,
		CooldownPeriod:  15,
		MaxReplicas:     maxReplicas,
		HPA:             HPAConfig{SyncPeriod: 15, Tolerance: 0.1, ScaleDownWindow: 0, ScaleUpPods: 100, ScaleUpPercent: 1000},
	}
}

// Trigger is one ScaledObject trigger as the HPA sees it: an external
// metric with an AverageValue target.
type Trigger struct {
	// Value reads the metric.
	Value func(State) float64
	// Target is the AverageValue target: the HPA wants ceil(Value/Target).
	Target float64
	// Activation: the trigger is active while Value > Activation.
	Activation float64
}

// keda runs KEDA's activation loop and the HPA loop over triggers.
type keda struct {
	cfg        KEDAConfig
	triggers   []Trigger
	lastActive int
	history    []rec
	desired    int
}

type rec struct{ t, n int }

func newKEDA(cfg KEDAConfig, triggers ...Trigger) *keda {
	return &keda{cfg: cfg, triggers: triggers, lastActive: math.MinInt32 / 2, desired: cfg.MinReplicas}
}

func (k *keda) step(s State) int {
	current := s.Pods()
	k.desired = current
	if s.T%k.cfg.PollingInterval == 0 {
		active := false
		for _, tr := range k.triggers {
			if tr.Value(s) > tr.Activation {
				active = true
			}
		}
		switch {
		case active:
			k.lastActive = s.T
			if current == 0 {
				k.history = k.history[:0]
				k.desired = max(1, k.cfg.MinReplicas)
				return k.desired
			}
		case current > 0 && k.cfg.MinReplicas == 0 && s.T-k.lastActive >= k.cfg.CooldownPeriod:
			k.history = k.history[:0]
			k.desired = 0
			return 0
		}
	}
	if current == 0 || s.T%k.cfg.HPA.SyncPeriod != 0 {
		return k.desired
	}
	h := k.cfg.HPA
	want := 0
	for _, tr := range k.triggers {
		v := tr.Value(s)
		ratio := v / (tr.Target * float64(current))
		d := current
		if math.Abs(ratio-1) > h.Tolerance {
			d = int(math.Ceil(v/tr.Target - 1e-9))
		}
		want = max(want, d)
	}
	want = min(max(want, 1, k.cfg.MinReplicas), k.cfg.MaxReplicas)
	cut := 0
	for cut < len(k.history) && s.T-k.history[cut].t > h.ScaleDownWindow {
		cut++
	}
	k.history = append(k.history[cut:], rec{s.T, want})
	if want < current {
		hi := 0
		for _, r := range k.history {
			hi = max(hi, r.n)
		}
		want = min(current, hi)
	}
	if want > current {
		limit := max(current+h.ScaleUpPods, int(math.Ceil(float64(current)*(1+h.ScaleUpPercent/100))))
		want = min(want, limit)
	}
	k.desired = want
	return want
}

// KEDALag is KEDA's nats-jetstream scaler as documented: metric = the
// consumer's num_pending + num_ack_pending, desired = ceil(lag /
// lagThreshold), activation when lag > activationLagThreshold (0).
type KEDALag struct {
	k            *keda
	lagThreshold float64
}

// NewKEDALag returns the KEDA baseline.
func NewKEDALag(cfg KEDAConfig, lagThreshold float64) *KEDALag {
	lag := func(s State) float64 { return math.Round(s.Queue) }
	return &KEDALag{k: newKEDA(cfg, Trigger{Value: lag, Target: lagThreshold}), lagThreshold: lagThreshold}
}

// Name implements Controller.
func (c *KEDALag) Name() string { return fmt.Sprintf("keda(lagThreshold=%g)", c.lagThreshold) }

// Desired implements Controller.
func (c *KEDALag) Desired(s State) int { return c.k.step(s) }

// PolicyController runs jetinfer's scheduler.Policy every Interval seconds,
// feeding it what the scheduler would read (consumer counters, one fresh
// report per ready replica), and passes its hint through the same KEDA/HPA
// machinery the Helm chart configures: a metrics-api trigger on the hint
// (AverageValue, target 1) plus a nats-jetstream trigger with a huge
// lagThreshold that only activates from zero.
type PolicyController struct {
	p        *scheduler.Policy
	k        *keda
	interval int
	capacity float64
	cold     time.Duration
	hint     int
	last     scheduler.Decision
	t0       time.Time
}

// NewPolicyController returns controller (a). capacity and coldStart are
// what ready replicas report.
func NewPolicyController(pc scheduler.PolicyConfig, kc KEDAConfig, interval int, capacity float64, coldStart int) (*PolicyController, error) {
	p, err := scheduler.NewPolicy(pc)
	if err != nil {
		return nil, err
	}
	c := &PolicyController{p: p, interval: max(interval, 1), capacity: capacity,
		cold: time.Duration(coldStart) * time.Second, t0: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c.k = newKEDA(kc,
		Trigger{Value: func(State) float64 { return float64(c.hint) }, Target: 1},
		Trigger{Value: func(s State) float64 { return math.Round(s.Queue) }, Target: 1e6},
	)
	return c, nil
}

// Name implements Controller.
func (c *PolicyController) Name() string { return "jetinfer" }

// Last returns the most recent policy decision.
func (c *PolicyController) Last() scheduler.Decision { return c.last }

// Desired implements Controller.
func (c *PolicyController) Desired(s State) int {
	if s.T%c.interval == 0 {
		now := c.t0.Add(time.Duration(s.T) * time.Second)
		reports := make([]scheduler.WorkerReport, s.Ready)
		held := int(math.Round(s.Held))
		for i := range reports {
			share := held / s.Ready
			if i < held%s.Ready {
				share++
			}
			reports[i] = scheduler.WorkerReport{Model: "sim", WorkerID: fmt.Sprint(i), At: now,
				ServiceRate: c.capacity, ColdStart: c.cold, InFlightMsgs: share}
		}
		held = 0
		for _, r := range reports {
			held += r.InFlightMsgs
		}
		queue := int(math.Round(s.Queue))
		c.last = c.p.Decide(scheduler.Observation{
			At:            now,
			NumPending:    uint64(max(queue-held, 0)),
			NumAckPending: held,
			Delivered:     uint64(math.Round(s.Delivered)),
			Reports:       reports,
		})
		c.hint = c.last.Desired
	}
	return c.k.step(s)
}
