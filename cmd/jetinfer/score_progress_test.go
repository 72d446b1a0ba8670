package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/worker/client"
)

// TestLogsDoNotScrollOverTheBar: a log line written while the bar is
// shown clears the bar's line, is printed, and the bar is redrawn below.
func TestLogsDoNotScrollOverTheBar(t *testing.T) {
	var out bytes.Buffer
	term := newTerminal(&out, "bar")
	p := newProgress(term, time.Second)
	p.start(1000)
	p.render(client.Stats{Rows: 250, FailedRows: 3, TotalRows: 1000}, false)
	out.Reset()
	log := newLogger(term)
	log.Info("worker slow", "model", "digits")
	got := out.String()
	if !strings.HasPrefix(got, "\r\033[K") || !strings.Contains(got, "msg=\"worker slow\"") {
		t.Fatalf("log write %q does not clear the bar's line first", got)
	}
	after := got[strings.Index(got, "\n")+1:]
	if !strings.Contains(after, " 25.0% |") || !strings.Contains(after, "250/1,000 rows") || !strings.Contains(after, "errors 3]") {
		t.Fatalf("bar not redrawn after the log line: %q", after)
	}
}

func TestProgressLinesWhenNotATerminal(t *testing.T) {
	var out bytes.Buffer
	term := newTerminal(&out, "auto") // a bytes.Buffer is not a terminal
	p := newProgress(term, time.Hour)
	p.start(-1)
	p.finish(client.Stats{Rows: 4096, TotalRows: -1})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || strings.Contains(out.String(), "\r") {
		t.Fatalf("want two plain lines, got %q", out.String())
	}
	if !strings.HasPrefix(lines[1], "score: progress rows=4096/? (?) rows_per_s=") || !strings.Contains(lines[1], "eta=? ") {
		t.Fatalf("line %q", lines[1])
	}
}

func TestCountAndClock(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 2000160: "2,000,160"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
	if got := clock(3725 * time.Second); got != "1:02:05" {
		t.Errorf("clock = %q", got)
	}
	if got := eta(1000, 250, 50); got != "0:15" {
		t.Errorf("eta = %q, want 0:15", got)
	}
}

func TestStoredArgsDropDisplayFlags(t *testing.T) {
	got := storedArgs([]string{"-progress", "lines", "-nats", "nats://x", "-keep=id", "--wait", "-progress-interval=5s", "in.parquet"})
	if strings.Join(got, " ") != "-keep=id in.parquet" {
		t.Fatalf("storedArgs = %q", got)
	}
}
