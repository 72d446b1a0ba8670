package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/codec/table"
	"github.com/jetinfer/jetinfer/worker/client"
)

// resumePoint is where a score job can start again (client.Part.Resume,
// kept in the job record): after its first Requests requests, all of
// them finished, at the input Position that followed them, with the
// rows of each of those requests (run-length: Cuts). A later run of the
// job publishes from Position at once and reads only the kept columns
// of the finished requests' rows, instead of cutting the whole input
// again to find where the unfinished requests begin.
type resumePoint struct {
	Requests int            `json:"requests"`
	Position table.Position `json:"position"`
	Cuts     []cutRun       `json:"cuts"`
}

// cutRun is Count requests of Rows rows each, in a row.
type cutRun struct {
	Rows  int `json:"rows"`
	Count int `json:"count"`
}

// maxCutRuns bounds a resumePoint's Cuts (the job record is one KV value):
// past it, parts carry no resume point and the record keeps the last.
// Request sizes change only where the input's rows change size.
const maxCutRuns = 4096

// cutLog is the rows of each request cut so far, run-length encoded.
type cutLog struct{ runs []cutRun }

func (l *cutLog) add(rows int) {
	if n := len(l.runs); n > 0 && l.runs[n-1].Rows == rows {
		l.runs[n-1].Count++
		return
	}
	l.runs = append(l.runs, cutRun{Rows: rows, Count: 1})
}

// mark returns the resume point after the requests cut so far, at pos;
// nil past maxCutRuns. Runs before the last never change, so the mark
// shares them and copies the last (add counts it up in place).
func (l *cutLog) mark(requests int, pos table.Position) *resumeMark {
	n := len(l.runs)
	if n == 0 || n > maxCutRuns {
		return nil
	}
	return &resumeMark{requests: requests, pos: pos, runs: l.runs[: n-1 : n-1], last: l.runs[n-1]}
}

// resumeMark is a resumePoint as parts carry it: encoded only when the
// job record is saved.
type resumeMark struct {
	requests int
	pos      table.Position
	runs     []cutRun
	last     cutRun
}

// MarshalJSON encodes the mark as a resumePoint.
func (m *resumeMark) MarshalJSON() ([]byte, error) {
	return json.Marshal(resumePoint{Requests: m.requests, Position: m.pos, Cuts: append(m.runs, m.last)})
}

// parseResume reads a job record's resume point; nil when there is none
// or it does not add up.
func parseResume(raw json.RawMessage) *resumePoint {
	if len(raw) == 0 {
		return nil
	}
	var p resumePoint
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil
	}
	n := 0
	for _, c := range p.Cuts {
		if c.Rows < 1 || c.Count < 1 {
			return nil
		}
		n += c.Count
	}
	if n != p.Requests || p.Requests < 1 {
		return nil
	}
	return &p
}

// rows returns the rows of the requests before the point.
func (p *resumePoint) rows() int64 {
	var n int64
	for _, c := range p.Cuts {
		n += int64(c.Rows) * int64(c.Count)
	}
	return n
}

// Metadata keys of score's outputs: the job that wrote it, and its
// fingerprint. A resumed job carries over an earlier output only when both
// match.
const (
	outputJobKey         = "jetinfer.job"
	outputFingerprintKey = "jetinfer.fingerprint"
)

// carryOver makes the rows of the job's earlier output (at w's path) the
// first rows of w, when that output ends where resume does and the errors
// file holds the errors of its failed rows, and returns what they count
// for. It changes nothing when it returns an error.
func carryOver(w *table.Writer, rec *client.JobRecord, resume *resumePoint, errorsPath string) (client.Carried, error) {
	rows := resume.rows()
	if rec.DoneRequests != resume.Requests || rec.DoneRows != rows {
		return client.Carried{}, fmt.Errorf("the job record's %d finished requests (%d rows) are not its resume point's %d (%d rows)",
			rec.DoneRequests, rec.DoneRows, resume.Requests, rows)
	}
	c := client.Carried{Requests: resume.Requests, Rows: rows, FailedRows: rec.FailedRows}
	if rec.FailedRows > 0 {
		errs, failed, err := readErrorsFile(errorsPath, resume.Requests)
		if err != nil {
			return client.Carried{}, err
		}
		if failed != rec.FailedRows {
			return client.Carried{}, fmt.Errorf("errors file %s names %d failed rows, the job record %d", errorsPath, failed, rec.FailedRows)
		}
		c.Errors = errs
	}
	if err := w.CarryOver(rows); err != nil {
		return client.Carried{}, err
	}
	return c, nil
}

