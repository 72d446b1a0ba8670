package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// TestMain lets a test start this binary as `jetinfer <args>` in a child
// process (a worker that can be SIGKILLed): JETINFER_TEST_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("JETINFER_TEST_MAIN") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		// An execution trace (go tool trace: where goroutines wait) and
		// a CPU profile, when asked for; best effort.
		endObserving, _ := observe(os.Getenv("JETINFER_TEST_TRACE"), os.Getenv("JETINFER_TEST_CPUPROFILE"))
		if path := os.Getenv("JETINFER_TEST_PEAK_HEAP"); path != "" {
			go writeHeapAtPeak(ctx, path)
		}
		err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		_ = endObserving()
		if path := os.Getenv("JETINFER_TEST_MEMPROFILE"); path != "" {
			// Allocations over the whole run (go tool pprof -sample_index=alloc_space).
			if f, err := os.Create(path); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				_ = f.Close()
			}
		}
		if path := os.Getenv("JETINFER_TEST_HWM_FILE"); path != "" {
			// Peak RSS of this process image: the rusage a parent reads
			// also counts the parent's RSS, which the child shared
			// between fork and exec.
			if st, rerr := os.ReadFile("/proc/self/status"); rerr == nil {
				for line := range strings.SplitSeq(string(st), "\n") {
					if strings.HasPrefix(line, "VmHWM:") {
						_ = os.WriteFile(path, []byte(strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))), 0o600)
					}
				}
			}
		}
		if err != nil {
			os.Stderr.WriteString("jetinfer: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// observe starts an execution trace to tracePath and a CPU profile to
// cpuPath, each when its path is not empty. end stops both and closes
// their files; it is safe to call also after an error.
func observe(tracePath, cpuPath string) (end func() error, err error) {
	var stops []func() error
	end = func() error {
		var errs []error
		for _, s := range stops {
			errs = append(errs, s())
		}
		stops = nil
		return errors.Join(errs...)
	}
	begin := func(path string, start func(io.Writer) error, stop func()) error {
		if path == "" {
			return nil
		}
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := start(f); err != nil {
			return errors.Join(fmt.Errorf("%s: %w", path, err), f.Close())
		}
		stops = append(stops, func() error { stop(); return f.Close() })
		return nil
	}
	if err := begin(tracePath, trace.Start, trace.Stop); err != nil {
		return end, err
	}
	if err := begin(cpuPath, pprof.StartCPUProfile, pprof.StopCPUProfile); err != nil {
		return end, errors.Join(err, end())
	}
	return end, nil
}

// digitsTable is the test split with its PyTorch reference logits.
type digitsTable struct {
	ids    []int64
	pixels [][]float32 // 64 per row
	labels []int64
	ref    map[int64][]float32
}

func loadDigitsTable(t testing.TB) *digitsTable {
	t.Helper()
	read := func(name string) *codec.Request {
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		r, err := codec.DecodeRequest(b, codec.Limits{MaxBodyBytes: len(b) + 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Release)
		return r
	}
	test, ref := read("digits_test.arrow"), read("digits_ref.arrow")
	d := &digitsTable{ref: map[int64][]float32{}}
	d.ids = test.IDs.(*array.Int64).Int64Values()
	px, _ := test.Column("pixels")
	lb, _ := test.Column("label")
	for i := range test.Rows {
		d.pixels = append(d.pixels, floats32(px.Row(i)))
		d.labels = append(d.labels, int64(binary.LittleEndian.Uint64(lb.Row(i))))
	}
	logits, _ := ref.Column("logits")
	for i, id := range ref.IDs.(*array.Int64).Int64Values() {
		d.ref[id] = floats32(logits.Row(i))
	}
	return d
}

func floats32(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// writeParquet writes the test split repeated times as Parquet (id,
// pixels as a list of 64 floats — Parquet has no fixed-size list —, label)
// in row groups of rowGroup rows. Ids are made unique per repetition.
// The rows numbered in nullAt get a null pixel (the worker rejects their
// requests).
func (d *digitsTable) writeParquet(t testing.TB, path string, repeat, rowGroup int, nullAt ...int) []int64 {
	t.Helper()
	mem := memory.DefaultAllocator
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "pixels", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)},
		{Name: "label", Type: arrow.PrimitiveTypes.Int64},
	}, nil)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pqarrow.NewFileWriter(schema, f, parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(int64(rowGroup))),
		pqarrow.NewArrowWriterProperties())
	if err != nil {
		t.Fatal(err)
	}
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	var ids []int64
	for rep := range repeat {
		for i, id := range d.ids {
			gid := int64(rep)*1_000_000 + id
			ids = append(ids, gid)
			b.Field(0).(*array.Int64Builder).Append(gid)
			lb := b.Field(1).(*array.ListBuilder)
			lb.Append(true)
			valid := []bool(nil)
			if slices.Contains(nullAt, len(ids)-1) {
				valid = make([]bool, 64)
				for j := range valid {
					valid[j] = j != 5
				}
			}
			lb.ValueBuilder().(*array.Float32Builder).AppendValues(d.pixels[i], valid)
			b.Field(2).(*array.Int64Builder).Append(d.labels[i])
		}
		rec := b.NewRecordBatch()
		if err := w.WriteBuffered(rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// checkOutput reads a Parquet output and checks that it holds exactly the
// rows of ids, in that order, with logits equal to the references.
func (d *digitsTable) checkOutput(t testing.TB, path string, ids []int64) {
	t.Helper()
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatalf("opening output: %v", err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	if tbl.NumRows() != int64(len(ids)) {
		t.Fatalf("output has %d rows, want %d", tbl.NumRows(), len(ids))
	}
	col := func(name string) *arrow.Chunked {
		idx := tbl.Schema().FieldIndices(name)
		if len(idx) != 1 {
			t.Fatalf("output schema %s lacks %q", tbl.Schema(), name)
		}
		return tbl.Column(idx[0]).Data()
	}
	if md := tbl.Schema().Field(tbl.Schema().FieldIndices("logits")[0]).Metadata; !strings.Contains(md.String(), "[10]") {
		t.Errorf("logits field metadata %v lacks the row shape", md)
	}
	row := 0
	lc := col("logits").Chunks()
	for ci, chunk := range col("id").Chunks() {
		gotIDs := chunk.(*array.Int64).Int64Values()
		lists := lc[ci].(*array.List)
		vals := lists.ListValues().(*array.Float32).Float32Values()
		for i, id := range gotIDs {
			if id != ids[row] {
				t.Fatalf("output row %d has id %d, want %d (input order)", row, id, ids[row])
			}
			lo, hi := lists.ValueOffsets(i)
			got, want := vals[lo:hi], d.ref[id%1_000_000]
			if len(got) != len(want) {
				t.Fatalf("id %d: %d logits, want %d", id, len(got), len(want))
			}
			for j := range want {
				if diff := math.Abs(float64(got[j] - want[j])); diff > 1e-4*math.Max(1, math.Abs(float64(want[j]))) {
					t.Fatalf("id %d logit %d = %v, PyTorch reference %v", id, j, got[j], want[j])
				}
			}
			row++
		}
	}
}

// startTestServer starts an embedded JetStream server with default
// max_payload (1 MiB).
func startTestServer(t testing.TB) *server.Server {
	t.Helper()
	ns, err := startEmbedded(-1, t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// startWorkerProcess runs `jetinfer worker` on the digits model in a child
// process, with env added to its environment, and waits until it pulls.
func startWorkerProcess(t testing.TB, url string, env ...string) *exec.Cmd {
	t.Helper()
	return startModelProcess(t, url, "digits", "digits.onnx", env...)
}

// startModelProcess runs `jetinfer worker` serving testdata/models/file
// as model.
func startModelProcess(t testing.TB, url, model, file string, env ...string) *exec.Cmd {
	t.Helper()
	lib, err := onnxrt.FindLibrary(os.Getenv("JETINFER_ORT_LIBRARY"))
	if err != nil {
		t.Skipf("ONNX Runtime library not available (%v); run `make ort`", err)
	}
	cmd := exec.Command(os.Args[0], "worker", "-nats", url, "-model", model,
		"-model-path", filepath.Join("..", "..", "testdata", "models", file))
	cmd.Env = append(os.Environ(), "JETINFER_TEST_MAIN=1", "JETINFER_ORT_LIBRARY="+lib,
		"JETINFER_HTTP_LISTEN=127.0.0.1:0", "JETINFER_LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("worker stderr:\n%s", stderr.String())
		}
	})
	nc := connectTest(t, url)
	cl, err := client.New(nc, client.Config{Model: model})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.CheckWorker(context.Background(), 0, true, nil); err != nil {
		t.Fatalf("waiting for the worker: %v", err)
	}
	return cmd
}

func connectTest(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// storedResults counts the messages in the result stream.
func storedResults(t testing.TB, js jetstream.JetStream) uint64 {
	s, err := js.Stream(context.Background(), wire.DefaultResultStream)
	if err != nil {
		return 0
	}
	info, err := s.Info(context.Background())
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// whenResults calls fn once the result stream holds at least n messages.
func whenResults(t testing.TB, nc *nats.Conn, n uint64, fn func()) {
	js, _ := jetstream.New(nc)
	go func() {
		tk := time.NewTicker(5 * time.Millisecond)
		defer tk.Stop()
		for range tk.C {
			if storedResults(t, js) >= n {
				fn()
				return
			}
		}
	}()
}

func scoreArgs(url, in, out string, extra ...string) []string {
	return append([]string{"score", "-nats", url, "-shape", "pixels=8x8", "-keep", "id,label",
		"-progress", "lines", "-out", out}, append(extra, in)...)
}

func TestScoreParquetToParquet(t *testing.T) {
	ns := startTestServer(t)
	startWorkerProcess(t, ns.ClientURL())
	d := loadDigitsTable(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.parquet"), filepath.Join(dir, "out.parquet")
	// Row groups of 100 rows and requests of 64: requests cross row groups.
	ids := d.writeParquet(t, in, 3, 100)
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), scoreArgs(ns.ClientURL(), in, out, "-rows-per-request", "64"), &stdout, &stderr); err != nil {
		t.Fatalf("score: %v\n%s", err, stderr.String())
	}
	if !strings.HasPrefix(stderr.String(), "score: job score-") {
		t.Errorf("stderr does not start with the job name:\n%s", stderr.String())
	}
	want := "rows=1080 ok=1080 failed=0 resumed_rows=0"
	if !strings.Contains(stdout.String(), want) {
		t.Errorf("summary %q lacks %q", stdout.String(), want)
	}
	d.checkOutput(t, out, ids)
}

// TestScoreWritesFailedRows scores a Parquet file where two rows hold a
// null pixel: the worker answers their requests (the first and the
// fourth) INVALID_ARGUMENT. The output still holds every row in input
// order, the failed ones with null logits and the error beside them;
// the errors file names both requests; the exit status is non-zero.
func TestScoreWritesFailedRows(t *testing.T) {
	ns := startTestServer(t)
	startWorkerProcess(t, ns.ClientURL())
	d := loadDigitsTable(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.parquet"), filepath.Join(dir, "out.parquet")
	ids := d.writeParquet(t, in, 3, 100, 3, 175)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), scoreArgs(ns.ClientURL(), in, out, "-rows-per-request", "50"), &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "100 of 1080 rows failed") {
		t.Fatalf("score = %v, want 100 of 1080 rows failed\n%s", err, stderr.String())
	}
	if want := "rows=1080 ok=980 failed=100"; !strings.Contains(stdout.String(), want) {
		t.Errorf("summary %q lacks %q", stdout.String(), want)
	}
	if !strings.Contains(stderr.String(), "2 requests failed with INVALID_ARGUMENT") {
		t.Errorf("no summary by code in:\n%s", stderr.String())
	}
	errs, rerr := os.ReadFile(out + ".errors.jsonl")
	lines := strings.Split(strings.TrimSpace(string(errs)), "\n")
	if rerr != nil || len(lines) != 2 || !strings.Contains(lines[0], `"seq":0`) || !strings.Contains(lines[1], `"seq":3`) ||
		!strings.Contains(lines[0], "INVALID_ARGUMENT") || !strings.Contains(lines[0], "null") {
		t.Fatalf("errors file (%v):\n%s", rerr, errs)
	}

	pf, err := file.OpenParquetFile(out, false)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	fr, _ := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Release()
	want := []string{"id", "label", "logits", "error_code", "error_message"}
	for i, name := range want {
		if i >= int(tbl.NumCols()) || tbl.Schema().Field(i).Name != name {
			t.Fatalf("output schema %s, want columns %v", tbl.Schema(), want)
		}
	}
	if tbl.NumRows() != int64(len(ids)) {
		t.Fatalf("output has %d rows, want %d", tbl.NumRows(), len(ids))
	}
	one := func(i int) arrow.Array {
		a, err := array.Concatenate(tbl.Column(i).Data().Chunks(), memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Release)
		return a
	}
	idCol, logits, codes, msgs := one(0).(*array.Int64), one(2).(*array.List), one(3).(*array.String), one(4).(*array.String)
	vals := logits.ListValues().(*array.Float32).Float32Values()
	for row, id := range ids {
		if idCol.Value(row) != id {
			t.Fatalf("row %d has id %d, want %d (input order)", row, idCol.Value(row), id)
		}
		if failed := row < 50 || row >= 150 && row < 200; failed {
			if !logits.IsNull(row) || codes.Value(row) != "INVALID_ARGUMENT" || !strings.Contains(msgs.Value(row), "null") {
				t.Fatalf("row %d of a failed request: logits null %v, error %q %q", row, logits.IsNull(row), codes.Value(row), msgs.Value(row))
			}
			continue
		}
		if logits.IsNull(row) || !codes.IsNull(row) || !msgs.IsNull(row) {
			t.Fatalf("row %d: logits null %v, error %q; want logits and no error", row, logits.IsNull(row), codes.Value(row))
		}
		lo, hi := logits.ValueOffsets(row)
		ref := d.ref[id%1_000_000]
		if got := vals[lo:hi]; len(got) != len(ref) || math.Abs(float64(got[0]-ref[0])) > 1e-4*math.Max(1, math.Abs(float64(ref[0]))) {
			t.Fatalf("id %d: logits %v, reference %v", id, got, ref)
		}
	}
}

func TestScoreResumesAfterInterrupt(t *testing.T) {
	d := loadDigitsTable(t)
	// The interrupted run's output is carried over; without it, the
	// finished rows are written again from their stored results.
	for _, keepOutput := range []bool{true, false} {
		name := map[bool]string{true: "output kept", false: "output removed"}[keepOutput]
		t.Run(name, func(t *testing.T) { testScoreResumes(t, d, keepOutput) })
	}
}

func testScoreResumes(t *testing.T, d *digitsTable, keepOutput bool) {
	ns := startTestServer(t)
	startWorkerProcess(t, ns.ClientURL())
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.parquet"), filepath.Join(dir, "out.parquet")
	ids := d.writeParquet(t, in, 4, 256)
	args := scoreArgs(ns.ClientURL(), in, out, "-rows-per-request", "16", "-window", "4")

	ctx, cancel := context.WithCancel(context.Background())
	whenResults(t, connectTest(t, ns.ClientURL()), 20, cancel)
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, &stdout, &stderr)
	if !errors.Is(err, client.ErrInterrupted) {
		t.Fatalf("interrupted score = %v, want ErrInterrupted\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "resume with: jetinfer score -resume score-") {
		t.Errorf("no resume hint in:\n%s", stderr.String())
	}

	if !keepOutput {
		if err := os.Remove(out); err != nil {
			t.Fatal(err)
		}
	}

	// Resume by job name.
	job := strings.Fields(strings.TrimPrefix(stderr.String(), "score: job "))[0]
	stdout.Reset()
	stderr.Reset()
	if err := run(context.Background(), []string{"score", "-nats", ns.ClientURL(), "-progress", "none", "-resume", job}, &stdout, &stderr); err != nil {
		t.Fatalf("resumed score: %v\n%s", err, stderr.String())
	}
	var rows, ok, failed, resumed int
	line := stdout.String()
	if _, err := fmtSscan(line, &rows, &ok, &failed, &resumed); err != nil {
		t.Fatalf("summary %q: %v", line, err)
	}
	if rows != len(ids) || ok != len(ids) || resumed < 20*16 || resumed >= len(ids) {
		t.Errorf("resumed run: rows=%d ok=%d resumed=%d; want %d rows, some but not all resumed", rows, ok, resumed, len(ids))
	}
	// It went on from the resume point the interrupted run recorded:
	// the finished requests before it were not cut again.
	var skipped, skippedRows int
	if i := strings.Index(stderr.String(), "score: resuming: "); i < 0 {
		t.Errorf("the resumed run did not start from a resume point:\n%s", stderr.String())
	} else if _, err := sscanf(stderr.String()[i:], "score: resuming: %d requests (%d rows)", &skipped, &skippedRows); err != nil ||
		skipped < 1 || skippedRows != skipped*16 || skippedRows > resumed {
		t.Errorf("resume point: %d requests, %d rows (%v); want at least one 16-row request, at most the %d rows resumed", skipped, skippedRows, err, resumed)
	}
	if carried := strings.Contains(stderr.String(), "finished before are carried over from "+out); carried != keepOutput {
		t.Errorf("earlier output carried over: %v, want %v:\n%s", carried, keepOutput, stderr.String())
	}
	d.checkOutput(t, out, ids)

	// Re-running the original command finds every result stored.
	stdout.Reset()
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("re-run: %v", err)
	}
	if _, err := fmtSscan(stdout.String(), &rows, &ok, &failed, &resumed); err != nil || resumed != len(ids) {
		t.Errorf("re-run summary %q: want every row resumed", stdout.String())
	}
	d.checkOutput(t, out, ids)

	// The job is listed as done.
	stdout.Reset()
	if err := run(context.Background(), []string{"jobs", "-nats", ns.ClientURL()}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), job) || !strings.Contains(stdout.String(), "done") {
		t.Errorf("jobs output lacks %s done:\n%s", job, stdout.String())
	}
}

func fmtSscan(line string, rows, ok, failed, resumed *int) (int, error) {
	i := strings.Index(line, "rows=")
	if i < 0 {
		return 0, errors.New("no rows=")
	}
	return sscanf(line[i:], "rows=%d ok=%d failed=%d resumed_rows=%d", rows, ok, failed, resumed)
}

// ackWait2s is the kill test's one non-default worker setting (default
// 30s): the requests a killed worker held are redelivered within the
// test's time.
const ackWait2s = "JETINFER_ACK_WAIT=2s"

func TestScoreSurvivesWorkerKill(t *testing.T) {
	ns := startTestServer(t)
	w1 := startWorkerProcess(t, ns.ClientURL(), ackWait2s)
	d := loadDigitsTable(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.parquet"), filepath.Join(dir, "out.parquet")
	ids := d.writeParquet(t, in, 6, 512)
	nc := connectTest(t, ns.ClientURL())
	// SIGKILL the worker while score still publishes (window 4 of 216
	// requests) and collects, then start another: the requests the dead
	// worker held are redelivered to it after AckWait.
	killed := make(chan struct{})
	whenResults(t, nc, 8, func() {
		_ = w1.Process.Signal(syscall.SIGKILL)
		close(killed)
	})
	var stdout, stderr bytes.Buffer
	errc := make(chan error, 1)
	go func() {
		errc <- run(context.Background(), scoreArgs(ns.ClientURL(), in, out, "-rows-per-request", "16", "-window", "4"), &stdout, &stderr)
	}()
	<-killed
	startWorkerProcess(t, ns.ClientURL(), ackWait2s)
	if err := <-errc; err != nil {
		t.Fatalf("score: %v\n%s", err, stderr.String())
	}
	d.checkOutput(t, out, ids)
}

func TestScoreFailsFastWithoutWorker(t *testing.T) {
	ns := startTestServer(t)
	d := loadDigitsTable(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.parquet")
	d.writeParquet(t, in, 1, 100)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), scoreArgs(ns.ClientURL(), in, filepath.Join(dir, "o.parquet")), &stdout, &stderr)
	if !errors.Is(err, client.ErrNoWorker) || !strings.Contains(err.Error(), "no request stream") {
		t.Fatalf("score without streams = %v, want ErrNoWorker naming the missing stream", err)
	}
	// Streams and consumer exist, nobody pulls.
	js, _ := jetstream.New(connectTest(t, ns.ClientURL()))
	if _, err := worker.EnsureStreams(context.Background(), js, worker.Config{Model: "digits"}); err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), scoreArgs(ns.ClientURL(), in, filepath.Join(dir, "o.parquet")), &stdout, &stderr)
	if !errors.Is(err, client.ErrNoWorker) || !strings.Contains(err.Error(), "no worker is pulling") || !strings.Contains(err.Error(), "-wait") {
		t.Fatalf("score without a worker = %v, want ErrNoWorker saying nobody pulls and naming -wait", err)
	}
}

