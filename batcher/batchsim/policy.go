package batchsim

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jetinfer/jetinfer/batcher"
	"github.com/jetinfer/jetinfer/trt"
)

// Batch is one engine call chosen by a policy.
type Batch struct {
	Profile   int
	Size      int // engine batch dimension (padded)
	Seq       int // padded sequence length
	Parts     []Part
	Positions int // real positions: the sum of the rows' lengths
}

// Part is the rows of one request carried by a batch.
type Part struct {
	ID   uint64
	Rows int
}

// Policy is a batching policy driven by the simulation the way a worker
// drives the real batcher: Add on arrival, Next whenever the engine is
// free, NextWakeup for the timer, Expired for requests given up.
type Policy interface {
	Name() string
	Add(now time.Time, r *Request) error
	Next(now time.Time) (Batch, bool)
	NextWakeup() (time.Time, bool)
	Expired(now time.Time) []uint64
}

// Jetinfer adapts batcher.Batcher to Policy.
type Jetinfer struct {
	b     *batcher.Batcher
	epoch time.Time
}

// NewJetinfer returns jetinfer's batcher as a Policy; epoch is the trace's
// time zero.
func NewJetinfer(spec trt.Spec, cost *batcher.CostModel, cfg batcher.Config, epoch time.Time) (*Jetinfer, error) {
	b, err := batcher.New(spec, cost, cfg)
	if err != nil {
		return nil, err
	}
	return &Jetinfer{b: b, epoch: epoch}, nil
}

// Name implements Policy.
func (j *Jetinfer) Name() string { return "jetinfer" }

// Add implements Policy.
func (j *Jetinfer) Add(now time.Time, r *Request) error {
	it := batcher.Item{ID: r.ID, Rows: r.Rows(), SeqLens: r.Lens, Arrival: j.epoch.Add(r.Arrival), Priority: r.Priority}
	if r.HasDL {
		it.Deadline = j.epoch.Add(r.Deadline)
	}
	return j.b.Add(now, it)
}

// Next implements Policy.
func (j *Jetinfer) Next(now time.Time) (Batch, bool) {
	p, ok := j.b.Next(now)
	if !ok {
		return Batch{}, false
	}
	out := Batch{Profile: p.Profile, Size: p.Batch, Seq: p.Seq}
	for _, s := range p.Slots {
		if n := len(out.Parts); n > 0 && out.Parts[n-1].ID == s.Item {
			out.Parts[n-1].Rows += s.Rows
		} else {
			out.Parts = append(out.Parts, Part{ID: s.Item, Rows: s.Rows})
		}
	}
	for _, n := range p.Lens {
		out.Positions += n
	}
	return out, true
}

// NextWakeup implements Policy.
func (j *Jetinfer) NextWakeup() (time.Time, bool) { return j.b.NextWakeup() }

// Expired implements Policy.
func (j *Jetinfer) Expired(now time.Time) []uint64 { return j.b.Expired(now) }

// TritonConfig is the configuration of a Triton-style dynamic batcher.
type TritonConfig struct {
	MaxBatch       int           // max_batch_size
	PreferredSizes []int         // preferred_batch_size
	MaxQueueDelay  time.Duration // max_queue_delay_microseconds
}

// Triton models Triton Inference Server's dynamic batcher: requests are
// atomic and served in priority order, FIFO within a level; when the
// engine is free it sends the largest prefix of the queue whose size is a
// preferred batch size, else the whole prefix that fits MaxBatch once that
// prefix cannot grow (the next request does not fit) or the oldest request
// has waited MaxQueueDelay. Each batch is padded to its longest row. A
// request whose deadline passes while queued is rejected (Triton's queue
// policy timeout); nothing predicts whether a deadline can be met.
type Triton struct {
	cfg     TritonConfig
	spec    trt.Spec
	epoch   time.Time
	levels  []int              // priority levels, highest first
	queues  map[int][]*Request // FIFO per level; may hold dropped requests
	byDL    []*Request         // requests with a deadline, by deadline
	dropped map[uint64]bool    // rejected or taken
	expired []uint64
	wake    time.Time
	wakeOK  bool
}

// NewTriton returns the Triton-style policy.
func NewTriton(spec trt.Spec, cfg TritonConfig, epoch time.Time) *Triton {
	return &Triton{cfg: cfg, spec: spec, epoch: epoch, queues: map[int][]*Request{}, dropped: map[uint64]bool{}}
}

// Name implements Policy.
func (t *Triton) Name() string { return "triton-style" }

// Add implements Policy. Requests must be added in arrival order.
func (t *Triton) Add(now time.Time, r *Request) error {
	if r.Rows() > t.cfg.MaxBatch {
		return fmt.Errorf("request %d has %d rows, max batch %d", r.ID, r.Rows(), t.cfg.MaxBatch)
	}
	if _, ok := t.queues[r.Priority]; !ok {
		i, _ := slices.BinarySearchFunc(t.levels, r.Priority, func(a, b int) int { return b - a })
		t.levels = slices.Insert(t.levels, i, r.Priority)
	}
	t.queues[r.Priority] = append(t.queues[r.Priority], r)
	if r.HasDL {
		j, _ := slices.BinarySearchFunc(t.byDL, r, func(a, b *Request) int {
			if a.Deadline != b.Deadline {
				return int(a.Deadline - b.Deadline)
			}
			return int(a.ID) - int(b.ID)
		})
		t.byDL = slices.Insert(t.byDL, j, r)
	}
	t.wakeOK = false
	return nil
}

