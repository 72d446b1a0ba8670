package worker

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// admission is the worker's one budget for what it holds between pull and
// settle: bytes of request bodies and rows. The collector reserves bytes
// before each pull (the server sends no more than was reserved) and rows
// after decoding each request; the settler gives both back. While either
// is spent the collector waits, so the worker stops pulling instead of
// handing requests back: a request is never refused because the worker is
// busy. The batcher's queue limit is the same row budget, so the batcher
// never overflows.
type admission struct {
	bytes, rows *budget
}

func newAdmission(maxBytes, maxRows int64) *admission {
	return &admission{bytes: newBudget(maxBytes), rows: newBudget(maxRows)}
}

// takeRows blocks until n rows are free and takes them (all of the budget
// for a request larger than it, so that it can still run alone).
func (a *admission) takeRows(n int64) int64 {
	n = min(n, a.rows.max)
	got, _ := a.rows.take(context.Background(), n, n) // cannot fail without a context
	return got
}

func (a *admission) give(bytes, rows int64) {
	a.bytes.give(bytes)
	a.rows.give(rows)
}

// budget is a counted resource whose takers wait for a minimum and take
// whatever more is free, up to a maximum. Safe for concurrent use.
type budget struct {
	max     int64
	mu      sync.Mutex
	free    int64
	waiting bool
	changed chan struct{} // closed and replaced when free grows and someone waits
}

func newBudget(n int64) *budget { return &budget{max: n, free: n, changed: make(chan struct{})} }

// take waits until at least atLeast (at most the whole budget) is free,
// then takes what is free up to atMost. It returns false when ctx ends
// first.
func (b *budget) take(ctx context.Context, atLeast, atMost int64) (int64, bool) {
	atLeast = min(atLeast, b.max)
	for {
		b.mu.Lock()
		if b.free >= atLeast {
			n := min(b.free, max(atMost, atLeast))
			b.free -= n
			b.mu.Unlock()
			return n, true
		}
		b.waiting = true
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, false
		}
	}
}

func (b *budget) give(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.free += n
	if b.waiting {
		close(b.changed)
		b.changed, b.waiting = make(chan struct{}), false
	}
	b.mu.Unlock()
}

// holding is the set of requests the worker holds between pull and
// settle. Its keeper tells the server every so often that each held
// request is still in progress, so that a long backlog in the pipeline or
// a result side that is down for minutes never lets AckWait expire and
// hand a request to another worker. It is safe for concurrent use: the
// collector adds, the settler removes, the keeper walks.
type holding struct {
	mu   sync.Mutex
	reqs map[jetstream.Msg]time.Time // message → when the server last heard of it
}

func newHolding() *holding { return &holding{reqs: map[jetstream.Msg]time.Time{}} }

func (h *holding) add(m jetstream.Msg, now time.Time) {
	h.mu.Lock()
	h.reqs[m] = now
	h.mu.Unlock()
}

func (h *holding) remove(m jetstream.Msg) {
	h.mu.Lock()
	delete(h.reqs, m)
	h.mu.Unlock()
}

func (h *holding) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.reqs)
}

// stale returns the requests the server has not heard of since before
// cutoff and marks them as heard of at now.
func (h *holding) stale(cutoff, now time.Time) []jetstream.Msg {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []jetstream.Msg
	for r, t := range h.reqs {
		if t.Before(cutoff) {
			out = append(out, r)
			h.reqs[r] = now
		}
	}
	return out
}

// keep runs until ctx ends, telling the server every period that held
// requests older than period are still being worked on.
func (w *Worker) keep(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, m := range w.holding.stale(now.Add(-period), now) {
				if err := m.InProgress(); err != nil {
					w.log.Debug("extending ack wait", "model", w.cfg.Model, "subject", m.Subject(), "err", err)
				}
			}
		}
	}
}

// attempts counts the worker's own failed attempts per request id: engine
// failures only. Server deliveries are not attempts: a request handed
// back on shutdown, redelivered after a worker crash or held through a
// result-side outage has not failed. Entries expire after ttl so that the
// table stays bounded; it also holds at most limit ids, dropping the
// oldest. The count is per worker process: a request that fails on every
// worker is answered by the first that reaches the limit. Safe for
// concurrent use.
type attempts struct {
	mu    sync.Mutex
	ttl   time.Duration
	limit int
	order *list.List               // of *attempt, oldest first
	byID  map[string]*list.Element // id → element of order
}

type attempt struct {
	id       string
	failures int
	last     time.Time
	lastErr  string
}

func newAttempts(ttl time.Duration, limit int) *attempts {
	return &attempts{ttl: ttl, limit: limit, order: list.New(), byID: map[string]*list.Element{}}
}

// fail records a failed attempt of request id at now and returns how many
// of its attempts have failed.
func (a *attempts) fail(id string, now time.Time, err string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expire(now)
	e, ok := a.byID[id]
	if !ok {
		e = a.order.PushBack(&attempt{id: id})
		a.byID[id] = e
		for a.order.Len() > a.limit {
			old := a.order.Front()
			delete(a.byID, old.Value.(*attempt).id)
			a.order.Remove(old)
		}
	} else {
		a.order.MoveToBack(e)
	}
	at := e.Value.(*attempt)
	at.failures++
	at.last, at.lastErr = now, err
	return at.failures
}

// forget drops id once its request is settled.
func (a *attempts) forget(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e, ok := a.byID[id]; ok {
		a.order.Remove(e)
		delete(a.byID, id)
	}
}

// failures reports the failed attempts recorded for id.
func (a *attempts) failures(id string, now time.Time) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expire(now)
	if e, ok := a.byID[id]; ok {
		return e.Value.(*attempt).failures
	}
	return 0
}

func (a *attempts) expire(now time.Time) {
	for e := a.order.Front(); e != nil; e = a.order.Front() {
		if now.Sub(e.Value.(*attempt).last) < a.ttl {
			return
		}
		delete(a.byID, e.Value.(*attempt).id)
		a.order.Remove(e)
	}
}
