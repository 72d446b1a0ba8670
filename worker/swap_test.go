package worker_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/trt/trttest"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
	"github.com/jetinfer/jetinfer/worker/models"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// openRepo opens the model repository on nc's server with a cache
// directory of its own (a node of its own).
func openRepo(t testing.TB, nc *nats.Conn) *models.Repository {
	t.Helper()
	repo, err := models.Open(context.Background(), mustJS(t, nc), models.Config{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatalf("opening the repository: %v", err)
	}
	return repo
}

// push stores a version: model is an ONNX file, ref (optional) a reference
// file for the accuracy gate.
func push(t testing.TB, repo *models.Repository, version, model, ref string) models.Version {
	t.Helper()
	ups := []models.Upload{{Kind: models.KindONNX, Path: model}}
	if ref != "" {
		ups = append(ups, models.Upload{Kind: models.KindReference, Path: ref})
	}
	v, err := repo.Push(context.Background(), "digits", version, ups)
	if err != nil {
		t.Fatalf("pushing version %s: %v", version, err)
	}
	return v
}

func promote(t testing.TB, repo *models.Repository, version string) {
	t.Helper()
	if _, err := repo.Promote(context.Background(), "digits", version); err != nil {
		t.Fatalf("promoting %s: %v", version, err)
	}
}

// cpuNode is a node without GPU: every plan is skipped.
var cpuNode = models.Node{GPU: trt.Device{Kind: "cpu", Name: "test CPU"}, Platform: "linux/amd64"}

// ortSource serves from repo with ONNX models opened on the test's ONNX
// Runtime, or skips the test without the library.
func ortSource(t testing.TB, repo *models.Repository) worker.Source {
	t.Helper()
	if ortRuntime == nil {
		t.Skip(ortMissing)
	}
	return worker.Source{Repository: repo, Node: cpuNode,
		Open: func(ctx context.Context, res models.Resolution) (worker.Engine, func() error, error) {
			eng, err := ortRuntime.LoadFile(ctx, res.Path, onnxrt.Options{IntraOpThreads: 1})
			if err != nil {
				return nil, nil, err
			}
			return eng, eng.Close, nil
		}}
}

// perturbedDigits writes a copy of digits.onnx whose largest weight
// tensor is scaled by 1.1: a real model with measurably other outputs.
func perturbedDigits(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(repoFile("testdata", "models", "digits.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := trttest.PerturbONNX(b, 1.1)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "digits_perturbed.onnx")
	if err := os.WriteFile(path, p, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// logitsOf runs the model at path over the whole test split and returns
// its logits by id: what a worker serving that model must answer.
func logitsOf(t testing.TB, d *digits, path string) map[int64][]float32 {
	t.Helper()
	if ortRuntime == nil {
		t.Skip(ortMissing)
	}
	eng, err := ortRuntime.LoadFile(context.Background(), path, onnxrt.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	out := map[int64][]float32{}
	for lo := 0; lo < d.rows; lo += 64 {
		hi := min(lo+64, d.rows)
		b := &trt.Batch{Inputs: []trt.Tensor{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{int64(hi - lo), 8, 8},
			Data: d.pixels[lo*d.pixelRow : hi*d.pixelRow]}}, Outputs: []trt.Tensor{{Name: "logits", DType: trt.Float32}}}
		if err := eng.Run(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		for i := lo; i < hi; i++ {
			out[d.ids[i]] = floats(b.Outputs[0].Data[(i-lo)*40 : (i-lo+1)*40])
		}
	}
	return out
}

// sameLogits reports whether a result body holds, row by row, the logits
// want gives for its ids.
func sameLogits(t testing.TB, body []byte, want map[int64][]float32) bool {
	t.Helper()
	res, err := codec.DecodeResult(body, codec.DefaultLimits())
	if err != nil {
		t.Fatalf("decoding result: %v", err)
	}
	defer res.Release()
	logits, _ := res.Column("logits")
	for i, id := range res.IDs.(*array.Int64).Int64Values() {
		got, w := floats(logits.Data[i*40:(i+1)*40]), want[id]
		for j := range w {
			if math.Abs(float64(got[j]-w[j])) > 1e-5+1e-4*math.Abs(float64(w[j])) {
				return false
			}
		}
	}
	return true
}

// logBuffer collects a worker's log lines, safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// repoWorker starts a worker serving digits from the repository on its
// own connection and cache (its own node), logging into logs when given.
func repoWorker(t testing.TB, ns *server.Server, cfg worker.Config, logs *logBuffer) *worker.Worker {
	t.Helper()
	nc := connect(t, ns)
	opts := []worker.Option{worker.WithSource(ortSource(t, openRepo(t, nc)))}
	if logs != nil {
		opts = append(opts, worker.WithLogger(logs.logger()))
	}
	return startWorker(t, nc, nil, cfg, opts...)
}

func mustStream(t testing.TB, nc *nats.Conn, name string) jetstream.Stream {
	t.Helper()
	s, err := mustJS(t, nc).Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func serving(ws ...*worker.Worker) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.Serving().Version)
	}
	return out
}

// TestHotSwapUnderLoadTwoWorkers promotes version 2 while two workers
// serve version 1 under steady load. Version 2 is digits.onnx with one
// weight tensor scaled, so every result's values tell which engine
// produced it: each must match the version its header names. Every
// request gets exactly one result; those answered before the promotion
// name version 1, those published after both workers switched name
// version 2; requests pinned to version 2 right after the promotion are
// answered by version 2 (never NOT_FOUND), and each worker closes its old
// engine once its requests are done.
func TestHotSwapUnderLoadTwoWorkers(t *testing.T) {
	d := loadDigitsRows(t)
	ns := startServer(t)
	nc := connect(t, ns)
	repo := openRepo(t, nc)
	perturbed := perturbedDigits(t)
	push(t, repo, "1", repoFile("testdata", "models", "digits.onnx"), repoFile("testdata", "digits_gate.arrow"))
	push(t, repo, "2", perturbed, "") // no reference data: the gate does not run
	promote(t, repo, "1")
	want := map[string]map[int64][]float32{"1": d.refByID, "2": logitsOf(t, d, perturbed)}

	cfg := worker.Config{Model: "digits", MaxDelay: 2 * time.Millisecond}
	w1, w2 := repoWorker(t, ns, cfg, nil), repoWorker(t, ns, cfg, nil)
	if v := serving(w1, w2); v[0] != "1" || v[1] != "1" {
		t.Fatalf("workers serve %v, want version 1", v)
	}

	c, err := client.New(connect(t, ns), client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	type sent struct {
		rows          int
		pin           string
		afterSwitched bool // published after both workers served version 2
	}
	var mu sync.Mutex
	reqs := map[string]sent{}
	arrivedBefore := map[string]bool{} // answered before the promotion
	var promoted, switched atomic.Bool
	results := map[string]client.Result{}
	var collected sync.WaitGroup
	cctx, stopCollecting := context.WithCancel(context.Background())
	defer stopCollecting()
	collected.Go(func() {
		err := c.Results(cctx, "swap", func(r client.Result) bool {
			mu.Lock()
			defer mu.Unlock()
			if _, dup := results[r.RequestID]; dup {
				t.Errorf("duplicate result for %s", r.RequestID)
			}
			results[r.RequestID] = r
			if !promoted.Load() {
				arrivedBefore[r.RequestID] = true
			}
			return true
		})
		if err != nil && cctx.Err() == nil {
			t.Errorf("collecting results: %v", err)
		}
	})
	publish := func(i int, pin string) {
		lo, n := (i*7)%(d.rows-8), 1+i%8
		id := fmt.Sprintf("s%d", i)
		if pin != "" {
			id = "pinned-" + id
		}
		mu.Lock()
		reqs[id] = sent{rows: n, pin: pin, afterSwitched: switched.Load()}
		mu.Unlock()
		if _, err := c.Publish(context.Background(), client.Request{ID: id, Job: "swap", Body: d.request(t, lo, lo+n), Version: pin}); err != nil {
			t.Errorf("publishing %s: %v", id, err)
		}
	}
	// Steady load: one request every 2 ms from a producer goroutine.
	var published atomic.Int64
	stop := make(chan struct{})
	var producer sync.WaitGroup
	producer.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			publish(i, "")
			published.Add(1)
		}
	})
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(results) >= 100 }, "100 results from version 1")
	promoted.Store(true)
	promote(t, repo, "2")
	for i := range 20 {
		publish(100000+i, "2") // pinned to the version being rolled out
	}
	waitFor(t, func() bool { v := serving(w1, w2); return v[0] == "2" && v[1] == "2" }, "both workers to switch to version 2")
	switched.Store(true)
	after := published.Load()
	waitFor(t, func() bool { return published.Load() >= after+100 }, "100 requests after the switch")
	close(stop)
	producer.Wait()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(results) >= len(reqs) }, "every result")
	stopCollecting()
	collected.Wait()
	// Exactly one result each in the result stream, not only in what the
	// collector saw.
	if n := refresh(mustStream(t, nc, wire.DefaultResultStream)); n != uint64(len(reqs)) {
		t.Fatalf("the result stream holds %d results for %d requests", n, len(reqs))
	}

	byVersion := map[string]int{}
	for id, s := range reqs {
		r, ok := results[id]
		if !ok {
			t.Fatalf("request %s has no result", id)
		}
		v := r.Header.Get(wire.HeaderModelVersion)
		byVersion[v]++
		switch {
		case r.Status != codec.CodeOK:
			t.Fatalf("request %s: %s: %s", id, r.Status, r.Error)
		case want[v] == nil:
			t.Fatalf("request %s answered by version %q", id, v)
		case !sameLogits(t, r.Body, want[v]):
			t.Fatalf("request %s names version %s but its logits are not that version's", id, v)
		case s.pin != "" && v != s.pin:
			t.Fatalf("request %s pinned to %s answered by version %s", id, s.pin, v)
		case arrivedBefore[id] && v != "1":
			t.Fatalf("request %s answered before the promotion names version %s", id, v)
		case s.afterSwitched && v != "2":
			t.Fatalf("request %s published after both workers switched names version %s", id, v)
		}
	}
	if byVersion["1"] < 100 || byVersion["2"] < 100 {
		t.Fatalf("results by version %v: want both versions", byVersion)
	}
	for i, w := range []*worker.Worker{w1, w2} {
		waitFor(t, func() bool { s := w.Serving(); return s.EnginesClosed == 1 }, "the old engine to be closed")
		if s := w.Serving(); s.EnginesOpened != 2 || s.Version != "2" || !strings.HasPrefix(s.Engine, "cpu:") || !w.Ready() {
			t.Fatalf("worker %d: %+v, ready %v", i+1, s, w.Ready())
		}
	}
	t.Logf("%d requests: %v by version; 20 pinned to version 2 right after the promotion", len(reqs), byVersion)
}

