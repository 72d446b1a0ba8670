package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/gpuinfo"
	"github.com/jetinfer/jetinfer/trt/tensorrt"
	"github.com/jetinfer/jetinfer/worker/models"
)

const engineUsage = `Usage: jetinfer engine <command> [flags]

Commands:
  build    ONNX model -> TensorRT plan + manifest (needs a binary built with -tags tensorrt and a GPU);
           -from-repo NAME@VERSION -push takes the model from the repository and pushes the plan to it
  inspect  print a plan's manifest and verify the plan file beside it (no GPU or TensorRT needed)
  check    check a manifest against this node's GPU (NVML) and linked TensorRT

Run 'jetinfer engine <command> -h' for a command's flags.
`

// tensorRTBuildHint says how to get a binary that can build plans.
const tensorRTBuildHint = "this jetinfer was built without TensorRT; build one with " +
	"`CGO_ENABLED=1 go build -tags tensorrt ./cmd/jetinfer` on a machine with CUDA and TensorRT 10.0+ or 11.x " +
	"(see docs/tensorrt.md)"

// engineCmd implements `jetinfer engine <build|inspect|check> ...`.
func engineCmd(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, engineUsage)
		return nil
	}
	switch args[0] {
	case "build":
		return engineBuild(ctx, args[1:], stdout, stderr, log)
	case "inspect":
		return engineInspect(args[1:], stdout, stderr)
	case "check":
		return engineCheck(args[1:], stdout, stderr)
	default:
		fmt.Fprint(stderr, engineUsage)
		return fmt.Errorf("unknown engine command %q", args[0])
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// profileList is a repeatable -profile flag; each occurrence is one
// optimization profile: "name=min:opt:max,name2=...", shapes as 1x8x8.
type profileList []trt.Profile

func (p *profileList) String() string { return fmt.Sprint(len(*p), " profiles") }

func (p *profileList) Set(v string) error {
	prof, err := parseProfile(v)
	if err != nil {
		return err
	}
	*p = append(*p, prof)
	return nil
}

func parseProfile(v string) (trt.Profile, error) {
	prof := trt.Profile{Min: map[string]trt.Shape{}, Opt: map[string]trt.Shape{}, Max: map[string]trt.Shape{}}
	for _, part := range strings.Split(v, ",") {
		name, shapes, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" {
			return prof, fmt.Errorf("profile entry %q is not name=min:opt:max", part)
		}
		s := strings.Split(shapes, ":")
		if len(s) != 3 {
			return prof, fmt.Errorf("profile entry %q needs three shapes min:opt:max", part)
		}
		var dims [3]trt.Shape
		for i, str := range s {
			sh, err := parseShape(str)
			if err != nil {
				return prof, fmt.Errorf("profile entry %q: %w", part, err)
			}
			dims[i] = sh
		}
		prof.Min[name], prof.Opt[name], prof.Max[name] = dims[0], dims[1], dims[2]
	}
	return prof, nil
}

func parseShape(s string) (trt.Shape, error) {
	var sh trt.Shape
	for _, d := range strings.Split(s, "x") {
		n, err := strconv.ParseInt(d, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("shape %q is not dimensions joined by x (e.g. 32x3x224x224)", s)
		}
		sh = append(sh, n)
	}
	return sh, nil
}

// parseBytes reads "4GiB", "512MiB", "1048576".
func parseBytes(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q is not a byte count like 4GiB", s)
	}
	return n * mult, nil
}

func engineBuild(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	return buildEngine(ctx, args, stdout, stderr, log, tensorRTBuilder{})
}

