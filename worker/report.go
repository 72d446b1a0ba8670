package worker

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jetinfer/jetinfer/scheduler"
)

// stats are the worker's running counters, updated by the pipeline stages
// with atomics and read by the reporter.
type stats struct {
	inFlight    workGauge    // messages received and not yet settled
	msgs        atomic.Int64 // valid requests accepted
	msgRows     atomic.Int64 // rows of those requests
	rows        atomic.Int64 // rows executed
	busyNs      atomic.Int64 // engine time, summed over batches
	queueNs     atomic.Int64 // receipt → batch start, summed over requests
	queued      atomic.Int64 // requests counted in queueNs
	firstResult atomic.Int64 // unix ns of the first stored result; 0 before
}

// workGauge counts the messages a worker holds (received, not yet
// settled) and measures, for the reporter, how many were settled and for
// how much wall time the worker held at least one: the time it had work.
// Add and Load match atomic.Int64's, so the pipeline stages count with it
// as they would with a plain counter; a mutex (taken once per message,
// uncontended in practice) keeps the count and the clock consistent.
type workGauge struct {
	mu      sync.Mutex
	n       int64
	settled int64         // decrements so far: messages settled
	since   time.Time     // when n last became positive
	worked  time.Duration // closed intervals with n > 0
}

// Add changes the count by delta (+1 on receipt, -1 on settle) and
// returns the new count.
func (g *workGauge) Add(delta int64) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	before := g.n
	g.n += delta
	if delta < 0 {
		g.settled -= delta
	}
	switch {
	case before <= 0 && g.n > 0:
		g.since = time.Now()
	case before > 0 && g.n <= 0:
		g.worked += time.Since(g.since)
	}
	return g.n
}

// Load returns the count.
func (g *workGauge) Load() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// read returns the messages settled so far and the wall time with work
// up to now (the open interval included).
func (g *workGauge) read(now time.Time) (settled int64, worked time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	worked = g.worked
	if g.n > 0 && now.After(g.since) {
		worked += now.Sub(g.since)
	}
	return g.settled, worked
}

// snapshot is one reading of stats.
type snapshot struct {
	at                                       time.Time
	msgs, msgRows, rows, busy, queue, queued int64
	settled                                  int64         // messages settled
	worked                                   time.Duration // wall time with work
	cpu                                      time.Duration // process CPU time (user + system)
}

func (s *stats) read(now time.Time) snapshot {
	sn := snapshot{at: now, msgs: s.msgs.Load(), msgRows: s.msgRows.Load(), rows: s.rows.Load(),
		busy: s.busyNs.Load(), queue: s.queueNs.Load(), queued: s.queued.Load(), cpu: processCPU()}
	sn.settled, sn.worked = s.inFlight.read(now)
	return sn
}

// processCPU returns the CPU time the process has used (user + system),
// or 0 where it cannot be read.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report builds the scheduler report for the window between prev and cur.
// Measurements without new data in the window keep their last value.
func (w *Worker) report(prev, cur snapshot, last scheduler.WorkerReport) scheduler.WorkerReport {
	r := last
	r.Model, r.WorkerID, r.At = w.cfg.Model, w.cfg.WorkerID, cur.at
	if g := w.current(); g != nil {
		r.Version = g.version
	}
	rows := float64(cur.rows - prev.rows)
	if busy := cur.busy - prev.busy; busy > 0 {
		// Rows per second of engine time: what one worker would sustain
		// if messaging cost nothing. With several executors the engine
		// calls overlap, so this underestimates the engine's share.
		r.EngineRate = rows / (float64(busy) / 1e9)
		window := cur.at.Sub(prev.at)
		r.Utilization = min(1, float64(busy)/float64(window*time.Duration(w.cfg.Executors)))
	} else {
		r.Utilization = 0
	}
	worked := cur.worked - prev.worked
	if settled := cur.settled - prev.settled; worked > 0 && settled > 0 {
		r.SustainedMsgRate = float64(settled) / worked.Seconds()
	}
	if worked > 0 && rows > 0 {
		// End to end: rows run per second of wall time while the worker
		// held messages, decoding, messaging and publishing included.
		// At saturation this is what the pool really delivers; below it,
		// the time with work includes waiting for arrivals, so it is a
		// lower bound.
		r.SustainedRate = rows / worked.Seconds()
		// The load-independent ceiling: the engine's, or the CPU's when
		// the process uses its cores for messaging too (rows per
		// CPU-second times the cores it may use). Taking the larger of
		// that and the measured lower bound keeps a worker at half load
		// from reporting half its capacity, which would make the
		// scheduler add replicas that lower the measure further.
		ceiling := r.EngineRate
		if cpu := cur.cpu - prev.cpu; cpu > 0 {
			cpuRate := rows / (cpu.Seconds() / float64(runtime.GOMAXPROCS(0)))
			if ceiling == 0 || cpuRate < ceiling {
				ceiling = cpuRate
			}
		}
		r.ServiceRate = max(r.SustainedRate, ceiling)
	} else if r.EngineRate > 0 && r.ServiceRate == 0 {
		r.ServiceRate = r.EngineRate
	}
	if m := cur.msgs - prev.msgs; m > 0 {
		r.RowsPerMsg = float64(cur.msgRows-prev.msgRows) / float64(m)
	}
	if q := cur.queued - prev.queued; q > 0 {
		r.QueueDelay = time.Duration((cur.queue - prev.queue) / q)
	}
	if first := w.stats.firstResult.Load(); first > 0 {
		r.ColdStart = time.Unix(0, first).Sub(w.started)
	}
	r.InFlightMsgs = int(max(0, w.stats.inFlight.Load()))
	return r
}

// runReporter publishes a report every Config.ReportInterval until ctx
// ends, then deletes the worker's key so that the scheduler stops counting
// it at once.
func (w *Worker) runReporter(ctx context.Context) {
	// Counters start at zero when Run starts: the first window covers
	// everything since then, including the time taken to open the bucket.
	prev := snapshot{at: time.Now()}
	kv, err := scheduler.OpenReportBucket(ctx, w.js, w.cfg.ReportBucket, 0)
	if err != nil {
		w.log.Warn("worker reports disabled", "model", w.cfg.Model, "err", err)
		return
	}
	t := time.NewTicker(w.cfg.ReportInterval)
	defer t.Stop()
	var last scheduler.WorkerReport
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			if err := kv.Delete(dctx, scheduler.ReportKey(w.cfg.Model, w.cfg.WorkerID)); err != nil {
				w.log.Debug("deleting worker report", "err", err)
			}
			cancel()
			return
		case <-w.reportNow:
			// A switch: tell the other workers the new version at once,
			// with the measurements of the last report.
			last.Model, last.WorkerID, last.At = w.cfg.Model, w.cfg.WorkerID, time.Now()
			if g := w.current(); g != nil {
				last.Version = g.version
			}
			if err := scheduler.PublishReport(ctx, kv, last); err != nil && ctx.Err() == nil {
				w.log.Warn("publishing worker report", "model", w.cfg.Model, "err", err)
			}
		case now := <-t.C:
			cur := w.stats.read(now)
			last = w.report(prev, cur, last)
			prev = cur
			if err := scheduler.PublishReport(ctx, kv, last); err != nil && ctx.Err() == nil {
				w.log.Warn("publishing worker report", "model", w.cfg.Model, "err", err)
			}
		}
	}
}
