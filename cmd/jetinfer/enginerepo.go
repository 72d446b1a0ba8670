package main

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/tensorrt"
	"github.com/jetinfer/jetinfer/worker/models"
)

// This file is the repository side of `jetinfer engine build -from-repo
// NAME@VERSION [-push]`: the ONNX model comes from the version and the
// plan built from it goes back into the same version, with its manifest.

// repoRef names one version of a model in the repository.
type repoRef struct{ Model, Version string }

// parseRepoRef reads NAME@VERSION. A version is required: a build in CI
// is for the version it names, not whichever is active when it runs.
func parseRepoRef(s string) (repoRef, error) {
	model, version, ok := strings.Cut(s, "@")
	if !ok || version == "" {
		return repoRef{}, fmt.Errorf("%q: want NAME@VERSION, e.g. digits@3", s)
	}
	if err := models.CheckName(model, version); err != nil {
		return repoRef{}, fmt.Errorf("%q: %w", s, err)
	}
	return repoRef{Model: model, Version: version}, nil
}

// openRepoForBuild connects as `jetinfer model` does (JETINFER_NATS_URL,
// JETINFER_NATS_* credentials, JETINFER_MODEL_BUCKET, ...; url overrides
// the server) and opens the repository. The returned function closes the
// connection.
func openRepoForBuild(ctx context.Context, url string, log *slog.Logger) (*models.Repository, func(), error) {
	var cfg modelConfig
	if err := parseEnv(&cfg); err != nil {
		return nil, nil, err
	}
	if url != "" {
		cfg.NATSURL = url
	}
	nc, err := cfg.NATS.connect(cfg.NATSURL, "jetinfer engine build", log)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	repo, err := cfg.Repo.open(ctx, js, log)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return repo, nc.Close, nil
}

// repoBuildSource is the ONNX model a plan is built from, fetched from
// the repository.
type repoBuildSource struct {
	Version models.Version
	ONNX    models.Artifact
	// Path is its verified copy in this node's artifact cache (read-only).
	Path   string
	Cached bool
}

// fetchBuildSource finds ref's ONNX model (the artifact called onnxName,
// or the version's only ONNX model when onnxName is ""), fetches it into
// the cache and verifies it. When planName is not "" the plan will be
// pushed under that name, which must be free in the version (with its
// manifest's name, planName.json): a build that could not be pushed is
// refused before it starts, not after.
func fetchBuildSource(ctx context.Context, repo *models.Repository, ref repoRef, onnxName, planName string) (repoBuildSource, error) {
	v, err := repo.Version(ctx, ref.Model, ref.Version)
	if err != nil {
		return repoBuildSource{}, err
	}
	var onnx []models.Artifact
	for _, a := range v.Artifacts {
		if a.Kind == models.KindONNX && (onnxName == "" || a.Name == onnxName) {
			onnx = append(onnx, a)
		}
	}
	switch {
	case len(onnx) == 0 && onnxName != "":
		return repoBuildSource{}, fmt.Errorf("%s %s has no ONNX model called %s (%s): %w", ref.Model, ref.Version, onnxName,
			artifactNames(v, models.KindONNX), models.ErrNotFound)
	case len(onnx) == 0:
		return repoBuildSource{}, fmt.Errorf("%s %s has no ONNX model to build from (push one with `jetinfer model push %s %s model.onnx`): %w",
			ref.Model, ref.Version, ref.Model, ref.Version, models.ErrNotFound)
	case len(onnx) > 1:
		return repoBuildSource{}, fmt.Errorf("%s %s has %d ONNX models (%s): choose one with -artifact", ref.Model, ref.Version,
			len(onnx), artifactNames(v, models.KindONNX))
	}
	if planName != "" {
		for _, n := range []string{planName, planName + ".json"} {
			if _, taken := v.Artifact(n); taken {
				return repoBuildSource{}, fmt.Errorf("%s %s already has an artifact %s: the plan could not be pushed; choose another -plan-name "+
					"(versions are immutable: a plan for this GPU may be there already, see `jetinfer model ls %s`): %w",
					ref.Model, ref.Version, n, ref.Model, models.ErrExists)
			}
		}
	}
	path, cached, err := repo.Fetch(ctx, onnx[0])
	if err != nil {
		return repoBuildSource{}, err
	}
	return repoBuildSource{Version: v, ONNX: onnx[0], Path: path, Cached: cached}, nil
}

func artifactNames(v models.Version, kind models.Kind) string {
	var names []string
	for _, a := range v.Artifacts {
		if a.Kind == kind {
			names = append(names, a.Name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// pushBuiltPlan adds the plan at planPath, described by m, to ref's
// version as artifact name (its manifest beside it as name.json). The
// repository checks that m describes the file and that the plan was built
// from one of the version's ONNX models (m.ONNXSHA256).
func pushBuiltPlan(ctx context.Context, repo *models.Repository, ref repoRef, name, planPath string, m trt.Manifest) (models.Version, error) {
	return repo.Push(ctx, ref.Model, ref.Version, []models.Upload{{Kind: models.KindPlan, Name: name, Path: planPath, Manifest: &m}})
}

var nameJunk = regexp.MustCompile(`[^a-z0-9]+`)

// planArtifactName names a plan after what decides where it runs: the
// GPU model (and MIG profile), compute capability, the full TensorRT
// version, the precision and any compatibility mode, e.g.
// "h100-80gb-hbm3_sm90_trt10.9.0.34_fp16.plan". Two CI jobs for different
// GPU types so never collide; the same job run twice is refused by the
// repository instead of replacing a plan.
func planArtifactName(node trt.Node, o tensorrt.BuildOptions) string {
	gpu := strings.TrimPrefix(strings.ToLower(node.GPU.Name), "nvidia ")
	if node.MIG != "" {
		gpu += "-mig-" + node.MIG
	}
	gpu = strings.Trim(nameJunk.ReplaceAllString(gpu, "-"), "-")
	if gpu == "" {
		gpu = "gpu"
	}
	name := gpu + "_sm" + strings.ReplaceAll(node.GPU.Compute, ".", "")
	if node.TensorRT != "" {
		name += "_trt" + node.TensorRT
	}
	var prec []string
	if o.StronglyTyped || strings.HasPrefix(node.TensorRT, "11.") {
		prec = append(prec, "typed")
	}
	for _, p := range []struct {
		on   bool
		name string
	}{{o.Precision.FP16, "fp16"}, {o.Precision.BF16, "bf16"}, {o.Precision.INT8, "int8"}} {
		if p.on {
			prec = append(prec, p.name)
		}
	}
	if len(prec) == 0 {
		prec = []string{"fp32"}
	}
	name += "_" + strings.Join(prec, "-")
	if o.HardwareCompat != "" && o.HardwareCompat != trt.HardwareCompatNone {
		name += "_" + strings.ReplaceAll(o.HardwareCompat, "_", "-")
	}
	if o.VersionCompatible {
		name += "_vc"
	}
	return name + ".plan"
}
