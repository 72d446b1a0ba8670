package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/caarlos0/env/v10"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/worker"
)

// submitCmd publishes the rows of an Arrow IPC file (stream or file
// format) as requests of one job, collects the results and writes them, in
// input order, to an Arrow IPC file.
func submitCmd(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	var cfg workerConfig
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "input Arrow IPC file: one column per model input, optional id column (required)")
	out := fs.String("out", "results.arrow", "output Arrow IPC file")
	rowsPerReq := fs.Int("rows-per-request", 64, "rows per request")
	job := fs.String("job", "", "job name (default: generated)")
	columns := fs.String("columns", "", "comma-separated columns to send (default: all; keep the id column to match results to rows)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up collecting after this long")
	if err := env.ParseWithOptions(&cfg, env.Options{Prefix: "JETINFER_"}); err != nil {
		return fmt.Errorf("reading JETINFER_* environment: %w", err)
	}
	fs.StringVar(&cfg.NATSURL, "nats", cfg.NATSURL, "NATS server URL (JETINFER_NATS_URL)")
	fs.StringVar(&cfg.Worker.Model, "model", "digits", "model name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" || *rowsPerReq < 1 {
		fs.Usage()
		return errors.New("submit needs -in FILE and -rows-per-request ≥ 1")
	}
	if *job == "" {
		*job = "job-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	codec.RegisterTensorExtension()
	var keep []string
	if *columns != "" {
		keep = strings.Split(*columns, ",")
	}
	bodies, err := splitArrowFile(*in, *rowsPerReq, keep)
	if err != nil {
		return err
	}
	nc, err := cfg.NATS.connect(cfg.NATSURL, "jetinfer submit", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	client, err := worker.NewClient(nc, cfg.Worker.Prefix, cfg.Worker.ResultStream, cfg.Worker.Model, 256)
	if err != nil {
		return err
	}
	progress := newProgress(stderr, len(bodies))
	index := make(map[string]int, len(bodies))
	for i, b := range bodies {
		id := *job + "-" + strconv.Itoa(i)
		index[id] = i
		if _, err := client.PublishAsync(ctx, worker.Request{ID: id, Job: *job, Body: b}); err != nil {
			return err
		}
		progress.sent(i + 1)
	}
	select {
	case <-client.PublishComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	results := make([][]byte, len(bodies))
	done, failed := 0, 0
	err = client.Results(cctx, *job, func(r worker.Result) bool {
		i, ok := index[r.RequestID]
		if !ok || results[i] != nil {
			return true
		}
		if r.Status != codec.CodeOK {
			failed++
			fmt.Fprintf(stderr, "\nrequest %s: %s: %s\n", r.RequestID, r.Status, r.Error)
			results[i] = []byte{}
		} else {
			results[i] = r.Body
		}
		done++
		progress.received(done)
		return done < len(bodies)
	})
	progress.finish()
	if err != nil {
		return fmt.Errorf("collecting results (%d of %d received): %w", done, len(bodies), err)
	}
	rows, err := writeResults(*out, results)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "submit: job=%s requests=%d failed=%d rows=%d out=%s\n", *job, len(bodies), failed, rows, *out)
	if failed > 0 {
		return fmt.Errorf("%d requests failed", failed)
	}
	return nil
}

// splitArrowFile reads an Arrow IPC file (file or stream format) and
// re-encodes it as Arrow IPC streams of at most rows rows each, keeping only
// the named columns when keep is not empty.
func splitArrowFile(path string, rows int, keep []string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var recs []arrow.RecordBatch
	var schema *arrow.Schema
	if bytes.HasPrefix(data, []byte("ARROW1")) {
		fr, err := ipc.NewFileReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("reading Arrow file %s: %w", path, err)
		}
		defer fr.Close()
		schema = fr.Schema()
		for i := range fr.NumRecords() {
			rec, err := fr.RecordBatch(i)
			if err != nil {
				return nil, fmt.Errorf("reading record batch %d of %s: %w", i, path, err)
			}
			rec.Retain()
			recs = append(recs, rec)
		}
	} else {
		sr, err := ipc.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("reading Arrow stream %s: %w", path, err)
		}
		defer sr.Release()
		schema = sr.Schema()
		for sr.Next() {
			rec := sr.RecordBatch()
			rec.Retain()
			recs = append(recs, rec)
		}
		if err := sr.Err(); err != nil {
			return nil, fmt.Errorf("reading Arrow stream %s: %w", path, err)
		}
	}
	if len(keep) > 0 {
		var err error
		if schema, recs, err = project(schema, recs, keep); err != nil {
			return nil, fmt.Errorf("selecting columns of %s: %w", path, err)
		}
	}
	var bodies [][]byte
	for _, rec := range recs {
		for lo := int64(0); lo < rec.NumRows(); lo += int64(rows) {
			part := rec.NewSlice(lo, min(rec.NumRows(), lo+int64(rows)))
			var buf bytes.Buffer
			w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
			err := w.Write(part)
			part.Release()
			if err == nil {
				err = w.Close()
			}
			if err != nil {
				return nil, fmt.Errorf("encoding request rows %d..: %w", lo, err)
			}
			bodies = append(bodies, buf.Bytes())
		}
		rec.Release()
	}
	return bodies, nil
}

