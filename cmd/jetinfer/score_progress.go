package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jetinfer/jetinfer/worker/client"
)

// terminal serializes writes to stderr between the progress bar and
// everything else (logs, messages): on a terminal, a write clears the bar's
// line first and redraws the bar after, so that nothing scrolls over it.
type terminal struct {
	mu   sync.Mutex
	w    io.Writer
	bar  bool   // draw a redrawn bar (else: periodic lines)
	off  bool   // no progress at all
	line string // the bar as last drawn; "" when none
}

// newTerminal returns the writer for stderr; mode is auto, bar, lines or
// none.
func newTerminal(w io.Writer, mode string) *terminal {
	t := &terminal{w: w}
	switch mode {
	case "bar":
		t.bar = true
	case "none":
		t.off = true
	case "lines":
	default:
		t.bar = isTerminal(w)
	}
	return t
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Write writes p above the bar.
func (t *terminal) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.line != "" {
		fmt.Fprint(t.w, "\r\033[K")
	}
	n, err := t.w.Write(p)
	if t.line != "" {
		fmt.Fprint(t.w, t.line)
	}
	return n, err
}

// draw replaces the bar's line (bar mode) or prints a line (lines mode).
func (t *terminal) draw(line string, final bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.bar {
		fmt.Fprint(t.w, "\r\033[K"+line)
		t.line = line
		if final {
			fmt.Fprintln(t.w)
			t.line = ""
		}
		return
	}
	fmt.Fprintln(t.w, line)
}

// progress renders client.Stats like pv/tqdm: rows done/total, percent,
// rate, ETA, elapsed and errors; redrawn at most 10 times a second on a
// terminal, one line every interval otherwise.
type progress struct {
	t        *terminal
	interval time.Duration
	began    time.Time
	total    int64
	last     time.Time
	lastRows int64 // rows at the last render; -1 before the first
}

func newProgress(t *terminal, interval time.Duration) *progress {
	return &progress{t: t, interval: interval, lastRows: -1}
}

func (p *progress) start(total int64) {
	p.began, p.total = time.Now(), total
	p.render(client.Stats{TotalRows: total, TotalReqs: -1}, false)
}

// update is client.Job.Progress.
func (p *progress) update(st client.Stats) {
	now := time.Now()
	every := p.interval
	if p.t.bar {
		every = 100 * time.Millisecond
	}
	if now.Sub(p.last) < every {
		return
	}
	p.last = now
	p.render(st, false)
}

// finish draws the last state (once: a plain line already showing it is
// not repeated).
func (p *progress) finish(st client.Stats) {
	if p.t.bar || st.Rows != p.lastRows {
		p.render(st, true)
	}
}

func (p *progress) render(st client.Stats, final bool) {
	if p.t.off {
		return
	}
	p.lastRows = st.Rows
	elapsed := time.Since(p.began)
	fresh := st.Rows - st.ResumedRows
	rate := float64(fresh) / max(elapsed.Seconds(), 1e-3)
	errs := st.FailedRows
	if p.t.bar {
		var b strings.Builder
		if p.total > 0 {
			frac := min(1, float64(st.Rows)/float64(p.total))
			const width = 24
			n := int(frac * width)
			fmt.Fprintf(&b, "%5.1f%% |%s%s| ", 100*frac, strings.Repeat("█", n), strings.Repeat(" ", width-n))
			fmt.Fprintf(&b, "%s/%s rows", count(st.Rows), count(p.total))
		} else {
			fmt.Fprintf(&b, "%s rows", count(st.Rows))
		}
		fmt.Fprintf(&b, " [%s<%s, %s rows/s", clock(elapsed), eta(p.total, st.Rows, rate), count(int64(rate)))
		fmt.Fprintf(&b, ", errors %s]", count(errs))
		p.t.draw(b.String(), final)
		return
	}
	pct := "?"
	if p.total > 0 {
		pct = fmt.Sprintf("%.1f%%", 100*min(1, float64(st.Rows)/float64(p.total)))
	}
	total := "?"
	if p.total >= 0 {
		total = fmt.Sprint(p.total)
	}
	p.t.draw(fmt.Sprintf("score: progress rows=%d/%s (%s) rows_per_s=%.0f eta=%s elapsed=%s errors=%d",
		st.Rows, total, pct, rate, eta(p.total, st.Rows, rate), clock(elapsed), errs), final)
}

// eta formats the time left at rate, or "?".
func eta(total, done int64, rate float64) string {
	if total <= 0 || rate <= 0 {
		return "?"
	}
	return clock(time.Duration(float64(max(0, total-done)) / rate * float64(time.Second)))
}

// clock formats d as m:ss or h:mm:ss.
func clock(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// count formats n with thousands separators.
func count(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return s
	}
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	return b.String()
}
