package models_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/worker/models"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// repoFile returns the path of a file relative to the repository root.
func repoFile(parts ...string) string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(append([]string{filepath.Dir(here), "..", ".."}, parts...)...)
}

// startServer starts an in-process JetStream server on a free port with
// the given max_payload (0: the server's default of 1 MiB).
func startServer(t testing.TB, maxPayload int32) *server.Server {
	t.Helper()
	dir := t.TempDir() // registered before Shutdown, so removed after it
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir,
		MaxPayload: maxPayload, NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatalf("creating server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("JetStream server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// env is one server, a JetStream context and a repository with its own
// cache directory.
type env struct {
	js    jetstream.JetStream
	repo  *models.Repository
	cache string
}

func newEnv(t *testing.T, maxPayload int32) env {
	t.Helper()
	ns := startServer(t, maxPayload)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	repo, err := models.Open(t.Context(), js, models.Config{CacheDir: cache})
	if err != nil {
		t.Fatalf("opening repository: %v", err)
	}
	return env{js: js, repo: repo, cache: cache}
}

func fileSHA(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func h100() trt.Device {
	return trt.Device{Kind: "cuda", Name: "NVIDIA H100 80GB HBM3", Compute: "9.0", UUID: "GPU-1"}
}

// standInPlan writes bytes standing in for a TensorRT plan (no TensorRT
// here; the repository never deserializes plans) and its manifest for a
// GPU of compute capability cc and TensorRT version v, built from onnx.
func standInPlan(t *testing.T, name, gpu, cc, v, onnx string) (string, *trt.Manifest) {
	t.Helper()
	plan := []byte("stand-in plan bytes for " + name + " " + gpu + " " + cc + " " + v)
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, plan, 0o644); err != nil {
		t.Fatal(err)
	}
	m := &trt.Manifest{
		Schema:            trt.ManifestSchema,
		TensorRT:          v,
		Platform:          "linux/amd64",
		TensorRTCUDAMajor: 12,
		GPU:               trt.ManifestGPU{Name: gpu, ComputeCapability: cc},
		Compatibility:     trt.Compatibility{Hardware: trt.HardwareCompatNone},
		Precision:         trt.Precision{FP16: true},
		PlanSHA256:        trt.SHA256Hex(plan),
		PlanBytes:         int64(len(plan)),
		Build:             trt.BuildInfo{OptimizationLevel: -1},
	}
	if onnx != "" {
		m.ONNXSHA256 = fileSHA(t, onnx)
	}
	m.SetSpec(trt.Spec{
		Inputs:  []trt.TensorDesc{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{-1, 8, 8}}},
		Outputs: []trt.TensorDesc{{Name: "logits", DType: trt.Float32, Shape: trt.Shape{-1, 10}}},
		Profiles: []trt.Profile{{
			Min: map[string]trt.Shape{"pixels": {1, 8, 8}},
			Opt: map[string]trt.Shape{"pixels": {64, 8, 8}},
			Max: map[string]trt.Shape{"pixels": {256, 8, 8}},
		}},
	})
	return path, m
}

func TestPushListPromoteRollbackRemove(t *testing.T) {
	e := newEnv(t, 8<<20)
	ctx := t.Context()
	digits, fp16 := repoFile("testdata", "models", "digits.onnx"), repoFile("testdata", "models", "digits_fp16.onnx")
	ref := repoFile("testdata", "digits_ref.arrow")

	v1, err := e.repo.Push(ctx, "digits", "1", []models.Upload{
		{Kind: models.KindONNX, Path: digits, Name: "model.onnx"},
		{Kind: models.KindReference, Path: ref},
	})
	if err != nil {
		t.Fatalf("push 1: %v", err)
	}
	if a, ok := v1.Artifact("model.onnx"); !ok || a.SHA256 != fileSHA(t, digits) || a.Object != "digits/1/model.onnx" {
		t.Fatalf("pushed artifact = %+v, want sha256 %s under digits/1/model.onnx", a, fileSHA(t, digits))
	}
	if _, err := e.repo.Push(ctx, "digits", "2", []models.Upload{{Kind: models.KindONNX, Path: fp16, Name: "model.onnx"}}); err != nil {
		t.Fatalf("push 2: %v", err)
	}
	// The same artifact name again is refused; a new one is added.
	if _, err := e.repo.Push(ctx, "digits", "1", []models.Upload{{Kind: models.KindONNX, Path: fp16, Name: "model.onnx"}}); !errors.Is(err, models.ErrExists) {
		t.Fatalf("pushing model.onnx again: err = %v, want ErrExists", err)
	}
	// Only an ONNX model or a plan makes a new version.
	if _, err := e.repo.Push(ctx, "digits", "3", []models.Upload{{Kind: models.KindReference, Path: ref}}); err == nil {
		t.Fatal("a version of reference data only was accepted")
	}

	vs, err := e.repo.Versions(ctx, "digits")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || vs[0].Version != "1" || vs[1].Version != "2" || len(vs[0].Artifacts) != 2 {
		t.Fatalf("versions = %+v, want 1 (2 artifacts) and 2", vs)
	}
	if ms, err := e.repo.Models(ctx); err != nil || len(ms) != 1 || ms[0] != "digits" {
		t.Fatalf("models = %v, %v; want [digits]", ms, err)
	}

	if _, err := e.repo.Active(ctx, "digits"); !errors.Is(err, models.ErrNotFound) {
		t.Fatalf("active before any promotion: %v, want ErrNotFound", err)
	}
	if _, err := e.repo.Promote(ctx, "digits", "9"); !errors.Is(err, models.ErrNotFound) {
		t.Fatalf("promoting a missing version: %v, want ErrNotFound", err)
	}
	if _, err := e.repo.Promote(ctx, "digits", "1"); err != nil {
		t.Fatal(err)
	}
	a, err := e.repo.Promote(ctx, "digits", "2")
	if err != nil {
		t.Fatal(err)
	}
	if a.Version != "2" || len(a.Previous) != 1 || a.Previous[0] != "1" {
		t.Fatalf("active after promoting 1 then 2 = %+v", a)
	}
	if again, err := e.repo.Promote(ctx, "digits", "2"); err != nil || !again.At.Equal(a.At) || len(again.Previous) != 1 {
		t.Fatalf("promoting the active version again = %+v, %v; want the record unchanged (%+v)", again, err, a)
	}
	if err := e.repo.Remove(ctx, "digits", "2"); !errors.Is(err, models.ErrActive) {
		t.Fatalf("removing the active version: %v, want ErrActive", err)
	}
	if a, err = e.repo.Rollback(ctx, "digits"); err != nil || a.Version != "1" {
		t.Fatalf("rollback = %+v, %v; want version 1", a, err)
	}
	if got, err := e.repo.Active(ctx, "digits"); err != nil || got.Version != "1" {
		t.Fatalf("active after rollback = %+v, %v", got, err)
	}

	// An alias keeps a version from removal and resolves to it.
	if err := e.repo.SetAlias(ctx, "digits", "canary", "9"); !errors.Is(err, models.ErrNotFound) {
		t.Fatalf("alias to a missing version: %v, want ErrNotFound", err)
	}
	if err := e.repo.SetAlias(ctx, "digits", "canary", "2"); err != nil {
		t.Fatal(err)
	}
	if err := e.repo.Remove(ctx, "digits", "2"); !errors.Is(err, models.ErrActive) || !strings.Contains(err.Error(), "canary") {
		t.Fatalf("removing the canary version: %v, want ErrActive naming the alias", err)
	}
	r, err := e.repo.ResolveAlias(ctx, "digits", "canary", models.Node{GPU: trt.Device{Kind: "cpu"}})
	if err != nil || r.Version != "2" || r.Artifact.SHA256 != fileSHA(t, fp16) {
		t.Fatalf("resolving digits@canary = %+v, %v; want version 2's model", r, err)
	}
	if al, err := e.repo.Aliases(ctx, "digits"); err != nil || len(al) != 1 || al["canary"] != "2" {
		t.Fatalf("aliases = %v, %v", al, err)
	}
	if err := e.repo.DeleteAlias(ctx, "digits", "canary"); err != nil {
		t.Fatal(err)
	}
	if err := e.repo.Remove(ctx, "digits", "2"); err != nil {
		t.Fatalf("removing inactive version 2: %v", err)
	}
	if _, err := e.repo.Version(ctx, "digits", "2"); !errors.Is(err, models.ErrNotFound) {
		t.Fatalf("version 2 after removal: %v, want ErrNotFound", err)
	}
	obs, err := e.js.ObjectStore(ctx, wire.DefaultArtifactBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.GetInfo(ctx, "digits/2/model.onnx"); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("artifact of removed version: %v, want ErrObjectNotFound", err)
	}
	if _, err := obs.GetInfo(ctx, "digits/1/model.onnx"); err != nil {
		t.Fatalf("artifact of version 1: %v", err)
	}
	// Nothing to go back to: 2 was removed and 1 has no predecessor.
	if _, err := e.repo.Rollback(ctx, "digits"); !errors.Is(err, models.ErrNotFound) {
		t.Fatalf("rollback with no previous version: %v, want ErrNotFound", err)
	}
	if _, err := e.repo.Push(ctx, "bad.name", "1", nil); err == nil {
		t.Fatal("a model name with a dot was accepted")
	}
}

func TestPushRefusesPlanNotMatchingItsManifest(t *testing.T) {
	e := newEnv(t, 8<<20)
	ctx := t.Context()
	digits := repoFile("testdata", "models", "digits.onnx")
	plan, m := standInPlan(t, "h100.plan", "NVIDIA H100 80GB HBM3", "9.0", "10.9.0.34", digits)
	m.PlanSHA256 = strings.Repeat("ab", 32)
	_, err := e.repo.Push(ctx, "digits", "1", []models.Upload{
		{Kind: models.KindONNX, Path: digits}, {Kind: models.KindPlan, Path: plan, Manifest: m},
	})
	if err == nil || !strings.Contains(err.Error(), "manifest describes a plan") {
		t.Fatalf("push of a plan its manifest does not describe: %v", err)
	}
	// A plan built from another ONNX model is refused too.
	plan, m = standInPlan(t, "h100.plan", "NVIDIA H100 80GB HBM3", "9.0", "10.9.0.34", repoFile("testdata", "models", "seq_encoder.onnx"))
	_, err = e.repo.Push(ctx, "digits", "1", []models.Upload{
		{Kind: models.KindONNX, Path: digits}, {Kind: models.KindPlan, Path: plan, Manifest: m},
	})
	if err == nil || !strings.Contains(err.Error(), "not this version's ONNX model") {
		t.Fatalf("push of a plan built from another model: %v", err)
	}
	if vs, err := e.repo.Versions(ctx, "digits"); err != nil || len(vs) != 0 {
		t.Fatalf("versions after refused pushes = %v, %v; want none", vs, err)
	}
	obs, err := e.js.ObjectStore(ctx, wire.DefaultArtifactBucket)
	if err != nil {
		t.Fatal(err)
	}
	if infos, err := obs.List(ctx); !errors.Is(err, jetstream.ErrNoObjectsFound) {
		t.Fatalf("objects after refused pushes: %d (%v), want none", len(infos), err)
	}
}

// pushWithPlans pushes digits version 1 with the ONNX model, a plan for
// H100 + TensorRT 10.9.0 and a plan for A100 + 10.9.0, and promotes it.
func pushWithPlans(t *testing.T, e env) {
	t.Helper()
	digits := repoFile("testdata", "models", "digits.onnx")
	h, hm := standInPlan(t, "h100.plan", "NVIDIA H100 80GB HBM3", "9.0", "10.9.0.34", digits)
	a, am := standInPlan(t, "a100.plan", "NVIDIA A100-SXM4-80GB", "8.0", "10.9.0.34", digits)
	_, err := e.repo.Push(t.Context(), "digits", "1", []models.Upload{
		{Kind: models.KindONNX, Path: digits, Name: "model.onnx"},
		{Kind: models.KindPlan, Path: a, Manifest: am},
		{Kind: models.KindPlan, Path: h, Manifest: hm},
	})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	if _, err := e.repo.Promote(t.Context(), "digits", "1"); err != nil {
		t.Fatal(err)
	}
}

func skipOf(r models.Resolution, name string) (models.Skip, bool) {
	for _, s := range r.Skipped {
		if s.Artifact == name {
			return s, true
		}
	}
	return models.Skip{}, false
}

func TestResolveChoosesPerNode(t *testing.T) {
	e := newEnv(t, 8<<20)
	pushWithPlans(t, e)
	ctx := t.Context()

	// An H100 with TensorRT 10.9.0 gets its plan.
	r, err := e.repo.Resolve(ctx, "digits", models.Node{GPU: h100(), TensorRT: "10.9.0.34", TensorRTCUDAMajor: 12, Platform: "linux/amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Artifact.Name != "h100.plan" || r.Artifact.Manifest == nil || r.Version != "1" {
		t.Fatalf("H100 resolved %+v, want h100.plan of version 1", r.Artifact)
	}
	if fileSHA(t, r.Path) != r.Artifact.SHA256 {
		t.Fatal("resolved file does not have the recorded digest")
	}
	s, ok := skipOf(r, "a100.plan")
	if !ok || !errors.Is(s.Err, trt.ErrIncompatible) || !strings.Contains(s.Reason, "compute capability") {
		t.Fatalf("a100.plan skip = %+v, want an incompatible compute capability", s)
	}
	if s, ok := skipOf(r, "model.onnx"); !ok || s.Err != nil || !strings.Contains(s.Reason, "ranked below h100.plan") {
		t.Fatalf("model.onnx skip = %+v", s)
	}

	// The H100 with a patch-level TensorRT mismatch falls back to ONNX.
	r, err = e.repo.Resolve(ctx, "digits", models.Node{GPU: h100(), TensorRT: "10.9.1.6", TensorRTCUDAMajor: 12, Platform: "linux/amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Artifact.Kind != models.KindONNX {
		t.Fatalf("H100 with TensorRT 10.9.1 resolved %s, want the ONNX model", r.Artifact.Name)
	}
	if s, ok := skipOf(r, "h100.plan"); !ok || !strings.Contains(s.Reason, "tensorrt version") {
		t.Fatalf("h100.plan skip on 10.9.1 = %+v", s)
	}

	// A CPU node skips both plans and gets the ONNX model, which ONNX
	// Runtime loads.
	r, err = e.repo.Resolve(ctx, "digits", models.Node{GPU: trt.Device{Kind: "cpu", Name: "onnxruntime"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Artifact.Name != "model.onnx" || len(r.Skipped) != 2 {
		t.Fatalf("CPU node resolved %s skipping %+v", r.Artifact.Name, r.Skipped)
	}
	for _, s := range r.Skipped {
		if !errors.Is(s.Err, trt.ErrIncompatible) {
			t.Errorf("CPU node skipped %s without an incompatibility: %+v", s.Artifact, s)
		}
	}
	loadONNX(t, r.Path)
}

// loadONNX loads the model at path on ONNX Runtime and checks its input,
// or skips when the library is not installed.
func loadONNX(t *testing.T, path string) {
	t.Helper()
	lib, err := onnxrt.FindLibrary(os.Getenv("JETINFER_ORT_LIBRARY"))
	if err != nil {
		t.Skipf("ONNX Runtime library not available (%v); set JETINFER_ORT_LIBRARY to load the resolved model", err)
	}
	rt, err := onnxrt.NewRuntime(lib)
	if err != nil {
		t.Skipf("ONNX Runtime not usable here: %v", err)
	}
	defer rt.Close()
	eng, err := rt.LoadFile(t.Context(), path, onnxrt.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatalf("loading the resolved model: %v", err)
	}
	defer eng.Close()
	if in := eng.Spec().Inputs; len(in) != 1 || in[0].Name != "pixels" {
		t.Fatalf("resolved model inputs = %+v, want pixels", in)
	}
}

// overwrite replaces an object's bytes behind the repository's back. The
// Object Store's own digest then matches the new bytes: only the digest
// recorded at push can tell.
func overwrite(t *testing.T, e env, object string) {
	t.Helper()
	obs, err := e.js.ObjectStore(t.Context(), wire.DefaultArtifactBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(t.Context(), object, []byte("corrupted")); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptArtifactIsSkipped(t *testing.T) {
	e := newEnv(t, 8<<20)
	pushWithPlans(t, e)
	ctx := t.Context()
	overwrite(t, e, "digits/1/h100.plan")

	r, err := e.repo.Resolve(ctx, "digits", models.Node{GPU: h100(), TensorRT: "10.9.0.34", TensorRTCUDAMajor: 12, Platform: "linux/amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Artifact.Name != "model.onnx" {
		t.Fatalf("resolved %s with h100.plan corrupt, want the ONNX model", r.Artifact.Name)
	}
	s, ok := skipOf(r, "h100.plan")
	if !ok || !errors.Is(s.Err, models.ErrCorrupt) || !strings.Contains(s.Reason, "sha256") {
		t.Fatalf("h100.plan skip = %+v, want ErrCorrupt naming the digests", s)
	}
	v, err := e.repo.Version(ctx, "digits", "1")
	if err != nil {
		t.Fatal(err)
	}
	plan, _ := v.Artifact("h100.plan")
	if _, err := os.Stat(filepath.Join(e.cache, "sha256", plan.SHA256)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a corrupt fetch left a cache entry: %v", err)
	}

	// With the ONNX model corrupt too, nothing is usable: an error, not a crash.
	overwrite(t, e, "digits/1/model.onnx")
	if err := os.RemoveAll(e.cache); err != nil {
		t.Fatal(err)
	}
	_, err = e.repo.Resolve(ctx, "digits", models.Node{GPU: h100(), TensorRT: "10.9.0.34", TensorRTCUDAMajor: 12, Platform: "linux/amd64"})
	if !errors.Is(err, models.ErrNoArtifact) || !strings.Contains(err.Error(), "model.onnx") || !strings.Contains(err.Error(), "h100.plan") {
		t.Fatalf("resolve with everything corrupt: %v, want ErrNoArtifact naming both artifacts", err)
	}
}

func TestCacheReuseAndCorruptCacheEntry(t *testing.T) {
	e := newEnv(t, 8<<20)
	pushWithPlans(t, e)
	ctx := t.Context()
	cpu := models.Node{GPU: trt.Device{Kind: "cpu"}}

	first, err := e.repo.Resolve(ctx, "digits", cpu)
	if err != nil {
		t.Fatal(err)
	}
	if first.Cached {
		t.Fatal("first resolve came from an empty cache")
	}
	// Delete the object: a resolve that still succeeds did not fetch.
	obs, err := e.js.ObjectStore(ctx, wire.DefaultArtifactBucket)
	if err != nil {
		t.Fatal(err)
	}
	want, err := obs.GetBytes(ctx, "digits/1/model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.Delete(ctx, "digits/1/model.onnx"); err != nil {
		t.Fatal(err)
	}
	second, err := e.repo.Resolve(ctx, "digits", cpu)
	if err != nil {
		t.Fatalf("resolve from the cache with the object gone: %v", err)
	}
	if !second.Cached || second.Path != first.Path {
		t.Fatalf("second resolve: cached %v path %s, want the cache entry %s", second.Cached, second.Path, first.Path)
	}

	// A corrupt cache entry is detected and fetched again.
	if _, err := obs.PutBytes(ctx, "digits/1/model.onnx", want); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(first.Path, []byte("bit rot"), 0o644); err != nil {
		t.Fatal(err)
	}
	third, err := e.repo.Resolve(ctx, "digits", cpu)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(third.Path)
	if err != nil {
		t.Fatal(err)
	}
	if third.Cached || !bytes.Equal(got, want) {
		t.Fatalf("after corrupting the cache entry: cached %v, bytes equal %v; want a fresh fetch", third.Cached, bytes.Equal(got, want))
	}
}

func TestLargeArtifactRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxPayload int32
		chunk      uint32
	}{
		{"4MiB chunks", 8 << 20, models.ChunkSize},
		{"server max_payload 1MiB", 0, 1<<20 - 64<<10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.maxPayload)
			ctx := t.Context()
			if e.repo.ChunkSize() != tc.chunk {
				t.Fatalf("chunk size %d, want %d", e.repo.ChunkSize(), tc.chunk)
			}
			const size = 18<<20 + 12345
			data := make([]byte, size)
			_, _ = rand.Read(data)
			path := filepath.Join(t.TempDir(), "big.arrow")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			onnx := repoFile("testdata", "models", "digits.onnx")
			v, err := e.repo.Push(ctx, "big", "1", []models.Upload{{Kind: models.KindONNX, Path: onnx}, {Kind: models.KindReference, Path: path}})
			if err != nil {
				t.Fatal(err)
			}
			obs, err := e.js.ObjectStore(ctx, wire.DefaultArtifactBucket)
			if err != nil {
				t.Fatal(err)
			}
			info, err := obs.GetInfo(ctx, "big/1/big.arrow")
			if err != nil {
				t.Fatal(err)
			}
			wantChunks := (size + int(tc.chunk) - 1) / int(tc.chunk)
			if info.Opts == nil || info.Opts.ChunkSize != tc.chunk || int(info.Chunks) != wantChunks {
				t.Fatalf("stored with %+v in %d chunks, want chunk size %d in %d chunks", info.Opts, info.Chunks, tc.chunk, wantChunks)
			}
			art, _ := v.Artifact("big.arrow")
			got, cached, err := e.repo.Fetch(ctx, art)
			if err != nil || cached {
				t.Fatalf("fetch: cached %v, %v", cached, err)
			}
			b, err := os.ReadFile(got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, data) {
				t.Fatal("fetched bytes differ from the pushed file")
			}
		})
	}
}

// TestAliasTargetAndWatch: Target reads the version an alias names with
// the versions it named before (most recent last, each once), "active"
// is the active version, and WatchAlias sends every move of the alias
// and keeps watching after the alias is deleted and set again.
func TestAliasTargetAndWatch(t *testing.T) {
	e := newEnv(t, 8<<20)
	ctx := t.Context()
	for _, v := range []string{"1", "2", "3"} {
		if _, err := e.repo.Push(ctx, "digits", v, []models.Upload{{Kind: models.KindONNX, Path: repoFile("testdata", "models", "digits.onnx")}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.repo.Target(ctx, "digits", "canary"); !errors.Is(err, models.ErrNotFound) {
		t.Fatalf("target of an alias never set: %v, want ErrNotFound", err)
	}
	if _, err := e.repo.Target(ctx, "digits", "Canary!"); err == nil {
		t.Fatal("an invalid alias name was accepted")
	}
	if _, err := e.repo.Promote(ctx, "digits", "1"); err != nil {
		t.Fatal(err)
	}
	if a, err := e.repo.Target(ctx, "digits", "active"); err != nil || a.Version != "1" {
		t.Fatalf("target of alias active = %+v, %v; want the active version 1", a, err)
	}
	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	updates, err := e.repo.WatchAlias(watchCtx, "digits", "canary")
	if err != nil {
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		select {
		case a := <-updates:
			return a.Version
		case <-time.After(10 * time.Second):
			t.Fatal("no alias record within 10 s")
			return ""
		}
	}
	for _, v := range []string{"1", "2", "1", "3"} {
		if err := e.repo.SetAlias(ctx, "digits", "canary", v); err != nil {
			t.Fatal(err)
		}
		// The watch keeps only the latest record: read each before the next.
		if got := next(); got != v {
			t.Fatalf("watch sent version %s, want %s", got, v)
		}
	}
	a, err := e.repo.Target(ctx, "digits", "canary")
	if err != nil || a.Version != "3" || !slices.Equal(a.Previous, []string{"2", "1"}) || a.At.IsZero() {
		t.Fatalf("target of canary = %+v, %v; want version 3, previously [2 1]", a, err)
	}
	// After a promotion (another key) and a deletion, the next move is
	// sent.
	if _, err := e.repo.Promote(ctx, "digits", "3"); err != nil {
		t.Fatal(err)
	}
	if err := e.repo.DeleteAlias(ctx, "digits", "canary"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.repo.Target(ctx, "digits", "canary"); !errors.Is(err, models.ErrNotFound) {
		t.Fatalf("target of a deleted alias: %v, want ErrNotFound", err)
	}
	if err := e.repo.SetAlias(ctx, "digits", "canary", "2"); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "2" {
		t.Fatalf("after a promotion, a deletion and a move to 2 the watch sent %s", got)
	}
}

// TestCacheEvictsLeastRecentlyUsed bounds the cache at 100 KiB and fetches
// 40 KiB artifacts: each fetch beyond the bound evicts the least recently
// used entry (a cache hit counts as a use), never a pinned one nor the
// one just fetched, even when that one alone exceeds the bound.
func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	ns := startServer(t, 8<<20)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	repo, err := models.Open(t.Context(), js, models.Config{CacheDir: cache, CacheMaxBytes: 100 << 10})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	arts := map[string]models.Artifact{}
	for _, tc := range []struct {
		version string
		size    int
	}{{"1", 40 << 10}, {"2", 40 << 10}, {"3", 40 << 10}, {"4", 40 << 10}, {"5", 40 << 10}, {"big", 150 << 10}} {
		b := make([]byte, tc.size)
		_, _ = rand.Read(b)
		path := filepath.Join(t.TempDir(), "model.onnx")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		v, err := repo.Push(ctx, "m", tc.version, []models.Upload{{Kind: models.KindONNX, Path: path}})
		if err != nil {
			t.Fatal(err)
		}
		arts[tc.version] = v.Artifacts[0]
	}
	fetch := func(v string) {
		t.Helper()
		if _, _, err := repo.Fetch(ctx, arts[v]); err != nil {
			t.Fatalf("fetching %s: %v", v, err)
		}
	}
	inCache := func(want ...string) {
		t.Helper()
		var got []string
		for _, v := range []string{"1", "2", "3", "4", "5", "big"} {
			if _, err := os.Stat(filepath.Join(cache, "sha256", arts[v].SHA256)); err == nil {
				got = append(got, v)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("cache holds versions %v, want %v", got, want)
		}
	}
	fetch("1")
	fetch("2")
	fetch("1") // a hit: 2 is now the least recently used
	fetch("3") // 120 KiB > 100 KiB
	inCache("1", "3")

	unpin := repo.Pin(arts["1"].SHA256)
	fetch("3")
	fetch("4") // 1 is the oldest but pinned
	inCache("1", "4")
	unpin()
	unpin() // a second call does nothing
	fetch("5")
	inCache("4", "5")

	// An entry larger than the bound is kept (it is about to be used);
	// everything unpinned goes.
	unpin = repo.Pin(arts["5"].SHA256)
	defer unpin()
	fetch("big")
	inCache("5", "big")
}
