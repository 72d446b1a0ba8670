package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/backend"
	"github.com/jetinfer/jetinfer/trt/gpuinfo"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/trt/tensorrt"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/models"
)

// Model sources of `jetinfer worker` (JETINFER_MODEL_SOURCE).
const (
	sourceFile       = "file"       // JETINFER_MODEL_PATH / JETINFER_PLAN_PATH, fixed for the process
	sourceRepository = "repository" // the model repository's active version, swapped when it changes
)

// repoConfig names the model repository's buckets and this node's
// artifact cache (JETINFER_MODEL_BUCKET, ...), for `jetinfer model` and
// `jetinfer worker`.
type repoConfig struct {
	ModelBucket    string `env:"MODEL_BUCKET"`
	ArtifactBucket string `env:"ARTIFACT_BUCKET"`
	CacheDir       string `env:"MODEL_CACHE_DIR"`
	// CacheMaxBytes bounds the cache: least recently used entries no open
	// engine needs are evicted beyond it (default 10GiB).
	CacheMaxBytes worker.ByteSize `env:"MODEL_CACHE_BYTES"`
	// ChunkSize overrides the Object Store chunk size of pushed artifacts
	// (default 4 MiB, less where the server's max_payload is smaller).
	ChunkSize uint32 `env:"MODEL_CHUNK_SIZE"`
}

// open opens (creating when missing) the repository's buckets.
func (c repoConfig) open(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (*models.Repository, error) {
	return models.Open(ctx, js, models.Config{MetaBucket: c.ModelBucket, ArtifactBucket: c.ArtifactBucket,
		CacheDir: c.CacheDir, CacheMaxBytes: int64(c.CacheMaxBytes), ChunkSize: c.ChunkSize}, models.WithLogger(log))
}

// thisNode is what this node offers a plan: the GPU TensorRT's loader
// would use (CUDA device tcfg.Device) and the linked TensorRT; without
// TensorRT or CUDA, the GPU NVML reports at gpuIndex; without a GPU, a
// CPU node, on which every plan is skipped.
func thisNode(tcfg tensorrt.Config, gpuIndex int) trt.Node {
	node, _ := tensorrt.ThisNode(tcfg)
	if node.GPU.Kind == "" {
		if info, err := gpuinfo.Probe(); err == nil {
			if g, err := info.GPU(gpuIndex); err == nil {
				node.GPU = g.Device()
			}
		}
	}
	if node.GPU.Kind == "" {
		node.GPU = trt.Device{Kind: "cpu", Name: "no NVIDIA GPU"}
	}
	return node
}

// repoEngines opens the engines of artifacts the repository resolved, for
// `jetinfer worker` with JETINFER_MODEL_SOURCE=repository and for the
// accuracy gate of `jetinfer model promote`. ONNX models share one ONNX
// Runtime environment (one per process), created on first use and closed
// by close once every engine is closed.
type repoEngines struct {
	cfg backendConfig
	log *slog.Logger
	mu  sync.Mutex
	rt  *onnxrt.Runtime
}

// node is the identity plans are chosen against: this node's, or a CPU
// node when JETINFER_BACKEND=onnxruntime asks for ONNX models only.
func (e *repoEngines) node() trt.Node {
	if e.cfg.Backend == backend.ONNXRuntime {
		return trt.Node{GPU: trt.Device{Kind: "cpu", Name: "JETINFER_BACKEND=onnxruntime"}, Platform: tensorrt.Platform()}
	}
	return thisNode(e.cfg.TensorRTConfig(e.log), e.cfg.GPUDevice)
}

// open opens res: a plan on TensorRT with its manifest, an ONNX model on
// ONNX Runtime (refused with JETINFER_BACKEND=tensorrt).
func (e *repoEngines) open(ctx context.Context, res models.Resolution) (worker.Engine, func() error, error) {
	switch res.Artifact.Kind {
	case models.KindPlan:
		if res.Artifact.Manifest == nil {
			return nil, nil, fmt.Errorf("plan %s has no manifest", res.Artifact.Name)
		}
		plan, err := os.ReadFile(res.Path)
		if err != nil {
			return nil, nil, fmt.Errorf("reading plan %s: %w", res.Artifact.Name, err)
		}
		eng, err := tensorrt.Load(ctx, plan, res.Artifact.Manifest, e.cfg.TensorRTConfig(e.log))
		if err != nil {
			return nil, nil, fmt.Errorf("loading TensorRT plan %s: %w", res.Artifact.Name, err)
		}
		return eng, eng.Close, nil
	case models.KindONNX:
		if e.cfg.Backend == backend.TensorRT {
			return nil, nil, fmt.Errorf("%s is an ONNX model and JETINFER_BACKEND=tensorrt allows plans only", res.Artifact.Name)
		}
		rt, err := e.runtime()
		if err != nil {
			return nil, nil, err
		}
		eng, err := rt.LoadFile(ctx, res.Path, onnxrt.Options{IntraOpThreads: e.cfg.IntraOpThreads})
		if err != nil {
			return nil, nil, fmt.Errorf("loading ONNX model %s: %w", res.Artifact.Name, err)
		}
		return eng, eng.Close, nil
	}
	return nil, nil, fmt.Errorf("artifact %s of kind %s is not an engine", res.Artifact.Name, res.Artifact.Kind)
}

func (e *repoEngines) runtime() (*onnxrt.Runtime, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rt != nil {
		return e.rt, nil
	}
	lib, err := onnxrt.FindLibrary(e.cfg.ORTLibrary)
	if err != nil {
		return nil, fmt.Errorf("finding the ONNX Runtime library (run `make ort` or set JETINFER_ORT_LIBRARY): %w", err)
	}
	if e.rt, err = onnxrt.NewRuntime(lib); err != nil {
		return nil, err
	}
	return e.rt, nil
}

// close closes the ONNX Runtime environment, if one was created; every
// engine must be closed first.
func (e *repoEngines) close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.rt == nil {
		return nil
	}
	err := e.rt.Close()
	e.rt = nil
	return err
}

// openResolved resolves model version (the active one when version is
// "") for this node and opens the chosen artifact's engine, logging why
// others were skipped.
func (e *repoEngines) openResolved(ctx context.Context, repo *models.Repository, model, version string) (models.Resolution, worker.Engine, func() error, error) {
	var res models.Resolution
	var err error
	if version == "" {
		res, err = repo.Resolve(ctx, model, e.node())
	} else {
		res, err = repo.ResolveVersion(ctx, model, version, e.node())
	}
	for _, s := range res.Skipped {
		if s.Err != nil {
			e.log.Warn("model artifact skipped", "model", model, "artifact", s.Artifact, "reason", s.Reason)
		}
	}
	if err != nil {
		return res, nil, nil, err
	}
	eng, closeEng, err := e.open(ctx, res)
	if err != nil {
		return res, nil, nil, err
	}
	return res, eng, closeEng, nil
}
