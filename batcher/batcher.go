package batcher

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jetinfer/jetinfer/trt"
)

// Item is one request's rows as the batcher sees them.
type Item struct {
	// ID is the caller's handle; Plan slots, Expired and the Assembler
	// refer to the item by it. It must be unique among queued items.
	ID uint64
	// Rows is the number of samples (at least 1).
	Rows int
	// SeqLens holds each row's length along the sequence dimension
	// (len(SeqLens) == Rows) when the engine has one; nil otherwise.
	SeqLens []int
	// Arrival is when the item was received; zero means the now passed to
	// Add. Queueing delay is measured from it.
	Arrival time.Time
	// Deadline, when not zero, is when the item's result is due. An item
	// that can no longer finish by then is reported by Expired instead of
	// being run.
	Deadline time.Time
	// Priority orders items: higher is served first among rows that are
	// ready to go. Default 0.
	Priority int
}

// Slot maps rows of one item into a batch: item rows [ItemRow,
// ItemRow+Rows) go to batch rows [BatchRow, BatchRow+Rows).
type Slot struct {
	Item     uint64
	ItemRow  int
	Rows     int
	BatchRow int
}

// Plan is one batch to run now.
type Plan struct {
	// Profile is the optimization profile to run under.
	Profile int
	// Batch is the engine batch dimension; rows [Rows, Batch) are padding
	// (present only when the profile's minimum batch exceeds Rows).
	Batch int
	// Seq is the padded sequence length; 0 without a sequence dimension.
	Seq int
	// Rows is the number of real rows, the sum of the slots' Rows.
	Rows int
	// Slots place item rows into batch rows [0, Rows), in item admission
	// order and ascending item row.
	Slots []Slot
	// Lens holds, per batch row, the row's real sequence length (0 for
	// padding rows); nil without a sequence dimension.
	Lens []int
	// Cost is the predicted engine latency, profile switch included.
	Cost time.Duration
}

// Padding returns the fraction of the batch's computed positions that
// are padding: 1 - Σ Lens / (Batch·Seq), or 1 - Rows/Batch without a
// sequence dimension.
func (p Plan) Padding() float64 {
	if p.Batch == 0 {
		return 0
	}
	if p.Seq == 0 {
		return 1 - float64(p.Rows)/float64(p.Batch)
	}
	used := 0
	for _, n := range p.Lens {
		used += n
	}
	return 1 - float64(used)/float64(p.Batch*p.Seq)
}

// item is the batcher's state for one queued Item.
type item struct {
	id       uint64
	seq      uint64 // admission order, the final tie-break everywhere
	rows     int
	lens     []int    // nil without a sequence dimension
	cls      []uint16 // class per row; nil without a sequence dimension
	prio     int
	arrival  int64
	deadline int64   // noDeadline when none
	due      int64   // when the item must anchor a batch
	amort    float64 // Σ ideal cost of the remaining rows (ns)

	remaining int
	taken     []bool // per row: already placed in a plan
	mark      []bool // scratch: rows pre-placed in the anchored window
	cmax      int    // largest class among remaining rows; -1 when stale
	gone      bool   // fully planned, expired or removed
}

const noDeadline = math.MaxInt64

type rowRef struct {
	it  *item
	row int32
}

func (r rowRef) class() int {
	if r.it.cls == nil {
		return 0
	}
	return int(r.it.cls[r.row])
}

// Batcher decides which queued rows run together, padded to which shape,
// and when. See the package documentation for the policy and for how a
// worker drives it. A Batcher is not safe for concurrent use: one
// goroutine owns it.
type Batcher struct {
	cfg      Config
	l        layout
	cost     *CostModel
	table    [][][]float64 // [profile][class][n] predicted ns for n real rows; +Inf when the profile cannot run it
	maxN     []int         // per class: most rows any profile runs at that class
	bp       []bool        // per row count: a grid batch size or profile limit (cost slope may change)
	ideal    []float64     // per class: cheapest ns per row at that class
	maxDelay int64
	margin   float64 // 1 + Config.CostMargin
	maxPad   float64 // Config.MaxPadding

	classes [][]rowRef // queued rows per class, sorted by rowLess
	touched []bool     // scratch: classes to compact
	items   map[uint64]*item
	order   []*item // live items in admission order (compacted lazily)
	dl      []*item // live items with a deadline, by deadline (compacted lazily)
	queued  int     // queued rows
	nextSeq uint64

	epoch     time.Time
	haveEpoch bool
	now       int64
	last      int // profile of the last plan, -1 before the first
	expired   []uint64

	wake      int64
	wakeOK    bool
	wakeStale bool

	buf []rowRef // scratch for plan building
}

