// Command batchsim compares jetinfer's batcher with its strongest peers —
// Triton's identical-shape dynamic batcher fed by clients that bucket row
// lengths themselves (multiples of 32, powers of two) — and with a
// Triton-style batcher without bucketing and no batching, on synthetic
// arrival traces at half load and at saturation, using
// engine latencies measured on the real ONNX Runtime engine running
// testdata/models/seq_encoder.onnx (or a cost model saved earlier).
//
//	go run ./cmd/batchsim                       # measure, simulate, report
//	go run ./cmd/batchsim -save-cost cost.json  # ... and keep the measurement
//	go run ./cmd/batchsim -cost cost.json       # reuse it, no engine needed
//
// The last line of output is
//
//	batcher: speedup_vs_bucketed_triton=<x> p99_ratio=<y> padding=<z>
//
// with x jetinfer's saturated rows/s over the strongest bucketed peer's,
// y the ratio of their p99 request latencies at the -load run (half load
// by default) and z jetinfer's padding waste there. Planning time (the
// CPU time of each Next call that returns a batch, measured here) is charged to the engine
// for every policy unless -charge-planning=false. The line before it gives
// the saturated trace's ceiling (batchsim.Ceiling): the rows/s of an engine
// that ran every row in a batch of rows of its exact length, which bounds
// every policy's speedup on this cost model.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/jetinfer/jetinfer/batcher"
	"github.com/jetinfer/jetinfer/batcher/batchsim"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/worker"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "batchsim:", err)
		os.Exit(1)
	}
}

type flags struct {
	model, ortLib, costIn, costOut string
	gridPoints, reps               int
	maxBatch, seqMin, seqMax       int
	seed                           uint64
	duration                       time.Duration
	load                           float64
	burstFactor                    float64
	burstEvery, burstLen           time.Duration
	seqMedian, seqSigma            float64
	deadlineFrac                   float64
	deadlineMin, deadlineMax       time.Duration
	highPrio                       float64
	maxDelay                       time.Duration
	padMultiple                    int
	bucketRatio                    float64
	maxPadding                     float64
	preferred                      string
	jitter                         float64
	satLoad                        float64
	satDuration                    time.Duration
	chargePlanning                 bool
	cpuProfile                     string
}

func parseFlags() flags {
	var f flags
	flag.StringVar(&f.model, "model", "testdata/models/seq_encoder.onnx", "ONNX model to measure")
	flag.StringVar(&f.ortLib, "ort", os.Getenv("JETINFER_ORT_LIBRARY"), "ONNX Runtime library (default $JETINFER_ORT_LIBRARY, else search .cache/onnxruntime and system dirs)")
	flag.StringVar(&f.costIn, "cost", "", "load the cost model from this JSON file instead of measuring")
	flag.StringVar(&f.costOut, "save-cost", "", "write the measured cost model to this JSON file")
	flag.IntVar(&f.gridPoints, "grid-points", 0, "max measured shapes per profile (0: the default grid)")
	flag.IntVar(&f.reps, "reps", 15, "timed runs per measured shape (median kept)")
	flag.IntVar(&f.maxBatch, "max-batch", 64, "engine max batch (profile max)")
	flag.IntVar(&f.seqMin, "seq-min", 8, "shortest sequence length (profile min, trace clip)")
	flag.IntVar(&f.seqMax, "seq-max", 512, "longest sequence length (profile max, trace clip)")
	flag.Uint64Var(&f.seed, "seed", 1, "trace seed")
	flag.DurationVar(&f.duration, "duration", 20*time.Second, "simulated arrival window")
	flag.Float64Var(&f.load, "load", 0.5, "mean offered rows/s as a fraction of the engine's ideal rows/s (full, unpadded batches)")
	flag.Float64Var(&f.burstFactor, "burst-factor", 2, "arrival rate multiplier during bursts")
	flag.DurationVar(&f.burstEvery, "burst-every", 2*time.Second, "mean gap between bursts")
	flag.DurationVar(&f.burstLen, "burst-len", 250*time.Millisecond, "burst length")
	flag.Float64Var(&f.seqMedian, "seq-median", 48, "median sequence length (lognormal)")
	flag.Float64Var(&f.seqSigma, "seq-sigma", 0.9, "lognormal shape of sequence lengths")
	flag.Float64Var(&f.deadlineFrac, "deadline-frac", 0.2, "fraction of requests with a deadline")
	flag.DurationVar(&f.deadlineMin, "deadline-min", 20*time.Millisecond, "shortest deadline after arrival")
	flag.DurationVar(&f.deadlineMax, "deadline-max", 100*time.Millisecond, "longest deadline after arrival")
	flag.Float64Var(&f.highPrio, "high-priority", 0.1, "fraction of requests with priority 1")
	flag.DurationVar(&f.maxDelay, "max-delay", 2*time.Millisecond, "max queue delay (both batchers)")
	flag.IntVar(&f.padMultiple, "pad-multiple", 1, "jetinfer: padded lengths are multiples of this")
	flag.Float64Var(&f.maxPadding, "max-padding", 0, "jetinfer: cap on a batch's padding fraction (0: the batcher's default; 1: none)")
	flag.Float64Var(&f.bucketRatio, "bucket-ratio", batcher.DefaultBucketRatio, "jetinfer: relative gap between bucket lengths")
	flag.StringVar(&f.preferred, "preferred", "16,32,64", "Triton-style preferred batch sizes")
	flag.Float64Var(&f.jitter, "jitter", 0.05, "lognormal jitter of simulated engine latencies")
	flag.Float64Var(&f.satLoad, "sat-load", 1.5, "offered load of the saturation run (fraction of ideal rows/s; above every policy's capacity)")
	flag.DurationVar(&f.satDuration, "sat-duration", 3*time.Second, "arrival window of the saturation run")
	flag.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the simulations to this file")
	flag.BoolVar(&f.chargePlanning, "charge-planning", true, "add each Next call's measured CPU time to its batch's engine time")
	flag.Parse()
	return f
}