// TestScoreWaitsForAPoolScaledToZero runs score -wait where the streams
// and the model's consumer exist but no worker runs, as for a pool scaled
// to zero: score publishes, so that the consumer's pending count (what
// the scheduler and KEDA scale on) shows the backlog, says that it waits,
// and finishes once a worker starts.
// startPoolAtZero starts a server with the streams and the digits
// model's consumer, and no worker: a pool scaled to zero.
func startPoolAtZero(t *testing.T) (*server.Server, jetstream.JetStream, jetstream.Consumer) {
	t.Helper()
	ns := startTestServer(t)
	js, _ := jetstream.New(connectTest(t, ns.ClientURL()))
	cons, err := worker.EnsureStreams(context.Background(), js, worker.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	return ns, js, cons
}

// awaitPending waits up to 20 s for cons to have n requests pending and
// returns how many it has; it fails the test if the run reporting on
// done ends first.
func awaitPending(t *testing.T, cons jetstream.Consumer, n uint64, done <-chan error) uint64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ci, err := cons.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if ci.NumPending >= n || time.Now().After(deadline) {
			return ci.NumPending
		}
		select {
		case err := <-done:
			t.Fatalf("score ended with %d of %d requests pending and no worker: %v", ci.NumPending, n, err)
		default:
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestScoreWaitsForAPoolScaledToZero(t *testing.T) {
	ns, _, cons := startPoolAtZero(t)
	d := loadDigitsTable(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.parquet"), filepath.Join(dir, "out.parquet")
	ids := d.writeParquet(t, in, 1, 100)
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), scoreArgs(ns.ClientURL(), in, out, "-wait", "-rows-per-request", "64"), &stdout, &stderr)
	}()
	if n := awaitPending(t, cons, 1, done); n < 1 {
		t.Fatal("score -wait published nothing while no worker pulled: a pool scaled to zero would never start")
	}
	startWorkerProcess(t, ns.ClientURL())
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("score: %v\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("score did not finish after a worker started")
	}
	if !strings.Contains(stderr.String(), "no worker is pulling") {
		t.Errorf("score did not say what it waited for:\n%s", stderr.String())
	}
	d.checkOutput(t, out, ids)
}