// New returns a Batcher for an engine with the given spec, using cost to
// choose shapes. cost must cover every usable profile of spec (see
// ErrCostMismatch).
func New(spec trt.Spec, cost *CostModel, cfg Config) (*Batcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validating batcher config: %w", err)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validateFor(spec); err != nil {
		return nil, fmt.Errorf("validating batcher config: %w", err)
	}
	l, err := analyze(spec, cfg)
	if err != nil {
		return nil, fmt.Errorf("analyzing engine spec: %w", err)
	}
	if cost == nil {
		return nil, fmt.Errorf("batcher needs a measured cost model")
	}
	if err := cost.covers(l); err != nil {
		return nil, err
	}
	b := &Batcher{
		cfg: cfg, l: l, cost: cost, maxDelay: int64(cfg.MaxDelay), margin: 1 + cfg.CostMargin, maxPad: cfg.MaxPadding,
		classes: make([][]rowRef, len(l.classes)),
		touched: make([]bool, len(l.classes)),
		items:   make(map[uint64]*item),
		last:    -1,
	}
	b.buildTables()
	return b, nil
}

func (b *Batcher) buildTables() {
	K := len(b.l.classes)
	b.bp = make([]bool, b.l.maxBatch+2)
	for p, r := range b.l.profiles {
		if !r.usable {
			continue
		}
		for _, n := range b.cost.profiles[p].Batches {
			if n < len(b.bp) {
				b.bp[n] = true
			}
		}
		b.bp[min(r.bmin, len(b.bp)-1)] = true
		b.bp[min(r.bmax, len(b.bp)-1)] = true
	}
	b.table = make([][][]float64, len(b.l.profiles))
	b.maxN = make([]int, K)
	b.ideal = make([]float64, K)
	for k := range b.ideal {
		b.ideal[k] = math.Inf(1)
	}
	for p, r := range b.l.profiles {
		b.table[p] = make([][]float64, K)
		for k, c := range b.l.classes {
			row := make([]float64, b.l.maxBatch+1)
			for n := range row {
				row[n] = math.Inf(1)
				if n == 0 || !r.fits(n, c) {
					continue
				}
				bp, sp := r.padded(n, c)
				row[n] = b.cost.latencyNS(p, bp, sp)
				b.maxN[k] = max(b.maxN[k], n)
				b.ideal[k] = min(b.ideal[k], row[n]/float64(n))
			}
			b.table[p][k] = row
		}
	}
}

// Inputs describes, in engine input order, how to build each input tensor
// of a plan (see Input.Gather).
func (b *Batcher) Inputs() []Input { return slices.Clone(b.l.inputs) }

// Buckets returns the padded sequence lengths the batcher groups rows by
// (nil without a sequence dimension).
func (b *Batcher) Buckets() []int {
	if !b.l.hasSeq {
		return nil
	}
	return slices.Clone(b.l.classes)
}

// MaxBatch is the largest batch any profile accepts.
func (b *Batcher) MaxBatch() int { return b.l.maxBatch }

// Len returns the number of queued items and rows (rows of items that
// are partly planned count once planned rows are gone).
func (b *Batcher) Len() (items, rows int) { return len(b.items), b.queued }

func (b *Batcher) at(t time.Time) int64 {
	if !b.haveEpoch {
		b.epoch, b.haveEpoch = t, true
	}
	d := t.Sub(b.epoch)
	return int64(d)
}

func (b *Batcher) setNow(now time.Time) {
	b.now = b.at(now)
}