// buildEngine is `jetinfer engine build` with the TensorRT side behind b,
// so that tests can run everything around the build (the repository's
// ONNX model in, the plan and its manifest pushed back) where TensorRT
// never runs. Its order: the flags are checked first (a mistyped CI
// command fails on any machine), then that this binary can build at all
// (no broker is contacted and nothing fetched by a binary that cannot
// build), then every local file and the repository (the version, its ONNX
// model and a free artifact name), and only then the long build.
func buildEngine(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger, b planBuilder) error {
	fs := flag.NewFlagSet("jetinfer engine build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	onnxPath := fs.String("onnx", "", "ONNX model to build from (this, or -from-repo)")
	fromRepo := fs.String("from-repo", "", "build from the ONNX model of a repository version, given as NAME@VERSION (JETINFER_NATS_URL, JETINFER_MODEL_BUCKET, ...)")
	artifact := fs.String("artifact", "", "with -from-repo: the version's ONNX artifact to build from (default: its only ONNX model)")
	push := fs.Bool("push", false, "with -from-repo: add the plan and its manifest to that version")
	planName := fs.String("plan-name", "", "with -push: the plan's artifact name (default: the -out file name, else one naming GPU, compute capability, TensorRT and precision)")
	natsURL := fs.String("nats", "", "with -from-repo: NATS server URL (default JETINFER_NATS_URL, else nats://127.0.0.1:4222)")
	out := fs.String("out", "", "plan file to write (required unless -push); the manifest goes to <out>.json")
	var profiles profileList
	fs.Var(&profiles, "profile", "optimization profile, repeatable: name=min:opt:max[,name=...], shapes like 1x8x8")
	device := fs.Int("device", 0, "CUDA device ordinal (CUDA_VISIBLE_DEVICES applies)")
	strongly := fs.Bool("strongly-typed", false, "strongly typed network: precision from the ONNX model (always so on TensorRT 11)")
	fp16 := fs.Bool("fp16", false, "TensorRT 10 only: allow FP16 kernels in a weakly typed network")
	bf16 := fs.Bool("bf16", false, "TensorRT 10 only: allow BF16 kernels in a weakly typed network")
	int8 := fs.Bool("int8", false, "TensorRT 10 only: INT8 with entropy calibration (-calib) or Q/DQ scales")
	var calib stringList
	fs.Var(&calib, "calib", "TensorRT 10 only: Arrow IPC calibration file (a request body), one batch each, repeatable")
	calibCache := fs.String("calib-cache", "", "calibration cache file (with -calib): read if present, written after the build")
	workspace := fs.String("workspace", "", "builder workspace limit, e.g. 4GiB (default: TensorRT's)")
	optLevel := fs.Int("opt-level", -1, "builder optimization level 0..5 (-1: TensorRT's default, 3; 0 builds fastest, runs slowest)")
	timingCache := fs.String("timing-cache", "", "timing cache file: read if present, updated after the build")
	var plugins stringList
	fs.Var(&plugins, "plugin", "plugin library to load, repeatable (TensorRT's standard plugins are always loaded)")
	hw := fs.String("hardware-compat", trt.HardwareCompatNone, "none | ampere_plus | same_compute_capability (the latter two run on more GPUs, slower)")
	vc := fs.Bool("version-compatible", false, "plan runs on later TensorRT of the same major (slower; loader needs host code allowed)")
	lean := fs.Bool("exclude-lean-runtime", false, "with -version-compatible: do not embed the lean runtime")
	verbose := fs.Bool("verbose", false, "log TensorRT's info lines")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: jetinfer engine build (-onnx model.onnx | -from-repo NAME@VERSION [-push]) [-out plan] -profile ... [flags]\n\n"+
			"Build a TensorRT plan and its manifest for the GPU this runs on. With -from-repo the ONNX model\n"+
			"comes from the model repository, and -push adds the plan to the same version: run it once per\n"+
			"GPU type in CI, e.g.\n"+
			"  jetinfer engine build -from-repo digits@3 -push -profile pixels=1x8x8:64x8x8:256x8x8 -fp16\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("engine build: unexpected argument %q", fs.Arg(0))
	}
	// The flags alone.
	var ref repoRef
	switch {
	case *onnxPath != "" && *fromRepo != "":
		return errors.New("engine build: -onnx and -from-repo exclude each other")
	case *onnxPath == "" && *fromRepo == "":
		fs.Usage()
		return errors.New("engine build: give the model: -onnx model.onnx, or -from-repo NAME@VERSION")
	case *fromRepo != "":
		var err error
		if ref, err = parseRepoRef(*fromRepo); err != nil {
			return fmt.Errorf("engine build: -from-repo: %w", err)
		}
	case *push || *artifact != "" || *planName != "":
		return errors.New("engine build: -push, -artifact and -plan-name need -from-repo NAME@VERSION")
	}
	if *planName != "" && !*push {
		return errors.New("engine build: -plan-name needs -push")
	}
	if *out == "" && !*push {
		fs.Usage()
		return errors.New("engine build: -out is required (or -push, to store the plan in the repository only)")
	}
	if len(profiles) == 0 {
		fs.Usage()
		return errors.New("engine build: at least one -profile is required")
	}
	if len(calib) == 0 && *calibCache != "" {
		return errors.New("engine build: -calib-cache needs the -calib files too: their shape is the calibration profile " +
			"(when the cache matches, TensorRT does not run them)")
	}
	o := tensorrt.NewBuildOptions()
	o.Device, o.Profiles, o.StronglyTyped = *device, profiles, *strongly
	o.Precision = tensorrt.Precision{FP16: *fp16, BF16: *bf16, INT8: *int8}
	o.Plugins, o.HardwareCompat = plugins, *hw
	if *optLevel != -1 {
		o.OptimizationLevel = tensorrt.OptimizationLevel(*optLevel)
	}
	o.VersionCompatible, o.ExcludeLeanRuntime = *vc, *lean
	o.Logger, o.Verbose = log, *verbose
	var err error
	if o.WorkspaceBytes, err = parseBytes(*workspace); err != nil {
		return fmt.Errorf("engine build: %w", err)
	}

	// Can this binary build at all?
	if err := b.Available(); err != nil {
		return fmt.Errorf("engine build: %w", err)
	}

	// Everything else that can fail cheaply fails before the long build.
	for _, p := range plugins {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("engine build: plugin library: %w", err)
		}
	}
	tcfg := tensorrt.Config{Device: *device, Plugins: plugins, AllowHostCode: *vc, Logger: log}
	node, err := b.Node(tcfg)
	if err != nil {
		return fmt.Errorf("engine build: %w", err)
	}
	var (
		repo *models.Repository
		src  repoBuildSource
		name string
		onnx []byte
	)
	if *fromRepo != "" {
		var closeRepo func()
		if repo, closeRepo, err = openRepoForBuild(ctx, *natsURL, log); err != nil {
			return fmt.Errorf("engine build: %w", err)
		}
		defer closeRepo()
		if *push {
			name = *planName
			if name == "" && *out != "" {
				name = filepath.Base(*out)
			}
			if name == "" {
				name = planArtifactName(node, o)
			}
		}
		if src, err = fetchBuildSource(ctx, repo, ref, *artifact, name); err != nil {
			return fmt.Errorf("engine build: %w", err)
		}
		o.ONNXPath = src.Path
		fmt.Fprintf(stdout, "building from %s %s: %s (sha256 %s, %s)\n", ref.Model, ref.Version, src.ONNX.Name,
			src.ONNX.SHA256[:12], map[bool]string{true: "from the cache", false: "fetched"}[src.Cached])
	} else {
		o.ONNXPath = *onnxPath
	}
	if onnx, err = os.ReadFile(o.ONNXPath); err != nil {
		return fmt.Errorf("engine build: reading the model: %w", err)
	}
	if o.TimingCache, err = readOptional(*timingCache); err != nil {
		return fmt.Errorf("engine build: reading the timing cache: %w", err)
	}
	if len(calib) > 0 || *calibCache != "" {
		cd := &tensorrt.CalibrationData{}
		if cd.Cache, err = readOptional(*calibCache); err != nil {
			return fmt.Errorf("engine build: reading the calibration cache: %w", err)
		}
		for _, path := range calib {
			batch, err := readCalibrationBatch(path)
			if err != nil {
				return fmt.Errorf("engine build: %w", err)
			}
			cd.Batches = append(cd.Batches, batch)
		}
		o.Calibration = cd
	}

	built, err := b.Build(ctx, onnx, o, tcfg, node)
	if err != nil {
		return fmt.Errorf("engine build: %w", err)
	}
	built.Manifest.Build.TimingCache = *timingCache
	mb, err := built.Manifest.Marshal()
	if err != nil {
		return err
	}
	planPath := *out
	if planPath == "" {
		// -push without -out: the plan goes to the repository only.
		dir, err := os.MkdirTemp("", "jetinfer-engine-build-")
		if err != nil {
			return fmt.Errorf("engine build: %w", err)
		}
		defer os.RemoveAll(dir)
		planPath = filepath.Join(dir, name)
	}
	if err := writeAtomic(planPath, built.Plan); err != nil {
		return fmt.Errorf("engine build: writing the plan: %w", err)
	}
	if err := writeAtomic(planPath+".json", mb); err != nil {
		return fmt.Errorf("engine build: writing the manifest: %w", err)
	}
	if *timingCache != "" && len(built.TimingCache) > 0 {
		if err := writeAtomic(*timingCache, built.TimingCache); err != nil {
			return fmt.Errorf("engine build: writing the timing cache: %w", err)
		}
	}
	if *calibCache != "" && len(built.CalibrationCache) > 0 {
		if err := writeAtomic(*calibCache, built.CalibrationCache); err != nil {
			return fmt.Errorf("engine build: writing the calibration cache: %w", err)
		}
	}
	m := built.Manifest
	if *out != "" {
		fmt.Fprintf(stdout, "built %s (%d bytes, TensorRT %s, %s compute %s) and %s.json\n",
			*out, len(built.Plan), m.TensorRT, m.GPU.Name, m.GPU.ComputeCapability, *out)
	} else {
		fmt.Fprintf(stdout, "built %s (%d bytes, TensorRT %s, %s compute %s)\n",
			name, len(built.Plan), m.TensorRT, m.GPU.Name, m.GPU.ComputeCapability)
	}
	if !*push {
		return nil
	}
	v, err := pushBuiltPlan(ctx, repo, ref, name, planPath, m)
	if err != nil {
		return fmt.Errorf("engine build: the plan was built (%s) but not pushed: %w", planPath, err)
	}
	a, _ := v.Artifact(name)
	fmt.Fprintf(stdout, "pushed %s %s: %s (sha256 %s) and %s.json\n", v.Model, v.Version, a.Name, a.SHA256, a.Name)
	return nil
}