// standInPlan writes bytes standing in for a TensorRT plan built for an
// H100 and returns its path and manifest (no TensorRT here: the
// repository never deserializes a plan, and a CPU node skips it).
func standInPlan(t testing.TB, onnxSHA string) (string, *trt.Manifest) {
	t.Helper()
	plan := []byte("stand-in plan for an NVIDIA H100")
	path := filepath.Join(t.TempDir(), "h100.plan")
	if err := os.WriteFile(path, plan, 0o644); err != nil {
		t.Fatal(err)
	}
	m := &trt.Manifest{Schema: trt.ManifestSchema, TensorRT: "10.9.0.34", Platform: "linux/amd64", TensorRTCUDAMajor: 12,
		GPU: trt.ManifestGPU{Name: "NVIDIA H100 80GB HBM3", ComputeCapability: "9.0"}, ONNXSHA256: onnxSHA,
		Compatibility: trt.Compatibility{Hardware: trt.HardwareCompatNone}, Precision: trt.Precision{FP16: true},
		PlanSHA256: trt.SHA256Hex(plan), PlanBytes: int64(len(plan)), Build: trt.BuildInfo{OptimizationLevel: -1}}
	m.SetSpec(trt.Spec{
		Inputs:   []trt.TensorDesc{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{-1, 8, 8}}},
		Outputs:  []trt.TensorDesc{{Name: "logits", DType: trt.Float32, Shape: trt.Shape{-1, 10}}},
		Profiles: []trt.Profile{{Min: map[string]trt.Shape{"pixels": {1, 8, 8}}, Opt: map[string]trt.Shape{"pixels": {64, 8, 8}}, Max: map[string]trt.Shape{"pixels": {256, 8, 8}}}},
	})
	return path, m
}