// classOf returns the bucket of a row of length n, or -1 if no profile
// accepts it.
func (b *Batcher) classOf(n int) int {
	k, _ := slices.BinarySearch(b.l.classes, n)
	if k == len(b.l.classes) {
		return -1
	}
	return k
}

// Add queues an item. It returns an error wrapping ErrInvalidItem when the
// item can never run (answer INVALID_ARGUMENT), or ErrQueueFull when
// MaxQueueRows would be exceeded (stop pulling, retry later).
func (b *Batcher) Add(now time.Time, it Item) error {
	b.setNow(now)
	if it.Rows < 1 {
		return fmt.Errorf("%w: item %d has %d rows", ErrInvalidItem, it.ID, it.Rows)
	}
	if _, dup := b.items[it.ID]; dup {
		return fmt.Errorf("%w: item %d is already queued", ErrInvalidItem, it.ID)
	}
	x := &item{id: it.ID, seq: b.nextSeq, rows: it.Rows, prio: it.Priority, remaining: it.Rows, deadline: noDeadline, cmax: -1}
	if b.l.hasSeq {
		if len(it.SeqLens) != it.Rows {
			return fmt.Errorf("%w: item %d has %d sequence lengths for %d rows", ErrInvalidItem, it.ID, len(it.SeqLens), it.Rows)
		}
		x.lens = slices.Clone(it.SeqLens)
		x.cls = make([]uint16, it.Rows)
		for r, n := range it.SeqLens {
			k := b.classOf(n)
			if n < b.l.minLen || k < 0 {
				return fmt.Errorf("%w: item %d row %d has sequence length %d outside [%d, %d]", ErrInvalidItem, it.ID, r, n, b.l.minLen, b.l.classes[len(b.l.classes)-1])
			}
			x.cls[r] = uint16(k)
		}
	} else if len(it.SeqLens) != 0 {
		return fmt.Errorf("%w: item %d has sequence lengths but the engine has no dynamic sequence dimension", ErrInvalidItem, it.ID)
	}
	if b.queued+it.Rows > b.cfg.MaxQueueRows {
		return fmt.Errorf("%w: %d rows queued, item %d adds %d, limit %d", ErrQueueFull, b.queued, it.ID, it.Rows, b.cfg.MaxQueueRows)
	}
	x.arrival = b.now
	if !it.Arrival.IsZero() {
		x.arrival = b.at(it.Arrival)
	}
	x.taken = make([]bool, it.Rows)
	x.due = x.arrival + b.maxDelay
	if !it.Deadline.IsZero() {
		x.deadline = b.at(it.Deadline)
		cm := b.maxClass(x)
		// Leave room for one full batch of fill on top of the item's own
		// minimal finishing time.
		byDL := x.deadline - int64(b.needNS(x)) - int64(b.fullNS(cm)*b.margin)
		x.due = min(x.due, byDL)
		i, _ := slices.BinarySearchFunc(b.dl, x, func(p, q *item) int {
			if c := cmp.Compare(p.deadline, q.deadline); c != 0 {
				return c
			}
			return cmp.Compare(p.seq, q.seq)
		})
		b.dl = slices.Insert(b.dl, i, x)
	}
	b.nextSeq++
	b.items[it.ID] = x
	b.order = append(b.order, x)
	for r := range it.Rows {
		ref := rowRef{it: x, row: int32(r)}
		k := ref.class()
		// Rows of one item are added in order and a later item usually
		// sorts last, so this is mostly an append.
		cl := b.classes[k]
		i := len(cl)
		if i > 0 && b.rowLess(cl[i-1], ref) > 0 {
			i, _ = slices.BinarySearchFunc(cl, ref, b.rowLess)
		}
		b.classes[k] = slices.Insert(cl, i, ref)
		x.amort += b.ideal[k]
	}
	b.queued += it.Rows
	b.wakeStale = true
	return nil
}

// Remove drops an item's queued rows (cancellation, a failed batch); rows
// already planned are not affected. It reports whether the item was
// queued.
func (b *Batcher) Remove(id uint64) bool {
	x, ok := b.items[id]
	if !ok {
		return false
	}
	b.drop(x)
	b.wakeStale = true
	return true
}