// builtPlan is what a planBuilder produces: the plan, its manifest, and
// the caches to save for the next build.
type builtPlan struct {
	Plan             []byte
	Manifest         trt.Manifest
	TimingCache      []byte
	CalibrationCache []byte
}

// planBuilder is the TensorRT side of `jetinfer engine build`.
type planBuilder interface {
	// Available fails when this binary cannot build plans.
	Available() error
	// Node loads cfg's plugins and describes the GPU and TensorRT the
	// plan will be built for.
	Node(cfg tensorrt.Config) (trt.Node, error)
	// Build builds the plan of onnx for node and describes it.
	Build(ctx context.Context, onnx []byte, o tensorrt.BuildOptions, cfg tensorrt.Config, node trt.Node) (builtPlan, error)
}

// tensorRTBuilder builds with the linked TensorRT.
type tensorRTBuilder struct{}

func (tensorRTBuilder) Available() error {
	if !tensorrt.Available {
		return fmt.Errorf("%s: %w", tensorRTBuildHint, trt.ErrUnavailable)
	}
	return nil
}

func (tensorRTBuilder) Node(cfg tensorrt.Config) (trt.Node, error) {
	if err := tensorrt.LoadPlugins(cfg.Device, cfg.Plugins); err != nil {
		return trt.Node{}, err
	}
	// The GPU the plan is built on: CUDA device cfg.Device, UUID and MIG
	// profile included, so that the manifest names that GPU.
	return tensorrt.ThisNode(cfg)
}