// dropTimedOut rejects queued requests whose deadline has passed.
func (t *Triton) dropTimedOut(now time.Time) {
	n := 0
	for n < len(t.byDL) && now.After(t.epoch.Add(t.byDL[n].Deadline)) {
		if r := t.byDL[n]; !t.dropped[r.ID] {
			t.dropped[r.ID] = true
			t.expired = append(t.expired, r.ID)
		}
		n++
	}
	t.byDL = t.byDL[n:]
	for _, l := range t.levels {
		q := t.queues[l]
		for len(q) > 0 && t.dropped[q[0].ID] {
			q = q[1:]
		}
		t.queues[l] = q
	}
}

// each calls f on the live queued requests in service order until f
// returns false.
func (t *Triton) each(f func(*Request) bool) {
	for _, l := range t.levels {
		for _, r := range t.queues[l] {
			if !t.dropped[r.ID] && !f(r) {
				return
			}
		}
	}
}

// take removes the first n live requests in service order.
func (t *Triton) take(n int) []*Request {
	var out []*Request
	t.each(func(r *Request) bool {
		out = append(out, r)
		t.dropped[r.ID] = true
		return len(out) < n
	})
	for _, l := range t.levels {
		q := t.queues[l]
		for len(q) > 0 && t.dropped[q[0].ID] {
			q = q[1:]
		}
		t.queues[l] = q
	}
	return out
}

// Next implements Policy.
func (t *Triton) Next(now time.Time) (Batch, bool) {
	n, _, ok := t.ready(now)
	if !ok {
		return Batch{}, false
	}
	return padToLongest(t.spec, t.take(n)), true
}

// ready drops timed-out requests and says whether a batch goes now: its
// request count and the arrival of the oldest queued request. When none
// goes it sets the wakeup.
func (t *Triton) ready(now time.Time) (n int, oldest time.Duration, ok bool) {
	t.dropTimedOut(now)
	t.wakeOK = false
	size, n, preferredN, full := 0, 0, 0, false
	t.each(func(r *Request) bool {
		if size+r.Rows() > t.cfg.MaxBatch {
			full = true
			return false
		}
		size += r.Rows()
		n++
		if slices.Contains(t.cfg.PreferredSizes, size) {
			preferredN = n
		}
		return true
	})
	if n == 0 {
		return 0, 0, false
	}
	oldest = time.Duration(math.MaxInt64)
	for _, l := range t.levels {
		if q := t.queues[l]; len(q) > 0 { // fronts are live after dropTimedOut
			oldest = min(oldest, q[0].Arrival)
		}
	}
	switch {
	case preferredN > 0:
		n = preferredN
	case full, now.Sub(t.epoch.Add(oldest)) >= t.cfg.MaxQueueDelay:
	default:
		t.wake, t.wakeOK = t.epoch.Add(oldest+t.cfg.MaxQueueDelay), true
		if len(t.byDL) > 0 {
			t.wake = minTime(t.wake, t.epoch.Add(t.byDL[0].Deadline+1))
		}
		return 0, oldest, false
	}
	return n, oldest, true
}

// NextWakeup implements Policy.
func (t *Triton) NextWakeup() (time.Time, bool) { return t.wake, t.wakeOK }

// Expired implements Policy.
func (t *Triton) Expired(now time.Time) []uint64 {
	t.dropTimedOut(now)
	out := t.expired
	t.expired = nil
	return out
}

// Unbatched runs every request alone, in priority then arrival order,
// padded to its longest row; a request whose deadline passes while queued
// is rejected.
type Unbatched struct{ Triton }

// NewUnbatched returns the no-batching policy.
func NewUnbatched(spec trt.Spec, maxBatch int, epoch time.Time) *Unbatched {
	return &Unbatched{*NewTriton(spec, TritonConfig{MaxBatch: maxBatch}, epoch)}
}

// Name implements Policy.
func (u *Unbatched) Name() string { return "no-batching" }

// Next implements Policy.
func (u *Unbatched) Next(now time.Time) (Batch, bool) {
	u.dropTimedOut(now)
	u.wakeOK = false
	reqs := u.take(1)
	if len(reqs) == 0 {
		return Batch{}, false
	}
	return padToLongest(u.spec, reqs), true
}

// padToLongest makes one batch of whole requests padded to the longest
// row, under the first profile that accepts the shape.
func padToLongest(spec trt.Spec, reqs []*Request) Batch {
	var b Batch
	for _, r := range reqs {
		b.Parts = append(b.Parts, Part{ID: r.ID, Rows: r.Rows()})
		b.Size += r.Rows()
		b.Seq = max(b.Seq, r.MaxLen())
		for _, n := range r.Lens {
			b.Positions += n
		}
	}
	b.Profile, b.Size, b.Seq = profileFor(spec, b.Size, b.Seq)
	return b
}

