// Command reliability runs jetinfer's process-level scenarios (SIGKILL,
// SIGTERM, memory under floods and stored backlogs, configuration from
// the environment, a deleted consumer under supervised processes) against
// real `jetinfer worker` processes and in-process JetStream servers,
// checks after each that every request ended in exactly one visible result
// (none lost, none duplicated in the result stream, status and logits as
// expected, nothing left in the work queue) and that worker memory stayed
// bounded, prints a table and writes it to docs/reliability.md.
//
// Faults that need no separate process (engine failures, result-side
// outages, server restarts, cluster node loss and leader changes,
// deadlines, producer retries, malformed input) are tests of package
// worker, on the pure-Go test engine; both use package worker/traffic to
// generate traffic and audit the result stream.
//
// Run it from the repository root (`make reliability`):
//
//	go run ./cmd/reliability [-scale 1] [-run regexp] [-out docs/reliability.md]
//
// The last line it prints is
//
//	reliability: scenarios=<n> requests=<r> lost=<l> duplicated=<d> internal=<i> not_found=<f> left_in_queue=<q> max_rss_mib=<m> rss_bound_mib=<b>
//
// (internal counts INTERNAL results of requests that did not ask for one;
// not_found counts NOT_FOUND results of requests pinned to a model version
// the repository has;
// max_rss_mib is the largest worker RSS of any scenario and rss_bound_mib
// the smallest bound any scenario held its workers to) and it exits 1
// when any scenario breaks an invariant. Workers run at their default
// settings; a scenario that overrides one says which and why. It needs the ONNX
// Runtime library (`make ort`, or JETINFER_ORT_LIBRARY) and builds
// ./cmd/jetinfer itself unless -jetinfer names a binary.
//
// With -stand-in-worker the binary is not the runner but a worker process
// whose engine is the real ONNX Runtime engine behind a stand-in wrapper
// that delays every call (see standin.go); the flood and sigterm
// scenarios run that.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/worker/traffic"
)

func main() {
	standIn := flag.Bool("stand-in-worker", false, "run as a worker process with a slow stand-in engine (used by the runner)")
	scale := flag.Float64("scale", 1, "multiply every scenario's request count")
	run := flag.String("run", "", "run only scenarios whose name matches this regexp")
	out := flag.String("out", "docs/reliability.md", "write the report here (empty: do not write)")
	bin := flag.String("jetinfer", "", "use this jetinfer binary instead of building ./cmd/jetinfer")
	keep := flag.Bool("keep", false, "keep the temporary directory (worker logs, stores)")
	corpus := flag.Bool("write-corpus", false, "write one body of each malformed kind to codec/testdata/fuzz/FuzzDecodeRequest and exit")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if *standIn {
		err = runStandIn(ctx, os.Stderr)
	} else {
		err = runAll(ctx, os.Stdout, *scale, *run, *out, *bin, *keep, *corpus)
	}
	if err != nil {
		if !errors.Is(err, errFailed) {
			fmt.Fprintln(os.Stderr, "reliability:", err)
		}
		os.Exit(1)
	}
}

// errFailed reports that some scenario broke an invariant; runAll has
// printed which, and the summary line stays the last line of output.
var errFailed = errors.New("scenarios failed")

// runner holds what every scenario needs.
type runner struct {
	root     string // repository root
	jetinfer string // the jetinfer binary
	self     string // this binary, for stand-in workers
	ortLib   string
	tmp      string
	logs     string
	scale    float64
	d        *traffic.Digits
	out      io.Writer

	scenario string // the running scenario's name
	dir      string // its temporary directory
	mu       sync.Mutex
	procs    []*proc
	nproc    int
	// supervisors restart their worker processes until stopWorkers.
	supervisors []*supervisor
}

// n scales a request count.
func (r *runner) n(base int) int { return max(1, int(float64(base)*r.scale)) }

