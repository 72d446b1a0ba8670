// Command batchsim compares jetinfer's batcher with a Triton-style dynamic
// batcher and with no batching on one synthetic arrival trace, using
// engine latencies measured on the real ONNX Runtime engine running
// testdata/models/seq_encoder.onnx (or a cost model saved earlier).
//
//	go run ./cmd/batchsim                       # measure, simulate, report
//	go run ./cmd/batchsim -save-cost cost.json  # ... and keep the measurement
//	go run ./cmd/batchsim -cost cost.json       # reuse it, no engine needed
//
// The last line of output is
//
//	batcher: speedup_vs_triton=<x> p99_ratio=<y> padding=<z>
//
// with x the ratio of rows/s (jetinfer over Triton-style), y the ratio of
// p99 request latencies and z jetinfer's padding waste.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
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

	tc := batchsim.TraceConfig{
		Seed: f.seed, Duration: f.duration,
		BurstEvery: f.burstEvery, BurstLen: f.burstLen, BurstFactor: f.burstFactor,
		MinRows: 1, MaxRows: min(64, f.maxBatch),
		SeqMedian: f.seqMedian, SeqSigma: f.seqSigma, SeqMin: f.seqMin, SeqMax: f.seqMax,
		DeadlineFrac: f.deadlineFrac, DeadlineMin: f.deadlineMin, DeadlineMax: f.deadlineMax,
		HighPriorityFrac: f.highPrio,
	}
	ideal := batchsim.IdealRowsPerSec(spec, cost, tc.SeqSampler(rand.New(rand.NewPCG(f.seed+1, 7))), 20000)
	tc.RowsPerSec = f.load * ideal
	trace, err := batchsim.Generate(tc)
	if err != nil {
		return fmt.Errorf("generating trace: %w", err)
	}
	rows, dl := 0, 0
	for _, r := range trace {
		rows += r.Rows()
		if r.HasDL {
			dl++
		}
	}
	fmt.Printf("trace: %d requests, %d rows over %v (offered %.0f rows/s = %.2f × ideal %.0f rows/s; bursts ×%g for %v every ~%v), %d with deadlines in [%v, %v], seq lognormal median %g σ %g in [%d, %d]\n",
		len(trace), rows, f.duration, float64(rows)/f.duration.Seconds(), float64(rows)/f.duration.Seconds()/ideal, ideal,
		f.burstFactor, f.burstLen, f.burstEvery, dl, f.deadlineMin, f.deadlineMax, f.seqMedian, f.seqSigma, f.seqMin, f.seqMax)

	var preferred []int
	for _, s := range strings.Split(f.preferred, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("parsing -preferred: %w", err)
		}
		preferred = append(preferred, n)
	}
	epoch := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	jet, err := batchsim.NewJetinfer(spec, cost, batcher.Config{MaxDelay: f.maxDelay, PadMultiple: f.padMultiple, BucketRatio: f.bucketRatio, MaxPadding: f.maxPadding, Masks: maskInputs(spec)}, epoch)
	if err != nil {
		return fmt.Errorf("creating batcher: %w", err)
	}
	policies := []batchsim.Policy{
		jet,
		batchsim.NewTriton(spec, batchsim.TritonConfig{MaxBatch: f.maxBatch, PreferredSizes: preferred, MaxQueueDelay: f.maxDelay}, epoch),
		batchsim.NewUnbatched(spec, f.maxBatch, epoch),
	}
	eng := batchsim.Engine{Cost: cost, Jitter: f.jitter, Seed: f.seed}
	var results []batchsim.Result
	for _, p := range policies {
		start := time.Now()
		r, err := batchsim.Simulate(trace, p, eng, spec, epoch)
		if err != nil {
			return err
		}
		fmt.Printf("%v  [simulated in %v]\n", r, time.Since(start).Round(time.Millisecond))
		results = append(results, r)
	}
	j, t := results[0], results[1]
	fmt.Printf("batcher: speedup_vs_triton=%.2f p99_ratio=%.3g padding=%.3f\n",
		j.RowsPerSec/t.RowsPerSec, float64(j.P99)/float64(t.P99), j.Padding)
	return nil
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