func run() error {
	f := parseFlags()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	spec, cost, err := costModel(ctx, f)
	if err != nil {
		return err
	}
	for p := range cost.Profiles() {
		fit := cost.Fit(p)
		fmt.Printf("cost model profile %d: latency ≈ %.1fµs + %.2fµs·b + %.1fns·s + %.1fns·b·s (R²=%.4f)\n",
			p, fit.Base/1e3, fit.PerRow/1e3, fit.PerStep, fit.PerRowStep, fit.R2)
	}

	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return fmt.Errorf("creating CPU profile: %w", err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fmt.Errorf("starting CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var preferred []int
	for _, v := range strings.Split(f.preferred, ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("parsing -preferred: %w", err)
		}
		preferred = append(preferred, n)
	}
	half, _, err := scenario(spec, cost, f, preferred, f.load, f.duration, batcher.DefaultMaxQueueRows)
	if err != nil {
		return err
	}
	// At saturation the backlog grows for the whole window: the harness
	// raises jetinfer's MaxQueueRows (default 65536) so that nothing is
	// refused; Triton's queues are unbounded.
	sat, ceiling, err := scenario(spec, cost, f, preferred, f.satLoad, f.satDuration, 1<<24)
	if err != nil {
		return err
	}
	// The strongest bucketed peer: the highest saturated rows/s.
	best := -1
	for i, r := range sat {
		if strings.HasPrefix(r.Policy, "bucketed") && (best < 0 || r.RowsPerSec > sat[best].RowsPerSec) {
			best = i
		}
	}
	fmt.Printf("\nside by side (saturated rows/s; p99 and padding at load %.2f):\n", f.load)
	for i := range sat {
		fmt.Printf("  %-14s sat_rows/s=%7.0f (×%.2f of jetinfer)  p99=%9v  padding=%5.1f%%  deadline_misses=%d/%d\n",
			sat[i].Policy, sat[i].RowsPerSec, sat[i].RowsPerSec/sat[0].RowsPerSec, half[i].P99.Round(time.Microsecond),
			100*half[i].Padding, half[i].Misses(), half[i].DeadlineReqs)
	}
	j, p := sat[0], sat[best]
	fmt.Printf("strongest peer: %s\n", p.Policy)
	fmt.Printf("ceiling: %.0f rows/s = ×%.2f of %s, ×%.2f of jetinfer (saturated trace, every row in a batch of its exact length at the cheapest size: no batcher's speedup can exceed it)\n",
		ceiling, ceiling/p.RowsPerSec, p.Policy, ceiling/j.RowsPerSec)
	fmt.Printf("batcher: speedup_vs_bucketed_triton=%.2f p99_ratio=%.3g padding=%.3f\n",
		j.RowsPerSec/p.RowsPerSec, float64(half[0].P99)/float64(half[best].P99), half[0].Padding)
	return nil
}

// scenario simulates every policy on one trace at the given load. It
// also returns the trace's ceiling (batchsim.Ceiling).
func scenario(spec trt.Spec, cost *batcher.CostModel, f flags, preferred []int, load float64, duration time.Duration, maxQueue int) ([]batchsim.Result, float64, error) {
	tc := batchsim.TraceConfig{
		Seed: f.seed, Duration: duration,
		BurstEvery: f.burstEvery, BurstLen: f.burstLen, BurstFactor: f.burstFactor,
		MinRows: 1, MaxRows: min(64, f.maxBatch),
		SeqMedian: f.seqMedian, SeqSigma: f.seqSigma, SeqMin: f.seqMin, SeqMax: f.seqMax,
		DeadlineFrac: f.deadlineFrac, DeadlineMin: f.deadlineMin, DeadlineMax: f.deadlineMax,
		HighPriorityFrac: f.highPrio,
	}
	ideal := batchsim.IdealRowsPerSec(spec, cost, tc.SeqSampler(rand.New(rand.NewPCG(f.seed+1, 7))), 20000)
	tc.RowsPerSec = load * ideal
	trace, err := batchsim.Generate(tc)
	if err != nil {
		return nil, 0, fmt.Errorf("generating trace: %w", err)
	}
	rows, dl := 0, 0
	for _, r := range trace {
		rows += r.Rows()
		if r.HasDL {
			dl++
		}
	}
	fmt.Printf("\ntrace: %d requests, %d rows over %v (offered %.0f rows/s = %.2f × ideal %.0f rows/s; bursts ×%g for %v every ~%v), %d with deadlines in [%v, %v], seq lognormal median %g σ %g in [%d, %d]\n",
		len(trace), rows, duration, float64(rows)/duration.Seconds(), float64(rows)/duration.Seconds()/ideal, ideal,
		f.burstFactor, f.burstLen, f.burstEvery, dl, f.deadlineMin, f.deadlineMax, f.seqMedian, f.seqSigma, f.seqMin, f.seqMax)

	epoch := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	jet, err := batchsim.NewJetinfer(spec, cost, batcher.Config{MaxDelay: f.maxDelay, PadMultiple: f.padMultiple, BucketRatio: f.bucketRatio,
		MaxPadding: f.maxPadding, MaxQueueRows: maxQueue, Masks: maskInputs(spec)}, epoch)
	if err != nil {
		return nil, 0, fmt.Errorf("creating batcher: %w", err)
	}
	tcfg := batchsim.TritonConfig{MaxBatch: f.maxBatch, PreferredSizes: preferred, MaxQueueDelay: f.maxDelay}
	policies := []batchsim.Policy{
		jet,
		batchsim.NewBucketed("bucketed-32", spec, batchsim.MultipleBuckets(32, f.seqMax), tcfg, epoch),
		batchsim.NewBucketed("bucketed-pow2", spec, batchsim.PowerOfTwoBuckets(f.seqMin, f.seqMax), tcfg, epoch),
		batchsim.NewTriton(spec, tcfg, epoch),
		batchsim.NewUnbatched(spec, f.maxBatch, epoch),
	}
	eng := batchsim.Engine{Cost: cost, Jitter: f.jitter, Seed: f.seed, ChargePlanning: f.chargePlanning}
	var results []batchsim.Result
	for _, p := range policies {
		start := time.Now()
		r, err := batchsim.Simulate(trace, p, eng, spec, epoch)
		if err != nil {
			return nil, 0, err
		}
		fmt.Printf("%v  [simulated in %v]\n", r, time.Since(start).Round(time.Millisecond))
		results = append(results, r)
	}
	return results, batchsim.Ceiling(spec, cost, trace), nil
}

// costModel loads the cost model from -cost, or measures it on the ONNX
// Runtime engine and optionally saves it.
func costModel(ctx context.Context, f flags) (trt.Spec, *batcher.CostModel, error) {
	rng := []int64{int64(f.seqMin), int64(f.seqMax)}
	spec := seqEncoderSpec(int64(f.maxBatch), rng[0], rng[1])
	if f.costIn != "" {
		data, err := os.ReadFile(f.costIn)
		if err != nil {
			return spec, nil, fmt.Errorf("reading cost model: %w", err)
		}
		m, err := batcher.ParseCostModel(data)
		if err != nil {
			return spec, nil, fmt.Errorf("loading %s: %w", f.costIn, err)
		}
		fmt.Printf("cost model: loaded from %s\n", f.costIn)
		return spec, m, nil
	}
	lib, err := onnxrt.FindLibrary(f.ortLib)
	if err != nil {
		return spec, nil, err
	}
	rt, err := onnxrt.NewRuntime(lib)
	if err != nil {
		return spec, nil, err
	}
	defer rt.Close()
	opts := onnxrt.Options{MaxBatch: f.maxBatch, DimRanges: map[string]onnxrt.DimRange{
		"seq": {Min: rng[0], Max: rng[1]}, // the sequence dimension's name in seq_encoder.onnx and tagger*.onnx
	}}
	eng, err := rt.LoadFile(ctx, f.model, opts)
	if err != nil {
		return spec, nil, fmt.Errorf("loading %s: %w", f.model, err)
	}
	defer eng.Close()
	spec = eng.Spec()
	grid, err := batcher.DefaultGrid(spec, f.gridPoints)
	if err != nil {
		return spec, nil, err
	}
	grid.Reps = f.reps
	start := time.Now()
	m, err := batcher.Measure(ctx, worker.EngineTimer(eng), grid)
	if err != nil {
		return spec, nil, fmt.Errorf("measuring %s: %w", f.model, err)
	}
	fmt.Printf("cost model: measured %d shapes × %d runs on ONNX Runtime %s (%s, 1 intra-op thread) in %v\n",
		grid.Points(), grid.Reps, rt.Version(), eng.Device().Name, time.Since(start).Round(time.Millisecond))
	if f.costOut != "" {
		data, err := m.MarshalJSON()
		if err != nil {
			return spec, nil, fmt.Errorf("encoding cost model: %w", err)
		}
		if err := os.WriteFile(f.costOut, data, 0o644); err != nil {
			return spec, nil, fmt.Errorf("writing cost model: %w", err)
		}
		fmt.Printf("cost model: saved to %s\n", f.costOut)
	}
	return spec, m, nil
}

// maskInputs names the inputs the batcher fills as masks: those called
// mask or attention_mask (seq_encoder.onnx, tagger.onnx).
func maskInputs(spec trt.Spec) []string {
	var out []string
	for _, in := range spec.Inputs {
		if in.Name == "mask" || in.Name == "attention_mask" {
			out = append(out, in.Name)
		}
	}
	return out
}

// seqEncoderSpec is the engine spec of seq_encoder.onnx under the ONNX
// Runtime options used here; it lets a saved cost model be simulated
// without loading the engine.
func seqEncoderSpec(maxBatch, seqMin, seqMax int64) trt.Spec {
	return trt.Spec{
		Inputs: []trt.TensorDesc{
			{Name: "x", DType: trt.Float32, Shape: trt.Shape{-1, -1, 16}},
			{Name: "mask", DType: trt.Float32, Shape: trt.Shape{-1, -1}},
		},
		Outputs: []trt.TensorDesc{{Name: "y", DType: trt.Float32, Shape: trt.Shape{-1, 8}}},
		Profiles: []trt.Profile{{
			Min: map[string]trt.Shape{"x": {1, seqMin, 16}, "mask": {1, seqMin}},
			Opt: map[string]trt.Shape{"x": {maxBatch, seqMax, 16}, "mask": {maxBatch, seqMax}},
			Max: map[string]trt.Shape{"x": {maxBatch, seqMax, 16}, "mask": {maxBatch, seqMax}},
		}},
	}
}
