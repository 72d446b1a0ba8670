package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/trt/tensorrt"
)

// Backend names.
const (
	Auto        = "auto"        // TensorRT when a plan is configured and fits this node, else ONNX Runtime
	TensorRT    = "tensorrt"    // TensorRT only: a plan that does not fit is an error
	ONNXRuntime = "onnxruntime" // ONNX Runtime only
)

// Executors returns the worker's default number of batches run at once
// on backend (TensorRT or ONNXRuntime), for JETINFER_EXECUTORS unset.
// TensorRT: 2, one per execution context (JETINFER_TRT_CONTEXTS' default;
// the GPU computes, one batch runs while the next is gathered). ONNX
// Runtime: half the CPUs this process may use (GOMAXPROCS, which follows
// a container's CPU limit), at least 2. Each batch computes on its own
// thread (one intra-op thread per session), so with 2 a 16-core node used
// two cores for inference; with 8 the 1 MiB-request and compute-bound
// cases ran about 1.7× and 3.8× faster there and small requests stayed at the
// broker's limit (docs/benchmarks.md). The other half is left to decoding,
// result encoding and the NATS client.
func Executors(backend string) int {
	if backend == ONNXRuntime {
		return max(2, runtime.GOMAXPROCS(0)/2)
	}
	return 2
}

// Config chooses and configures the execution backend. The env tags are
// the variable names without the binary's JETINFER_ prefix.
type Config struct {
	// Backend is Auto, TensorRT or ONNXRuntime.
	Backend string `env:"BACKEND" envDefault:"auto"`
	// PlanPath is a TensorRT plan; its manifest is <plan>.json.
	PlanPath string `env:"PLAN_PATH"`
	// GPUDevice is the CUDA device ordinal for TensorRT (the CUDA
	// runtime's numbering: CUDA_VISIBLE_DEVICES applies).
	GPUDevice int `env:"GPU_DEVICE"`
	// TRTContexts is the number of TensorRT execution contexts (streams).
	TRTContexts int `env:"TRT_CONTEXTS" envDefault:"2"`
	// TRTAllowHostCode lets a version-compatible plan run the host code it
	// carries (its lean runtime and serialized plugins). Set it false to
	// refuse such plans.
	TRTAllowHostCode bool `env:"TRT_ALLOW_HOST_CODE" envDefault:"true"`
	// TRTPlugins are plugin libraries to load before deserializing the
	// plan (comma-separated in the environment). A plan whose manifest
	// names plugin libraries needs each of them here, unless it is
	// version-compatible (then they are serialized into it).
	TRTPlugins []string `env:"TRT_PLUGINS" envSeparator:","`
	// ModelPath is the ONNX model run by ONNX Runtime.
	ModelPath string `env:"MODEL_PATH" envDefault:"testdata/models/digits.onnx"`
	// ORTLibrary is libonnxruntime.so.1 (default: search the usual places).
	ORTLibrary string `env:"ORT_LIBRARY"`
	// IntraOpThreads is ONNX Runtime's per-session thread count.
	IntraOpThreads int `env:"ORT_INTRA_OP_THREADS" envDefault:"1"`
}

// TensorRTConfig is the tensorrt.Config that c asks for.
func (c Config) TensorRTConfig(log *slog.Logger) tensorrt.Config {
	return tensorrt.Config{Device: c.GPUDevice, Contexts: c.TRTContexts, AllowHostCode: c.TRTAllowHostCode,
		Plugins: c.TRTPlugins, Logger: log}
}

// Choice says which backend Open opened and why.
type Choice struct {
	// Backend is TensorRT or ONNXRuntime.
	Backend string
	// Reason says why, in a sentence for logs and status pages.
	Reason string
	// TensorRTErr is why a configured plan was not used (nil when it was,
	// or when none was configured). It matches trt.ErrIncompatible when
	// the manifest does not fit this node (errors.As gives the
	// *trt.IncompatibleError with every refused rule) and
	// trt.ErrUnavailable when this binary or node has no TensorRT.
	TensorRTErr error
}

