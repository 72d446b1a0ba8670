package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sys/unix"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/codec/table"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// TestBenchScore is `make bench-score` (skipped unless
// JETINFER_BENCH_SCORE_ROWS is set): it writes a Parquet file of that many
// digits rows, measures the worker's own rows/s on the same requests
// `score` sends (published ahead, then drained by a worker started on
// them: rows over the time between the first and the last stored
// result), then runs `jetinfer score` in a child process on the file,
// interrupts it with SIGINT midway, runs the same command again to
// resume, measures the worker alone again (a new worker, the same
// requests published ahead once more), and reports end-to-end rows/s
// over both runs ÷ the mean of the two worker-alone rows/s (each
// printed, with the ratio to it), and the peak RSS of the score
// processes. The worker's speed on a shared machine drifts by several
// percent between drains a few seconds apart; measuring it on both sides
// of the score runs keeps the drift out of the ratio. First it measures
// the broker's pass-through for the same requests (published as score
// publishes them while a consumer pulls them as the worker does and acks
// them) and prints score ÷ that too: score's requests cross the broker
// both ways, which the worker-alone drain of stored requests does not
// pay for.
// Server and worker run at default settings (max_payload 1 MiB).
//
// All processes share the machine's cores unless
// JETINFER_BENCH_SCORE_SPLIT_CPUS=N: then score runs on N of this
// process's CPUs (whole physical cores where hyperthreads share one,
// taken from the end) and the server (this process) and the worker on
// the rest, in both phases (taskset), so that the worker has the same
// share with and without score beside it, as where score runs on another
// machine than the workers. The worker's defaults follow its CPUs
// (GOMAXPROCS is the affinity mask's size). On 2 CPUs, N=1 puts the
// server and worker on CPU 0 and score on CPU 1.
//
// For experiments with non-default settings (docs/benchmarks.md):
// JETINFER_BENCH_SCORE_FLAGS appends score flags, JETINFER_BENCH_SCORE_ENV
// adds KEY=VALUE pairs (space-separated) to score's environment only, and
// JETINFER_BENCH_SCORE_PROFILE=PREFIX writes CPU and allocation profiles
// of the score runs and the worker, and CPU profiles of this process,
// which embeds the server, during the pass-through and the score runs
// (PREFIX.passthrough, PREFIX.server),
// JETINFER_BENCH_SCORE_TRACE=PREFIX execution traces of the score runs
// (PREFIX.1, PREFIX.2), of the worker serving the first drain and the
// score runs (PREFIX.worker), and of this process, which embeds the
// server, during the pass-through (PREFIX.passthrough) and the score runs
// (PREFIX.server; go tool trace), and
// JETINFER_BENCH_SCORE_PEAK_HEAP=PREFIX a heap profile of each score run
// at its largest RSS (PREFIX.1, PREFIX.2, with memory statistics in
// PREFIX.N.txt). JETINFER_BENCH_SCORE_MEMORY_STREAMS=1 keeps the request
// and result streams in memory (the worker's MEMORY_STORAGE setting: not
// durable), to show what the broker's file store costs.
func TestBenchScore(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("JETINFER_BENCH_SCORE_ROWS"))
	if n <= 0 {
		t.Skip("set JETINFER_BENCH_SCORE_ROWS (make bench-score)")
	}
	split, _ := strconv.Atoi(os.Getenv("JETINFER_BENCH_SCORE_SPLIT_CPUS"))
	logf := func(format string, args ...any) { fmt.Printf("bench-score: "+format+"\n", args...) }
	ns := startTestServer(t)
	url := ns.ClientURL()
	d := loadDigitsTable(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "digits.parquet")
	start := time.Now()
	ids := d.writeParquet(t, in, (n+len(d.ids)-1)/len(d.ids), 64<<10)
	n = len(ids)
	st, _ := os.Stat(in)
	logf("input %s: %d rows, %.0f MiB, written in %s", in, n, float64(st.Size())/(1<<20), time.Since(start).Round(time.Millisecond))

	var scoreCPUs string
	if split > 0 {
		rest, own, err := splitCPUs(split)
		if err != nil {
			t.Fatal(err)
		}
		// Every thread of this process; the worker inherits the mask.
		if out, err := exec.Command("taskset", "-a", "-p", "-c", rest, strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
			t.Fatalf("pinning the server to CPUs %s: %v: %s", rest, err, out)
		}
		scoreCPUs = own
		logf("cores: server and worker on CPUs %s, score on CPUs %s (JETINFER_BENCH_SCORE_SPLIT_CPUS=%d)", rest, own, split)
	} else {
		logf("cores: all processes share the machine's %d", runtime.NumCPU())
	}

	// The requests score sends: same reader, same options, same size cap.
	nc := connectTest(t, url)
	js, _ := jetstream.New(nc)
	memory := os.Getenv("JETINFER_BENCH_SCORE_MEMORY_STREAMS") != ""
	var storageEnv []string // the worker's, matching the streams
	if memory {
		storageEnv = []string{"JETINFER_MEMORY_STORAGE=true"}
		logf("streams in memory, not in files (JETINFER_BENCH_SCORE_MEMORY_STREAMS; not the default, not durable)")
	}
	if _, err := worker.EnsureStreams(context.Background(), js, worker.Config{Model: "digits", MemoryStorage: memory}); err != nil {
		t.Fatal(err)
	}
	maxBytes := int(min(nc.MaxPayload(), int64(codec.DefaultLimits().MaxBodyBytes))) - 16<<10
	rd, err := table.Open([]string{in}, table.Options{Columns: []string{"id", "pixels"}, Keep: []string{"id", "label"},
		Shapes: map[string][]int64{"pixels": {8, 8}}, MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := client.New(nc, client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	var bodies [][]byte
	rows := 0
	start = time.Now()
	for {
		c, err := rd.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		c.Keep.Release()
		bodies = append(bodies, c.Body)
		rows += c.Rows
	}
	_ = rd.Close()
	reqs := len(bodies)
	logf("baseline: %d requests of ≈%d rows (≤ %d bytes) cut in %s", reqs, rows/reqs, maxBytes, time.Since(start).Round(time.Millisecond))

	res, _ := js.Stream(context.Background(), wire.DefaultResultStream)
	// workerAlone publishes the requests ahead under job, starts a worker
	// (with env added to its environment) on them and returns its rows/s
	// draining them: rows over the time between the first and the last
	// stored result (the first result's rows finish at its time), and the
	// worker, still running. It runs before and after the score runs, so
	// that a machine whose speed drifts shows in both.
	workerAlone := func(job string, env ...string) (float64, *exec.Cmd) {
		before, err := res.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		from := before.State.LastSeq + 1
		took := publishAhead(t, pub, job, bodies)
		logf("%s: published ahead in %s: the broker stores %.0f rows/s of these requests (%d MiB awaiting PubAcks, as score publishes; no worker running)",
			job, took.Round(time.Millisecond), float64(rows)/took.Seconds(), client.DefaultUnackedBytes>>20)
		wcmd := startWorkerProcess(t, url, env...)
		cpu0 := benchCPU(t, wcmd.Process.Pid)
		cons, err := js.Consumer(context.Background(), wire.DefaultRequestStream, "digits")
		if err != nil {
			t.Fatal(err)
		}
		heldSum, heldSamples := 0, 0 // requests the worker holds (ack-pending), sampled while it drains
		for {
			info, err := res.Info(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if info.State.LastSeq+1-from >= uint64(reqs) {
				break
			}
			if ci, err := cons.Info(context.Background()); err == nil && info.State.LastSeq >= from {
				heldSum += ci.NumAckPending
				heldSamples++
			}
			time.Sleep(10 * time.Millisecond)
		}
		sp := streamSpan(t, js, wire.DefaultResultStream, from, from+uint64(reqs))
		span := sp.last.Sub(sp.first)
		rate := float64(rows-rows/reqs) / span.Seconds()
		failed, seen, firstErr := 0, 0, ""
		if err := pub.Results(context.Background(), job, func(r client.Result) bool {
			if !r.OK() {
				failed++
				if firstErr == "" {
					firstErr = string(r.Status) + ": " + r.Error
				}
			}
			seen++
			return seen < reqs
		}); err != nil {
			t.Fatal(err)
		}
		cpu1 := benchCPU(t, wcmd.Process.Pid)
		logf("worker alone (%s): %.0f rows/s (%d results in %s, %d error results; first: %s)", job, rate, reqs, span.Round(time.Millisecond), failed, firstErr)
		logf("worker alone (%s): CPU seconds: worker %.2f, server+harness %.2f (whole drain, reading the results back included); held by the worker %.1f requests on average once results flowed",
			job, cpu1.worker-cpu0.worker, cpu1.self-cpu0.self, float64(heldSum)/float64(max(1, heldSamples)))
		if failed > 0 {
			t.Fatalf("the worker answered %d of %d backlog requests with errors: its rows/s would be inflated by fast error results", failed, reqs)
		}
		return rate, wcmd
	}
	wenv := slices.Clone(storageEnv)
	if prof := os.Getenv("JETINFER_BENCH_SCORE_PROFILE"); prof != "" {
		wenv = append(wenv, "JETINFER_TEST_CPUPROFILE="+prof+".worker")
	}
	if tr := os.Getenv("JETINFER_BENCH_SCORE_TRACE"); tr != "" {
		wenv = append(wenv, "JETINFER_TEST_TRACE="+tr+".worker")
	}
	// The broker's own limit for the request leg, before any worker
	// runs: the same requests published as score publishes them while a
	// consumer pulls them as the worker does (two pullers, each fetching
	// up to 1024 messages or 16 MiB) and acks each, with no decoding,
	// engine or results.
	passRate := func() float64 {
		cons, err := js.Consumer(context.Background(), wire.DefaultRequestStream, "digits")
		if err != nil {
			t.Fatal(err)
		}
		var got atomic.Int64
		done := make(chan time.Time, 1)
		var pullers sync.WaitGroup
		for range 2 {
			pullers.Go(func() {
				for got.Load() < int64(reqs) {
					batch, err := cons.Fetch(1024, jetstream.FetchMaxBytes(16<<20), jetstream.FetchMaxWait(time.Second))
					if err != nil {
						return
					}
					for msg := range batch.Messages() {
						_ = msg.Ack()
						if got.Add(1) == int64(reqs) {
							done <- time.Now()
						}
					}
				}
			})
		}
		stopTrace := watchSelf(t, "passthrough")
		start := time.Now()
		publishAhead(t, pub, "passthrough", bodies)
		var end time.Time
		select {
		case end = <-done:
		case <-time.After(2 * time.Minute):
			t.Fatal("the pass-through consumer did not receive every request in 2 minutes")
		}
		stopTrace()
		// No pull left open to take the worker's requests, and every ack
		// in before a worker takes the consumer.
		pullers.Wait()
		for {
			ci, err := cons.Info(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if ci.NumPending == 0 && ci.NumAckPending == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		return float64(rows) / end.Sub(start).Seconds()
	}()
	logf("broker pass-through: %.0f rows/s (the same requests published as score does while a consumer pulls them as the worker does and acks them; no decoding, engine or results)", passRate)
	rateBefore, wcmd := workerAlone("baseline", wenv...)

	// score, interrupted once midway, then the same command again.
	out := filepath.Join(dir, "scores.parquet")
	args := []string{"score", "-nats", url, "-shape", "pixels=8x8", "-columns", "id,pixels", "-keep", "id,label",
		"-progress", "lines", "-out", out}
	if extra := strings.Fields(os.Getenv("JETINFER_BENCH_SCORE_FLAGS")); len(extra) > 0 {
		// Non-default score settings, for experiments (docs/benchmarks.md).
		args = append(args, extra...)
		logf("score flags beyond the defaults: %s", strings.Join(extra, " "))
	}
	if extra := os.Getenv("JETINFER_BENCH_SCORE_ENV"); extra != "" {
		logf("score environment beyond the defaults: %s", extra)
	}
	args = append(args, in)
	var total time.Duration
	var rssKiB int64
	var last string
	var scoreCPU float64
	cpu2 := benchCPU(t, wcmd.Process.Pid)
	// How often the worker had nothing to take during the score runs:
	// samples of the model consumer with no request waiting to be
	// delivered (the worker may still hold some, ack-pending).
	var samples, empty, idle int
	var heldSum, heldMax, waitingSum int // requests ack-pending and waiting, over the samples
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		cons, err := js.Consumer(context.Background(), wire.DefaultRequestStream, "digits")
		if err != nil {
			return
		}
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tk.C:
			}
			ci, err := cons.Info(context.Background())
			if err != nil {
				continue
			}
			samples++
			heldSum += ci.NumAckPending
			heldMax = max(heldMax, ci.NumAckPending)
			waitingSum += int(ci.NumPending)
			if ci.NumPending == 0 {
				empty++
				if ci.NumAckPending == 0 {
					idle++
				}
			}
		}
	}()
	// Where each run's results start in the result stream, and when the
	// run started: the timelines are read after both runs, so that the
	// harness does no work between them (the worker would go on draining
	// run 1's requests meanwhile, unaccounted).
	var runFrom [3]uint64
	var exits [2]time.Duration
	var runStart [2]time.Time
	stopTrace := watchSelf(t, "server")
	for i, interrupt := range []bool{true, false} {
		cmd := exec.Command(os.Args[0], args...)
		if scoreCPUs != "" {
			cmd = exec.Command("taskset", append([]string{"-c", scoreCPUs, os.Args[0]}, args...)...)
		}
		hwm := filepath.Join(dir, fmt.Sprintf("hwm.%d", i+1))
		cmd.Env = append(os.Environ(), "JETINFER_TEST_MAIN=1", "JETINFER_TEST_HWM_FILE="+hwm)
		// Environment for score alone (e.g. GOMAXPROCS), for experiments.
		cmd.Env = append(cmd.Env, strings.Fields(os.Getenv("JETINFER_BENCH_SCORE_ENV"))...)
		if tr := os.Getenv("JETINFER_BENCH_SCORE_TRACE"); tr != "" {
			cmd.Env = append(cmd.Env, fmt.Sprintf("JETINFER_TEST_TRACE=%s.%d", tr, i+1))
		}
		if heap := os.Getenv("JETINFER_BENCH_SCORE_PEAK_HEAP"); heap != "" {
			cmd.Env = append(cmd.Env, fmt.Sprintf("JETINFER_TEST_PEAK_HEAP=%s.%d", heap, i+1))
		}
		if prof := os.Getenv("JETINFER_BENCH_SCORE_PROFILE"); prof != "" {
			cmd.Env = append(cmd.Env, fmt.Sprintf("JETINFER_TEST_CPUPROFILE=%s.%d", prof, i+1),
				fmt.Sprintf("JETINFER_TEST_MEMPROFILE=%s.%d.allocs", prof, i+1))
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		resInfo, err := res.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		before := resInfo.State.Msgs
		start := time.Now()
		runFrom[i], runStart[i] = resInfo.State.LastSeq+1, start
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if interrupt {
			go func() {
				for {
					if i, err := res.Info(context.Background()); err == nil && i.State.Msgs >= before+uint64(reqs/2) {
						_ = cmd.Process.Signal(os.Interrupt)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
		err = cmd.Wait()
		took := time.Since(start)
		total += took
		// VmHWM of the child's own image (rusage's maxrss would include
		// this test process's RSS, shared between fork and exec).
		b, rerr := os.ReadFile(hwm)
		kib, _ := strconv.ParseInt(strings.TrimSuffix(string(b), " kB"), 10, 64)
		if rerr != nil || kib <= 0 {
			t.Fatalf("reading the peak RSS of run %d: %q, %v", i+1, b, rerr)
		}
		rssKiB = max(rssKiB, kib)
		scoreCPU += (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
		if interrupt != (err != nil) {
			t.Fatalf("run %d (interrupt=%v): %v\n%s\n%s", i+1, interrupt, err, stdout.String(), stderr.String())
		}
		if path := os.Getenv("JETINFER_BENCH_SCORE_STDERR"); path != "" {
			_ = os.WriteFile(fmt.Sprintf("%s.%d", path, i+1), stderr.Bytes(), 0o600)
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		logf("score run %d: %s, peak RSS %d MiB; %s / %s", i+1, took.Round(time.Millisecond), kib>>10,
			strings.TrimSpace(stdout.String()), lines[len(lines)-1])
		last = stdout.String()
		exits[i] = took
	}
	stopTrace()
	if end, err := res.Info(context.Background()); err == nil {
		runFrom[2] = end.State.LastSeq + 1
	}
	for i := range 2 {
		rs := streamSpan(t, js, wire.DefaultResultStream, runFrom[i], runFrom[i+1])
		logf("score run %d timeline (ms from process start): results stored %s; exit at %d",
			i+1, rs.since(runStart[i]), exits[i].Milliseconds())
	}
	cpu3 := benchCPU(t, wcmd.Process.Pid)
	close(stopSampling)
	<-sampled
	logf("score runs: request consumer sampled every 10ms: %d samples, %d with no request waiting, %d with none held by the worker either; held by the worker %.1f on average (at most %d), waiting %.1f",
		samples, empty, idle, float64(heldSum)/float64(max(1, samples)), heldMax, float64(waitingSum)/float64(max(1, samples)))
	logf("score runs: %s wall; CPU seconds: score %.2f, worker %.2f, server+harness %.2f", total.Round(time.Millisecond),
		scoreCPU, cpu3.worker-cpu2.worker, cpu3.self-cpu2.self)
	// The worker stops (writing its profile, if asked) and a new one
	// drains the same requests again.
	_ = wcmd.Process.Signal(os.Interrupt)
	_ = wcmd.Wait()
	rateAfter, _ := workerAlone("baseline-after", storageEnv...)
	var gotRows, ok, bad, resumed int
	if _, err := fmtSscan(last, &gotRows, &ok, &bad, &resumed); err != nil {
		t.Fatalf("summary %q: %v", last, err)
	}
	scoreRate := float64(gotRows) / total.Seconds()
	workerRate := (rateBefore + rateAfter) / 2
	logf("ratio: score %.0f rows/s ÷ worker alone %.0f (before the score runs: %.2f) and %.0f (after: %.2f), mean %.0f",
		scoreRate, rateBefore, scoreRate/rateBefore, rateAfter, scoreRate/rateAfter, workerRate)
	ratio := scoreRate / workerRate
	logf("ratio: score ÷ broker pass-through %.2f", scoreRate/passRate)
	fmt.Printf("score: rows=%d ok=%d ratio_vs_worker=%.2f rss_mib=%d resumed_rows=%d\n", gotRows, ok, ratio, rssKiB>>10, resumed)
	if gotRows != n {
		t.Errorf("score wrote %d rows, want %d", gotRows, n)
	}
}

// watchSelf writes an execution trace of this process, which embeds the
// server, to JETINFER_BENCH_SCORE_TRACE.name and a CPU profile to
// JETINFER_BENCH_SCORE_PROFILE.name, each when its variable is set, until
// the returned function is called.
func watchSelf(t *testing.T, name string) (stop func()) {
	path := func(env string) string {
		if prefix := os.Getenv(env); prefix != "" {
			return prefix + "." + name
		}
		return ""
	}
	end, err := observe(path("JETINFER_BENCH_SCORE_TRACE"), path("JETINFER_BENCH_SCORE_PROFILE"))
	if err != nil {
		t.Fatalf("watching the %s phase: %v", name, err)
	}
	return func() {
		if err := end(); err != nil {
			t.Errorf("writing the %s phase's trace or profile: %v", name, err)
		}
	}
}

// span is when the first and the last of n messages were stored.
type span struct {
	n           int
	first, last time.Time
}

// since formats the span relative to start.
func (s span) since(start time.Time) string {
	if s.n == 0 {
		return "none"
	}
	return fmt.Sprintf("%d from %d to %d", s.n, s.first.Sub(start).Milliseconds(), s.last.Sub(start).Milliseconds())
}

// streamSpan reads the store times of the messages of stream from
// sequence from up to (not including) sequence to (headers only).
func streamSpan(t *testing.T, js jetstream.JetStream, stream string, from, to uint64) span {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sp span
	last := min(info.State.LastSeq, to-1)
	if last < from {
		return sp
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from, HeadersOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			md, err := msg.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			if sp.n == 0 {
				sp.first = md.Timestamp
			}
			sp.last = md.Timestamp
			sp.n++
			if md.Sequence.Stream >= last {
				return sp
			}
		}
		if got == 0 {
			return sp
		}
	}
}

// benchTimes are CPU seconds (user + system) of the worker process and of
// this process (the embedded server and the harness).
type benchTimes struct{ worker, self float64 }

func benchCPU(t *testing.T, pid int) benchTimes {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	self := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("reading the worker's CPU time: %v", err)
	}
	// Fields after the command name (in parentheses): utime and stime
	// are the 12th and 13th, in clock ticks (100 per second on Linux).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return benchTimes{worker: (ut + st) / 100, self: self}
}

// splitCPUs divides this process's CPUs in two: n for score, taken from
// the end as whole physical cores (all the hyperthreads of a core, as
// Linux lists them in thread_siblings_list), and the rest, each as a
// taskset list.
func splitCPUs(n int) (rest, score string, err error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return "", "", fmt.Errorf("reading the CPU affinity: %w", err)
	}
	var cpus []int
	for c := range 1024 {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	taken := map[int]bool{}
	var own []int
	for i := len(cpus) - 1; i >= 0 && len(own) < n; i-- {
		c := cpus[i]
		if taken[c] {
			continue
		}
		siblings := []int{c}
		if b, err := os.ReadFile(fmt.Sprintf("/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list", c)); err == nil {
			siblings = parseCPUList(strings.TrimSpace(string(b)))
		}
		for _, s := range siblings {
			if set.IsSet(s) && !taken[s] {
				taken[s] = true
				own = append(own, s)
			}
		}
	}
	var others []int
	for _, c := range cpus {
		if !taken[c] {
			others = append(others, c)
		}
	}
	if len(own) < n || len(others) == 0 {
		return "", "", fmt.Errorf("cannot give score %d of %d CPUs and keep one for the server and the worker", n, len(cpus))
	}
	return cpuList(others), cpuList(own), nil
}

// parseCPUList reads a Linux CPU list such as "3,11" or "0-3".
func parseCPUList(s string) []int {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, found := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if found {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out
}

// cpuList writes CPUs as taskset's comma-separated list.
func cpuList(cpus []int) string {
	parts := make([]string, len(cpus))
	for i, c := range slices.Sorted(slices.Values(cpus)) {
		parts[i] = strconv.Itoa(c)
	}
	return strings.Join(parts, ",")
}

// publishAhead publishes bodies as requests of job the way score does:
// asynchronously, with at most client.DefaultUnackedBytes awaiting their
// PubAcks, every PubAck checked in order. It returns the time from the
// first publish to the last PubAck: how fast the broker stores them.
func publishAhead(t *testing.T, pub *client.Client, job string, bodies [][]byte) time.Duration {
	t.Helper()
	type sent struct {
		fut  jetstream.PubAckFuture
		size int
	}
	var queue []sent
	unacked := 0
	await := func() {
		s := queue[0]
		queue = queue[1:]
		select {
		case <-s.fut.Ok():
		case err := <-s.fut.Err():
			t.Fatalf("publishing ahead: %v", err)
		}
		unacked -= s.size
	}
	start := time.Now()
	for i, b := range bodies {
		for len(queue) > 0 && unacked+len(b) > client.DefaultUnackedBytes {
			await()
		}
		fut, err := pub.PublishAsync(context.Background(), client.Request{ID: client.RequestID(job, i), Job: job, Body: b})
		if err != nil {
			t.Fatal(err)
		}
		queue = append(queue, sent{fut, len(b)})
		unacked += len(b)
	}
	for len(queue) > 0 {
		await()
	}
	return time.Since(start)
}
