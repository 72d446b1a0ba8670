package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caarlos0/env/v10"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/scheduler"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/tensorrt"
	"github.com/jetinfer/jetinfer/worker/models"
)

const modelUsage = `Usage: jetinfer model <subcommand> [flags]

Subcommands:
  push NAME VERSION [model.onnx] [--plan p --manifest m.json] [--reference data.arrow]
                            store a version's artifacts (adds to an existing version)
  ls [NAME] [--json]        list models, or NAME's engine version table
  show NAME VERSION [--json]
                            a version's artifacts and plan manifests
  promote NAME VERSION [--no-gate] [--rtol R] [--atol A]
                            make VERSION the active version, after the accuracy gate:
                            its reference inputs run on the engine this node would use
                            and must reproduce the reference outputs within tolerance
  rollback NAME             return to the previously active version
  rm NAME VERSION           remove a version (refused while active or aliased)
  alias NAME ALIAS VERSION  point an alias (stable, canary, ...) at VERSION; --delete removes it
  resolve NAME [--version V | --alias A] [--gpu N] [--tensorrt-version X.Y.Z.B]
                            the artifact this node would run, and why the others were skipped

Connection and buckets from JETINFER_NATS_URL, JETINFER_NATS_* credentials,
JETINFER_MODEL_BUCKET, JETINFER_ARTIFACT_BUCKET, JETINFER_MODEL_CACHE_DIR,
JETINFER_MODEL_CACHE_BYTES (default 10GiB), JETINFER_MODEL_CHUNK_SIZE (bytes);
the gate's engine from JETINFER_BACKEND, JETINFER_ORT_LIBRARY, JETINFER_GPU_DEVICE and its tolerance from
JETINFER_GATE_RTOL / JETINFER_GATE_ATOL (default 0.01 / 0.001); model ls NAME
reads live workers' versions from JETINFER_REPORT_BUCKET (default jetinfer_workers).
`

