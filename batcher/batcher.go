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
	// The fields the planner's scans read per row come first (one cache
	// line).
	seq      uint64 // admission order, the final tie-break everywhere
	deadline int64  // noDeadline when none
	prio     int
	due      int64 // when the item must anchor a batch
	arrival  int64
	taken    []bool // per row: already placed in a plan

	id    uint64
	rows  int
	lens  []int    // nil without a sequence dimension
	cls   []uint16 // class per row; nil without a sequence dimension
	amort float64  // Σ ideal cost of the remaining rows (ns)

	remaining int
	mark      []bool // scratch: rows pre-placed in the anchored window
	cmax      int    // largest class among remaining rows; -1 before it is first known
	cstale    bool   // rows were taken since cmax was found: it may be lower now
	gone      bool   // fully planned, expired or removed

	hpos  [1]int // position in the expiry heap; -1 when absent
	exp   int64  // deadline - needNS: expired once now passes it (deadline items)
	ready bool   // in its level's ready list (else pending)
}

// level holds the items of one priority, by due time then admission:
// pending ones (due after Batcher.promoted) and ready ones (due by then).
// Items that are gone are skipped when they reach a front, so taking an
// item's rows never searches these lists.
type level struct {
	prio    int
	pending sortedList[*item]
	ready   sortedList[*item]
}

// dueOrder orders items by due time, then admission.
func dueOrder(p, q *item) int {
	if c := cmp.Compare(p.due, q.due); c != 0 {
		return c
	}
	return cmp.Compare(p.seq, q.seq)
}

// liveFront returns the first item of l that is not gone, dropping the
// gone ones before it, or nil.
func liveFront(l *sortedList[*item]) *item {
	l.popFrontWhile(func(x *item) bool { return x.gone })
	if l.Len() == 0 {
		return nil
	}
	return l.at(cursor{})
}

const noDeadline = math.MaxInt64

// rowRef is one queued row. It carries the row's class and length so
// that the planner's scans read them without following the item's
// slices.
type rowRef struct {
	it  *item
	row int32
	cls uint16
	ln  int32 // sequence length; 0 without a sequence dimension
}

// ref returns the rowRef of x's row r.
func (x *item) ref(r int) rowRef {
	if x.cls == nil {
		return rowRef{it: x, row: int32(r)}
	}
	return rowRef{it: x, row: int32(r), cls: x.cls[r], ln: int32(x.lens[r])}
}