// project keeps the named columns of every record, in the given order.
func project(schema *arrow.Schema, recs []arrow.RecordBatch, keep []string) (*arrow.Schema, []arrow.RecordBatch, error) {
	idx := make([]int, len(keep))
	fields := make([]arrow.Field, len(keep))
	for i, name := range keep {
		found := schema.FieldIndices(strings.TrimSpace(name))
		if len(found) != 1 {
			return nil, nil, fmt.Errorf("column %q: found %d times in schema %v", name, len(found), schema)
		}
		idx[i], fields[i] = found[0], schema.Field(found[0])
	}
	md := schema.Metadata()
	out := arrow.NewSchema(fields, &md)
	projected := make([]arrow.RecordBatch, len(recs))
	for r, rec := range recs {
		cols := make([]arrow.Array, len(idx))
		for i, j := range idx {
			cols[i] = rec.Column(j)
		}
		projected[r] = array.NewRecordBatch(out, cols, rec.NumRows())
		rec.Release()
	}
	return out, projected, nil
}

// writeResults concatenates the record batches of the ok results, in
// order, into an Arrow IPC file at path, and returns the row count.
func writeResults(path string, results [][]byte) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, fmt.Errorf("creating %s: %w", path, err)
	}
	defer f.Close()
	var fw *ipc.FileWriter
	var rows int64
	for i, body := range results {
		if len(body) == 0 {
			continue
		}
		r, err := ipc.NewReader(bytes.NewReader(body))
		if err != nil {
			return 0, fmt.Errorf("reading result %d: %w", i, err)
		}
		for r.Next() {
			rec := r.RecordBatch()
			if fw == nil {
				if fw, err = ipc.NewFileWriter(f, ipc.WithSchema(rec.Schema())); err != nil {
					r.Release()
					return 0, fmt.Errorf("writing %s: %w", path, err)
				}
			}
			if err := fw.Write(rec); err != nil {
				r.Release()
				return 0, fmt.Errorf("writing result %d to %s: %w", i, path, err)
			}
			rows += rec.NumRows()
		}
		r.Release()
	}
	if fw != nil {
		if err := fw.Close(); err != nil {
			return 0, fmt.Errorf("closing %s: %w", path, err)
		}
	}
	return rows, f.Close()
}

// progress draws a one-line progress bar when w is a terminal.
type progress struct {
	w          io.Writer
	tty        bool
	total      int
	nSent, got int
	last       time.Time
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, total: total}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) sent(n int)     { p.nSent = n; p.draw(false) }
func (p *progress) received(n int) { p.got = n; p.draw(false) }
func (p *progress) finish()        { p.draw(true) }

func (p *progress) draw(final bool) {
	if !p.tty || (!final && time.Since(p.last) < 100*time.Millisecond) {
		return
	}
	p.last = time.Now()
	const width = 30
	filled := width * p.got / max(1, p.total)
	bar := bytes.Repeat([]byte("="), filled)
	bar = append(bar, bytes.Repeat([]byte(" "), width-filled)...)
	fmt.Fprintf(p.w, "\r[%s] sent %d/%d  results %d/%d", bar, p.nSent, p.total, p.got, p.total)
	if final {
		fmt.Fprintln(p.w)
	}
}
