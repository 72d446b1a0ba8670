// Command scalersim compares autoscaling policies on three synthetic
// traces (bursty, no-burst, and bursty with slow replicas): jetinfer's
// scheduler policy (behind KEDA's metrics-api trigger), KEDA's NATS
// JetStream lag scaler given the same HPA behaviour and its best
// lagThreshold from a sweep, and a fixed pool sized for the peak. It
// prints a table per trace and ends with one line:
//
//	scaler: replica_seconds_vs_tuned_keda=<x> slo_misses=<n> keda_slo_misses=<m> worst_trace=<name>
//
// where x is jetinfer's replica-seconds divided by the tuned KEDA's on the
// trace where that ratio is highest (lower is better). The tuned KEDA is
// the sweep's cheapest threshold with no more SLO misses than jetinfer,
// or, when none, the one with the fewest misses.
// See docs/scaling.md for the model, the defaults and recorded results.
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jetinfer/jetinfer/scheduler"
	"github.com/jetinfer/jetinfer/scheduler/schedsim"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "scalersim:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	tc := schedsim.DefaultTraceConfig()
	pc := scheduler.DefaultPolicyConfig()
	fs := flag.NewFlagSet("scalersim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// Trace.
	hours := fs.Float64("hours", float64(tc.Seconds)/3600, "trace length in hours")
	day := fs.Float64("day-hours", float64(tc.DayPeriod)/3600, "one compressed day, in hours (24 h of traffic shape squeezed into it)")
	fs.Float64Var(&tc.PeakRate, "peak-rate", tc.PeakRate, "base arrival rate at the daily peak, messages/s")
	fs.Float64Var(&tc.NightFraction, "night", tc.NightFraction, "share of the day with no base traffic")
	fs.IntVar(&tc.Bursts, "bursts", tc.Bursts, "number of producer bursts")
	fs.IntVar(&tc.BurstMin, "burst-min", tc.BurstMin, "smallest burst, messages")
	fs.IntVar(&tc.BurstMax, "burst-max", tc.BurstMax, "largest burst, messages")
	fs.IntVar(&tc.BurstSpread, "burst-seconds", tc.BurstSpread, "seconds over which a burst is published")
	fs.Uint64Var(&tc.Seed, "seed", tc.Seed, "trace seed")
	// Pool.
	capacity := fs.Float64("capacity", 50, "messages/s one ready replica serves (measured worker service rate / rows per message)")
	cold := fs.Duration("cold-start", 45*time.Second, "replica cold start: pod start + engine load → first result")
	held := fs.Int("held", 32, "messages a ready replica holds in flight (ack-pending while batching/executing)")
	maxR := fs.Int("max-replicas", 40, "replica cap for every controller")
	slo := fs.Duration("slo", 120*time.Second, "job completion-time SLO")
	// KEDA baseline.
	sweep := fs.String("keda-lag-thresholds", "1,2,5,10,25,50,100,200,400,800,1600,3200,6400,12800",
		"KEDA nats-jetstream lagThresholds to try (10 is KEDA's default)")
	slowCold := fs.Duration("slow-cold-start", 180*time.Second, "cold start of the slow-replica trace")
	// Policy.
	interval := fs.Duration("interval", 5*time.Second, "scheduler tick")
	fs.DurationVar(&pc.TargetDrain, "target-drain", pc.TargetDrain, "policy: drain backlog within")
	fs.Float64Var(&pc.TargetUtilization, "target-utilization", pc.TargetUtilization, "policy: utilization the steady flow may use")
	fs.Float64Var(&pc.Hysteresis, "hysteresis", pc.Hysteresis, "policy: scale-down hysteresis")
	fs.DurationVar(&pc.ScaleDownWindow, "scale-down-window", pc.ScaleDownWindow, "policy: stabilization window")
	fs.DurationVar(&pc.IdleAfter, "idle-after", pc.IdleAfter, "policy: idle time before scaling to zero")
	fs.DurationVar(&pc.ArrivalTau, "arrival-tau", pc.ArrivalTau, "policy: arrival-rate EWMA time constant")
	fs.Float64Var(&pc.DefaultServiceRate, "default-service-rate", pc.DefaultServiceRate, "policy: assumed service rate before any report (0: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tc.Seconds = int(*hours * 3600)
	tc.DayPeriod = int(*day * 3600)
	pc.MaxReplicas = *maxR
	pc.DefaultColdStart = *cold

	type traceCase struct {
		name string
		tc   schedsim.TraceConfig
		cold time.Duration
	}
	noBurst := tc
	noBurst.Bursts = 0
	cases := []traceCase{{"bursty", tc, *cold}, {"no-burst", noBurst, *cold}, {"slow-replica", tc, *slowCold}}
	worst, worstRatio := "", math.Inf(-1)
	var worstA, worstB schedsim.Result
	for _, c := range cases {
		pc := pc
		pc.DefaultColdStart = c.cold
		a, b, err := compare(stdout, c.name, c.tc, pc, *capacity, c.cold, *held, *maxR, *slo, *interval, *sweep)
		if err != nil {
			return err
		}
		if r := a.ReplicaSeconds / b.ReplicaSeconds; r > worstRatio {
			worst, worstRatio, worstA, worstB = c.name, r, a, b
		}
	}
	fmt.Fprintf(stdout, "\nscaler: replica_seconds_vs_tuned_keda=%.3f slo_misses=%d keda_slo_misses=%d worst_trace=%s\n",
		worstRatio, worstA.SLOMisses, worstB.SLOMisses, worst)
	return nil
}

// compare runs jetinfer's policy, the KEDA sweep and a fixed pool on one
// trace, prints the table and returns jetinfer's result and the tuned
// KEDA's.
func compare(stdout io.Writer, name string, tc schedsim.TraceConfig, pc scheduler.PolicyConfig, capacity float64, cold time.Duration,
	held, maxR int, slo, interval time.Duration, sweep string) (schedsim.Result, schedsim.Result, error) {
	var none schedsim.Result
	tr, err := schedsim.GenerateTrace(tc)
	if err != nil {
		return none, none, err
	}
	cc := schedsim.ClusterConfig{Capacity: capacity, ColdStart: int(cold.Seconds()), HeldPerReplica: held,
		MaxReplicas: maxR, SLO: slo.Seconds()}

	fmt.Fprintf(stdout, "\n== %s\ntrace: %d s, %d messages, base peak %.0f msg/s, %d bursts (%d–%d msgs over %d s), night %.0f%%, seed %d\n",
		name, tc.Seconds, tr.Total(), tc.PeakRate, len(tr.Bursts), tc.BurstMin, tc.BurstMax, tc.BurstSpread, tc.NightFraction*100, tc.Seed)
	fmt.Fprintf(stdout, "pool: %.0f msg/s per replica, cold start %v, %d held per replica, max %d, SLO %v\n",
		cc.Capacity, cold, cc.HeldPerReplica, cc.MaxReplicas, slo)

	ours, err := schedsim.NewPolicyController(pc, schedsim.ChartKEDA(maxR), int(interval.Seconds()), cc.Capacity, cc.ColdStart)
	if err != nil {
		return none, none, err
	}
	peak := int(math.Ceil(tr.PeakRate(60) / cc.Capacity))
	fixedCC := cc
	fixedCC.InitialReady = min(peak, maxR)

	type row struct {
		label string
		r     schedsim.Result
	}
	a, err := schedsim.Run(tr, cc, ours)
	if err != nil {
		return none, none, err
	}
	fixed, err := schedsim.Run(tr, fixedCC, schedsim.Fixed{N: min(peak, maxR)})
	if err != nil {
		return none, none, err
	}
	// KEDA gets the HPA behaviour the chart gives jetinfer (fast polling,
	// short cooldown, no scale-down window, permissive scale-up).
	var kedas []schedsim.Result
	for f := range strings.SplitSeq(sweep, ",") {
		lt, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || lt <= 0 {
			return none, none, fmt.Errorf("parsing -keda-lag-thresholds value %q: must be a positive number", f)
		}
		r, err := schedsim.Run(tr, cc, schedsim.NewKEDALag(schedsim.ChartKEDA(maxR), lt))
		if err != nil {
			return none, none, err
		}
		kedas = append(kedas, r)
	}
	// The tuned KEDA: the cheapest with no more SLO misses than jetinfer;
	// else the fewest misses, then the fewest replica-seconds.
	best := -1
	for i, r := range kedas {
		if r.SLOMisses <= a.SLOMisses && (best < 0 || r.ReplicaSeconds < kedas[best].ReplicaSeconds) {
			best = i
		}
	}
	if best < 0 {
		best = 0
		for i, r := range kedas {
			if r.SLOMisses < kedas[best].SLOMisses ||
				r.SLOMisses == kedas[best].SLOMisses && r.ReplicaSeconds < kedas[best].ReplicaSeconds {
				best = i
			}
		}
	}
	b := kedas[best]
	rows := []row{{"(a) jetinfer", a}, {"(b) KEDA (tuned)", b}, {"(c) fixed for peak", fixed}}
	for i, r := range kedas {
		if i != best {
			rows = append(rows, row{"    KEDA sweep", r})
		}
	}
	fmt.Fprintf(stdout, "\n%-20s %-28s %14s %8s %9s %9s %10s %10s %9s %6s\n",
		"", "controller", "replica_s", "vs_keda", "p50_s", "p99_s", "slo_miss", "attain_%", "drain_s", "peak")
	for _, r := range rows {
		fmt.Fprintf(stdout, "%-20s %-28s %14.0f %8.3f %9.1f %9.1f %10d %10.3f %9.0f %6d\n",
			r.label, r.r.Name, r.r.ReplicaSeconds, r.r.ReplicaSeconds/b.ReplicaSeconds, r.r.P50, r.r.P99,
			r.r.SLOMisses, 100*r.r.SLOAttainment(), r.r.MaxDrain(), r.r.PeakReplicas)
	}
	// No controller can spend fewer replica-seconds than the work itself:
	// every message takes 1/capacity of a ready replica's second.
	bound := float64(tr.Total()) / cc.Capacity
	fmt.Fprintf(stdout, "lower bound (messages / capacity): %.0f replica-s = %.3f × tuned KEDA, %.3f × jetinfer\n",
		bound, bound/b.ReplicaSeconds, bound/a.ReplicaSeconds)
	fmt.Fprintf(stdout, "%s: replica_seconds_vs_tuned_keda=%.3f slo_misses=%d keda_slo_misses=%d\n",
		name, a.ReplicaSeconds/b.ReplicaSeconds, a.SLOMisses, b.SLOMisses)
	return a, b, nil
}
