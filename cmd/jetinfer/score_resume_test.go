package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/codec/table"
	"github.com/jetinfer/jetinfer/worker/client"
)

// TestCarryOverChecksRecordAndErrors: an earlier output is carried over
// only when the job record's finished part is the resume point's and the
// errors file accounts for exactly its failed rows; the error counts by
// code come from that file. Each refusal names its reason.
func TestCarryOverChecksRecordAndErrors(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.parquet")
	errorsPath := out + ".errors.jsonl"
	resume := &resumePoint{Requests: 3, Cuts: []cutRun{{Rows: 16, Count: 2}, {Rows: 5, Count: 1}}}
	lines := `{"request_id":"j-0","seq":0,"rows":16,"code":"INVALID_ARGUMENT","message":"bad"}
{"request_id":"j-2","seq":2,"rows":5,"code":"INTERNAL","message":"boom"}
`
	if err := os.WriteFile(errorsPath, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	errs, failed, err := readErrorsFile(errorsPath, 3)
	if err != nil || failed != 21 || errs[codec.CodeInvalidArgument] != 1 || errs[codec.CodeInternal] != 1 {
		t.Fatalf("readErrorsFile = %v, %d, %v; want one INVALID_ARGUMENT, one INTERNAL, 21 rows", errs, failed, err)
	}
	for _, tc := range []struct {
		name string
		rec  client.JobRecord
		want string
	}{
		{"record behind", client.JobRecord{DoneRequests: 2, DoneRows: 32, FailedRows: 21}, "not its resume point's"},
		{"failed rows differ", client.JobRecord{DoneRequests: 3, DoneRows: 37, FailedRows: 16}, "names 21 failed rows, the job record 16"},
		{"no earlier output", client.JobRecord{DoneRequests: 3, DoneRows: 37, FailedRows: 21}, "carrying rows over from " + out},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := table.Create(out, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			c, err := carryOver(w, &tc.rec, resume, errorsPath)
			if err == nil || !strings.Contains(err.Error(), tc.want) || c.Requests != 0 {
				t.Fatalf("carryOver = %+v, %v; want nothing carried and an error naming %q", c, err, tc.want)
			}
		})
	}
	if _, _, err := readErrorsFile(errorsPath, 2); err == nil || !strings.Contains(err.Error(), "names request 2, after the 2 finished") {
		t.Errorf("an errors file naming a request after the resume point: %v", err)
	}
}

// TestScoreSourceReadsFromTheSentPoint: told that no request up to the
// job's sent point needs a body, a resumed source gives those requests
// without bodies, with the kept columns of their own rows (after a
// finished, carried-over prefix too), and the requests after it with the
// same rows and bodies as a read from the start. Told that one of them
// needs its body, it reads them all with bodies.
func TestScoreSourceReadsFromTheSentPoint(t *testing.T) {
	d := loadDigitsTable(t)
	in := filepath.Join(t.TempDir(), "in.parquet")
	ids := d.writeParquet(t, in, 2, 100) // row groups of 100 rows, requests of 24
	opts := table.Options{Columns: []string{"id", "pixels"}, Keep: []string{"id", "label"},
		Shapes: map[string][]int64{"pixels": {8, 8}}, RowsPerRequest: 24}
	log := slog.New(slog.DiscardHandler)
	type want struct {
		rows int
		body []byte
		ids  []int64
	}
	read := func(src *scoreSource) (parts []want, marks []*resumePoint) {
		t.Helper()
		defer src.Close()
		for {
			p, err := src.Next(context.Background())
			if errors.Is(err, io.EOF) {
				return parts, marks
			}
			if err != nil {
				t.Fatal(err)
			}
			if src.seq >= len(src.prefix) && src.keep != nil {
				t.Fatalf("request %d: the kept-columns Reader is still open after the last request without a body (it holds what it decoded ahead)", src.seq-1)
			}
			w := want{rows: p.Rows, body: slices.Clone(p.Body)}
			if k, _ := p.Keep.(arrow.RecordBatch); k != nil {
				w.ids = slices.Clone(k.Column(0).(*array.Int64).Int64Values())
				k.Release()
			}
			parts = append(parts, w)
			var mark *resumePoint
			if p.Resume != nil {
				b, err := json.Marshal(p.Resume)
				if err != nil {
					t.Fatal(err)
				}
				mark = parseResume(b)
			}
			marks = append(marks, mark)
		}
	}
	open := func(resume, sent *resumePoint) *scoreSource {
		t.Helper()
		s, err := newScoreSource([]string{in}, opts, resume, sent, log)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	all, marks := read(open(nil, nil))
	if n := len(all); n < 20 || marks[4] == nil || marks[17] == nil {
		t.Fatalf("%d requests, marks after 5: %v, after 18: %v; want resume marks there", n, marks[4], marks[17])
	}
	var got int
	for _, p := range all {
		got += p.rows
	}
	if got != len(ids) {
		t.Fatalf("read %d rows, want %d", got, len(ids))
	}
	resume, sent := marks[4], marks[17] // after requests 5 and 18

	for _, tc := range []struct {
		name       string
		carried    bool
		needed     int // a request before the sent point that needs its body (-1: none)
		bodilessTo int
	}{
		{"finished carried over", true, -1, 18},
		{"finished read again", false, -1, 18},
		{"a stored request gone", true, 9, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := open(resume, sent)
			from := 0
			if tc.carried {
				src.leaveOutFinished()
				from = 5
			}
			src.NeedBodies(func(seq int) bool { return seq >= 5 && seq == tc.needed })
			parts, _ := read(src)
			if len(parts) != len(all)-from {
				t.Fatalf("%d parts, want %d", len(parts), len(all)-from)
			}
			for i, p := range parts {
				seq, w := from+i, all[from+i]
				if p.rows != w.rows || !slices.Equal(p.ids, w.ids) {
					t.Fatalf("request %d: %d rows, ids %v; want %d rows, ids %v", seq, p.rows, p.ids, w.rows, w.ids)
				}
				if bodiless := seq < tc.bodilessTo; bodiless != (p.body == nil) || !bodiless && !bytes.Equal(p.body, w.body) {
					t.Fatalf("request %d: body of %d bytes; want none: %v, else the body read from the start (%d bytes)", seq, len(p.body), bodiless, len(w.body))
				}
			}
		})
	}
}