func runAll(ctx context.Context, out io.Writer, scale float64, only, report, bin string, keep, corpus bool) error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return fmt.Errorf("run from the repository root: %w", err)
	}
	lib, err := onnxrt.FindLibrary(os.Getenv("JETINFER_ORT_LIBRARY"))
	if err != nil {
		return fmt.Errorf("finding the ONNX Runtime library (run `make ort` or set JETINFER_ORT_LIBRARY): %w", err)
	}
	filter, err := regexp.Compile(only)
	if err != nil {
		return fmt.Errorf("parsing -run: %w", err)
	}
	if corpus {
		codec.RegisterTensorExtension()
		d, err := traffic.LoadDigits(root)
		if err != nil {
			return err
		}
		return (&runner{root: root, d: d}).writeCorpus()
	}
	tmp, err := os.MkdirTemp("", "jetinfer-reliability-")
	if err != nil {
		return err
	}
	keepDir := keep
	defer func() {
		if !keepDir {
			os.RemoveAll(tmp)
		}
	}()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if bin == "" {
		bin = filepath.Join(tmp, "jetinfer")
		fmt.Fprintln(out, "building ./cmd/jetinfer")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/jetinfer")
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building ./cmd/jetinfer: %w", err)
		}
	}
	codec.RegisterTensorExtension()
	d, err := traffic.LoadDigits(root)
	if err != nil {
		return err
	}
	r := &runner{root: root, jetinfer: bin, self: self, ortLib: lib, tmp: tmp,
		logs: filepath.Join(tmp, "logs"), scale: scale, d: d, out: out}
	if err := os.MkdirAll(r.logs, 0o755); err != nil {
		return err
	}
	var rows []*row
	start := time.Now()
	for _, sc := range scenarios {
		if !filter.MatchString(sc.name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(out, "scenario %s: %s\n", sc.name, sc.what)
		rw := r.runScenario(ctx, sc)
		rows = append(rows, rw)
		fmt.Fprintf(out, "  %s\n", rw.summary())
	}
	total := time.Since(start)
	table := renderTable(rows)
	fmt.Fprint(out, "\n"+table+"\n")
	if report != "" && only == "" && scale == 1 {
		if err := writeReport(filepath.Join(root, report), rows, total); err != nil {
			return err
		}
		fmt.Fprintln(out, "wrote", report)
	} else if report != "" {
		fmt.Fprintln(out, "not writing", report, "for a partial or scaled run")
	}
	var reqs, lost, dup, internal, notFound int
	var left uint64
	var maxRSS, bound int64
	var failed []string
	for _, rw := range rows {
		reqs += rw.a.Requests
		lost += rw.a.Lost
		dup += rw.a.Duplicated
		internal += rw.a.Internal
		notFound += rw.a.NotFound
		left += rw.queue.Left()
		maxRSS = max(maxRSS, rw.maxRSS)
		if rw.rssBound > 0 && (bound == 0 || rw.rssBound < bound) {
			bound = rw.rssBound
		}
		if !rw.pass() {
			failed = append(failed, rw.name)
		}
	}
	if len(failed) > 0 {
		keepDir = true // the worker logs of a failed run
		fmt.Fprintf(out, "FAILED: %s\n", strings.Join(failed, ", "))
	}
	if keepDir {
		fmt.Fprintln(out, "kept", tmp)
	}
	fmt.Fprintf(out, "reliability: scenarios=%d requests=%d lost=%d duplicated=%d internal=%d not_found=%d left_in_queue=%d max_rss_mib=%s rss_bound_mib=%s\n",
		len(rows), reqs, lost, dup, internal, notFound, left, mib(maxRSS), mib(bound))
	if len(failed) > 0 {
		return errFailed
	}
	return nil
}

// runScenario runs one scenario in its own directory with its own broker
// and worker processes, and stops whatever it left running.
func (r *runner) runScenario(ctx context.Context, sc scenario) *row {
	r.mu.Lock()
	r.scenario, r.procs, r.nproc, r.supervisors = sc.name, nil, 0, nil
	r.mu.Unlock()
	r.dir = filepath.Join(r.tmp, sc.name)
	rw := &row{name: sc.name, what: sc.what, a: &traffic.Audit{ByCode: map[codec.Code]int{}}}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		rw.err = err
		return rw
	}
	stopSampling := r.sampler()
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	err := sc.run(sctx, r, rw)
	cancel()
	rw.elapsed = time.Since(start)
	if serr := r.stopWorkers(); serr != nil && err == nil {
		err = serr
	}
	stopSampling()
	rw.maxRSS = r.maxRSS()
	rw.err = err
	if !rw.pass() {
		fmt.Fprintf(r.out, "  worker logs:\n%s\n", r.logSummary())
	}
	return rw
}
