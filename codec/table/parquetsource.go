package table

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
)

// rowGroupWorkers is how many goroutines decode the row groups of one
// Parquet file at once, and how many encode a Parquet output's row
// groups: one per eight cores (GOMAXPROCS), at least one and at most
// four. One decodes about 3.4M rows/s of the digits input, and encodes
// about as many output rows. On a 16-core host shared with an 8-executor
// worker (`make bench-score`), two of each made the interrupted-and-
// resumed job as fast as four did, with a third of the extra CPU time and
// no more peak RSS than one of each; on 2 cores, two of each took 20 %
// more CPU time than one for the same job (docs/benchmarks.md).
func rowGroupWorkers() int {
	return max(1, min(runtime.GOMAXPROCS(0)/8, 4))
}

// parquetAheadBytes bounds the decoded Arrow data (RecordBytes) of the
// batches a parquetSource holds ready ahead of its reader, give or take
// one batch per decoder (see parquetSource): room for the row groups
// after the one being read to be decoded meanwhile.
const parquetAheadBytes = 32 << 20

// parquetSource reads the record batches of one Parquet file: batches of
// RowsPerRequest rows counted from the file's first row (the last one
// shorter), across row groups, the same whatever the number of decoders.
// Tensor columns (Parquet lists sent with a shape, see directColumn) are
// read straight from their column chunks; pqarrow reads the others.
//
// Decoding runs ahead of next in goroutines of its own (decoders), so,
// unlike an Arrow IPC source, a parquetSource needs no readAhead. With
// several row groups and decoders each row group is a task: decoders
// take tasks in file order and decode their batches into the task's
// queue, cut where the file's batches end (groupReader); next takes them
// task after task and joins the parts of a batch that spans row groups
// (a copy of at most one batch per row group boundary). With one row
// group or one decoder a single task reads the whole file.
//
// Memory: the task next reads from decodes one batch ahead of it, as
// readAhead does: its decoder starts on a batch when none of the task's
// wait. The decoders of later tasks start on one while the batches
// waiting in all queues hold less than parquetAheadBytes. So the batches
// waiting hold at most parquetAheadBytes plus one batch per decoder; the
// task next waits for can always go on, whatever later tasks hold and
// however small the budget; and a file read in a single task holds no
// more than before. Besides, each decoder holds, per column it reads, a
// 1 MiB read buffer of the column chunk (chunks are not read whole) and
// a page, compressed and decompressed: a few MiB per decoder whatever
// the row groups' size.
//
// Errors reach next in file order: a task's error comes after every
// batch of the tasks before it, and of its own before the error. After
// an error decoders take no new tasks.
type parquetSource struct {
	plan    *parquetPlan
	rows    int64               // rows in the file
	sent    int64               // rows next gave out, counted from the file's first
	first   int64               // the first row next gives out
	parts   []arrow.RecordBatch // the first parts of the batch next is joining
	budget  int                 // parquetAheadBytes, or less in tests
	tasks   []rowTask
	workers sync.WaitGroup

	mu      sync.Mutex
	changed *sync.Cond // on mu; broadcast when any of the below or of tasks changes
	cur     int        // the task next takes batches from
	claimed int        // tasks decoders have taken
	ahead   int        // RecordBytes of the batches in the tasks' queues
	failed  bool       // a task failed: decoders take no new ones
	stopped bool       // close was called: decoders stop
}

// rowTask is what one decoder reads: row groups [first, end), from the
// file's row row. Its other fields are guarded by parquetSource.mu.
type rowTask struct {
	first, end int
	row        int64
	ready      []arrow.RecordBatch // decoded batches next has not taken, in order
	err        error               // why the task stopped early
	done       bool                // every batch is in ready, or err is set
}

// openParquet opens path and starts decoding it from the row group that
// holds the batch of row from (0: the whole file); columns named in direct
// (input name → elements per row) that qualify are read by a
// directColumn.
func openParquet(path string, opts Options, from int64) (*parquetSource, *arrow.Schema, error) {
	// Column chunks are read 1 MiB at a time, not whole: several
	// decoders each holding a whole chunk of a large row group (pyarrow
	// writes 1Mi-row groups) would hold hundreds of MiB.
	rp := parquet.NewReaderProperties(memory.DefaultAllocator) // page buffers: arrow-go never frees them, the collector does
	rp.BufferedStreamEnabled, rp.BufferSize = true, 1<<20
	pf, err := file.OpenParquetFile(path, false, file.WithReadProps(rp))
	if err != nil {
		return nil, nil, fmt.Errorf("opening Parquet file %s: %w", path, err)
	}
	p, err := newParquetPlan(pf, path, opts)
	if err != nil {
		pf.Close()
		return nil, nil, err
	}
	decoders := opts.decoders
	if decoders <= 0 {
		decoders = rowGroupWorkers()
	}
	budget := opts.aheadBytes
	if budget <= 0 {
		budget = parquetAheadBytes
	}
	return startParquet(p, decoders, budget, from), p.schema, nil
}