func (tensorRTBuilder) Build(ctx context.Context, onnx []byte, o tensorrt.BuildOptions, cfg tensorrt.Config, node trt.Node) (builtPlan, error) {
	res, err := tensorrt.Build(ctx, onnx, o)
	if err != nil {
		return builtPlan{}, err
	}
	spec, err := tensorrt.Inspect(ctx, res.Plan, cfg)
	if err != nil {
		return builtPlan{}, fmt.Errorf("reading back the plan: %w", err)
	}
	driver := ""
	if in, err := gpuinfo.Probe(); err == nil {
		driver = in.DriverVersion
	} else if o.Logger != nil {
		o.Logger.Warn("NVML unavailable: the manifest records no driver version", "err", err)
	}
	m := tensorrt.NewManifest(res, spec, o, onnx, tensorrt.BuiltOn{GPU: node.GPU, MIG: node.MIG, Driver: driver})
	return builtPlan{Plan: res.Plan, Manifest: m, TimingCache: res.TimingCache, CalibrationCache: res.CalibrationCache}, nil
}

// readCalibrationBatch reads one calibration batch: an Arrow IPC request
// body whose tensor columns are the network inputs.
func readCalibrationBatch(path string) ([]trt.Tensor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading calibration file: %w", err)
	}
	lim := codec.DefaultLimits()
	lim.MaxBodyBytes = max(lim.MaxBodyBytes, len(b))
	req, err := codec.DecodeRequest(b, lim)
	if err != nil {
		return nil, fmt.Errorf("decoding calibration file %s: %w", path, err)
	}
	defer req.Release()
	var batch []trt.Tensor
	for i := range req.Columns {
		t, ok := req.Columns[i].Tensor()
		if !ok {
			return nil, fmt.Errorf("calibration file %s: column %s is ragged; calibration needs fixed shapes", path, req.Columns[i].Name)
		}
		batch = append(batch, t)
	}
	if len(batch) == 0 {
		return nil, fmt.Errorf("calibration file %s has no tensor column", path)
	}
	return batch, nil
}

