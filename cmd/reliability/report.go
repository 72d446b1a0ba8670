package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jetinfer/jetinfer/codec"
)

// scenario is one fault, load or bad-input run.
type scenario struct {
	name string
	what string
	run  func(ctx context.Context, r *runner, rw *row) error
}

// row is a scenario's outcome: one line of the report.
type row struct {
	name     string
	what     string
	a        *audit
	queue    queueState // what was left in the work queue at the end
	maxRSS   int64      // largest peak RSS of the scenario's worker processes
	rssBound int64      // the bound it must stay under (0: not checked)
	elapsed  time.Duration
	// redelivered is the consumer's deliveries minus the requests stored;
	// -1 where the consumer was recreated and the two do not compare.
	redelivered int64
	notes       []string
	failures    []string // invariant checks of the scenario itself that failed
	err         error
}

func (rw *row) note(format string, args ...any) {
	rw.notes = append(rw.notes, fmt.Sprintf(format, args...))
}

// check records a scenario-specific invariant.
func (rw *row) check(ok bool, format string, args ...any) {
	if !ok {
		rw.failures = append(rw.failures, fmt.Sprintf(format, args...))
	}
}

func (rw *row) pass() bool {
	a := rw.a
	return rw.err == nil && len(rw.failures) == 0 && a.requests > 0 && a.lost == 0 && a.duplicated == 0 && a.notFound == 0 &&
		a.wrong == 0 && a.foreign == 0 && rw.queue.empty() && (rw.rssBound == 0 || rw.maxRSS <= rw.rssBound)
}

func mib(b int64) string { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) }

func (rw *row) rss() string {
	if rw.rssBound == 0 {
		return mib(rw.maxRSS)
	}
	return mib(rw.maxRSS) + " / " + mib(rw.rssBound)
}

func (rw *row) codes() string {
	var parts []string
	for _, c := range slices.Sorted(mapsKeys(rw.a.byCode)) {
		if c != codec.CodeOK {
			parts = append(parts, fmt.Sprintf("%s %d", c, rw.a.byCode[c]))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", rw.a.errorCoded, strings.Join(parts, ", "))
}

func mapsKeys(m map[codec.Code]int) func(func(codec.Code) bool) {
	return func(yield func(codec.Code) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (rw *row) redeliveries() string {
	if rw.redelivered < 0 {
		return "n/a"
	}
	return fmt.Sprint(rw.redelivered)
}

func (rw *row) verdict() string {
	if rw.pass() {
		return "pass"
	}
	return "FAIL"
}

// summary is the one-line console form of the row.
func (rw *row) summary() string {
	a := rw.a
	s := fmt.Sprintf("%s: requests=%d results=%d lost=%d duplicated=%d error-coded=%s wrong=%d left-in-queue=%d max-rss=%s MiB (%.1fs)",
		rw.verdict(), a.requests, a.results, a.lost, a.duplicated, rw.codes(), a.wrong,
		rw.queue.stored+rw.queue.pending+rw.queue.ackPending, rw.rss(), rw.elapsed.Seconds())
	for _, n := range rw.notes {
		s += "\n    " + n
	}
	for _, f := range rw.failures {
		s += "\n    FAILED: " + f
	}
	for _, e := range a.examples {
		s += "\n    e.g. " + e
	}
	if rw.err != nil {
		s += "\n    ERROR: " + rw.err.Error()
	}
	return s
}

// renderTable renders the rows as a Markdown table.
func renderTable(rows []*row) string {
	var b strings.Builder
	b.WriteString("| scenario | requests | results | lost | duplicated | error-coded | wrong | left in queue | redelivered | max RSS MiB (bound) | time s | verdict |\n")
	b.WriteString("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|\n")
	for _, rw := range rows {
		a := rw.a
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %s | %d | %d | %s | %s | %.1f | %s |\n",
			rw.name, a.requests, a.results, a.lost, a.duplicated, rw.codes(), a.wrong,
			rw.queue.stored+rw.queue.pending+rw.queue.ackPending, rw.redeliveries(), rw.rss(), rw.elapsed.Seconds(), rw.verdict())
	}
	return b.String()
}

// writeReport writes docs/reliability.md.
func writeReport(path string, rows []*row, total time.Duration) error {
	var b strings.Builder
	b.WriteString(reportHeader)
	fmt.Fprintf(&b, "Last run: %s, %s/%s, %d CPUs, Go %s, total %.0f s.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), strings.TrimPrefix(runtime.Version(), "go"), total.Seconds())
	b.WriteString(renderTable(rows))
	b.WriteString("\n## Scenarios\n\n")
	for _, rw := range rows {
		fmt.Fprintf(&b, "### %s\n\n%s\n\n", rw.name, rw.what)
		for _, n := range rw.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		for _, f := range rw.failures {
			fmt.Fprintf(&b, "- **failed:** %s\n", f)
		}
		for _, e := range rw.a.examples {
			fmt.Fprintf(&b, "- e.g. %s\n", e)
		}
		if rw.err != nil {
			fmt.Fprintf(&b, "- **error:** %s\n", rw.err)
		}
		b.WriteString("\n")
	}
	b.WriteString(reportFooter)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