// answer publishes one request and returns its result.
func answer(t testing.TB, c *client.Client, d *digits, id, pin string) client.Result {
	t.Helper()
	if _, err := c.Publish(context.Background(), client.Request{ID: id, Job: id, Body: d.request(t, 0, 4), Version: pin}); err != nil {
		t.Fatal(err)
	}
	return collect(t, c, id, 1)[id]
}

// TestSwapRefusalsKeepTheOldVersion promotes versions that cannot be
// served here: one whose ONNX model's bytes no longer match their digest
// and whose plan does not fit this node, one whose model fails the
// accuracy gate. The worker skips each artifact with its reason, keeps
// serving version 1 (results say so), closes every engine it opened for
// nothing, and still switches to a good version promoted after them.
func TestSwapRefusalsKeepTheOldVersion(t *testing.T) {
	d := loadDigitsRows(t)
	ns := startServer(t)
	nc := connect(t, ns)
	repo := openRepo(t, nc)
	digitsONNX, gate := repoFile("testdata", "models", "digits.onnx"), repoFile("testdata", "digits_gate.arrow")
	push(t, repo, "1", digitsONNX, gate)
	promote(t, repo, "1")
	var logs logBuffer
	w := repoWorker(t, ns, worker.Config{Model: "digits"}, &logs)
	c, err := client.New(nc, client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}

	// Version 2: an incompatible plan and a corrupt ONNX model (another
	// model than version 1's: the node's cache holds that one, verified).
	v2 := push(t, repo, "2", perturbedDigits(t), "")
	onnx2, _ := v2.Artifact("digits_perturbed.onnx")
	planPath, manifest := standInPlan(t, onnx2.SHA256)
	if _, err := repo.Push(context.Background(), "digits", "2", []models.Upload{{Kind: models.KindPlan, Path: planPath, Manifest: manifest}}); err != nil {
		t.Fatal(err)
	}
	obs, err := mustJS(t, nc).ObjectStore(context.Background(), wire.DefaultArtifactBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(context.Background(), onnx2.Object, []byte("not the model that was pushed")); err != nil {
		t.Fatal(err)
	}
	promote(t, repo, "2")
	waitFor(t, func() bool { return strings.Contains(logs.String(), "still serving the previous one") }, "version 2 to be refused")
	for _, frag := range []string{"artifact=h100.plan", "artifact=digits_perturbed.onnx", "sha256", "artifact corrupt"} {
		if !strings.Contains(logs.String(), frag) {
			t.Errorf("worker log does not mention %q:\n%s", frag, logs.String())
		}
	}
	if r := answer(t, c, d, "after-v2", ""); r.Status != codec.CodeOK || r.Header.Get(wire.HeaderModelVersion) != "1" {
		t.Fatalf("after refusing version 2: %s version %q, want OK from version 1", r.Status, r.Header.Get(wire.HeaderModelVersion))
	}

	// Version 3: a perturbed model with the digits reference data.
	push(t, repo, "3", perturbedDigits(t), gate)
	promote(t, repo, "3")
	waitFor(t, func() bool { return strings.Contains(logs.String(), "accuracy gate refused") }, "version 3 to be refused")
	if !strings.Contains(logs.String(), "max abs error") {
		t.Errorf("the refusal does not state the measured error:\n%s", logs.String())
	}
	r := answer(t, c, d, "after-v3", "")
	if r.Status != codec.CodeOK || r.Header.Get(wire.HeaderModelVersion) != "1" {
		t.Fatalf("after refusing version 3: %s version %q, want OK from version 1", r.Status, r.Header.Get(wire.HeaderModelVersion))
	}
	d.checkLogits(t, r.Body, 4)
	if s := w.Serving(); s.Version != "1" || s.EnginesOpened != 2 || s.EnginesClosed != 1 || !w.Ready() {
		t.Fatalf("after two refusals: %+v (want version 1, the refused engine closed), ready %v", s, w.Ready())
	}

	// A good version is still switched to.
	push(t, repo, "4", digitsONNX, gate)
	promote(t, repo, "4")
	waitFor(t, func() bool { return w.Serving().Version == "4" }, "the switch to version 4")
	if r := answer(t, c, d, "after-v4", ""); r.Status != codec.CodeOK || r.Header.Get(wire.HeaderModelVersion) != "4" {
		t.Fatalf("after version 4: %s version %q", r.Status, r.Header.Get(wire.HeaderModelVersion))
	}
}

// rssKiB reads this process's resident set from /proc (0 where there is
// none).
func rssKiB() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// TestTwentySwapsCloseEveryEngine swaps between two versions 20 times
// under light load (a 3-row request every 20 ms, one during and one after
// each swap): every request is answered by the version its header names
// and every engine but the serving one is closed. The resident set after
// each swap is logged; TestSwapMemoryIsBounded asserts on it with a model
// large enough for a leak to stand out (a digits session is about 220 KiB,
// within the noise of the race detector's own growth).
func TestTwentySwapsCloseEveryEngine(t *testing.T) {
	d := loadDigitsRows(t)
	ns := startServer(t)
	nc := connect(t, ns)
	repo := openRepo(t, nc)
	perturbed := perturbedDigits(t)
	push(t, repo, "a", repoFile("testdata", "models", "digits.onnx"), "")
	push(t, repo, "b", perturbed, "")
	promote(t, repo, "a")
	want := map[string]map[int64][]float32{"a": d.refByID, "b": logitsOf(t, d, perturbed)}
	w := repoWorker(t, ns, worker.Config{Model: "digits"}, nil)
	c, err := client.New(nc, client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	// Steady light load for the whole run.
	var loaded sync.WaitGroup
	stopLoad := make(chan struct{})
	var sentLoad atomic.Int64
	loaded.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopLoad:
				return
			case <-tick.C:
			}
			lo := i % (d.rows - 3)
			if _, err := c.Publish(context.Background(), client.Request{ID: fmt.Sprintf("load-%d", i), Job: "load", Body: d.request(t, lo, lo+3)}); err != nil {
				t.Error(err)
				return
			}
			sentLoad.Add(1)
		}
	})
	// RSS after returning freed Go memory to the OS, so that what is left
	// is mostly the engines' and the runtime's.
	rss := func() int64 { debug.FreeOSMemory(); return rssKiB() }
	rssAt := []int64{rss()} // KiB: after the first load, then after each swap
	const swaps = 20
	for i := range swaps {
		v := []string{"b", "a"}[i%2]
		promote(t, repo, v)
		// A request during the swap, and one after it.
		id := fmt.Sprintf("during-%d", i)
		if _, err := c.Publish(context.Background(), client.Request{ID: id, Job: "twenty", Body: d.request(t, i, i+3)}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return w.Serving().Version == v }, "the switch to version "+v)
		// One after it, which the new version must answer. Results are
		// read at the end: each read is an ordered consumer that the
		// in-process server keeps for 5 minutes, which would show in
		// this process's RSS as growth per swap.
		if _, err := c.Publish(context.Background(), client.Request{ID: fmt.Sprintf("after-%d", i), Job: "after", Body: d.request(t, i, i+4)}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return w.Serving().EnginesClosed == int64(i+1) }, "the replaced engine to be closed")
		rssAt = append(rssAt, rss())
	}
	close(stopLoad)
	loaded.Wait()
	for id, r := range collect(t, c, "after", swaps) {
		i, _ := strconv.Atoi(strings.TrimPrefix(id, "after-"))
		v := []string{"b", "a"}[i%2]
		if got := r.Header.Get(wire.HeaderModelVersion); r.Status != codec.CodeOK || got != v || !sameLogits(t, r.Body, want[v]) {
			t.Fatalf("swap %d: %s from version %q, want OK with version %s's logits", i+1, r.Status, got, v)
		}
	}
	for id, r := range collect(t, c, "twenty", swaps) {
		if v := r.Header.Get(wire.HeaderModelVersion); r.Status != codec.CodeOK || want[v] == nil || !sameLogits(t, r.Body, want[v]) {
			t.Fatalf("%s: %s from version %q does not carry that version's logits", id, r.Status, v)
		}
	}
	for id, r := range collect(t, c, "load", int(sentLoad.Load())) {
		if v := r.Header.Get(wire.HeaderModelVersion); r.Status != codec.CodeOK || want[v] == nil || !sameLogits(t, r.Body, want[v]) {
			t.Fatalf("%s: %s from version %q does not carry that version's logits", id, r.Status, v)
		}
	}
	s := w.Serving()
	if s.EnginesOpened != swaps+1 || s.EnginesClosed != swaps {
		t.Fatalf("%+v: want %d engines opened, %d closed", s, swaps+1, swaps)
	}
	t.Logf("%d swaps, %d load requests: %d engines opened, %d closed; RSS (MiB) after the first load and each swap: %s",
		swaps, sentLoad.Load(), s.EnginesOpened, s.EnginesClosed, rssTrace(rssAt))
}