// startParquet starts decoding the file of p in up to decoders
// goroutines, each row group a task when there are several of both. It
// starts at the row group holding the first row of from's batch (batches
// are counted from the file's first row), so that the batches from there
// are those of a whole read; first says that group's first row.
func startParquet(p *parquetPlan, decoders, budget int, from int64) *parquetSource {
	s := &parquetSource{plan: p, rows: p.f.NumRows(), budget: budget}
	s.changed = sync.NewCond(&s.mu)
	groups := p.f.NumRowGroups()
	first, row := 0, int64(0)
	for first < groups {
		n := p.f.MetaData().RowGroup(first).NumRows()
		if row+n > from-from%p.batch {
			break
		}
		row += n
		first++
	}
	s.sent, s.first = row, row
	if decoders <= 1 || groups-first <= 1 {
		s.tasks = []rowTask{{first: first, end: groups, row: row}}
	} else {
		for rg := first; rg < groups; rg++ {
			s.tasks = append(s.tasks, rowTask{first: rg, end: rg + 1, row: row})
			row += p.f.MetaData().RowGroup(rg).NumRows()
		}
	}
	for range min(decoders, len(s.tasks)) {
		s.workers.Add(1)
		go s.decode()
	}
	return s
}

// decode is a decoder: it decodes tasks, in file order, until none is
// left or the source stops.
func (s *parquetSource) decode() {
	defer s.workers.Done()
	for {
		i, ok := s.claim()
		if !ok {
			return
		}
		s.decodeTask(i)
	}
}

// claim takes the next task.
func (s *parquetSource) claim() (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.failed || s.claimed == len(s.tasks) {
		return 0, false
	}
	s.claimed++
	return s.claimed - 1, true
}

// decodeTask decodes task i's batches into its queue.
func (s *parquetSource) decodeTask(i int) {
	t := &s.tasks[i]
	g, err := newGroupReader(s.plan, t.first, t.end, t.row)
	if err != nil {
		s.end(i, err)
		return
	}
	defer g.release()
	for {
		if g.left > 0 && !s.mayDecode(i) {
			return
		}
		rec, err := g.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			s.end(i, err)
			return
		}
		if !s.put(i, rec) {
			return
		}
	}
}

// mayDecode waits until task i may decode a batch: when none of its
// batches wait if next reads from it, else while the batches waiting
// hold less than the budget. False when the source stops.
func (s *parquetSource) mayDecode(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.stopped {
		if i == s.cur && len(s.tasks[i].ready) == 0 || i != s.cur && s.ahead < s.budget {
			return true
		}
		s.changed.Wait()
	}
	return false
}

// put queues a batch of task i; false (and rec released) when the
// source stops.
func (s *parquetSource) put(i int, rec arrow.RecordBatch) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		rec.Release()
		return false
	}
	s.tasks[i].ready = append(s.tasks[i].ready, rec)
	s.ahead += RecordBytes(rec)
	s.changed.Broadcast()
	return true
}

// end marks task i done, failed when err is not nil.
func (s *parquetSource) end(i int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tasks[i].done, s.tasks[i].err = true, err
	s.failed = s.failed || err != nil
	s.changed.Broadcast()
}

// next returns the file's next batch, joined from the parts the tasks
// decoded; io.EOF after the last.
func (s *parquetSource) next(ctx context.Context) (arrow.RecordBatch, error) {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.changed.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	want := min(s.plan.batch-s.sent%s.plan.batch, s.rows-s.sent) // a batch ends on the file's grid
	if want == 0 {
		rec, err := s.take(ctx)
		if err == nil {
			rec.Release()
			err = fmt.Errorf("more rows than the %d the file's metadata says", s.rows)
		}
		return nil, err
	}
	var got int64
	for _, p := range s.parts {
		got += p.NumRows()
	}
	for got < want {
		rec, err := s.take(ctx)
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%d rows, the file's metadata says %d", s.sent+got, s.rows)
		}
		if err != nil {
			return nil, err // s.parts stay for the next call
		}
		s.parts = append(s.parts, rec)
		got += rec.NumRows()
	}
	parts := s.parts
	s.parts = nil
	if got != want {
		releaseAll(parts)
		return nil, fmt.Errorf("parts of %d rows for a batch of %d", got, want) // cannot happen: tasks cut batches where the file's end
	}
	s.sent += got
	if len(parts) == 1 {
		return parts[0], nil
	}
	defer releaseAll(parts)
	return concat(parts, s.plan.mem), nil
}

// take returns the next decoded batch, waiting for it; the error of the
// task it would come from, or io.EOF after the last task.
func (s *parquetSource) take(ctx context.Context) (arrow.RecordBatch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.cur < len(s.tasks) {
		t := &s.tasks[s.cur]
		switch {
		case len(t.ready) > 0:
			rec := t.ready[0]
			t.ready[0] = nil
			t.ready = t.ready[1:]
			s.ahead -= RecordBytes(rec)
			s.changed.Broadcast()
			return rec, nil
		case t.err != nil:
			return nil, t.err
		case t.done:
			s.cur++
			s.changed.Broadcast()
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.changed.Wait()
	}
	return nil, io.EOF
}

// close stops the decoders, releases the batches they decoded ahead and
// closes the file.
func (s *parquetSource) close() error {
	s.mu.Lock()
	s.stopped = true
	s.changed.Broadcast()
	s.mu.Unlock()
	s.workers.Wait()
	for i := range s.tasks {
		releaseAll(s.tasks[i].ready)
		s.tasks[i].ready = nil
	}
	releaseAll(s.parts)
	s.parts = nil
	return s.plan.f.Close()
}

func releaseAll(recs []arrow.RecordBatch) {
	for _, r := range recs {
		r.Release()
	}
}