func sscanf(s, format string, args ...any) (int, error) { return fmt.Sscanf(s, format, args...) }

// TestScoreSurvivesServerRestart restarts the JetStream server (same port,
// same store) while score publishes and collects: score reconnects,
// retries its publishes under the same ids, and writes every row once.
func TestScoreSurvivesServerRestart(t *testing.T) {
	dir := t.TempDir()
	ns, err := startEmbedded(-1, filepath.Join(dir, "js"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown) // idempotent: the test shuts it down midway
	port := ns.Addr().(*net.TCPAddr).Port
	url := ns.ClientURL()
	startWorkerProcess(t, url)
	d := loadDigitsTable(t)
	in, out := filepath.Join(dir, "in.parquet"), filepath.Join(dir, "out.parquet")
	ids := d.writeParquet(t, in, 6, 512)
	restarted := make(chan struct{})
	whenResults(t, connectTest(t, url), 10, func() {
		ns.Shutdown()
		ns.WaitForShutdown()
		close(restarted)
	})
	var stdout, stderr bytes.Buffer
	errc := make(chan error, 1)
	go func() {
		errc <- run(context.Background(), scoreArgs(url, in, out, "-rows-per-request", "16", "-window", "4"), &stdout, &stderr)
	}()
	<-restarted
	ns2, err := startEmbedded(port, filepath.Join(dir, "js"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns2.Shutdown(); ns2.WaitForShutdown() })
	if err := <-errc; err != nil {
		t.Fatalf("score across a server restart: %v\n%s", err, stderr.String())
	}
	d.checkOutput(t, out, ids)
}

// TestScoreResumeReadsQueuedRequestsWithoutBodies interrupts a job whose
// first requests wait in the stream for a pool scaled to zero, then
// resumes it with a worker: the stored requests are not read for bodies
// again (their kept columns are), the rest are read from where the
// interrupted run stopped sending, every request is stored once, and the
// output holds every row once.
func TestScoreResumeReadsQueuedRequestsWithoutBodies(t *testing.T) {
	ns, js, cons := startPoolAtZero(t)
	d := loadDigitsTable(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.parquet"), filepath.Join(dir, "out.parquet")
	// Row groups of 100 rows, requests of 64: the sent point lies inside
	// a row group.
	ids := d.writeParquet(t, in, 10, 100)
	const window, rowsPer = 20, 64
	requests := (len(ids) + rowsPer - 1) / rowsPer
	args := scoreArgs(ns.ClientURL(), in, out, "-wait", "-rows-per-request", strconv.Itoa(rowsPer), "-window", strconv.Itoa(window))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, &stdout, &stderr) }()
	if n := awaitPending(t, cons, window, done); n < window {
		t.Fatalf("score stored %d requests, want a window of %d\n%s", n, window, stderr.String())
	}
	cancel()
	if err := <-done; !errors.Is(err, client.ErrInterrupted) {
		t.Fatalf("interrupted score = %v, want ErrInterrupted\n%s", err, stderr.String())
	}

	startWorkerProcess(t, ns.ClientURL())
	stdout.Reset()
	stderr.Reset()
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("resumed score: %v\n%s", err, stderr.String())
	}
	if log := stderr.String(); !strings.Contains(log, "read without their bodies") || !strings.Contains(log, fmt.Sprintf("requests=%d", window)) {
		t.Errorf("the resumed run did not read the %d stored requests without bodies:\n%s", window, log)
	}
	var rows, ok, failed, resumed int
	if _, err := fmtSscan(stdout.String(), &rows, &ok, &failed, &resumed); err != nil || rows != len(ids) || ok != len(ids) {
		t.Errorf("summary %q (%v): want %d rows, all ok", stdout.String(), err, len(ids))
	}
	d.checkOutput(t, out, ids)
	rs, err := js.Stream(context.Background(), wire.DefaultRequestStream)
	if err != nil {
		t.Fatal(err)
	}
	if st := rs.CachedInfo().State; st.LastSeq != uint64(requests) {
		t.Errorf("the request stream stored %d requests, want each of the %d once", st.LastSeq, requests)
	}
}