// modelConfig is `jetinfer model`'s configuration, from JETINFER_* env.
type modelConfig struct {
	NATSURL string `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	Repo    repoConfig
	NATS    natsConfig
	// Engine opens the engine `model promote` runs the accuracy gate on
	// (JETINFER_BACKEND, JETINFER_ORT_LIBRARY, JETINFER_GPU_DEVICE, ...).
	Engine backendConfig
	// GateRTol and GateATol are the accuracy gate's tolerance (0: the
	// default, models.DefaultTolerance).
	GateRTol float64 `env:"GATE_RTOL"`
	GateATol float64 `env:"GATE_ATOL"`
	// ReportBucket is where workers report the version they serve
	// (`model ls NAME` shows it).
	ReportBucket string `env:"REPORT_BUCKET" envDefault:"jetinfer_workers"`
}

// modelCmd dispatches `jetinfer model` subcommands.
func modelCmd(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, modelUsage)
		return nil
	}
	var cfg modelConfig
	if err := env.ParseWithOptions(&cfg, env.Options{Prefix: "JETINFER_"}); err != nil {
		return fmt.Errorf("reading JETINFER_* environment: %w", err)
	}
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet("jetinfer model "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.NATSURL, "nats", cfg.NATSURL, "NATS server URL (JETINFER_NATS_URL)")
	fs.Usage = func() { fmt.Fprint(stderr, modelUsage); fs.PrintDefaults() }
	var (
		asJSON              bool
		plan, manifest, ref string
		version, trtVersion string
		alias               string
		gpuIndex            int
		del, noGate         bool
		rtol, atol          float64
	)
	switch sub {
	case "push":
		fs.StringVar(&plan, "plan", "", "TensorRT plan to add")
		fs.StringVar(&manifest, "manifest", "", "the plan's manifest (default <plan>.json)")
		fs.StringVar(&ref, "reference", "", "reference inputs/outputs (Arrow IPC) to add")
	case "ls", "show":
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	case "resolve":
		fs.StringVar(&version, "version", "", "resolve this version instead of the active one")
		fs.StringVar(&alias, "alias", "", "resolve the version this alias names")
		fs.IntVar(&gpuIndex, "gpu", 0, "NVML index of this node's GPU")
		fs.StringVar(&trtVersion, "tensorrt-version", "", "TensorRT version major.minor.patch.build to resolve for (default: the linked one)")
	case "alias":
		fs.BoolVar(&del, "delete", false, "remove the alias")
	case "promote":
		tol := gateTolerance(cfg.GateRTol, cfg.GateATol)
		fs.BoolVar(&noGate, "no-gate", false, "promote without running the accuracy gate")
		fs.Float64Var(&rtol, "rtol", tol.RTol, "accuracy gate: relative tolerance (JETINFER_GATE_RTOL)")
		fs.Float64Var(&atol, "atol", tol.ATol, "accuracy gate: absolute tolerance (JETINFER_GATE_ATOL)")
	case "rollback", "rm":
	default:
		fmt.Fprint(stderr, modelUsage)
		return fmt.Errorf("unknown model subcommand %q", sub)
	}
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		return err
	}
	want := map[string][2]int{"push": {2, 3}, "ls": {0, 1}, "show": {2, 2}, "promote": {2, 2},
		"rollback": {1, 1}, "rm": {2, 2}, "resolve": {1, 1}, "alias": {2, 3}}[sub]
	if len(pos) < want[0] || len(pos) > want[1] {
		fmt.Fprint(stderr, modelUsage)
		return fmt.Errorf("model %s: wrong number of arguments", sub)
	}

	nc, err := cfg.NATS.connect(cfg.NATSURL, "jetinfer model", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("creating JetStream context: %w", err)
	}
	repo, err := cfg.Repo.open(ctx, js, log)
	if err != nil {
		return err
	}

	switch sub {
	case "push":
		return modelPush(ctx, repo, pos, plan, manifest, ref, stdout)
	case "ls":
		if len(pos) == 0 {
			return modelList(ctx, repo, asJSON, stdout)
		}
		serving, err := servingWorkers(ctx, js, cfg.ReportBucket, pos[0], time.Now())
		if err != nil {
			return err
		}
		return modelTable(ctx, repo, pos[0], serving, asJSON, stdout)
	case "show":
		return modelShow(ctx, repo, pos[0], pos[1], asJSON, stdout)
	case "promote":
		if noGate {
			fmt.Fprintf(stdout, "accuracy gate: skipped (--no-gate)\n")
		} else if err := promoteGate(ctx, repo, cfg.Engine, pos[0], pos[1], models.Tolerance{RTol: rtol, ATol: atol}, log, stdout); err != nil {
			return err
		}
		a, err := repo.Promote(ctx, pos[0], pos[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: active version %s (previously %s)\n", pos[0], a.Version, lastOr(a.Previous, "none"))
	case "rollback":
		a, err := repo.Rollback(ctx, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: rolled back to version %s\n", pos[0], a.Version)
	case "rm":
		if err := repo.Remove(ctx, pos[0], pos[1]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: version %s removed\n", pos[0], pos[1])
	case "alias":
		if del {
			if err := repo.DeleteAlias(ctx, pos[0], pos[1]); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: alias %s removed\n", pos[0], pos[1])
			return nil
		}
		if len(pos) != 3 {
			return errors.New("model alias: give NAME ALIAS VERSION, or --delete NAME ALIAS")
		}
		if err := repo.SetAlias(ctx, pos[0], pos[1], pos[2]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: alias %s -> version %s\n", pos[0], pos[1], pos[2])
	case "resolve":
		if version != "" && alias != "" {
			return errors.New("--version and --alias exclude each other")
		}
		return modelResolve(ctx, repo, pos[0], version, alias, gpuIndex, trtVersion, stdout)
	}
	return nil
}

func lastOr(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[len(s)-1]
}

func modelPush(ctx context.Context, repo *models.Repository, pos []string, plan, manifest, ref string, stdout io.Writer) error {
	var ups []models.Upload
	if len(pos) == 3 {
		ups = append(ups, models.Upload{Kind: models.KindONNX, Path: pos[2]})
	}
	if plan != "" {
		if manifest == "" {
			manifest = plan + ".json"
		}
		b, err := os.ReadFile(manifest)
		if err != nil {
			return fmt.Errorf("reading manifest: %w", err)
		}
		m, err := trt.ParseManifest(b)
		if err != nil {
			return fmt.Errorf("reading manifest %s: %w", manifest, err)
		}
		ups = append(ups, models.Upload{Kind: models.KindPlan, Path: plan, Manifest: &m})
	} else if manifest != "" {
		return errors.New("--manifest needs --plan")
	}
	if ref != "" {
		ups = append(ups, models.Upload{Kind: models.KindReference, Path: ref})
	}
	if len(ups) == 0 {
		return errors.New("model push: nothing to push: give model.onnx, --plan or --reference")
	}
	v, err := repo.Push(ctx, pos[0], pos[1], ups)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s: %d artifacts (chunk size %d bytes)\n", v.Model, v.Version, len(v.Artifacts), repo.ChunkSize())
	for _, a := range v.Artifacts {
		fmt.Fprintf(stdout, "  %-24s %-9s %12d  sha256 %s\n", a.Name, a.Kind, a.Size, a.SHA256)
	}
	return nil
}

// modelList prints every model with its active version and version count.
func modelList(ctx context.Context, repo *models.Repository, asJSON bool, stdout io.Writer) error {
	names, err := repo.Models(ctx)
	if err != nil {
		return err
	}
	type row struct {
		Model    string `json:"model"`
		Active   string `json:"active,omitempty"`
		Versions int    `json:"versions"`
	}
	rows := make([]row, 0, len(names))
	for _, n := range names {
		vs, err := repo.Versions(ctx, n)
		if err != nil {
			return err
		}
		r := row{Model: n, Versions: len(vs)}
		if a, err := repo.Active(ctx, n); err == nil {
			r.Active = a.Version
		} else if !errors.Is(err, models.ErrNotFound) {
			return err
		}
		rows = append(rows, r)
	}
	if asJSON {
		return writeJSON(stdout, rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tACTIVE\tVERSIONS")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", r.Model, orDash(r.Active), r.Versions)
	}
	return tw.Flush()
}

// modelTableJSON is `model ls NAME --json`.
type modelTableJSON struct {
	Model    string            `json:"model"`
	Active   *models.Active    `json:"active,omitempty"`
	Aliases  map[string]string `json:"aliases,omitempty"`
	Versions []models.Version  `json:"versions"`
	// Serving maps a version to the workers that reported serving it in
	// the last 20 s.
	Serving map[string][]string `json:"serving,omitempty"`
}

// reportMaxAge is how old a worker's report may be for `model ls` to count
// the worker as live (the scheduler's default too).
const reportMaxAge = 20 * time.Second

// servingWorkers reads the workers' reports of model from bucket and
// returns, per version, the ids of the workers whose report is at most
// reportMaxAge old at now. No bucket means no workers.
func servingWorkers(ctx context.Context, js jetstream.JetStream, bucket, model string, now time.Time) (map[string][]string, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening worker report bucket %s: %w", bucket, err)
	}
	watch, err := kv.Watch(ctx, scheduler.ReportKey(model, "*"), jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("reading worker reports of %s: %w", model, err)
	}
	defer func() { _ = watch.Stop() }()
	serving := map[string][]string{}
	for e := range watch.Updates() {
		if e == nil {
			break // the current values are all read
		}
		var r scheduler.WorkerReport
		if json.Unmarshal(e.Value(), &r) != nil || r.Version == "" || now.Sub(r.At) > reportMaxAge {
			continue
		}
		serving[r.Version] = append(serving[r.Version], r.WorkerID)
	}
	for _, ids := range serving {
		sort.Strings(ids)
	}
	return serving, nil
}

// modelTable prints NAME's engine version table: per version, every
// artifact with what a node needs to know to pick it.
func modelTable(ctx context.Context, repo *models.Repository, name string, serving map[string][]string, asJSON bool, stdout io.Writer) error {
	vs, err := repo.Versions(ctx, name)
	if err != nil {
		return err
	}
	out := modelTableJSON{Model: name, Versions: vs, Serving: serving}
	if a, err := repo.Active(ctx, name); err == nil {
		out.Active = &a
	} else if !errors.Is(err, models.ErrNotFound) {
		return err
	}
	if out.Aliases, err = repo.Aliases(ctx, name); err != nil {
		return err
	}
	if len(vs) == 0 {
		return fmt.Errorf("model %s: %w", name, models.ErrNotFound)
	}
	if asJSON {
		return writeJSON(stdout, out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tARTIFACT\tKIND\tGPU\tCC\tTENSORRT\tPRECISION\tPROFILES\tSIZE\tSHA256\tADDED\tSERVED BY")
	for _, v := range vs {
		ver := v.Version
		var tags []string
		for a, av := range out.Aliases {
			if av == v.Version {
				tags = append(tags, a)
			}
		}
		sort.Strings(tags)
		if out.Active != nil && out.Active.Version == v.Version {
			tags = append([]string{"active"}, tags...)
		}
		if len(tags) > 0 {
			ver += " (" + strings.Join(tags, ", ") + ")"
		}
		served := "-"
		if ids := serving[v.Version]; len(ids) > 0 {
			served = strings.Join(ids, ",")
		}
		for _, a := range v.Artifacts {
			gpu, cc, trtv, prec, profiles := "-", "-", "-", "-", "-"
			if m := a.Manifest; m != nil {
				gpu, cc, trtv = m.GPU.Name, m.GPU.ComputeCapability, m.TensorRT
				if m.Compatibility.Hardware != trt.HardwareCompatNone {
					cc += " " + m.Compatibility.Hardware
				}
				if m.Compatibility.VersionCompatible {
					trtv += "+"
				}
				prec, profiles = shortPrecision(m.Precision), profileSummary(m.Profiles)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ver, a.Name, a.Kind, gpu, cc, trtv, prec,
				profiles, humanBytes(a.Size), a.SHA256[:min(12, len(a.SHA256))], a.Added.Format(time.RFC3339), served)
		}
	}
	return tw.Flush()
}

// shortPrecision is a precision for a table cell.
func shortPrecision(p trt.Precision) string {
	var f []string
	if p.StronglyTyped {
		f = append(f, "typed")
	}
	for _, x := range []struct {
		on   bool
		name string
	}{{p.FP16, "fp16"}, {p.BF16, "bf16"}, {p.INT8, "int8"}} {
		if x.on {
			f = append(f, x.name)
		}
	}
	if len(f) == 0 {
		return "fp32"
	}
	return strings.Join(f, "+")
}

// profileSummary is the profiles' batch ranges, e.g. "1-64,65-256".
func profileSummary(ps []trt.ManifestProfile) string {
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		lo, hi := int64(-1), int64(-1)
		for name, s := range p.Min {
			if len(s) > 0 && len(p.Max[name]) > 0 {
				lo, hi = s[0], p.Max[name][0]
				break
			}
		}
		parts = append(parts, fmt.Sprintf("%d-%d", lo, hi))
	}
	return strings.Join(parts, ",")
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// modelShow prints one version: every artifact, and each plan's manifest.
func modelShow(ctx context.Context, repo *models.Repository, name, version string, asJSON bool, stdout io.Writer) error {
	v, err := repo.Version(ctx, name, version)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(stdout, v)
	}
	state := "inactive"
	if a, err := repo.Active(ctx, name); err == nil && a.Version == version {
		state = "active"
	}
	fmt.Fprintf(stdout, "%s %s (%s), pushed %s\n", v.Model, v.Version, state, v.Pushed.Format(time.RFC3339))
	for _, a := range v.Artifacts {
		fmt.Fprintf(stdout, "\n%s\n  kind:    %s\n  object:  %s\n  size:    %d bytes\n  sha256:  %s\n  added:   %s\n",
			a.Name, a.Kind, a.Object, a.Size, a.SHA256, a.Added.Format(time.RFC3339))
		if a.For != "" {
			fmt.Fprintf(stdout, "  for:     %s\n", a.For)
		}
		if m := a.Manifest; m != nil {
			fmt.Fprintf(stdout, "  built:   TensorRT %s on %s (compute %s), driver %s, CUDA %s\n", m.TensorRT, m.GPU.Name,
				m.GPU.ComputeCapability, orDash(m.DriverVersion), orDash(m.CUDARuntime))
			fmt.Fprintf(stdout, "  compat:  hardware %s, version-compatible %v\n", m.Compatibility.Hardware, m.Compatibility.VersionCompatible)
			fmt.Fprintf(stdout, "  precision: %s\n  profiles:  %s\n", precisionString(m.Precision), profileSummary(m.Profiles))
		}
	}
	return nil
}

// modelResolve prints the artifact this node would run and why the
// others were skipped; the chosen artifact ends up in the local cache.
func modelResolve(ctx context.Context, repo *models.Repository, name, version, alias string, gpuIndex int, trtVersion string, stdout io.Writer) error {
	// What TensorRT's loader would see; without TensorRT or CUDA, what
	// NVML and the platform tell.
	node := thisNode(tensorrt.Config{Device: gpuIndex, AllowHostCode: true}, gpuIndex)
	if trtVersion != "" {
		node.TensorRT = trtVersion
	}
	fmt.Fprintf(stdout, "node:     %s %s (compute %s), TensorRT %s\n", node.GPU.Kind, node.GPU.Name, orDash(node.GPU.Compute), orDash(node.TensorRT))
	var res models.Resolution
	var err error
	switch {
	case version != "":
		res, err = repo.ResolveVersion(ctx, name, version, node)
	case alias != "":
		res, err = repo.ResolveAlias(ctx, name, alias, node)
	default:
		res, err = repo.Resolve(ctx, name, node)
	}
	for _, s := range res.Skipped {
		fmt.Fprintf(stdout, "skipped:  %s (%s): %s\n", s.Artifact, s.Kind, s.Reason)
	}
	if err != nil {
		return err
	}
	from := "fetched"
	if res.Cached {
		from = "cache"
	}
	fmt.Fprintf(stdout, "chosen:   %s %s: %s (%s) at %s (%s)\n", res.Model, res.Version, res.Artifact.Name, res.Artifact.Kind, res.Path, from)
	return nil
}

// gateTolerance is the accuracy gate's tolerance from JETINFER_GATE_RTOL
// and JETINFER_GATE_ATOL, 0 meaning the default.
func gateTolerance(rtol, atol float64) models.Tolerance {
	t := models.DefaultTolerance
	if rtol > 0 {
		t.RTol = rtol
	}
	if atol > 0 {
		t.ATol = atol
	}
	return t
}

// promoteGate is the accuracy gate of `model promote`: the version's
// reference inputs run on the engine this node would serve it with, and
// its outputs must match the reference outputs within tol. A version
// without reference data passes, saying so.
func promoteGate(ctx context.Context, repo *models.Repository, ecfg backendConfig, model, version string, tol models.Tolerance, log *slog.Logger, stdout io.Writer) error {
	v, err := repo.Version(ctx, model, version)
	if err != nil {
		return fmt.Errorf("model promote: %w", err)
	}
	hasRef := false
	for _, a := range v.Artifacts {
		hasRef = hasRef || a.Kind == models.KindReference
	}
	if !hasRef {
		fmt.Fprintf(stdout, "accuracy gate: %s %s has no reference data (push it with --reference); not run\n", model, version)
		return nil
	}
	engines := &repoEngines{cfg: ecfg, log: log}
	defer func() { _ = engines.close() }()
	res, eng, closeEng, err := engines.openResolved(ctx, repo, model, version)
	if err != nil {
		return fmt.Errorf("model promote: accuracy gate: opening the engine for %s %s: %w", model, version, err)
	}
	defer func() { _ = closeEng() }()
	acc, err := repo.CheckAccuracy(ctx, v, eng, models.Gate{Tolerance: tol})
	fmt.Fprintf(stdout, "accuracy gate: %s %s on %s (%s, %s:%s): %s\n", model, version, res.Artifact.Name, res.Artifact.Kind,
		eng.Device().Kind, eng.Device().Name, acc)
	if err != nil {
		return fmt.Errorf("model promote: %s %s refused: %w", model, version, err)
	}
	return nil
}