// TestPinnedVersions checks the pinned-version rule against the
// repository: a version it does not have is NOT_FOUND; one it has that no
// worker serves is FAILED_PRECONDITION, naming it; the active version
// that this worker refused (accuracy gate) is handed back until
// Config.PinnedWait of hand-backs, then FAILED_PRECONDITION.
func TestPinnedVersions(t *testing.T) {
	d := loadDigitsRows(t)
	ns := startServer(t)
	nc := connect(t, ns)
	repo := openRepo(t, nc)
	gate := repoFile("testdata", "digits_gate.arrow")
	push(t, repo, "1", repoFile("testdata", "models", "digits.onnx"), gate)
	push(t, repo, "2", repoFile("testdata", "models", "digits.onnx"), gate)
	push(t, repo, "3", perturbedDigits(t), gate)
	promote(t, repo, "1")
	var logs logBuffer
	w := repoWorker(t, ns, worker.Config{Model: "digits", PinnedWait: 2 * time.Second}, &logs)
	c, err := client.New(nc, client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pin, code string
		frags     []string
	}{
		{"1", "OK", nil},
		{"9", "NOT_FOUND", []string{`no version "9"`, "repository"}},
		{"2", "FAILED_PRECONDITION", []string{`version "2"`, "no worker serves it", `serves "1"`}},
	} {
		r := answer(t, c, d, "pin-"+tc.pin, tc.pin)
		if string(r.Status) != tc.code {
			t.Fatalf("pinned to %s: %s (%s), want %s", tc.pin, r.Status, r.Error, tc.code)
		}
		for _, f := range tc.frags {
			if !strings.Contains(r.Error, f) {
				t.Errorf("pinned to %s: %q does not mention %q", tc.pin, r.Error, f)
			}
		}
	}
	// Version 3 becomes active but fails the gate here: requests pinned to
	// it wait for a worker that serves it, then fail.
	promote(t, repo, "3")
	waitFor(t, func() bool { return strings.Contains(logs.String(), "accuracy gate refused") }, "version 3 to be refused")
	r := answer(t, c, d, "pin-3", "3")
	if r.Status != codec.CodeFailedPrecondition || !strings.Contains(r.Error, `version "3"`) || !strings.Contains(r.Error, "hand-backs") {
		t.Fatalf("pinned to the refused active version: %s (%s), want FAILED_PRECONDITION after hand-backs", r.Status, r.Error)
	}
	if w.Serving().Version != "1" {
		t.Fatalf("serving %s", w.Serving().Version)
	}
}