// drop removes every queued row of x and forgets it.
func (b *Batcher) drop(x *item) {
	for r := range x.rows {
		if !x.taken[r] {
			b.touched[rowRef{it: x, row: int32(r)}.class()] = true
		}
	}
	for k, t := range b.touched {
		if t {
			b.classes[k] = slices.DeleteFunc(b.classes[k], func(q rowRef) bool { return q.it == x })
			b.touched[k] = false
		}
	}
	b.queued -= x.remaining
	x.remaining = 0
	x.gone = true
	delete(b.items, x.id)
}

// maxClass returns the largest class among x's remaining rows.
func (b *Batcher) maxClass(x *item) int {
	if x.cmax >= 0 {
		return x.cmax
	}
	m := 0
	if x.cls != nil {
		for r, k := range x.cls {
			if !x.taken[r] && int(k) > m {
				m = int(k)
			}
		}
	}
	x.cmax = m
	return m
}

// finishNS is the least predicted time to run rows rows at class k alone,
// in as few full batches as the best profile allows.
func (b *Batcher) finishNS(rows, k int) float64 {
	if rows <= 0 {
		return 0
	}
	best := math.Inf(1)
	for p, r := range b.l.profiles {
		if !r.fits(1, b.l.classes[k]) {
			continue
		}
		n := min(r.bmax, b.l.maxBatch)
		full, rest := rows/n, rows%n
		v := float64(full) * b.table[p][k][n]
		if rest > 0 {
			v += b.table[p][k][rest]
		}
		best = min(best, v)
	}
	return best
}

// needNS is the time x's remaining rows need alone, safety margin
// included.
func (b *Batcher) needNS(x *item) float64 {
	return b.finishNS(x.remaining, b.maxClass(x)) * b.margin
}

// fullNS is the cost of the largest batch any profile runs at class k.
func (b *Batcher) fullNS(k int) float64 {
	best := math.Inf(1)
	for p := range b.l.profiles {
		best = min(best, b.table[p][k][b.maxN[k]])
	}
	if math.IsInf(best, 1) {
		return 0
	}
	return best
}

// Expired removes and returns, in admission order, the items whose
// deadline can no longer be met: even run alone now, their remaining rows
// would finish after the deadline (predicted latency inflated by
// Config.CostMargin). Answer each with DEADLINE_EXCEEDED. Items found
// expired during Next or Flush are returned here too.
func (b *Batcher) Expired(now time.Time) []uint64 {
	b.setNow(now)
	b.expire()
	out := b.expired
	b.expired = nil
	return out
}

// expire moves infeasible items to b.expired.
func (b *Batcher) expire() {
	n := 0
	for _, x := range b.order {
		if x.gone {
			continue
		}
		b.order[n] = x
		n++
		if x.deadline == noDeadline {
			continue
		}
		if b.now+int64(b.needNS(x)) > x.deadline {
			b.expired = append(b.expired, x.id)
			b.drop(x)
			b.wakeStale = true
		}
	}
	clear(b.order[n:])
	b.order = b.order[:n]
}

// NextWakeup returns when Next (or Expired) should be called again if
// nothing is added meanwhile: the earliest time a waiting batch becomes
// worth running, a row reaches MaxDelay, or an item's deadline becomes
// unreachable. ok is false when nothing is queued. It reflects the state
// after the last call that passed a time.
func (b *Batcher) NextWakeup() (time.Time, bool) {
	if b.wakeStale {
		b.decide(false, false)
	}
	if !b.wakeOK {
		return time.Time{}, false
	}
	return b.epoch.Add(time.Duration(b.wake)), true
}

// Next returns the batch to run now, if the policy says one should run:
// call it whenever the engine can take a batch (after Add, when a batch
// finishes, when the NextWakeup timer fires). The plan's rows leave the
// queue. Expired items are skipped; collect them with Expired.
func (b *Batcher) Next(now time.Time) (Plan, bool) {
	b.setNow(now)
	b.expire()
	return b.decide(false, true)
}