// Open opens the backend c asks for; closing the engine releases
// everything it opened. With Auto, a plan that cannot run
// here (no manifest, a manifest that does not fit this node, a binary
// without TensorRT, a plan TensorRT refuses) falls back to ONNX Runtime;
// the fallback is logged at warning level with the reason and every
// refused compatibility rule, and returned in the Choice.
func Open(ctx context.Context, c Config, log *slog.Logger) (trt.Engine, Choice, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch c.Backend {
	case Auto, TensorRT, ONNXRuntime:
	default:
		return nil, Choice{}, fmt.Errorf("choosing the engine backend: JETINFER_BACKEND=%q: want auto, tensorrt or onnxruntime", c.Backend)
	}
	var ch Choice
	if c.Backend == TensorRT || (c.Backend == Auto && c.PlanPath != "") {
		eng, err := OpenTensorRT(ctx, c, log)
		if err == nil {
			return eng, Choice{Backend: TensorRT, Reason: "TensorRT plan " + c.PlanPath + " fits this node"}, nil
		}
		if c.Backend == TensorRT {
			return nil, Choice{TensorRTErr: err}, err
		}
		ch.TensorRTErr = err
		ch.Reason = "TensorRT plan " + c.PlanPath + " not usable here, fell back to ONNX Runtime: " + err.Error()
		logFallback(log, c.PlanPath, err)
	}
	eng, err := OpenONNX(ctx, c)
	if err != nil {
		return nil, ch, errors.Join(ch.TensorRTErr, err)
	}
	ch.Backend = ONNXRuntime
	if ch.Reason == "" {
		if c.Backend == ONNXRuntime {
			ch.Reason = "ONNX Runtime configured"
		} else {
			ch.Reason = "no TensorRT plan configured (JETINFER_PLAN_PATH)"
		}
	}
	return eng, ch, nil
}

// logFallback says loudly why a configured plan is not used: one warning
// with the reason, then one per refused compatibility rule.
func logFallback(log *slog.Logger, plan string, err error) {
	log.Warn("TensorRT plan NOT used; falling back to ONNX Runtime on the CPU", "plan", plan, "reason", err)
	var ie *trt.IncompatibleError
	if errors.As(err, &ie) {
		for _, r := range ie.Refused {
			log.Warn("TensorRT plan refused by a compatibility rule", "plan", plan, "rule", r.Rule, "detail", r.Detail, "hint", r.Hint)
		}
	}
}

// OpenTensorRT loads the plan at c.PlanPath after checking it against its
// manifest (<plan>.json, required) and this node.
func OpenTensorRT(ctx context.Context, c Config, log *slog.Logger) (*tensorrt.Engine, error) {
	if c.PlanPath == "" {
		return nil, errors.New("opening TensorRT: JETINFER_BACKEND=tensorrt needs JETINFER_PLAN_PATH")
	}
	m, plan, err := ReadPlan(c.PlanPath)
	if err != nil {
		return nil, err
	}
	eng, err := tensorrt.Load(ctx, plan, &m, c.TensorRTConfig(log))
	if err != nil {
		return nil, fmt.Errorf("loading TensorRT plan %s: %w", c.PlanPath, err)
	}
	return eng, nil
}

// ReadPlan reads a plan and its manifest (path + ".json", required: a
// plan is checked against this node before TensorRT sees it).
func ReadPlan(path string) (trt.Manifest, []byte, error) {
	plan, err := os.ReadFile(path)
	if err != nil {
		return trt.Manifest{}, nil, fmt.Errorf("reading TensorRT plan: %w", err)
	}
	mb, err := os.ReadFile(path + ".json")
	if err != nil {
		return trt.Manifest{}, nil, fmt.Errorf("reading the plan's manifest (every plan needs one): %w", err)
	}
	m, err := trt.ParseManifest(mb)
	if err != nil {
		return trt.Manifest{}, nil, fmt.Errorf("parsing %s.json: %w", path, err)
	}
	return m, plan, nil
}

// ortEngine is an ONNX Runtime engine that owns its runtime.
type ortEngine struct {
	*onnxrt.Engine
	rt *onnxrt.Runtime
}

// Close closes the engine, then its runtime.
func (e ortEngine) Close() error {
	return errors.Join(e.Engine.Close(), e.rt.Close())
}

// OpenONNX loads the ONNX Runtime library (c.ORTLibrary, or the usual
// places) and the model at c.ModelPath. Closing the engine closes both.
func OpenONNX(ctx context.Context, c Config) (trt.Engine, error) {
	libPath, err := onnxrt.FindLibrary(c.ORTLibrary)
	if err != nil {
		return nil, fmt.Errorf("finding the ONNX Runtime library (run `make ort` or set JETINFER_ORT_LIBRARY): %w", err)
	}
	rt, err := onnxrt.NewRuntime(libPath)
	if err != nil {
		return nil, err
	}
	eng, err := rt.LoadFile(ctx, c.ModelPath, onnxrt.Options{IntraOpThreads: c.IntraOpThreads})
	if err != nil {
		_ = rt.Close()
		return nil, fmt.Errorf("loading model %s: %w", c.ModelPath, err)
	}
	return ortEngine{Engine: eng, rt: rt}, nil
}
