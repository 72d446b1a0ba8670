package scheduler

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

// workers returns n fresh reports each claiming rate messages/s and holding
// inFlight messages.
func workers(n int, rate float64, inFlight int) []WorkerReport {
	out := make([]WorkerReport, n)
	for i := range out {
		out[i] = WorkerReport{Model: "m", WorkerID: string(rune('a' + i)), ServiceRate: rate * 4, RowsPerMsg: 4,
			InFlightMsgs: inFlight, ColdStart: 30 * time.Second}
	}
	return out
}

type step struct {
	obs         Observation
	wantDesired int
	wantReason  Reason
}

func TestPolicyDecide(t *testing.T) {
	base := DefaultPolicyConfig()
	base.TargetDrain = 60 * time.Second
	base.TargetUtilization = 1
	base.Hysteresis = 0.1
	base.ScaleDownWindow = 60 * time.Second
	base.IdleAfter = 60 * time.Second
	base.MaxReplicas = 10

	tests := []struct {
		name  string
		cfg   func(*PolicyConfig)
		steps []step
	}{
		{
			name: "backlog with one ready worker sizes for drain after cold start",
			steps: []step{
				// work 1200 msgs; 1 ready replica drains 600 in 60 s; each new one
				// drains 10·(60−30)=300 → 1 + 600/300 = 3.
				{Observation{At: at(0), NumPending: 1200, Reports: workers(1, 10, 0)}, 3, ReasonScaleUp},
			},
		},
		{
			name: "default service rate sizes scale from zero; cold start beyond the target leaves a quarter of it",
			cfg: func(c *PolicyConfig) {
				c.DefaultServiceRate = 10
				c.DefaultColdStart = 10 * time.Minute
			},
			steps: []step{
				// no ready worker, cold start 600 s > 60 s target → new replicas
				// get 15 s: 1200/(10·15) = 8.
				{Observation{At: at(0), NumPending: 1200}, 8, ReasonScaleUp},
			},
		},
		{
			name: "huge backlog is capped at max",
			steps: []step{
				{Observation{At: at(0), NumPending: 1_000_000, Reports: workers(1, 10, 0)}, 10, ReasonScaleUp},
			},
		},
		{
			name: "missing consumer never scales up, even after a large backlog",
			steps: []step{
				{Observation{At: at(0), NumPending: 100_000, Reports: workers(2, 10, 0)}, 10, ReasonScaleUp},
				{Observation{At: at(5), Consumer: ConsumerMissing, Reports: workers(2, 10, 0)}, 0, ReasonConsumerMissing},
				{Observation{At: at(10), Consumer: ConsumerMissing}, 0, ReasonConsumerMissing},
			},
		},
		{
			name: "missing consumer with a floor gives the floor",
			cfg:  func(c *PolicyConfig) { c.MinReplicas = 2 },
			steps: []step{
				{Observation{At: at(0), Consumer: ConsumerMissing}, 2, ReasonConsumerMissing},
			},
		},
		{
			name: "unreadable consumer holds the previous value",
			steps: []step{
				{Observation{At: at(0), NumPending: 1200, Reports: workers(1, 10, 0)}, 3, ReasonScaleUp},
				{Observation{At: at(5), Consumer: ConsumerUnreadable}, 3, ReasonConsumerUnreadable},
				{Observation{At: at(10), Consumer: ConsumerUnreadable}, 3, ReasonConsumerUnreadable},
			},
		},
		{
			name: "no reports and no rate asks for the fallback, not max",
			steps: []step{
				{Observation{At: at(0), NumPending: 1_000_000}, 1, ReasonNoServiceRate},
				{Observation{At: at(5), NumPending: 2_000_000}, 1, ReasonNoServiceRate},
			},
		},
		{
			name: "reports vanish: the remembered rate keeps sizing",
			steps: []step{
				// 1 + (3000−600)/300 = 9
				{Observation{At: at(0), NumPending: 3000, Reports: workers(1, 10, 0)}, 9, ReasonScaleUp},
				// nobody ready: 3000/300 = 10
				// reports vanish but the rate is remembered: sizing continues
				{Observation{At: at(5), NumPending: 3000, Delivered: 0}, 10, ReasonScaleUp},
			},
		},
		{
			name: "in-flight messages are not backlog",
			steps: []step{
				// 2 workers hold 16 messages each: ack-pending 32 is all in flight,
				// so one would do, but the two running are kept through the window.
				{Observation{At: at(0), NumPending: 0, NumAckPending: 32, Reports: workers(2, 10, 16)}, 2, ReasonStabilizing},
				{Observation{At: at(61), NumPending: 0, NumAckPending: 32, Reports: workers(2, 10, 16)}, 1, ReasonScaleDown},
			},
		},
		{
			name: "ack-pending beyond in-flight counts as backlog",
			steps: []step{
				// 632 ack-pending, 32 held: 600 backlog → 600/(10·60) = 1 with 2
				// ready, who are kept (the first observation counts them).
				{Observation{At: at(0), NumAckPending: 632, Reports: workers(2, 10, 16)}, 2, ReasonStabilizing},
				// 1800 backlog: 2 ready drain 1200, new ones 300 each → 4.
				{Observation{At: at(5), NumAckPending: 1832, Reports: workers(2, 10, 16)}, 4, ReasonScaleUp},
			},
		},
		{
			name: "scale down waits for the stabilization window",
			steps: []step{
				{Observation{At: at(0), NumPending: 3000, Reports: workers(1, 10, 0)}, 9, ReasonScaleUp},
				{Observation{At: at(30), NumPending: 0, Delivered: 3000, Reports: workers(9, 10, 0)}, 9, ReasonStabilizing},
				{Observation{At: at(59), NumPending: 0, Delivered: 3000, Reports: workers(9, 10, 0)}, 9, ReasonStabilizing},
				// the scale-up recommendation left the 60 s window
				{Observation{At: at(61), NumPending: 0, Delivered: 3000, Reports: workers(9, 10, 0)}, 1, ReasonScaleDown},
			},
		},
		{
			name: "hysteresis keeps the count when the need is just below it",
			cfg:  func(c *PolicyConfig) { c.ScaleDownWindow = 0 },
			steps: []step{
				{Observation{At: at(0), NumPending: 2400, Reports: workers(4, 10, 0)}, 4, ReasonSteady},
				// need 3.8 replicas: ceil(3.8·1.1)=5 → stays 4
				{Observation{At: at(1), NumPending: 2280, Reports: workers(4, 10, 0)}, 4, ReasonSteady},
				// need 3.5: ceil(3.85)=4 → stays 4
				{Observation{At: at(2), NumPending: 2100, Reports: workers(4, 10, 0)}, 4, ReasonSteady},
				// need 3.0: ceil(3.3)=4 → stays 4 although ceil(3.0)=3
				{Observation{At: at(3), NumPending: 1800, Reports: workers(4, 10, 0)}, 4, ReasonStabilizing},
				// need 2.5: ceil(2.75)=3 → scales to 3
				{Observation{At: at(4), NumPending: 1500, Reports: workers(4, 10, 0)}, 3, ReasonScaleDown},
			},
		},
		{
			name: "idle scales to zero only after the idle period",
			steps: []step{
				{Observation{At: at(0), NumPending: 600, Reports: workers(1, 10, 0)}, 1, ReasonSteady},
				{Observation{At: at(60), Delivered: 600, Reports: workers(1, 10, 0)}, 1, ReasonSteady},
				{Observation{At: at(90), Delivered: 600, Reports: workers(1, 10, 0)}, 1, ReasonSteady},
				{Observation{At: at(119), Delivered: 600, Reports: workers(1, 10, 0)}, 1, ReasonSteady},
				{Observation{At: at(120), Delivered: 600, Reports: workers(1, 10, 0)}, 0, ReasonIdle},
				{Observation{At: at(125), Delivered: 600}, 0, ReasonIdle},
				// activation from zero with the remembered rate
				{Observation{At: at(130), NumPending: 5, Delivered: 600}, 1, ReasonScaleUp},
			},
		},
		{
			name: "the first observation counts the workers running",
			steps: []step{
				// A scheduler (re)started beside three workers that each hold
				// one message and have nothing queued: they are the current
				// count, held through the window, not advised away at once.
				{Observation{At: at(0), NumAckPending: 3, Reports: workers(3, 10, 1)}, 3, ReasonStabilizing},
				{Observation{At: at(30), NumAckPending: 3, Reports: workers(3, 10, 1)}, 3, ReasonStabilizing},
				{Observation{At: at(61), NumAckPending: 3, Reports: workers(3, 10, 1)}, 1, ReasonScaleDown},
			},
		},
		{
			name: "a worker pulling before its first report counts as one",
			steps: []step{
				{Observation{At: at(0), WaitingPulls: 2}, 1, ReasonSteady},
				// later waiting pulls change nothing: only the first observation is seeded
				{Observation{At: at(30), WaitingPulls: 2}, 1, ReasonSteady},
				{Observation{At: at(60), WaitingPulls: 2}, 0, ReasonIdle},
			},
		},
		{
			name: "running workers beyond max are counted as max",
			cfg:  func(c *PolicyConfig) { c.MaxReplicas = 2 },
			steps: []step{
				{Observation{At: at(0), Reports: workers(5, 10, 0)}, 2, ReasonStabilizing},
			},
		},
		{
			name: "idle respects min replicas",
			cfg:  func(c *PolicyConfig) { c.MinReplicas = 1 },
			steps: []step{
				{Observation{At: at(0)}, 1, ReasonSteady},
				{Observation{At: at(61)}, 1, ReasonIdle},
				{Observation{At: at(62), NumPending: 1}, 1, ReasonNoServiceRate},
			},
		},
		{
			name: "remembered rate expires",
			cfg:  func(c *PolicyConfig) { c.ServiceRateMemory = time.Minute },
			steps: []step{
				{Observation{At: at(0), NumPending: 600, Reports: workers(1, 10, 0)}, 1, ReasonSteady},
				{Observation{At: at(50), NumPending: 30000, Delivered: 600}, 10, ReasonScaleUp},
				{Observation{At: at(200), NumPending: 30000, Delivered: 600}, 10, ReasonNoServiceRate},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			p, err := NewPolicy(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				d := p.Decide(s.obs)
				if d.Desired != s.wantDesired || d.Reason != s.wantReason {
					t.Fatalf("step %d: got desired %d (%s, raw %.3f, backlog %d, arrival %.2f, rate %.2f/%s); want %d (%s)",
						i, d.Desired, d.Reason, d.Raw, d.Backlog, d.ArrivalRate, d.ServiceRate, d.ServiceRateSource, s.wantDesired, s.wantReason)
				}
				if d.Desired > cfg.MaxReplicas || d.Desired < cfg.MinReplicas {
					t.Fatalf("step %d: desired %d outside [%d,%d]", i, d.Desired, cfg.MinReplicas, cfg.MaxReplicas)
				}
			}
		})
	}
}