func (r rowRef) class() int { return int(r.cls) }

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
	breaks   []int         // the row counts bp marks, ascending
	ideal    []float64     // per class: cheapest ns per row at that class
	idealMax []float64     // per class k: the largest ideal of classes 0..k
	swBuf    []float64     // switch cost from the last plan's profile, per profile
	maxDelay int64
	margin   float64 // 1 + Config.CostMargin
	maxPad   float64 // Config.MaxPadding

	classes []sortedList[rowRef] // queued rows per class, sorted by rowLess
	touched []bool               // scratch: classes rows were taken from
	items   map[uint64]*item
	dl      sortedList[*item] // live items with a deadline, by deadline
	dlAmort float64           // Σ amort over dl (an upper bound of the deadline demand)
	dlOps   int               // updates of dlAmort since it was last summed afresh
	// dlFloor bounds from below, over the deadline items in dl order,
	// deadline − margin·(Σ amort of the items up to it): every item's
	// slack in the deadline-demand pass is at least dlFloor − now. Taking
	// rows and removing items only raise that minimum; an insertion may
	// lower the bound (Add); each pass sets it afresh (demand).
	dlFloor   int64
	dlFloorOK bool
	// slackCap exceeds the engine time of any batch with its switch
	// cost, with the margin: beyond it a larger slack changes no decision.
	slackCap int64
	levels   []*level       // by priority, highest first
	levelOf  map[int]*level // by priority
	expiry   itemHeap       // live deadline items by exp
	promoted int64          // items due by then are in ready lists
	queued   int            // queued rows
	nextSeq  uint64

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
		classes: make([]sortedList[rowRef], len(l.classes)),
		touched: make([]bool, len(l.classes)),
		items:   make(map[uint64]*item),
		dl:      newSortedList(dlLess),
		last:    -1,
	}
	for k := range b.classes {
		b.classes[k] = newSortedList(rowLess)
	}
	b.levelOf = make(map[int]*level)
	b.expiry = itemHeap{less: func(x, y *item) bool {
		if x.exp != y.exp {
			return x.exp < y.exp
		}
		return x.seq < y.seq
	}}
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
	// Row counts where some profile's cost may change slope: its grid
	// batch sizes and limits (bp), the feasible range's ends included.
	b.breaks = b.breaks[:0]
	for n := 1; n < len(b.bp); n++ {
		if b.bp[n] {
			b.breaks = append(b.breaks, n)
		}
	}
	maxCost := 0.0
	for _, byClass := range b.table {
		for _, row := range byClass {
			for _, v := range row {
				if !math.IsInf(v, 1) {
					maxCost = max(maxCost, v)
				}
			}
		}
	}
	maxSwitch := 0.0
	for from := range b.l.profiles {
		for to := range b.l.profiles {
			maxSwitch = max(maxSwitch, float64(b.cost.SwitchCost(from, to)))
		}
	}
	b.slackCap = int64((maxCost+maxSwitch)*b.margin*(1+1e-6)) + 1000
	b.idealMax = make([]float64, K)
	for k := range b.idealMax {
		b.idealMax[k] = b.ideal[k]
		if k > 0 {
			b.idealMax[k] = max(b.idealMax[k], b.idealMax[k-1])
		}
	}
	b.swBuf = make([]float64, len(b.l.profiles))
}

// ratioBound is an upper bound of the efficiency ratio of every window at
// class top that carries the a anchor rows of ideal cost sum anchorIdeal:
// fill rows cost at most idealMax[top] each, and no window of n rows costs
// less than its cheapest profile (switch included).
//
// Between two consecutive breaks (see buildTables) every profile's cost is
// linear in the row count, so the ratio, a linear function over a linear
// one, is monotone there: its largest value over n ≥ a lies at a, at a
// break or at the class's largest batch, and only those are evaluated,
// each profile apart (the cheapest profile gives the largest ratio).
func (b *Batcher) ratioBound(top, a int, anchorIdeal float64) float64 {
	bound := 0.0
	last := b.maxN[top]
	at := func(n int) {
		for q := range b.l.profiles {
			if c := b.table[q][top][n] + b.swBuf[q]; !math.IsInf(c, 1) && c > 0 {
				bound = max(bound, (anchorIdeal+float64(n-a)*b.idealMax[top])/c)
			}
		}
	}
	first := max(a, 1)
	if first > last {
		return bound
	}
	at(first)
	i, _ := slices.BinarySearch(b.breaks, first+1)
	for ; i < len(b.breaks) && b.breaks[i] < last; i++ {
		at(b.breaks[i])
	}
	if last > first {
		at(last)
	}
	return bound
}

// topPriority returns the highest priority among queued items.
func (b *Batcher) topPriority() int {
	for _, lv := range b.levels {
		if liveFront(&lv.ready) != nil || liveFront(&lv.pending) != nil {
			return lv.prio
		}
	}
	return math.MinInt
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
	}
	b.nextSeq++
	b.items[it.ID] = x
	for r := range it.Rows {
		ref := x.ref(r)
		k := ref.class()
		// Rows of one item are added in order and a later item usually
		// sorts last, so this is mostly an append.
		b.classes[k].insert(ref)
		x.amort += b.ideal[k]
	}
	b.queued += it.Rows
	x.hpos[0] = -1
	lv := b.level(x.prio)
	if x.due <= b.promoted {
		x.ready = true
		lv.ready.insert(x)
	} else {
		lv.pending.insert(x)
	}
	if x.deadline != noDeadline {
		b.dl.insert(x)
		b.dlAmort += x.amort
		b.dlOps++
		if b.dlFloorOK {
			// The items before x keep their sums; x and those after it
			// have a deadline no earlier than x's and at most the whole
			// demand before them.
			b.dlFloor = min(b.dlFloor, x.deadline-int64(b.dlAmort*b.margin*(1+1e-6))-1000)
		}
		x.exp = x.deadline - int64(b.needNS(x))
		b.expiry.push(x)
	}
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
			b.touched[x.ref(r).class()] = true
		}
	}
	for k, t := range b.touched {
		if t {
			// x's rows of one class are adjacent in its order.
			b.classes[k].removeRun(rowRef{it: x}, func(q rowRef) bool { return q.it == x })
			b.touched[k] = false
		}
	}
	b.queued -= x.remaining
	x.remaining = 0
	b.forget(x)
}

