package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