func TestPolicyArrivalRateConverges(t *testing.T) {
	cfg := DefaultPolicyConfig()
	cfg.ArrivalTau = 10 * time.Second
	p, err := NewPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// 100 msgs/s arrive; workers deliver all of them immediately, so the
	// pending count stays at 5 and only the delivered sequence moves.
	var d Decision
	for i := range 60 {
		d = p.Decide(Observation{At: at(float64(i) * 5), NumPending: 5, Delivered: uint64(i) * 500, Reports: workers(3, 40, 0)})
	}
	if math.Abs(d.ArrivalRate-100) > 1 {
		t.Fatalf("arrival rate %.2f; want ≈100", d.ArrivalRate)
	}
	// 100/(40·0.85) = 2.94 → 3 replicas (backlog 5 adds 0.002).
	if d.Desired != 3 {
		t.Fatalf("desired %d; want 3 (raw %.3f)", d.Desired, d.Raw)
	}
	// Growth of the pending count is arrival too.
	p2, _ := NewPolicy(cfg)
	for i := range 60 {
		d = p2.Decide(Observation{At: at(float64(i) * 5), NumPending: uint64(i) * 50, Reports: workers(1, 40, 0)})
	}
	if math.Abs(d.ArrivalRate-10) > 0.5 {
		t.Fatalf("arrival rate from pending growth %.2f; want ≈10", d.ArrivalRate)
	}
}