// forget marks x gone and removes it from the item indexes.
func (b *Batcher) forget(x *item) {
	x.gone = true
	delete(b.items, x.id)
	b.expiry.remove(x) // the level lists skip x once it reaches a front
	if x.deadline != noDeadline {
		b.dl.removeRun(x, func(y *item) bool { return y == x })
		b.dlAmort -= x.amort
		b.dlOps++
		if b.dl.Len() == 0 {
			b.dlAmort = 0 // no drift carried over
		}
	}
}

// scanRows is the most rows maxClass scans again after rows of an item
// were taken; a larger item's classes are looked up in the class lists.
const scanRows = 64

// maxClass returns the largest class among x's remaining rows, from
// x's rows the first time. After rows of an item of more than scanRows
// rows are taken it comes from the class lists, downward from the last
// value (taking rows never raises it), so that a large request is not
// rescanned for every batch taken from it.
func (b *Batcher) maxClass(x *item) int {
	switch {
	case x.cmax >= 0 && !x.cstale:
		return x.cmax
	case x.cmax >= 0 && x.rows > scanRows:
		k := x.cmax
		for k > 0 && !b.holds(k, x) {
			k--
		}
		x.cmax, x.cstale = k, false
		return k
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

// holds reports whether class k's list has a row of x. Every row of x
// not yet taken is in its class's list, and x's rows are adjacent there.
func (b *Batcher) holds(k int, x *item) bool {
	l := &b.classes[k]
	c := l.search(rowRef{it: x})
	return l.valid(c) && l.at(c).it == x
}

// firstRows appends to dst x's first n queued rows of class k, in row
// order: the front of x's run in that class's list. Only the rows it
// returns are read, however many rows x has.
func (b *Batcher) firstRows(dst []rowRef, x *item, k, n int) []rowRef {
	l := &b.classes[k]
	for c := l.search(rowRef{it: x}); l.valid(c) && n > 0; c = l.next(c) {
		r := l.at(c)
		if r.it != x {
			break
		}
		if !x.taken[r.row] {
			dst = append(dst, r)
			n--
		}
	}
	return dst
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

// expire moves infeasible items to b.expired: those whose deadline,
// less the time their remaining rows need alone, has passed (item.exp,
// kept current in the expiry heap). Each call reports its items in
// admission order.
func (b *Batcher) expire() {
	h := &b.expiry
	var gone []*item
	for x := h.top(); x != nil && b.now > x.exp; x = h.top() {
		gone = append(gone, x)
		b.drop(x)
		b.wakeStale = true
	}
	slices.SortFunc(gone, func(p, q *item) int { return cmp.Compare(p.seq, q.seq) })
	for _, x := range gone {
		b.expired = append(b.expired, x.id)
	}
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
	a.real += int(r.ln)
	a.oldest = min(a.oldest, r.it.arrival)
	a.prio = max(a.prio, r.it.prio)
	a.deadline = min(a.deadline, r.it.deadline)
	if r.it == d1 {
		a.d1ideal += b.ideal[r.class()]
	}
}

// demand runs the deadline-demand pass into pr and returns a new
// dlFloor: the minimum it walked, and past where it stopped, the least
// deadline there less the whole demand (bound).
func (b *Batcher) demand(pr *pressure, bound int64) int64 {
	floor := int64(math.MaxInt64)
	var cum, all float64
	for c := (cursor{}); b.dl.valid(c); c = b.dl.next(c) {
		x := b.dl.at(c)
		// No item can need more than all of them together: once a
		// deadline lies that far beyond the least slack found, no later
		// one can lower it (a small safety factor covers rounding in the
		// running sum).
		if pr.d1 != nil && x.deadline-b.now-bound >= pr.slack {
			return min(floor, x.deadline-bound)
		}
		need := x.amort * b.margin
		all += need
		floor = min(floor, x.deadline-int64(all*(1+1e-6))-1000)
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
	return floor
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
func rowLess(x, y rowRef) int {
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

// dlLess orders deadline items by deadline, then admission.
func dlLess(p, q *item) int {
	if c := cmp.Compare(p.deadline, q.deadline); c != 0 {
		return c
	}
	return cmp.Compare(p.seq, q.seq)
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
	for q := range b.l.profiles {
		b.swBuf[q] = float64(b.cost.SwitchCost(b.last, q))
	}
	b.wakeStale = false
	b.wakeOK = false
	if b.queued == 0 {
		return Plan{}, false
	}
	wake := int64(math.MaxInt64)
	// Deadline demand, earliest deadline first.
	pr := pressure{slack: math.MaxInt64}
	if x := b.expiry.top(); x != nil {
		wake = min(wake, x.exp+1) // when it would expire
	}
	if b.dlOps > max(1024, 4*b.dl.Len()) {
		// Re-sum now and then, so that rounding in the running sum stays
		// far below the safety margin below (amortized O(1) per update).
		b.dlAmort, b.dlOps = 0, 0
		for c := (cursor{}); b.dl.valid(c); c = b.dl.next(c) {
			b.dlAmort += b.dl.at(c).amort
		}
	}
	bound := int64(b.dlAmort*b.margin*(1+1e-6)) + 1000
	if b.dl.Len() > 0 && b.dlFloorOK && b.dlFloor-b.now >= b.slackCap {
		// Every item can be met behind all those before it, with more
		// slack than any batch takes: the pass below would take them all,
		// d1 the first, and no decision depends on how much more slack
		// there is (a wakeup set from the bound comes early, not late).
		pr.d1, pr.slack = b.dl.at(cursor{}), b.dlFloor-b.now
	} else {
		b.dlFloor, b.dlFloorOK = b.demand(&pr, bound), true
	}
	// The most urgent item that is due, and the next due time.
	b.promote()
	var anchor *item
	for _, lv := range b.levels {
		if anchor == nil {
			anchor = liveFront(&lv.ready)
		}
		if x := liveFront(&lv.pending); x != nil {
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
		best = b.anchored(b.mostUrgent(), &pr)
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

// level returns the level of priority prio, creating it.
func (b *Batcher) level(prio int) *level {
	if lv, ok := b.levelOf[prio]; ok {
		return lv
	}
	lv := &level{prio: prio, pending: newSortedList(dueOrder), ready: newSortedList(dueOrder)}
	b.levelOf[prio] = lv
	i, _ := slices.BinarySearchFunc(b.levels, prio, func(l *level, p int) int { return cmp.Compare(p, l.prio) })
	b.levels = slices.Insert(b.levels, i, lv)
	return lv
}

// promote moves the items that are due at b.now from the pending lists
// to the ready lists (back again first if time went backwards).
func (b *Batcher) promote() {
	for _, lv := range b.levels {
		if b.now < b.promoted {
			for x := liveFront(&lv.ready); x != nil; x = liveFront(&lv.ready) {
				lv.ready.popFrontWhile(func(y *item) bool { return y == x })
				x.ready = false
				lv.pending.insert(x)
			}
		}
		for x := liveFront(&lv.pending); x != nil && x.due <= b.now; x = liveFront(&lv.pending) {
			lv.pending.popFrontWhile(func(y *item) bool { return y == x })
			x.ready = true
			lv.ready.insert(x)
		}
	}
	b.promoted = b.now
}

// mostUrgent returns the first live item by itemBefore, due or not; call
// it after promote.
func (b *Batcher) mostUrgent() *item {
	for _, lv := range b.levels {
		if x := liveFront(&lv.ready); x != nil {
			return x
		}
		if x := liveFront(&lv.pending); x != nil {
			return x
		}
	}
	return nil
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
		v += b.swBuf[q]
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
		if b.classes[top].Len() == 0 {
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
		a acc
		k int
		i cursor
	}
	k, i := top, cursor{}
	cp := point{*a, k, i}
	exact := false
	last := -1
	S := b.l.classes[top]
	for a.n < b.maxN[top] {
		for k >= 0 && !b.classes[k].valid(i) {
			k, i = k-1, cursor{}
		}
		if k < 0 {
			break
		}
		r := b.classes[k].at(i)
		if x != nil && r.it == x && x.mark[r.row] {
			i = b.classes[k].next(i)
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
			padded := (a.n+1)*S - a.real - int(r.ln) // padded positions with r
			if k < monoBelow && a.n+1 >= b.l.maxBmin && float64(padded) > b.maxPad*float64((a.n+1)*S) {
				break
			}
			if float64(padded) > b.maxPad*float64(b.maxN[top]*S) {
				break // padded positions only accumulate: no batch size can dilute them enough
			}
		}
		a.add(b, r, d1)
		i = b.classes[k].next(i)
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
	pre := b.firstRows(b.buf[:0], x, ja, b.maxN[ja])
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
	topPrio := b.topPriority()
	for top := ja; top < len(b.classes); top++ {
		if top > ja && b.classes[top].Len() == 0 {
			continue
		}
		// A window here cannot be better than the best so far when no
		// queued row has a higher priority and even the bound on its
		// efficiency falls short (with a margin for rounding).
		if top > ja && best.ok && best.prio >= topPrio &&
			b.ratioBound(top, len(pre), float64(len(pre))*b.ideal[ja])*(1+1e-9) < best.ratio {
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
	ja := -1
	if x != nil {
		ja = b.maxClass(x)
		rows = b.firstRows(rows, x, ja, b.maxN[ja])
		for _, r := range rows {
			x.taken[r.row] = true // excluded from the fill below
		}
	}
	k, i := w.top, cursor{}
	for len(rows) < w.n {
		for !b.classes[k].valid(i) {
			k, i = k-1, cursor{}
		}
		r := b.classes[k].at(i)
		i = b.classes[k].next(i)
		if r.it.taken[r.row] {
			continue
		}
		r.it.taken[r.row] = true
		rows = append(rows, r)
	}
	b.buf = rows
	// Remove the taken rows from their classes: fill rows are a prefix of
	// each class they come from (once the anchor's rows are skipped), and
	// the anchor's rows of its longest class are adjacent there.
	for _, r := range rows {
		b.touched[r.class()] = true
	}
	taken := func(q rowRef) bool { return q.it.taken[q.row] }
	for k, t := range b.touched {
		if t {
			b.classes[k].popFrontWhile(taken)
			b.touched[k] = false
		}
	}
	if x != nil {
		b.classes[ja].removeRun(rowRef{it: x}, taken)
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
		amort := max(it.amort-b.ideal[ref.class()], 0)
		if it.deadline != noDeadline {
			b.dlAmort -= it.amort - amort
			b.dlOps++
		}
		it.amort = amort
		it.cstale = true
		b.queued--
		if bi+1 < len(rows) && rows[bi+1].it == it {
			continue
		}
		// The last of this item's rows in the plan.
		switch {
		case it.remaining == 0 && !it.gone:
			b.forget(it)
		case it.deadline != noDeadline && !it.gone:
			it.exp = it.deadline - int64(b.needNS(it))
			b.expiry.update(it)
		}
	}
	b.last = w.profile
	return plan
}
