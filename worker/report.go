package worker

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jetinfer/jetinfer/scheduler"
)

// stats are the worker's running counters, updated by the pipeline stages
// with atomics and read by the reporter.
type stats struct {
	inFlight    atomic.Int64 // messages received and not yet settled
	msgs        atomic.Int64 // valid requests accepted
	msgRows     atomic.Int64 // rows of those requests
	rows        atomic.Int64 // rows executed
	busyNs      atomic.Int64 // engine time, summed over batches
	queueNs     atomic.Int64 // receipt → batch start, summed over requests
	queued      atomic.Int64 // requests counted in queueNs
	firstResult atomic.Int64 // unix ns of the first stored result; 0 before
}

// snapshot is one reading of stats.
type snapshot struct {
	at                                       time.Time
	msgs, msgRows, rows, busy, queue, queued int64
}

func (s *stats) read(now time.Time) snapshot {
	return snapshot{at: now, msgs: s.msgs.Load(), msgRows: s.msgRows.Load(), rows: s.rows.Load(),
		busy: s.busyNs.Load(), queue: s.queueNs.Load(), queued: s.queued.Load()}
}

// report builds the scheduler report for the window between prev and cur.
// Measurements without new data in the window keep their last value.
func (w *Worker) report(prev, cur snapshot, last scheduler.WorkerReport) scheduler.WorkerReport {
	r := last
	r.Model, r.WorkerID, r.At = w.cfg.Model, w.cfg.WorkerID, cur.at
	if busy := cur.busy - prev.busy; busy > 0 {
		// Rows per second of engine time: what one worker sustains when
		// the engine never waits. With several executors the engine
		// calls overlap, so this underestimates, which errs towards more
		// replicas rather than fewer.
		r.ServiceRate = float64(cur.rows-prev.rows) / (float64(busy) / 1e9)
		window := cur.at.Sub(prev.at)
		r.Utilization = min(1, float64(busy)/float64(window*time.Duration(w.cfg.Executors)))
	} else {
		r.Utilization = 0
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