func TestPolicyConsumerRecreatedDoesNotSpike(t *testing.T) {
	p, err := NewPolicy(DefaultPolicyConfig())
	if err != nil {
		t.Fatal(err)
	}
	p.Decide(Observation{At: at(0), Delivered: 1_000_000, Reports: workers(1, 10, 0)})
	// Consumer recreated: sequence restarts at 0. No negative or huge rate.
	d := p.Decide(Observation{At: at(5), Delivered: 3, Reports: workers(1, 10, 0)})
	if d.ArrivalRate < 0 || d.ArrivalRate > 1 {
		t.Fatalf("arrival rate after reset %.2f; want ~0", d.ArrivalRate)
	}
}

func TestPolicyConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*PolicyConfig)
		ok   bool
	}{
		{"defaults", func(*PolicyConfig) {}, true},
		{"negative min", func(c *PolicyConfig) { c.MinReplicas = -1 }, false},
		{"max below min", func(c *PolicyConfig) { c.MinReplicas, c.MaxReplicas = 3, 2 }, false},
		{"zero max", func(c *PolicyConfig) { c.MaxReplicas = 0 }, false},
		{"zero drain", func(c *PolicyConfig) { c.TargetDrain = 0 }, false},
		{"utilization above 1", func(c *PolicyConfig) { c.TargetUtilization = 1.5 }, false},
		{"utilization zero", func(c *PolicyConfig) { c.TargetUtilization = 0 }, false},
		{"fallback above max", func(c *PolicyConfig) { c.FallbackReplicas = 11 }, false},
		{"fallback zero", func(c *PolicyConfig) { c.FallbackReplicas = 0 }, false},
		{"zero tau", func(c *PolicyConfig) { c.ArrivalTau = 0 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultPolicyConfig()
			tt.mod(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v; want ok=%v", err, tt.ok)
			}
		})
	}
}