func readOptional(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// parseInterspersed parses flags that may come before or after the
// positional arguments (`check m.json -gpu 1`) and returns the positionals.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// manifestArg parses fs from args, expects exactly one manifest path,
// reads it, and returns it with its path and its plan's path (*planFlag
// when set, else the file beside the manifest). cmd names the subcommand
// in errors.
func manifestArg(fs *flag.FlagSet, args []string, cmd string, planFlag *string) (m trt.Manifest, path, planPath string, err error) {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return m, "", "", err
	}
	if len(pos) != 1 {
		fs.Usage()
		return m, "", "", fmt.Errorf("%s: one manifest path expected", cmd)
	}
	if m, planPath, err = readManifest(pos[0]); err != nil {
		return m, "", "", fmt.Errorf("%s: %w", cmd, err)
	}
	if *planFlag != "" {
		planPath = *planFlag
	}
	return m, pos[0], planPath, nil
}

// readManifest reads a manifest and names the plan file beside it.
func readManifest(path string) (trt.Manifest, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return trt.Manifest{}, "", fmt.Errorf("reading manifest: %w", err)
	}
	m, err := trt.ParseManifest(b)
	if err != nil {
		return trt.Manifest{}, "", fmt.Errorf("%s: %w", path, err)
	}
	return m, strings.TrimSuffix(path, ".json"), nil
}

// checkPlanFile verifies the plan beside a manifest, if there is one; the
// error is non-nil only when a plan is there and does not match.
func checkPlanFile(m trt.Manifest, planPath string) (string, error) {
	plan, err := os.ReadFile(planPath)
	if errors.Is(err, os.ErrNotExist) {
		return "not found at " + planPath, nil
	}
	if err != nil {
		return "unreadable: " + err.Error(), nil
	}
	if err := m.CheckPlan(plan); err != nil {
		return "MISMATCH: " + err.Error(), err
	}
	return "ok (" + planPath + ", sha256 matches)", nil
}

