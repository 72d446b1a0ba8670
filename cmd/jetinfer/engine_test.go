package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/tensorrt"
	"github.com/jetinfer/jetinfer/worker/models"
)

// TestEngineCheckPrintsRules: `jetinfer engine check` prints every
// compatibility rule it applied, with the verdict and the reason, and
// fails when one refuses.
func TestEngineCheckPrintsRules(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.plan")
	plan := []byte("plan bytes")
	m := trt.Manifest{
		Schema: trt.ManifestSchema, TensorRT: "10.8.0.43", TensorRTCUDAMajor: 12, Platform: tensorrt.Platform(),
		GPU:           trt.ManifestGPU{Name: "NVIDIA H100 80GB HBM3", ComputeCapability: "9.0"},
		Compatibility: trt.Compatibility{Hardware: trt.HardwareCompatNone, VersionCompatible: true},
		PlanSHA256:    trt.SHA256Hex(plan), PlanBytes: int64(len(plan)),
		Build: trt.BuildInfo{Plugins: []string{"/opt/libmine.so"}},
	}
	m.SetSpec(trt.Spec{
		Inputs:   []trt.TensorDesc{{Name: "x", DType: trt.Float32, Shape: trt.Shape{-1, 4}}},
		Outputs:  []trt.TensorDesc{{Name: "y", DType: trt.Float32, Shape: trt.Shape{-1, 2}}},
		Profiles: []trt.Profile{{Min: map[string]trt.Shape{"x": {1, 4}}, Opt: map[string]trt.Shape{"x": {4, 4}}, Max: map[string]trt.Shape{"x": {8, 4}}}},
	})
	mb, _ := m.Marshal()
	if err := os.WriteFile(path, plan, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".json", mb, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := engineCmd(t.Context(), []string{"check", path + ".json", "-tensorrt-version", "11.1.0.106", "-tensorrt-cuda", "12",
		"-allow-host-code=false"}, &out, &errOut, nil)
	if !errors.Is(err, trt.ErrIncompatible) {
		t.Fatalf("engine check = %v, want ErrIncompatible; output:\n%s", err, out.String())
	}
	got := out.String()
	for _, rule := range []string{trt.RuleDevice, trt.RulePlatform, trt.RuleVersion, trt.RuleCUDAMajor, trt.RuleLeanRuntime, trt.RuleHostCode, trt.RulePlugins} {
		if !strings.Contains(got, "rule "+rule+":") {
			t.Errorf("rule %q not printed; output:\n%s", rule, got)
		}
	}
	for _, want := range []string{
		"TensorRT 10 version-compatible plan (built with 10.8.0.43) runs on TensorRT 11", // accepted across majors
		"REFUSED  a version-compatible plan runs host code",                              // -allow-host-code=false
		"serialized into the version-compatible plan",                                    // plugins travel in the plan
		"plan:            ok",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

// fakeBuilder stands in for TensorRT in `engine build`: an H100 with
// TensorRT 10.9.0.34, and a "plan" that is bytes naming the model it was
// built from, described by the manifest tensorrt.NewManifest writes for a
// real build.
type fakeBuilder struct {
	onnx [][]byte // the model of every build
}

func (*fakeBuilder) Available() error { return nil }

func (*fakeBuilder) Node(cfg tensorrt.Config) (trt.Node, error) {
	return trt.Node{GPU: trt.Device{Kind: "cuda", Name: "NVIDIA H100 80GB HBM3", Compute: "9.0"}, TensorRT: "10.9.0.34",
		TensorRTCUDAMajor: 12, Platform: tensorrt.Platform()}, nil
}

func (f *fakeBuilder) Build(_ context.Context, onnx []byte, o tensorrt.BuildOptions, _ tensorrt.Config, node trt.Node) (builtPlan, error) {
	f.onnx = append(f.onnx, onnx)
	res := tensorrt.BuildResult{Plan: []byte("stand-in plan of ONNX " + trt.SHA256Hex(onnx)), TensorRT: node.TensorRT, CUDARuntime: 12080}
	spec := trt.Spec{
		Inputs:   []trt.TensorDesc{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{-1, 8, 8}}},
		Outputs:  []trt.TensorDesc{{Name: "logits", DType: trt.Float32, Shape: trt.Shape{-1, 10}}},
		Profiles: o.Profiles,
	}
	return builtPlan{Plan: res.Plan, Manifest: tensorrt.NewManifest(res, spec, o, onnx, tensorrt.BuiltOn{GPU: node.GPU})}, nil
}

// TestEngineBuildFromRepository runs `engine build -from-repo NAME@VERSION
// -push` against an embedded JetStream server with TensorRT faked: the
// build gets the version's ONNX model, verified, from the repository, and
// the plan and its manifest land in the same version, where `model ls`
// shows them. What could not be pushed is refused before the build.
func TestEngineBuildFromRepository(t *testing.T) {
	ns, err := startEmbedded(-1, t.TempDir(), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	t.Setenv("JETINFER_MODEL_CACHE_DIR", t.TempDir())
	url := ns.ClientURL()
	digits, fp16 := "../../testdata/models/digits.onnx", "../../testdata/models/digits_fp16.onnx"
	for _, args := range [][]string{{"push", "digits", "3", digits}, {"push", "digits", "4", digits}, {"push", "digits", "4", fp16}} {
		var stdout, stderr bytes.Buffer
		if err := run(t.Context(), append(append([]string{"model"}, args...), "--nats", url), &stdout, &stderr); err != nil {
			t.Fatalf("model %v: %v\n%s", args, err, stderr.String())
		}
	}
	var fb fakeBuilder
	build := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := buildEngine(t.Context(), append(args, "-nats", url, "-profile", "pixels=1x8x8:64x8x8:256x8x8"), &stdout, &stderr,
			newLogger(&stderr), &fb)
		return stdout.String(), err
	}

	out, err := build("-from-repo", "digits@3", "-push", "-fp16")
	if err != nil {
		t.Fatalf("engine build -from-repo digits@3 -push: %v\n%s", err, out)
	}
	t.Logf("engine build -from-repo digits@3 -push:\n%s", out)
	want, err := os.ReadFile(digits)
	if err != nil {
		t.Fatal(err)
	}
	if len(fb.onnx) != 1 || !bytes.Equal(fb.onnx[0], want) {
		t.Fatalf("%d builds; the model built was not digits.onnx", len(fb.onnx))
	}
	const name = "h100-80gb-hbm3_sm90_trt10.9.0.34_fp16.plan"
	if !strings.Contains(out, "pushed digits 3: "+name) {
		t.Fatalf("output lacks the push of %s:\n%s", name, out)
	}

	// The version now holds the plan and its manifest, as `model ls` shows.
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"model", "ls", "digits", "--json", "--nats", url}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	var table modelTableJSON
	if err := json.Unmarshal(stdout.Bytes(), &table); err != nil {
		t.Fatal(err)
	}
	v3 := table.Versions[0]
	plan, ok := v3.Artifact(name)
	if v3.Version != "3" || !ok || plan.Kind != "plan" || plan.Manifest == nil || plan.Manifest.GPU.ComputeCapability != "9.0" ||
		plan.Manifest.ONNXSHA256 != trt.SHA256Hex(want) || !plan.Manifest.Precision.FP16 {
		t.Fatalf("version %s after the push: plan %+v (found %v)", v3.Version, plan, ok)
	}
	if m, ok := v3.Artifact(name + ".json"); !ok || m.Kind != "manifest" || m.For != name {
		t.Fatalf("manifest artifact %+v (found %v)", m, ok)
	}

	// Refused before the build: the same plan again (versions are
	// immutable), a version the repository does not have, a version with
	// two ONNX models and no -artifact.
	for _, tc := range []struct {
		args []string
		is   error
		frag string
	}{
		{[]string{"-from-repo", "digits@3", "-push", "-fp16"}, models.ErrExists, "already has an artifact " + name},
		{[]string{"-from-repo", "digits@9", "-push"}, models.ErrNotFound, "digits 9"},
		{[]string{"-from-repo", "digits@4", "-push"}, nil, "choose one with -artifact"},
		{[]string{"-from-repo", "digits@4", "-artifact", "nope.onnx", "-push"}, models.ErrNotFound, "digits.onnx, digits_fp16.onnx"},
	} {
		out, err := build(tc.args...)
		if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.frag) {
			t.Errorf("engine build %v: %v, want an error mentioning %q\n%s", tc.args, err, tc.frag, out)
		}
	}
	if len(fb.onnx) != 1 {
		t.Fatalf("%d builds: a build that could not be pushed was run", len(fb.onnx))
	}

	// -artifact picks one of several ONNX models; -out keeps the files and
	// names the artifact.
	dir := t.TempDir()
	if out, err := build("-from-repo", "digits@4", "-artifact", "digits_fp16.onnx", "-push", "-out", filepath.Join(dir, "h100.plan")); err != nil {
		t.Fatalf("engine build digits@4: %v\n%s", err, out)
	}
	if fp, _ := os.ReadFile(fp16); len(fb.onnx) != 2 || !bytes.Equal(fb.onnx[1], fp) {
		t.Fatal("the second build did not get digits_fp16.onnx")
	}
	for _, f := range []string{"h100.plan", "h100.plan.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("-out: %v", err)
		}
	}
}