// Flush is Next without waiting for fuller batches: it returns the best
// batch of queued rows if there is any. Use it when draining.
func (b *Batcher) Flush(now time.Time) (Plan, bool) {
	b.setNow(now)
	b.expire()
	return b.decide(true, true)
}

// window is one candidate batch.
type window struct {
	ok      bool
	anchor  *item
	top     int // class that sets the padded length
	n       int // real rows
	profile int
	cost    float64
	ratio   float64
	prio    int
	oldest  int64
}

// acc accumulates the rows of a growing window.
type acc struct {
	n        int
	ideal    float64
	oldest   int64
	prio     int
	deadline int64
	d1ideal  float64
	real     int  // Σ real sequence lengths
	exempt   bool // the anchor's own rows alone: no padding cap
}

func (a *acc) reset() {
	*a = acc{oldest: math.MaxInt64, prio: math.MinInt, deadline: noDeadline}
}

func (a *acc) add(b *Batcher, r rowRef, d1 *item) {
	a.n++
	a.ideal += b.ideal[r.class()]
	if r.it.lens != nil {
		a.real += r.it.lens[r.row]
	}
	a.oldest = min(a.oldest, r.it.arrival)
	a.prio = max(a.prio, r.it.prio)
	a.deadline = min(a.deadline, r.it.deadline)
	if r.it == d1 {
		a.d1ideal += b.ideal[r.class()]
	}
}

// pressure summarizes the queued deadline items served earliest deadline
// first: d1 is the first of them and slack the least, over items i, of
// deadline_i - now - (time items 1..i need), where an item needs the
// ideal (full, unpadded batch) cost of its rows plus the safety margin. A
// batch that takes longer than slack, less what it does for d1, would
// make some deadline unreachable. Items that cannot be met behind the
// earlier ones are left out, so slack is never negative.
type pressure struct {
	d1    *item
	slack int64
}

// rowLess orders the rows of one bucket, best first: rows with a
// deadline by deadline (so a batch around the earliest deadline also
// carries its other rows and the next deadlines), then by priority, due
// time and admission.
func (b *Batcher) rowLess(x, y rowRef) int {
	if c := cmp.Compare(x.it.deadline, y.it.deadline); c != 0 {
		return c
	}
	if c := cmp.Compare(y.it.prio, x.it.prio); c != 0 {
		return c
	}
	if c := cmp.Compare(x.it.due, y.it.due); c != 0 {
		return c
	}
	if c := cmp.Compare(x.it.seq, y.it.seq); c != 0 {
		return c
	}
	return cmp.Compare(x.row, y.row)
}

func itemBefore(x, y *item) bool {
	if x.prio != y.prio {
		return x.prio > y.prio
	}
	if x.due != y.due {
		return x.due < y.due
	}
	return x.seq < y.seq
}