// TestPinnedRequestsReachTheirVersion runs two file-serving workers, one
// as version 1 and one as version 2, and requests pinned to each: every
// request is answered by the version it names, none NOT_FOUND, because a
// worker hands a request pinned to the other worker's version back
// (uncharged) instead of answering it.
func TestPinnedRequestsReachTheirVersion(t *testing.T) {
	d := loadDigitsRows(t)
	ns := startServer(t)
	var logs [2]logBuffer
	for i, v := range []string{"1", "2"} {
		startWorker(t, connect(t, ns), loadEngine(t, "digits.onnx"), worker.Config{Model: "digits", ModelVersion: v,
			WorkerID: "w" + v, ReportInterval: 100 * time.Millisecond}, worker.WithLogger(logs[i].logger()))
	}
	defer func() {
		if t.Failed() {
			t.Logf("w1:\n%s\nw2:\n%s", logs[0].String(), logs[1].String())
		}
	}()
	nc := connect(t, ns)
	c, err := client.New(nc, client.Config{Model: "digits", MaxPending: 64})
	if err != nil {
		t.Fatal(err)
	}
	// Wait until each worker has reported its version.
	kv, err := mustJS(t, nc).KeyValue(context.Background(), wire.DefaultReportBucket)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		_, e1 := kv.Get(context.Background(), "digits.w1")
		_, e2 := kv.Get(context.Background(), "digits.w2")
		return e1 == nil && e2 == nil
	}, "both workers' reports")
	const n = 100
	for i := range n {
		v := []string{"1", "2"}[i%2]
		if _, err := c.PublishAsync(context.Background(), client.Request{ID: fmt.Sprintf("p%d", i), Job: "pins", Body: d.request(t, i, i+2), Version: v}); err != nil {
			t.Fatal(err)
		}
	}
	<-c.PublishComplete()
	for id, r := range collect(t, c, "pins", n) {
		i, _ := strconv.Atoi(strings.TrimPrefix(id, "p"))
		if want := []string{"1", "2"}[i%2]; r.Status != codec.CodeOK || r.Header.Get(wire.HeaderModelVersion) != want {
			t.Fatalf("%s pinned to %s: %s version %q (%s)", id, want, r.Status, r.Header.Get(wire.HeaderModelVersion), r.Error)
		}
	}
	// Some requests reached the wrong worker first and were handed back.
	cons, err := mustJS(t, nc).Consumer(context.Background(), wire.DefaultRequestStream, "digits")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer <= n {
		t.Fatalf("%d deliveries of %d requests: no request was handed back to the other worker", info.Delivered.Consumer, n)
	}
	t.Logf("%d requests pinned to two versions served by two workers: %d deliveries", n, info.Delivered.Consumer)
}