// TestPushBuiltPlanChecksTheSource: the push step of `engine build -push`
// refuses a plan built from another model than the version's, and a
// manifest that does not describe the plan file, storing nothing.
func TestPushBuiltPlanChecksTheSource(t *testing.T) {
	ns, err := startEmbedded(-1, t.TempDir(), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	t.Setenv("JETINFER_MODEL_CACHE_DIR", t.TempDir())
	repo, closeRepo, err := openRepoForBuild(t.Context(), ns.ClientURL(), newLogger(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	defer closeRepo()
	ref := repoRef{Model: "digits", Version: "1"}
	if _, err := repo.Push(t.Context(), ref.Model, ref.Version, []models.Upload{{Kind: models.KindONNX, Path: "../../testdata/models/digits.onnx"}}); err != nil {
		t.Fatal(err)
	}
	src, err := fetchBuildSource(t.Context(), repo, ref, "", "x.plan")
	if err != nil {
		t.Fatal(err)
	}
	onnx, err := os.ReadFile(src.Path)
	if err != nil {
		t.Fatal(err)
	}
	var fb fakeBuilder
	node, _ := fb.Node(tensorrt.Config{})
	o := tensorrt.NewBuildOptions()
	o.Profiles = []trt.Profile{{Min: map[string]trt.Shape{"pixels": {1, 8, 8}}, Opt: map[string]trt.Shape{"pixels": {8, 8, 8}}, Max: map[string]trt.Shape{"pixels": {8, 8, 8}}}}
	write := func(b builtPlan) string {
		path := filepath.Join(t.TempDir(), "x.plan")
		if err := os.WriteFile(path, b.Plan, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}

	other, _ := fb.Build(t.Context(), []byte("another model"), o, tensorrt.Config{}, node)
	if _, err := pushBuiltPlan(t.Context(), repo, ref, "x.plan", write(other), other.Manifest); err == nil || !strings.Contains(err.Error(), "not this version's ONNX model") {
		t.Fatalf("push of a plan of another model: %v", err)
	}
	good, _ := fb.Build(t.Context(), onnx, o, tensorrt.Config{}, node)
	path := write(good)
	if err := os.WriteFile(path, []byte("changed after the build"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := pushBuiltPlan(t.Context(), repo, ref, "x.plan", path, good.Manifest); err == nil || !strings.Contains(err.Error(), "manifest describes") {
		t.Fatalf("push of a plan its manifest does not describe: %v", err)
	}
	if v, err := repo.Version(t.Context(), ref.Model, ref.Version); err != nil || len(v.Artifacts) != 1 {
		t.Fatalf("after two refused pushes: %+v, %v; want the ONNX model only", v, err)
	}
	if v, err := pushBuiltPlan(t.Context(), repo, ref, "x.plan", write(good), good.Manifest); err != nil || len(v.Artifacts) != 3 {
		t.Fatalf("push of the plan: %+v, %v", v, err)
	}
}

// TestEngineBuildWithoutTensorRT: in a binary without TensorRT, `engine
// build -from-repo ... -push` checks its flags, then fails saying how to
// get a binary that builds, without contacting the broker (the URL given
// here has no server).
func TestEngineBuildWithoutTensorRT(t *testing.T) {
	if tensorrt.Available {
		t.Skip("this binary has TensorRT")
	}
	const profile = "pixels=1x8x8:64x8x8:256x8x8"
	for _, tc := range []struct {
		args        []string
		unavailable bool
		frag        string
	}{
		{[]string{"-from-repo", "digits@3", "-push", "-profile", profile, "-nats", "nats://127.0.0.1:1"}, true, "built without TensorRT"},
		{[]string{"-from-repo", "digits", "-push", "-profile", profile}, false, "NAME@VERSION"},
		{[]string{"-from-repo", "digits@bad..version", "-push", "-profile", profile}, false, "version"},
		{[]string{"-onnx", "m.onnx", "-push", "-profile", profile}, false, "need -from-repo"},
		{[]string{"-onnx", "m.onnx", "-from-repo", "digits@3", "-profile", profile}, false, "exclude each other"},
		{[]string{"-from-repo", "digits@3", "-profile", profile}, false, "-out is required"},
		{[]string{"-from-repo", "digits@3", "-push"}, false, "-profile"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), append([]string{"engine", "build"}, tc.args...), &stdout, &stderr)
		if err == nil || errors.Is(err, trt.ErrUnavailable) != tc.unavailable || !strings.Contains(err.Error(), tc.frag) {
			t.Errorf("engine build %v: %v, want an error mentioning %q (TensorRT unavailable: %v)", tc.args, err, tc.frag, tc.unavailable)
		}
	}
}