// decide evaluates the candidate windows at b.now. With take it removes
// and returns the chosen batch; it always refreshes the wakeup time.
func (b *Batcher) decide(force, take bool) (Plan, bool) {
	b.wakeStale = false
	b.wakeOK = false
	if b.queued == 0 {
		return Plan{}, false
	}
	wake := int64(math.MaxInt64)
	// Deadline demand, earliest deadline first.
	pr := pressure{slack: math.MaxInt64}
	var cum float64
	n := 0
	for _, x := range b.dl {
		if x.gone {
			continue
		}
		b.dl[n] = x
		n++
		wake = min(wake, x.deadline-int64(b.needNS(x))+1) // when it would expire
		need := x.amort * b.margin
		slack := x.deadline - b.now - int64(cum+need)
		if slack < 0 {
			// Cannot be met behind the earlier deadlines: reserve no time
			// for it (it still runs if it gets the chance, and is
			// reported by Expired once it cannot finish even alone).
			continue
		}
		cum += need
		if pr.d1 == nil {
			pr.d1 = x
		}
		pr.slack = min(pr.slack, slack)
	}
	clear(b.dl[n:])
	b.dl = b.dl[:n]
	// The most urgent item that is due, and the next due time.
	var anchor *item
	for _, x := range b.order {
		if x.gone {
			continue
		}
		if x.due <= b.now {
			if anchor == nil || itemBefore(x, anchor) {
				anchor = x
			}
		} else {
			wake = min(wake, x.due)
		}
	}
	// Deadlines are hard, MaxDelay and priority are not: the earliest
	// deadline goes first once it is due, or earlier when the deadline
	// demand leaves less slack than one full batch.
	if pr.d1 != nil {
		th := int64(b.fullNS(b.maxClass(pr.d1)) * b.margin)
		if pr.d1.due <= b.now || pr.slack <= th {
			anchor = pr.d1
		} else {
			wake = min(wake, b.now+pr.slack-th)
		}
	}
	var best window
	if anchor != nil {
		best = b.anchored(anchor, &pr)
	}
	if !best.ok {
		var w int64
		best, w = b.free(force, &pr)
		wake = min(wake, w)
	}
	if !best.ok && anchor != nil && pr.d1 != nil && pr.d1 != anchor {
		// Rows are due but every batch would endanger a deadline: serve
		// the earliest deadline early rather than leave the engine idle.
		best = b.anchored(pr.d1, &pr)
	}
	if !best.ok && force {
		// Draining: the most urgent item's own rows always make a batch.
		for _, x := range b.order {
			if !x.gone && (anchor == nil || itemBefore(x, anchor)) {
				anchor = x
			}
		}
		best = b.anchored(anchor, &pr)
	}
	if !best.ok || !take {
		if wake != math.MaxInt64 {
			b.wake, b.wakeOK = max(wake, b.now), true
		}
		if best.ok && !take {
			b.wake, b.wakeOK = b.now, true
		}
		return Plan{}, false
	}
	p := b.build(best)
	b.wakeStale = true
	return p, true
}

// evaluate prices a window of a.n rows padded to class top and checks it
// against the deadlines: ok is false when it would take more than allow
// from the deadline items queued behind it (see pressure); stop is true
// when no larger window at this class can be ok either (no profile runs
// it, or a carried row's deadline is missed).
func (b *Batcher) evaluate(a *acc, top int, allow float64) (p int, cost float64, ok bool, stop bool) {
	cost = math.Inf(1)
	p = -1
	for q := range b.l.profiles {
		v := b.table[q][top][a.n]
		if math.IsInf(v, 1) {
			continue
		}
		v += float64(b.cost.SwitchCost(b.last, q))
		if v < cost {
			p, cost = q, v
		}
	}
	if p < 0 {
		return p, cost, false, true
	}
	if b.maxPad < 1 && b.l.hasSeq && !a.exempt {
		bn, sn := b.l.profiles[p].padded(a.n, b.l.classes[top])
		if 1-float64(a.real)/float64(bn*sn) > b.maxPad {
			return p, cost, false, false
		}
	}
	safe := cost * b.margin
	if b.now+int64(safe) > a.deadline {
		return p, cost, false, true
	}
	// The time this batch takes away from the deadline items queued
	// behind it: all of it, less what it does for d1.
	extra := safe - a.d1ideal*b.margin
	if extra > allow {
		return p, cost, false, false
	}
	return p, cost, true, false
}

func better(w, o window) bool {
	if !o.ok {
		return true
	}
	if w.prio != o.prio {
		return w.prio > o.prio
	}
	if w.ratio != o.ratio {
		return w.ratio > o.ratio
	}
	if w.n != o.n {
		return w.n > o.n
	}
	if w.oldest != o.oldest {
		return w.oldest < o.oldest
	}
	return w.top < o.top
}

// free evaluates windows made of the longest queued rows at or below each
// class. A window is eligible once its efficiency ratio (ideal cost of its
// rows over its predicted cost) reaches 1 - age/MaxDelay, age being its
// oldest row's wait; force makes every window eligible. It returns the
// best eligible window and the earliest time an ineligible one becomes
// eligible.
func (b *Batcher) free(force bool, pr *pressure) (window, int64) {
	var best window
	wake := int64(math.MaxInt64)
	var a acc
	for top := len(b.classes) - 1; top >= 0; top-- {
		if len(b.classes[top]) == 0 {
			continue
		}
		a.reset()
		b.scan(&a, top, len(b.classes), nil, pr.d1, func(a *acc) (bool, bool) {
			p, cost, ok, stop := b.evaluate(a, top, float64(pr.slack))
			if !ok {
				return false, stop
			}
			w := window{ok: true, top: top, n: a.n, profile: p, cost: cost, ratio: a.ideal / cost, prio: a.prio, oldest: a.oldest}
			need := (1 - w.ratio) * float64(b.maxDelay)
			if force || float64(b.now-a.oldest) >= need {
				if better(w, best) {
					best = w
				}
			} else {
				wake = min(wake, a.oldest+int64(math.Ceil(need)))
			}
			return true, false
		})
	}
	return best, wake
}