// TestScoreStopsWhenItsJobIsCancelled runs `jetinfer jobs cancel` while
// score waits for a pool scaled to zero: score stops with ErrJobCancelled
// and says so, instead of waiting for the results of requests that are
// gone, and nothing of the job is left queued.
func TestScoreStopsWhenItsJobIsCancelled(t *testing.T) {
	ns, _, cons := startPoolAtZero(t)
	d := loadDigitsTable(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.parquet"), filepath.Join(dir, "out.parquet")
	d.writeParquet(t, in, 2, 100)
	const window = 8
	args := scoreArgs(ns.ClientURL(), in, out, "-wait", "-rows-per-request", "64", "-window", strconv.Itoa(window))
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run(context.Background(), args, &stdout, &stderr) }()
	if n := awaitPending(t, cons, window, done); n < window {
		t.Fatalf("score stored %d requests, want a window of %d", n, window)
	}
	c, err := client.New(connectTest(t, ns.ClientURL()), client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := c.Jobs(context.Background())
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs = %v, %v; want the one score runs", jobs, err)
	}
	var jout, jerr bytes.Buffer
	if err := run(context.Background(), []string{"jobs", "-nats", ns.ClientURL(), "cancel", jobs[0].Name}, &jout, &jerr); err != nil {
		t.Fatalf("jobs cancel: %v\n%s", err, jerr.String())
	}
	select {
	case err := <-done:
		if !errors.Is(err, client.ErrJobCancelled) {
			t.Fatalf("score of a cancelled job = %v, want ErrJobCancelled\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second): // a hang guard
		t.Fatal("score still running 30 s after its job was cancelled")
	}
	if msg := "was cancelled (jetinfer jobs cancel)"; !strings.Contains(stderr.String(), msg) {
		t.Errorf("score did not say %q:\n%s", msg, stderr.String())
	}
	ci, err := cons.Info(context.Background())
	if err != nil || ci.NumPending != 0 {
		t.Fatalf("%d requests still pending after the cancel (%v)", ci.NumPending, err)
	}
}

// writeHeapAtPeak samples this process's RSS every 20 ms until ctx ends
// and, each time it passes its highest so far by 4 MiB, writes a heap
// profile to path and the runtime's memory statistics beside it
// (path.txt): what was live when the process was largest.
func writeHeapAtPeak(ctx context.Context, path string) {
	var peak int64
	tk := time.NewTicker(20 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		b, err := os.ReadFile("/proc/self/statm")
		if err != nil {
			return
		}
		var size, resident int64
		if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
			return
		}
		rss := resident * int64(os.Getpagesize())
		if rss < peak+4<<20 {
			continue
		}
		peak = rss
		if f, err := os.Create(path); err == nil {
			_ = pprof.Lookup("heap").WriteTo(f, 0)
			_ = f.Close()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_ = os.WriteFile(path+".txt", fmt.Appendf(nil, "rss_mib=%d heap_inuse_mib=%d heap_idle_unreleased_mib=%d stack_mib=%d sys_mib=%d next_gc_mib=%d num_gc=%d\n",
			rss>>20, ms.HeapInuse>>20, (ms.HeapIdle-ms.HeapReleased)>>20, ms.StackInuse>>20, ms.Sys>>20, ms.NextGC>>20, ms.NumGC), 0o600)
	}
}