// readErrorsFile reads score's errors file: the error results by code and
// the rows they failed. Every line must be of a request before requests.
func readErrorsFile(path string, requests int) (map[codec.Code]int, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the errors file: %w", err)
	}
	defer f.Close()
	errs := map[codec.Code]int{}
	var failed int64
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Seq  int        `json:"seq"`
			Rows int64      `json:"rows"`
			Code codec.Code `json:"code"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return nil, 0, fmt.Errorf("errors file %s: %w", path, err)
		}
		if line.Seq < 0 || line.Seq >= requests {
			return nil, 0, fmt.Errorf("errors file %s names request %d, after the %d finished", path, line.Seq, requests)
		}
		errs[line.Code]++
		failed += line.Rows
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("errors file %s: %w", path, err)
	}
	return errs, failed, nil
}

// scoreSource is score's client.Source: the requests that need no body
// first — the finished requests before a resume point and, when the run
// says so (NeedBodies), those an earlier run stored up to its sent point —
// with row counts from the point, kept columns from their own Reader and
// no body; then the requests the Reader cuts from the point's position
// (or from the start), each with the resume point that follows it.
type scoreSource struct {
	rd     *table.Reader
	files  []string
	opts   table.Options  // rd's options
	keepOp *table.Options // for keep, opened at the first request without a body; nil when nothing is kept
	keep   *table.Reader  // kept columns of the requests without a body
	prefix []int          // rows of each request before rd's start
	cuts   cutLog
	seq    int
	from   *table.Position // where the request after the finished ones starts (nil: the input's start)
	sent   *resumePoint    // an earlier run's sent point past the resume point (nil: none)
	log    *slog.Logger
}

// newScoreSource reads files from the start, or from after the finished
// requests of resume (nil: none); sent is the job's sent point (nil:
// none), used if the run says that no request before it needs a body.
func newScoreSource(files []string, opts table.Options, resume, sent *resumePoint, log *slog.Logger) (*scoreSource, error) {
	s := &scoreSource{files: files, log: log}
	if len(opts.Keep) > 0 {
		// A Reader of the kept columns only: they are what it sends.
		s.keepOp = &table.Options{Columns: opts.Keep, Keep: opts.Keep, RowsPerRequest: opts.RowsPerRequest, MaxBytes: opts.MaxBytes, Mem: opts.Mem}
	}
	if resume != nil {
		s.before(resume)
		start := resume.Position
		opts.Start, s.from = &start, &start
	}
	if sent != nil && sent.extends(resume) {
		s.sent = sent
	}
	rd, err := table.Open(files, opts)
	if err != nil {
		return nil, err
	}
	s.rd, s.opts = rd, opts
	return s, nil
}

// before makes the requests before p the ones read without a body: their
// rows, and the cuts the resume points after them extend.
func (s *scoreSource) before(p *resumePoint) {
	s.prefix, s.cuts = s.prefix[:0], cutLog{}
	for _, c := range p.Cuts {
		for range c.Count {
			s.prefix = append(s.prefix, c.Rows)
			s.cuts.add(c.Rows)
		}
	}
}

// extends reports whether p lies past resume (nil: the input's start) on
// the same cuts.
func (p *resumePoint) extends(resume *resumePoint) bool {
	if resume == nil {
		return true
	}
	if p.Requests <= resume.Requests || len(p.Cuts) < len(resume.Cuts) {
		return false
	}
	last := len(resume.Cuts) - 1
	for i, c := range resume.Cuts {
		if c.Rows != p.Cuts[i].Rows || (i < last && c.Count != p.Cuts[i].Count) || (i == last && c.Count > p.Cuts[i].Count) {
			return false
		}
	}
	return true
}

// NeedBodies (client.BodyFilter) moves the Reader to the sent point when
// no request before it needs a body: their kept columns come from the
// kept-columns Reader and their rows are not decoded for bodies nobody
// sends.
func (s *scoreSource) NeedBodies(needed func(seq int) bool) {
	p := s.sent
	if p == nil || s.seq > 0 && s.seq != len(s.prefix) {
		return
	}
	for seq := s.seq; seq < p.Requests; seq++ {
		if needed(seq) {
			return
		}
	}
	opts := s.opts
	start := p.Position
	opts.Start = &start
	rd, err := table.Open(s.files, opts)
	if err != nil {
		s.log.Info("reading the input from the job's resume point", "why", err)
		return
	}
	_ = s.rd.Close()
	s.rd = rd
	s.before(p)
	if s.keepOp != nil && s.seq > 0 {
		keep := *s.keepOp
		keep.Start = s.from
		s.keepOp = &keep
	}
	s.log.Info("requests stored by an earlier run are read without their bodies", "requests", p.Requests-s.seq, "from_request", s.seq)
}

// leaveOutFinished makes the first unfinished request the first part:
// the finished ones are carried over (client.Job.Carried).
func (s *scoreSource) leaveOutFinished() { s.seq = len(s.prefix) }

// Rows returns the input's rows (-1: unknown).
func (s *scoreSource) Rows() int64 {
	if s.rd == nil {
		return -1
	}
	return s.rd.Rows()
}

// Recycle gives a body back to the Reader.
func (s *scoreSource) Recycle(body []byte) { s.rd.Recycle(body) }

// Next returns the next request's part.
func (s *scoreSource) Next(ctx context.Context) (client.Part, error) {
	if s.seq < len(s.prefix) {
		n := s.prefix[s.seq]
		s.seq++
		p := client.Part{Rows: n}
		if s.keep == nil && s.keepOp != nil {
			k, err := table.Open(s.files, *s.keepOp)
			if err != nil {
				return client.Part{}, fmt.Errorf("kept columns of requests without a body: %w", err)
			}
			s.keep = k
		}
		if s.keep != nil {
			c, err := s.keep.NextRows(ctx, n)
			if err != nil {
				return client.Part{}, fmt.Errorf("kept columns of request %d: %w", s.seq-1, err)
			}
			p.Keep, p.Held = c.Keep, table.RecordBytes(c.Keep)
			if s.seq == len(s.prefix) {
				// The last request without a body: the kept-columns
				// Reader would otherwise hold what it decoded ahead (up
				// to its budget) until the run ends.
				err := s.keep.Close()
				s.keep, s.keepOp = nil, nil
				if err != nil {
					c.Keep.Release()
					return client.Part{}, fmt.Errorf("closing the kept columns' reader: %w", err)
				}
			}
		}
		return p, nil
	}
	c, err := s.rd.Next(ctx)
	if err != nil {
		return client.Part{}, err
	}
	s.seq++
	s.cuts.add(c.Rows)
	p := client.Part{Body: c.Body, Rows: c.Rows}
	if c.Keep != nil {
		p.Keep, p.Held = c.Keep, table.RecordBytes(c.Keep)
	}
	if pos, ok := s.rd.Checkpoint(); ok {
		if m := s.cuts.mark(s.seq, pos); m != nil {
			p.Resume = m
		}
	}
	return p, nil
}

// Close closes the readers.
func (s *scoreSource) Close() error {
	var err error
	if s.keep != nil {
		err = s.keep.Close()
	}
	if s.rd != nil {
		err = errors.Join(err, s.rd.Close())
	}
	return err
}

var _ io.Closer = (*scoreSource)(nil)