// scan grows window a with the queued rows at or below class top, longest
// first, skipping the rows x has marked, and calls visit on the windows
// worth pricing. Within a run of rows of one bucket the predicted cost is
// linear in the row count between grid batch sizes, so the efficiency
// ratio is monotone there and only the ends of such runs are visited.
// When visit reports a window infeasible (ok false), scan goes back to
// the last feasible end and visits every size from there, as the largest
// feasible window may lie inside the run. It stops when visit says so,
// when no profile takes more rows, or, once rows come from buckets below
// monoBelow (each row no longer than any before it, so padding can only
// grow), when the padding cap would be exceeded; and whenever the padded
// positions gathered so far exceed the cap even at the largest batch.
func (b *Batcher) scan(a *acc, top, monoBelow int, x, d1 *item, visit func(*acc) (ok, stop bool)) {
	type point struct {
		a    acc
		k, i int
	}
	k, i := top, 0
	cp := point{*a, k, i}
	exact := false
	last := -1
	S := b.l.classes[top]
	for a.n < b.maxN[top] {
		for k >= 0 && i >= len(b.classes[k]) {
			k, i = k-1, 0
		}
		if k < 0 {
			break
		}
		r := b.classes[k][i]
		if x != nil && r.it == x && x.mark[r.row] {
			i++
			continue
		}
		if !exact && a.n > cp.a.n && (k != last || b.bp[a.n]) {
			ok, stop := visit(a)
			if stop {
				return
			}
			if !ok {
				exact = true
				*a, k, i = cp.a, cp.k, cp.i
				continue
			}
			cp = point{*a, k, i}
		}
		if b.l.hasSeq && b.maxPad < 1 {
			padded := (a.n+1)*S - a.real - r.it.lens[r.row] // padded positions with r
			if k < monoBelow && a.n+1 >= b.l.maxBmin && float64(padded) > b.maxPad*float64((a.n+1)*S) {
				break
			}
			if float64(padded) > b.maxPad*float64(b.maxN[top]*S) {
				break // padded positions only accumulate: no batch size can dilute them enough
			}
		}
		a.add(b, r, d1)
		i++
		last = k
		if exact {
			if _, stop := visit(a); stop {
				return
			}
		}
	}
	if !exact && a.n > cp.a.n {
		visit(a)
	}
}

