package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/caarlos0/env/v10"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/codec/table"
	"github.com/jetinfer/jetinfer/worker/client"
)

// scoreConfig is the score command's settings.
type scoreConfig struct {
	NATSURL        string `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	Model          string `env:"MODEL" envDefault:"digits"`
	Prefix         string `env:"SUBJECT_PREFIX"`
	RequestStream  string `env:"REQUEST_STREAM"`
	ResultStream   string `env:"RESULT_STREAM"`
	NATS           natsConfig
	inputs         []string
	out, format    string
	columns, keep  string
	shapes         string
	rowsPerRequest int
	window         int
	job, resume    string
	wait           bool
	errorsPath     string
	deadline       time.Duration
	priority       int
	version        string
	progress       string
	interval       time.Duration
}

func (c *scoreConfig) flags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: jetinfer %s [flags] INPUT...\n\n"+
			"Scores Parquet or Arrow IPC files (files, directories, globs) through the worker pool and\n"+
			"writes the results in input order. Re-running the same command resumes the job.\n\nFlags:\n", name)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.NATSURL, "nats", c.NATSURL, "NATS server URL (JETINFER_NATS_URL)")
	fs.StringVar(&c.Model, "model", c.Model, "model name (JETINFER_MODEL)")
	fs.Func("in", "input file, directory or glob (repeatable; or give inputs as arguments)", func(s string) error {
		c.inputs = append(c.inputs, s)
		return nil
	})
	fs.StringVar(&c.out, "out", "results.parquet", "output file: .parquet for Parquet, else Arrow IPC file")
	fs.StringVar(&c.format, "format", "", "output format: parquet or arrow (default: from -out's extension)")
	fs.StringVar(&c.columns, "columns", "", "columns to send, comma-separated, each NAME or NAME=INPUT to rename onto an engine input (default: all but -keep; an \"id\" column is echoed into the results)")
	fs.StringVar(&c.shapes, "shape", "", "row shapes of FixedSizeList columns sent as tensors, e.g. pixels=8x8 (comma-separated, engine input names)")
	fs.StringVar(&c.keep, "keep", "", "input columns copied to the output beside the results, comma-separated")
	fs.IntVar(&c.rowsPerRequest, "rows-per-request", table.DefaultRowsPerRequest, "most rows per request (fewer when a request would pass the server's max_payload)")
	fs.IntVar(&c.window, "window", client.DefaultWindow, "requests in flight (published, result not yet written); request bodies awaiting their PubAck, results ahead of their turn and -keep columns in flight are bounded in bytes besides (16, 32 and 64 MiB)")
	fs.StringVar(&c.job, "job", "", "job name (default: derived from the input and settings, so that re-running resumes)")
	fs.StringVar(&c.resume, "resume", "", "resume job JOB with the arguments it was started with")
	fs.BoolVar(&c.wait, "wait", false, "wait for a worker of the model instead of failing after 5s (scale from zero)")
	fs.StringVar(&c.errorsPath, "errors", "", "file of error results, one JSON line each (default: OUT.errors.jsonl)")
	fs.DurationVar(&c.deadline, "deadline", 0, "answer requests not run within this long DEADLINE_EXCEEDED (0: no deadline)")
	fs.IntVar(&c.priority, "priority", 0, "request priority (higher runs first)")
	fs.StringVar(&c.version, "version", "", "model version pin")
	fs.StringVar(&c.progress, "progress", "auto", "auto (bar on a terminal, lines otherwise), bar, lines or none")
	fs.DurationVar(&c.interval, "progress-interval", 10*time.Second, "period of progress lines when not drawing a bar")
	return fs
}

// splitList splits a comma-separated flag value.
func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseShapes parses "a=8x8,b=3".
func parseShapes(s string) (map[string][]int64, error) {
	out := map[string][]int64{}
	for _, f := range splitList(s) {
		name, dims, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("-shape %q: want NAME=DxD", f)
		}
		var shape []int64
		for d := range strings.SplitSeq(dims, "x") {
			n, err := strconv.ParseInt(d, 10, 64)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("-shape %q: dimension %q is not a positive integer", f, d)
			}
			shape = append(shape, n)
		}
		out[name] = shape
	}
	return out, nil
}

// scoreMemoryLimit is score's soft memory limit unless GOMEMLIMIT is set.
const scoreMemoryLimit = 160 << 20

// scoreCmd scores tables through the pool: see `jetinfer score -h`.
func scoreCmd(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	var cfg scoreConfig
	if err := env.ParseWithOptions(&cfg, env.Options{Prefix: "JETINFER_"}); err != nil {
		return fmt.Errorf("reading JETINFER_* environment: %w", err)
	}
	fs := cfg.flags(name, stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.inputs = append(cfg.inputs, fs.Args()...)
	if cfg.resume == "" && len(cfg.inputs) == 0 {
		fs.Usage()
		return errors.New("score needs an input (or -resume JOB)")
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// Memory is bounded by the window (see README, "Offline scoring");
		// the soft limit keeps the collector from letting garbage double it.
		debug.SetMemoryLimit(scoreMemoryLimit)
	}
	term := newTerminal(stderr, cfg.progress)
	log := newLogger(term)

	nc, err := cfg.NATS.connect(cfg.NATSURL, "jetinfer score", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	cl, err := client.New(nc, client.Config{Model: cfg.Model, Prefix: cfg.Prefix, RequestStream: cfg.RequestStream,
		ResultStream: cfg.ResultStream, Logger: log})
	if err != nil {
		return err
	}
	var prev *client.JobRecord // the job's record, when resuming by name
	if cfg.resume != "" {
		rec, err := cl.LoadJob(ctx, cfg.resume)
		if err != nil {
			return fmt.Errorf("resuming: %w", err)
		}
		resumed := scoreConfig{NATSURL: cfg.NATSURL, Model: cfg.Model, Prefix: cfg.Prefix,
			RequestStream: cfg.RequestStream, ResultStream: cfg.ResultStream, NATS: cfg.NATS}
		rfs := resumed.flags(name, stderr)
		if err := rfs.Parse(rec.Args); err != nil {
			return fmt.Errorf("resuming %s with its arguments %q: %w", cfg.resume, rec.Args, err)
		}
		resumed.inputs = append(resumed.inputs, rfs.Args()...)
		resumed.job, resumed.progress, resumed.wait = cfg.resume, cfg.progress, cfg.wait || resumed.wait
		cfg, args = resumed, rec.Args
		prev = &rec
	}

	files, err := table.Expand(cfg.inputs)
	if err != nil {
		return err
	}
	shapes, err := parseShapes(cfg.shapes)
	if err != nil {
		return err
	}
	maxBytes := int(min(nc.MaxPayload(), int64(codec.DefaultLimits().MaxBodyBytes))) - 16<<10
	opts := table.Options{Columns: splitList(cfg.columns), Keep: splitList(cfg.keep), Shapes: shapes,
		RowsPerRequest: cfg.rowsPerRequest, MaxBytes: maxBytes}
	fp, err := table.Fingerprint(files)
	if err != nil {
		return err
	}
	fp = settingsFingerprint(fp, cfg, opts)
	job := cfg.job
	if job == "" {
		job = "score-" + fp[:12]
	}
	stored := storedArgs(args)
	fmt.Fprintf(term, "score: job %s (interrupt with Ctrl-C; resume with: jetinfer score -resume %s)\n", job, job)

	if prev == nil {
		if rec, err := cl.LoadJob(ctx, job); err == nil {
			prev = &rec
		}
	}
	var resume, sent *resumePoint
	if prev != nil && prev.Fingerprint == fp {
		resume, sent = parseResume(prev.Resume), parseResume(prev.Sent)
	}
	rd, err := newScoreSource(files, opts, resume, sent, log)
	if err != nil && resume != nil {
		log.Warn("reading the input from its start: cannot go on from the job's resume point", "err", err)
		resume = nil
		rd, err = newScoreSource(files, opts, nil, nil, log)
	}
	if err != nil {
		return err
	}
	defer rd.Close()
	w, err := table.Create(cfg.out, table.Format(cfg.format), nil)
	if err != nil {
		return err
	}
	w.SetMetadata(map[string]string{outputJobKey: job, outputFingerprintKey: fp})
	errorsPath := cfg.errorsPath
	if errorsPath == "" {
		errorsPath = cfg.out + ".errors.jsonl"
	}
	// A resumed job carries the rows of its earlier output over when that
	// output ends where the resume point does.
	var carried client.Carried
	if resume != nil {
		if carried, err = carryOver(w, prev, resume, errorsPath); err != nil {
			log.Info("writing the finished rows again: the earlier output is not carried over", "why", err)
		} else {
			rd.leaveOutFinished()
		}
	}
	switch {
	case carried.Requests > 0:
		fmt.Fprintf(term, "score: resuming: %d requests (%d rows) finished before are carried over from %s\n", carried.Requests, carried.Rows, cfg.out)
	case resume != nil:
		fmt.Fprintf(term, "score: resuming: %d requests (%d rows) finished before are not read again\n", resume.Requests, resume.rows())
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if carried.FailedRows > 0 {
		flags = os.O_WRONLY | os.O_APPEND // the carried rows' errors are in it
	}
	ef, err := os.OpenFile(errorsPath, flags, 0o644)
	if err != nil {
		_ = w.Close()
		return fmt.Errorf("opening errors file: %w", err)
	}
	bar := newProgress(term, cfg.interval)
	spec := client.Job{
		Name: job, Fingerprint: fp, Args: stored, Rows: rd.Rows(), Window: cfg.window, Wait: cfg.wait,
		Priority: cfg.priority, Version: cfg.version, Errors: ef, Progress: bar.update,
		Waiting: func(what string) { log.Info("waiting for a worker", "model", cfg.Model, "why", what) },
		Carried: carried,
	}
	if cfg.deadline > 0 {
		spec.Deadline = time.Now().Add(cfg.deadline)
	}
	bar.start(rd.Rows())
	st, runErr := cl.Run(ctx, spec, rd, func(_ int, p client.Part, r client.Result) error {
		keep, _ := p.Keep.(arrow.RecordBatch)
		if keep != nil {
			defer keep.Release()
		}
		if !r.OK() {
			// Null results, the error beside them: rows stay aligned
			// with the input and its kept columns.
			return w.WriteFailed(keep, p.Rows, string(r.Status), r.Error)
		}
		_, err := w.Write(keep, r.Body)
		return err
	})
	bar.finish(st)
	closeErr := errors.Join(w.Close(), ef.Close())
	if st.FailedRows == 0 {
		_ = os.Remove(errorsPath)
	}
	var interrupted bool
	switch {
	case errors.Is(runErr, client.ErrInterrupted):
		interrupted = true
		fmt.Fprintf(term, "score: interrupted: %d rows written to %s (a partial file); resume with: jetinfer score -resume %s\n", w.Rows(), cfg.out, job)
	case errors.Is(runErr, client.ErrJobCancelled):
		interrupted = true
		fmt.Fprintf(term, "score: job %s was cancelled (jetinfer jobs cancel): %d rows written to %s (a partial file)\n", job, w.Rows(), cfg.out)
	case errors.Is(runErr, client.ErrNoWorker):
		return errors.Join(fmt.Errorf("%w (with -wait, score publishes once the consumer exists and waits for a worker, as for a pool scaled to zero)", runErr), closeErr)
	case runErr != nil:
		return errors.Join(runErr, closeErr)
	}
	if closeErr != nil {
		return closeErr
	}
	if len(st.Errors) > 0 {
		codes := slices.Sorted(maps.Keys(st.Errors))
		for _, c := range codes {
			fmt.Fprintf(term, "score: %d requests failed with %s\n", st.Errors[c], c)
		}
		fmt.Fprintf(term, "score: error results (request id, code, message) in %s\n", errorsPath)
	}
	elapsed := time.Since(st.Started)
	fmt.Fprintf(stdout, "score: job=%s rows=%d ok=%d failed=%d resumed_rows=%d out=%s elapsed=%s rows_per_s=%.0f\n",
		job, st.Rows, st.OKRows, st.FailedRows, st.ResumedRows, cfg.out, elapsed.Round(time.Millisecond),
		float64(st.Rows-st.ResumedRows)/elapsed.Seconds())
	switch {
	case interrupted:
		return runErr
	case st.FailedRows > 0:
		return fmt.Errorf("%d of %d rows failed (see %s)", st.FailedRows, st.Rows, errorsPath)
	}
	return nil
}

// storedArgs drops the flags that do not belong to the job (progress
// display, resume, wait) from args, for the job record.
func storedArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		name := strings.TrimLeft(args[i], "-")
		name, _, hasValue := strings.Cut(name, "=")
		switch name {
		case "progress", "progress-interval", "resume", "nats":
			if !hasValue {
				i++
			}
			continue
		case "wait":
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// cutVersion changes whenever table.Reader cuts the same input into other
// requests (2: Parquet columns neither sent nor kept are not read, and no
// longer count in the first estimate of bytes per row).
const cutVersion = "cuts-2"

// settingsFingerprint adds what shapes the requests to the input
// fingerprint: another setting makes another job.
func settingsFingerprint(input string, cfg scoreConfig, opts table.Options) string {
	h := sha256.New()
	// cutVersion names how the Reader cuts requests: a job started by a
	// jetinfer that cut otherwise is another job, never resumed with
	// request numbers that name other rows.
	fmt.Fprintf(h, "%s\x00", cutVersion)
	fmt.Fprintf(h, "%s\x00%s\x00%q\x00%q\x00%s\x00%d\x00%d\x00%s\x00%d", input, cfg.Model, opts.Columns, opts.Keep,
		cfg.shapes, opts.RowsPerRequest, opts.MaxBytes, cfg.version, cfg.priority)
	return hex.EncodeToString(h.Sum(nil))
}