func engineInspect(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jetinfer engine inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the manifest as JSON")
	planFlag := fs.String("plan", "", "plan file (default: the manifest path without .json)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: jetinfer engine inspect [-json] [-plan file] <manifest.json>")
		fs.PrintDefaults()
	}
	m, path, planPath, err := manifestArg(fs, args, "engine inspect", planFlag)
	if err != nil {
		return err
	}
	if *asJSON {
		b, err := m.Marshal()
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}
	w := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }
	w("manifest:        %s (schema %d)", path, m.Schema)
	planState, planErr := checkPlanFile(m, planPath)
	w("plan:            %s", planState)
	w("tensorrt:        %s", m.TensorRT)
	w("tensorrt cuda:   %s", orDash(intString(m.TensorRTCUDAMajor)))
	w("platform:        %s", orDash(m.Platform))
	w("built on:        %s%s, compute %s, uuid %s, driver %s, CUDA %s", m.GPU.Name, migSuffix(m.GPU.MIG), m.GPU.ComputeCapability,
		orDash(m.GPU.UUID), orDash(m.DriverVersion), orDash(m.CUDARuntime))
	w("compatibility:   hardware %s, version-compatible %v, exclude lean runtime %v", m.Compatibility.Hardware,
		m.Compatibility.VersionCompatible, m.Compatibility.ExcludeLeanRuntime)
	if len(m.Build.Plugins) > 0 {
		w("plugins:         %s", strings.Join(m.Build.Plugins, ", "))
	}
	w("precision:       %s", precisionString(m.Precision))
	for _, t := range m.Inputs {
		w("input:           %s %s %v", t.Name, t.DType, t.Shape)
	}
	for _, t := range m.Outputs {
		w("output:          %s %s %v", t.Name, t.DType, t.Shape)
	}
	for i, p := range m.Profiles {
		names := make([]string, 0, len(p.Min))
		for n := range p.Min {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			w("profile %d:       %s min %v opt %v max %v", i, n, p.Min[n], p.Opt[n], p.Max[n])
		}
	}
	w("plan sha256:     %s (%d bytes)", m.PlanSHA256, m.PlanBytes)
	if m.ONNXSHA256 != "" {
		w("onnx sha256:     %s", m.ONNXSHA256)
	}
	if planErr != nil {
		return fmt.Errorf("engine inspect: %w", planErr)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func precisionString(p trt.Precision) string {
	if p.StronglyTyped {
		return "strongly typed (from the ONNX model)"
	}
	var flags []string
	for name, on := range map[string]bool{"fp16": p.FP16, "bf16": p.BF16, "int8": p.INT8} {
		if on {
			flags = append(flags, name)
		}
	}
	sort.Strings(flags)
	s := "weakly typed, fp32"
	if len(flags) > 0 {
		s = "weakly typed, flags " + strings.Join(flags, "+")
	}
	if p.Calibration != nil {
		s += fmt.Sprintf(", INT8 calibration over %d batches", p.Calibration.Batches)
	}
	return s
}

func intString(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func migSuffix(mig string) string {
	if mig == "" {
		return ""
	}
	return " MIG " + mig
}

// engineCheck checks a manifest against a node and prints every
// compatibility rule it applied. The node is this process's CUDA device
// -gpu (a CUDA ordinal, as JETINFER_GPU_DEVICE) and linked TensorRT in a
// tensorrt build; in a build without TensorRT, the GPU comes from NVML
// (mapped from the CUDA ordinal through CUDA_VISIBLE_DEVICES) and the
// TensorRT version and CUDA major from the flags.
func engineCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jetinfer engine check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ordinal := fs.Int("gpu", 0, "CUDA device ordinal to check against, numbered as JETINFER_GPU_DEVICE (CUDA_VISIBLE_DEVICES applies)")
	version := fs.String("tensorrt-version", "", "TensorRT version major.minor.patch.build to check against (default: the linked one)")
	cudaMajor := fs.Int("tensorrt-cuda", 0, "CUDA major of the TensorRT package to check against (default: the linked CUDA runtime's)")
	hostCode := fs.Bool("allow-host-code", true, "the loader allows a version-compatible plan's host code (JETINFER_TRT_ALLOW_HOST_CODE)")
	var plugins stringList
	fs.Var(&plugins, "plugin", "plugin library the loader loads, repeatable (JETINFER_TRT_PLUGINS)")
	planFlag := fs.String("plan", "", "plan file to verify (default: the manifest path without .json)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: jetinfer engine check [-gpu N] [-tensorrt-version X.Y.Z.B] [-tensorrt-cuda N] [-allow-host-code=false] [-plugin lib.so] [-plan file] <manifest.json>")
		fs.PrintDefaults()
	}
	m, _, planPath, err := manifestArg(fs, args, "engine check", planFlag)
	if err != nil {
		return err
	}
	node, err := tensorrt.ThisNode(tensorrt.Config{Device: *ordinal, AllowHostCode: *hostCode, Plugins: plugins})
	if err == nil {
		fmt.Fprintf(stdout, "gpu:             CUDA device %d: %s%s, compute %s, uuid %s (CUDA runtime)\n", *ordinal, node.GPU.Name,
			migSuffix(node.MIG), node.GPU.Compute, orDash(node.GPU.UUID))
	} else {
		// No TensorRT or no usable CUDA device here: the GPU from NVML,
		// numbered as CUDA numbers it.
		if !errors.Is(err, trt.ErrUnavailable) {
			fmt.Fprintf(stdout, "cuda:            %v\n", err)
		}
		info, perr := gpuinfo.Probe()
		if perr == nil {
			var d gpuinfo.CUDADevice
			if d, perr = info.ByCUDAOrdinal(*ordinal, os.Getenv("CUDA_VISIBLE_DEVICES"), os.Getenv("CUDA_DEVICE_ORDER")); perr == nil {
				node.GPU, node.MIG = d.GPU.Device(), d.MIG
				fmt.Fprintf(stdout, "gpu:             CUDA device %d: %s%s, compute %s, uuid %s, driver %s (NVML)\n", *ordinal, d.GPU.Name,
					migSuffix(d.MIG), d.GPU.Compute(), d.GPU.UUID, info.DriverVersion)
				if d.Note != "" {
					fmt.Fprintf(stdout, "note:            %s\n", d.Note)
				}
			}
		}
		if perr != nil {
			fmt.Fprintf(stdout, "gpu:             none (%v)\n", perr)
		}
	}
	switch {
	case *version != "":
	case node.TensorRT != "":
		fmt.Fprintf(stdout, "tensorrt:        %s (linked), package for CUDA %d\n", node.TensorRT, node.TensorRTCUDAMajor)
	default:
		fmt.Fprintf(stdout, "tensorrt:        none linked (%s)\n", tensorRTBuildHint)
	}
	if *version != "" {
		node.TensorRT = *version
		fmt.Fprintf(stdout, "tensorrt:        %s (given)\n", *version)
	}
	if *cudaMajor != 0 {
		node.TensorRTCUDAMajor = *cudaMajor
	}
	fmt.Fprintf(stdout, "platform:        %s\n", node.Platform)
	planState, planErr := checkPlanFile(m, planPath)
	fmt.Fprintf(stdout, "plan:            %s\n", planState)
	rep := m.Check(node)
	for _, r := range rep.Rules {
		verdict, detail := "ok", r.Detail
		if !r.OK {
			verdict = "REFUSED"
			if r.Hint != "" {
				detail += " (" + r.Hint + ")"
			}
		}
		fmt.Fprintf(stdout, "rule %-21s %-8s %s\n", r.Rule+":", verdict, detail)
	}
	if err := rep.Err(); err != nil {
		return fmt.Errorf("engine check: %w", err)
	}
	if planErr != nil {
		return fmt.Errorf("engine check: %w", planErr)
	}
	fmt.Fprintf(stdout, "compatible:      plan built with TensorRT %s on %s (compute %s) can run here\n",
		m.TensorRT, m.GPU.Name, m.GPU.ComputeCapability)
	return nil
}