// anchored evaluates windows that must carry the due item x's rows of its
// longest class (as many as one batch holds). Fill rows come from the
// longest queued rows at or below each candidate class.
func (b *Batcher) anchored(x *item, pr *pressure) window {
	ja := b.maxClass(x)
	pre := b.buf[:0]
	for r := range x.rows {
		if !x.taken[r] && len(pre) < b.maxN[ja] && (rowRef{it: x, row: int32(r)}).class() == ja {
			pre = append(pre, rowRef{it: x, row: int32(r)})
		}
	}
	b.buf = pre
	if x.mark == nil {
		x.mark = make([]bool, x.rows)
	}
	for _, r := range pre {
		x.mark[r.row] = true
	}
	defer func() {
		for _, r := range pre {
			x.mark[r.row] = false
		}
	}()
	var best window
	var a acc
	start := func() {
		a.reset()
		for _, r := range pre {
			a.add(b, r, pr.d1)
		}
	}
	allow := float64(pr.slack)
	if x == pr.d1 {
		// The earliest deadline itself always gets a batch: at least its
		// own rows, even when the slack estimate says otherwise.
		start()
		if _, cost, _, _ := b.evaluate(&a, ja, math.Inf(1)); !math.IsInf(cost, 1) {
			allow = max(allow, (cost-a.d1ideal)*b.margin)
		}
	}
	for top := ja; top < len(b.classes); top++ {
		if top > ja && len(b.classes[top]) == 0 {
			continue
		}
		start()
		if b.l.hasSeq && top > ja {
			// Even filled with rows of the top length, the batch would
			// pad more than allowed; longer tops only pad more.
			n, S := b.maxN[top], b.l.classes[top]
			if n >= a.n && 1-float64(a.real+(n-a.n)*S)/float64(n*S) > b.maxPad {
				break
			}
		}
		visit := func(a *acc) (bool, bool) {
			p, cost, ok, stop := b.evaluate(a, top, allow)
			if ok {
				w := window{ok: true, anchor: x, top: top, n: a.n, profile: p, cost: cost, ratio: a.ideal / cost, prio: a.prio, oldest: a.oldest}
				if better(w, best) {
					best = w
				}
			}
			return ok, stop
		}
		if top == ja {
			a.exempt = true
			_, stop := visit(&a)
			a.exempt = false
			if stop {
				break // the anchor alone cannot run: nothing larger can
			}
		}
		b.scan(&a, top, ja, x, pr.d1, visit)
	}
	return best
}

// build takes the rows of w out of the queue and lays them out as a Plan.
func (b *Batcher) build(w window) Plan {
	rows := b.buf[:0]
	x := w.anchor
	if x != nil {
		ja := b.maxClass(x)
		for r := range x.rows {
			if !x.taken[r] && len(rows) < b.maxN[ja] && (rowRef{it: x, row: int32(r)}).class() == ja {
				rows = append(rows, rowRef{it: x, row: int32(r)})
			}
		}
		for _, r := range rows {
			x.taken[r.row] = true // excluded from the fill below
		}
	}
	k, i := w.top, 0
	for len(rows) < w.n {
		for i >= len(b.classes[k]) {
			k, i = k-1, 0
		}
		r := b.classes[k][i]
		i++
		if r.it.taken[r.row] {
			continue
		}
		r.it.taken[r.row] = true
		rows = append(rows, r)
	}
	b.buf = rows
	// Remove the taken rows from their classes.
	for _, r := range rows {
		b.touched[r.class()] = true
	}
	for k, t := range b.touched {
		if t {
			b.classes[k] = slices.DeleteFunc(b.classes[k], func(q rowRef) bool { return q.it.taken[q.row] })
			b.touched[k] = false
		}
	}
	slices.SortFunc(rows, func(p, q rowRef) int {
		if c := cmp.Compare(p.it.seq, q.it.seq); c != 0 {
			return c
		}
		return cmp.Compare(p.row, q.row)
	})
	r := b.l.profiles[w.profile]
	batch, seq := r.padded(w.n, b.l.classes[w.top])
	plan := Plan{Profile: w.profile, Batch: batch, Seq: seq, Rows: w.n, Cost: time.Duration(w.cost)}
	if b.l.hasSeq {
		plan.Lens = make([]int, batch)
	}
	for bi, ref := range rows {
		it := ref.it
		if n := len(plan.Slots); n > 0 {
			s := &plan.Slots[n-1]
			if s.Item == it.id && s.ItemRow+s.Rows == int(ref.row) {
				s.Rows++
			} else {
				plan.Slots = append(plan.Slots, Slot{Item: it.id, ItemRow: int(ref.row), Rows: 1, BatchRow: bi})
			}
		} else {
			plan.Slots = append(plan.Slots, Slot{Item: it.id, ItemRow: int(ref.row), Rows: 1, BatchRow: bi})
		}
		if plan.Lens != nil {
			plan.Lens[bi] = it.lens[ref.row]
		}
		it.remaining--
		it.amort = max(it.amort-b.ideal[ref.class()], 0)
		it.cmax = -1
		b.queued--
		if it.remaining == 0 && !it.gone {
			it.gone = true
			delete(b.items, it.id)
		}
	}
	b.last = w.profile
	return plan
}