// TestRepositoryWorkerWaitsForAPromotion: a worker started before any
// version is promoted neither exits nor pulls; it serves once one is, and
// stops cleanly.
func TestRepositoryWorkerWaitsForAPromotion(t *testing.T) {
	d := loadDigitsRows(t)
	ns := startServer(t)
	nc := connect(t, ns)
	repo := openRepo(t, nc)
	var logs logBuffer
	wnc := connect(t, ns)
	cfg := worker.Config{Model: "digits"}
	w, err := worker.New(wnc, nil, cfg, worker.WithSource(ortSource(t, openRepo(t, wnc))), worker.WithLogger(logs.logger()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := worker.EnsureStreams(context.Background(), mustJS(t, nc), cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	waitFor(t, func() bool { return strings.Contains(logs.String(), "waiting for one to be promoted") }, "the worker to wait for a promotion")
	select {
	case err := <-done:
		t.Fatalf("Run returned without a promoted version: %v", err)
	default:
	}
	if w.Ready() {
		t.Fatal("ready without a model")
	}
	push(t, repo, "1", repoFile("testdata", "models", "digits.onnx"), repoFile("testdata", "digits_gate.arrow"))
	promote(t, repo, "1")
	waitFor(t, w.Ready, "the worker to serve the promoted version")
	c, err := client.New(nc, client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	if r := answer(t, c, d, "first", ""); r.Status != codec.CodeOK || r.Header.Get(wire.HeaderModelVersion) != "1" {
		t.Fatalf("%s from version %q", r.Status, r.Header.Get(wire.HeaderModelVersion))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s := w.Serving(); s.EnginesOpened != 1 || s.EnginesClosed != 1 {
		t.Fatalf("after Run: %+v, want the engine closed", s)
	}
}

// digits holds the test split with direct access to its pixels and the
// PyTorch reference logits by id, for the swap tests that run engines
// on it directly and compare versions row by row.
type digits struct {
	rows     int
	ids      []int64
	pixels   []byte // rows × 64 float32
	refByID  map[int64][]float32
	pixelRow int
}

func loadDigitsRows(t testing.TB) *digits {
	t.Helper()
	read := func(name string) *codec.Request {
		b, err := os.ReadFile(repoFile("testdata", name))
		if err != nil {
			t.Fatalf("reading testdata: %v", err)
		}
		r, err := codec.DecodeRequest(b, codec.Limits{MaxBodyBytes: len(b) + 1})
		if err != nil {
			t.Fatalf("decoding %s: %v", name, err)
		}
		t.Cleanup(r.Release)
		return r
	}
	test, ref := read("digits_test.arrow"), read("digits_ref.arrow")
	px, _ := test.Column("pixels")
	d := &digits{rows: test.Rows, pixels: px.Data, pixelRow: px.RowBytes(), refByID: map[int64][]float32{}}
	d.ids = test.IDs.(*array.Int64).Int64Values()
	logits, _ := ref.Column("logits")
	for i, id := range ref.IDs.(*array.Int64).Int64Values() {
		d.refByID[id] = floats(logits.Data[i*40 : (i+1)*40])
	}
	return d
}

// request encodes rows [lo, hi) of the test split as a request body.
func (d *digits) request(t testing.TB, lo, hi int) []byte {
	t.Helper()
	b := array.NewInt64Builder(memory.DefaultAllocator)
	b.AppendValues(d.ids[lo:hi], nil)
	ids := b.NewArray()
	defer ids.Release()
	var buf bytes.Buffer
	err := codec.EncodeRequest(&buf, []trt.Tensor{{Name: "pixels", DType: trt.Float32,
		Shape: trt.Shape{int64(hi - lo), 8, 8}, Data: d.pixels[lo*d.pixelRow : hi*d.pixelRow]}}, ids)
	if err != nil {
		t.Fatalf("encoding request: %v", err)
	}
	return buf.Bytes()
}

// checkLogits compares a result body with the PyTorch references by id.
func (d *digits) checkLogits(t testing.TB, body []byte, wantRows int) {
	t.Helper()
	res, err := codec.DecodeResult(body, codec.DefaultLimits())
	if err != nil {
		t.Fatalf("decoding result: %v", err)
	}
	defer res.Release()
	logits, ok := res.Column("logits")
	if !ok || res.Rows != wantRows || res.IDs == nil {
		t.Fatalf("result has %d rows, logits=%v, ids=%v; want %d rows with ids", res.Rows, ok, res.IDs != nil, wantRows)
	}
	for i, id := range res.IDs.(*array.Int64).Int64Values() {
		got, want := floats(logits.Data[i*40:(i+1)*40]), d.refByID[id]
		for j := range want {
			if diff := math.Abs(float64(got[j] - want[j])); diff > 1e-4*math.Max(1, math.Abs(float64(want[j]))) {
				t.Fatalf("id %d logit %d = %v, PyTorch reference %v", id, j, got[j], want[j])
			}
		}
	}
}

// TestWorkerFollowsAlias: a worker with Config.ModelAlias "canary" serves
// the version the alias names, beside a worker following the active
// version. A promotion switches the latter only; moving the alias
// switches the canary worker only. A move to a version the accuracy gate
// refuses keeps the canary worker on its version, and a canary worker
// started then begins on the version the alias named before.
func TestWorkerFollowsAlias(t *testing.T) {
	d := loadDigitsRows(t)
	ns := startServer(t)
	nc := connect(t, ns)
	repo := openRepo(t, nc)
	ctx := context.Background()
	digitsONNX, gate := repoFile("testdata", "models", "digits.onnx"), repoFile("testdata", "digits_gate.arrow")
	perturbed := perturbedDigits(t)
	push(t, repo, "1", digitsONNX, gate)
	push(t, repo, "2", perturbed, "") // other logits, no gate
	push(t, repo, "3", digitsONNX, gate)
	push(t, repo, "4", perturbed, gate) // refused by the gate
	promote(t, repo, "1")
	setAlias := func(v string) {
		t.Helper()
		if err := repo.SetAlias(ctx, "digits", "canary", v); err != nil {
			t.Fatal(err)
		}
	}
	setAlias("2")
	var logs logBuffer
	cfg := worker.Config{Model: "digits", ReportInterval: 100 * time.Millisecond}
	canaryCfg := cfg
	canaryCfg.ModelAlias, canaryCfg.WorkerID = "canary", "canary-1"
	canary := repoWorker(t, ns, canaryCfg, &logs)
	cfg.WorkerID = "stable-1"
	stable := repoWorker(t, ns, cfg, nil)
	if v := serving(canary, stable); v[0] != "2" || v[1] != "1" {
		t.Fatalf("canary and stable workers serve %v, want [2 1]", v)
	}
	// A request pinned to the canary's version is answered by it (the
	// stable worker hands it back), with that version's logits.
	c, err := client.New(nc, client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	if r := answer(t, c, d, "pin-canary", "2"); r.Status != codec.CodeOK || r.Header.Get(wire.HeaderModelVersion) != "2" ||
		!sameLogits(t, r.Body, logitsOf(t, d, perturbed)) {
		t.Fatalf("pinned to the canary version: %s from version %q (%s)", r.Status, r.Header.Get(wire.HeaderModelVersion), r.Error)
	}

	// A promotion: the stable worker switches, the canary worker does not.
	promote(t, repo, "3")
	waitFor(t, func() bool { return stable.Serving().Version == "3" }, "the stable worker to switch to version 3")
	if s := canary.Serving(); s.Version != "2" || s.EnginesOpened != 1 {
		t.Fatalf("canary worker after a promotion: %+v, want version 2 and no other engine opened", s)
	}

	// Moving the alias: the canary worker switches, the stable one does not.
	setAlias("1")
	waitFor(t, func() bool { return canary.Serving().Version == "1" }, "the canary worker to follow the alias to version 1")
	if s := stable.Serving(); s.Version != "3" || s.EnginesOpened != 2 {
		t.Fatalf("stable worker after the alias moved: %+v, want version 3, two engines opened", s)
	}

	// A move to a version the gate refuses keeps the canary on version 1.
	setAlias("4")
	waitFor(t, func() bool { return strings.Contains(logs.String(), "accuracy gate refused") }, "version 4 to be refused")
	if s := canary.Serving(); s.Version != "1" {
		t.Fatalf("canary worker after a refused move: %+v, want version 1", s)
	}
	// A canary worker started now begins on the version the alias named
	// before (1), not on the active version (3).
	var logs2 logBuffer
	canaryCfg.WorkerID = "canary-2"
	late := repoWorker(t, ns, canaryCfg, &logs2)
	if v := late.Serving().Version; v != "1" || !strings.Contains(logs2.String(), "serving an earlier version") {
		t.Fatalf("canary worker started on a refused alias target serves %q, want 1 with the reason logged:\n%s", v, logs2.String())
	}
	if v := serving(canary, stable, late); v[0] != "1" || v[1] != "3" || v[2] != "1" {
		t.Fatalf("workers serve %v, want [1 3 1]", v)
	}
}

// TestModelAliasNeedsARepository: an alias is refused for a worker
// serving a fixed engine, and an alias that is no alias name is refused
// by Validate.
func TestModelAliasNeedsARepository(t *testing.T) {
	ns := startServer(t)
	_, err := worker.New(connect(t, ns), loadEngine(t, "digits.onnx"), worker.Config{Model: "digits", ModelAlias: "canary"})
	if err == nil || !strings.Contains(err.Error(), "repository") {
		t.Fatalf("an alias with a fixed engine: %v", err)
	}
	if err := (worker.Config{Model: "digits", ModelAlias: "Canary!"}).Validate(); err == nil {
		t.Fatal("an invalid alias passed Validate")
	}
	if err := (worker.Config{Model: "digits", ModelAlias: "active"}).Validate(); err != nil {
		t.Fatalf("alias active: %v", err)
	}
}

// TestSwapEvictsOnlyEnginesNotInUse bounds a worker's artifact cache
// below two models (100 KiB; each ONNX model is about 70 KiB): fetching a
// promoted version keeps the entry of the engine still serving, beyond
// the bound; once that engine is closed, the next fetch evicts it.
func TestSwapEvictsOnlyEnginesNotInUse(t *testing.T) {
	ns := startServer(t)
	nc := connect(t, ns)
	repo := openRepo(t, nc)
	push(t, repo, "a", repoFile("testdata", "models", "digits.onnx"), "")
	push(t, repo, "b", perturbedDigits(t), "")
	push(t, repo, "c", repoFile("testdata", "models", "digits_fp16.onnx"), "")
	promote(t, repo, "a")
	digest := map[string]string{}
	for _, v := range []string{"a", "b", "c"} {
		ver, err := repo.Version(context.Background(), "digits", v)
		if err != nil {
			t.Fatal(err)
		}
		digest[v] = ver.Artifacts[0].SHA256
	}

	wnc := connect(t, ns)
	cache := t.TempDir()
	wrepo, err := models.Open(context.Background(), mustJS(t, wnc), models.Config{CacheDir: cache, CacheMaxBytes: 100 << 10})
	if err != nil {
		t.Fatal(err)
	}
	w := startWorker(t, wnc, nil, worker.Config{Model: "digits"}, worker.WithSource(ortSource(t, wrepo)))
	inCache := func(want ...string) {
		t.Helper()
		var got []string
		for _, v := range []string{"a", "b", "c"} {
			if _, err := os.Stat(filepath.Join(cache, "sha256", digest[v])); err == nil {
				got = append(got, v)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("cache holds versions %v, want %v", got, want)
		}
	}
	inCache("a")
	promote(t, repo, "b")
	waitFor(t, func() bool { s := w.Serving(); return s.Version == "b" && s.EnginesClosed == 1 }, "the switch to b and a's engine closed")
	inCache("a", "b") // a served while b was fetched: kept beyond the bound
	promote(t, repo, "c")
	waitFor(t, func() bool { s := w.Serving(); return s.Version == "c" && s.EnginesClosed == 2 }, "the switch to c")
	inCache("b", "c") // a's engine was closed: evicted; b's was serving
}