// profileFor returns the first profile accepting a batch of n rows at
// length s, with n and s raised to that profile's minimums.
func profileFor(spec trt.Spec, n, s int) (int, int, int) {
	for i, p := range spec.Profiles {
		ok := true
		bn, bs := n, s
		for _, in := range spec.Inputs {
			lo, hi := p.Min[in.Name], p.Max[in.Name]
			bn = max(bn, int(lo[0]))
			if bn > int(hi[0]) {
				ok = false
			}
			for d := 1; d < len(in.Shape); d++ {
				if in.Shape[d] == trt.Dynamic {
					bs = max(bs, int(lo[d]))
					if bs > int(hi[d]) {
						ok = false
					}
				}
			}
		}
		if ok {
			return i, bn, bs
		}
	}
	return 0, n, s
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Bucketed is the strongest fair peer of a shape-aware batcher that we
// know of: Triton's dynamic batcher fed by clients that bucket lengths
// themselves. The client splits each request by row length into one
// sub-request per bucket (rows padded to the bucket's length, so every
// sub-request of a bucket has the same shape), and Triton keeps one
// queue per shape, batching only identical shapes, with preferred batch
// sizes and a max queue delay per queue (TritonConfig). When the engine
// is free it runs a batch from the queue whose oldest request arrived
// first among the queues that have a batch ready. A request is done when
// all its sub-requests are. Triton never pads across requests beyond the
// bucket: padding is the rounding up to the bucket only.
type Bucketed struct {
	name    string
	spec    trt.Spec
	buckets []int     // ascending padded lengths
	queues  []*Triton // one per bucket
	wake    time.Time
	wakeOK  bool
}

// NewBucketed returns the bucketing client + Triton peer for the given
// padded lengths (ascending; the last must cover the longest row).
func NewBucketed(name string, spec trt.Spec, buckets []int, cfg TritonConfig, epoch time.Time) *Bucketed {
	b := &Bucketed{name: name, spec: spec, buckets: buckets}
	for range buckets {
		b.queues = append(b.queues, NewTriton(spec, cfg, epoch))
	}
	return b
}

// MultipleBuckets returns the lengths step, 2·step, … up to at least max.
func MultipleBuckets(step, maxLen int) []int {
	var out []int
	for n := step; ; n += step {
		out = append(out, n)
		if n >= maxLen {
			return out
		}
	}
}

// PowerOfTwoBuckets returns the powers of two from the least one at or
// above minLen up to at least maxLen.
func PowerOfTwoBuckets(minLen, maxLen int) []int {
	n := 1
	for n < minLen {
		n *= 2
	}
	var out []int
	for ; ; n *= 2 {
		out = append(out, n)
		if n >= maxLen {
			return out
		}
	}
}

// Name implements Policy.
func (b *Bucketed) Name() string { return b.name }

// Add implements Policy: the client's split by bucket.
func (b *Bucketed) Add(now time.Time, r *Request) error {
	parts := make(map[int][]int)
	for _, n := range r.Lens {
		k, _ := slices.BinarySearch(b.buckets, n)
		if k == len(b.buckets) {
			return fmt.Errorf("request %d: row length %d above the largest bucket %d", r.ID, n, b.buckets[len(b.buckets)-1])
		}
		parts[k] = append(parts[k], n)
	}
	for k := range b.buckets {
		if lens, ok := parts[k]; ok {
			sub := *r
			sub.Lens = lens
			if err := b.queues[k].Add(now, &sub); err != nil {
				return err
			}
		}
	}
	b.wakeOK = false
	return nil
}

// Next implements Policy.
func (b *Bucketed) Next(now time.Time) (Batch, bool) {
	best, bestN := -1, 0
	var bestOldest time.Duration
	b.wakeOK = false
	for k, q := range b.queues {
		n, oldest, ok := q.ready(now)
		if ok && (best < 0 || oldest < bestOldest) {
			best, bestN, bestOldest = k, n, oldest
		}
		if w, ok := q.NextWakeup(); ok && (!b.wakeOK || w.Before(b.wake)) {
			b.wake, b.wakeOK = w, true
		}
	}
	if best < 0 {
		return Batch{}, false
	}
	bt := padToLongest(b.spec, b.queues[best].take(bestN))
	// Every row was padded by the client to the bucket's length.
	bt.Profile, bt.Size, bt.Seq = profileFor(b.spec, bt.Size, b.buckets[best])
	return bt, true
}

// NextWakeup implements Policy.
func (b *Bucketed) NextWakeup() (time.Time, bool) { return b.wake, b.wakeOK }

// Expired implements Policy: a request is given up once any of its
// sub-requests timed out (the client cannot assemble it).
func (b *Bucketed) Expired(now time.Time) []uint64 {
	var out []uint64
	for _, q := range b.queues {
		out = append(out, q.Expired(now)...)
	}
	return out
}
