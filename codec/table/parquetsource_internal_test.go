package table

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// mixedTable returns rows of every kind of column a Reader reads from
// Parquet: id; x, a nullable int64 (null every 5th row); t, a tensor
// column of 6 float32 (read by a directColumn; element 2 of every 7th
// row null); k, a tensor column of 4 float64 that is also kept (read by
// pqarrow, made a tensor by listToTensor); r, a ragged list of int32;
// and s, a nullable string. bad, when not nil, may append row i of t
// itself (returning true) to make it wrong.
func mixedTable(rows int, bad func(i int, t *array.ListBuilder) bool) arrow.RecordBatch {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "x", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "t", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32), Nullable: true},
		{Name: "k", Type: arrow.ListOf(arrow.PrimitiveTypes.Float64), Nullable: true},
		{Name: "r", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32), Nullable: true},
		{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for i := range rows {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		if i%5 == 4 {
			b.Field(1).AppendNull()
		} else {
			b.Field(1).(*array.Int64Builder).Append(int64(i * 3))
		}
		t := b.Field(2).(*array.ListBuilder)
		if bad == nil || !bad(i, t) {
			t.Append(true)
			tv := t.ValueBuilder().(*array.Float32Builder)
			for j := range 6 {
				if i%7 == 0 && j == 2 {
					tv.AppendNull()
				} else {
					tv.Append(float32(i*10 + j))
				}
			}
		}
		k := b.Field(3).(*array.ListBuilder)
		k.Append(true)
		for j := range 4 {
			k.ValueBuilder().(*array.Float64Builder).Append(float64(i) + float64(j)/4)
		}
		r := b.Field(4).(*array.ListBuilder)
		r.Append(true)
		for j := range i % 4 {
			r.ValueBuilder().(*array.Int32Builder).Append(int32(i + j))
		}
		if i%3 == 1 {
			b.Field(5).AppendNull()
		} else {
			b.Field(5).(*array.StringBuilder).Append(fmt.Sprintf("row %d", i))
		}
	}
	return b.NewRecordBatch()
}

// writeRowGroups writes rec to a Parquet file in row groups of
// rowGroup rows and returns its path.
func writeRowGroups(t *testing.T, rec arrow.RecordBatch, rowGroup int64) string {
	t.Helper()
	return writeWith(t, rec, parquet.WithMaxRowGroupLength(rowGroup))
}

// writeWith writes rec to a Parquet file in a temporary directory with
// the given writer properties and returns its path.
func writeWith(t *testing.T, rec arrow.RecordBatch, props ...parquet.WriterProperty) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pqarrow.NewFileWriter(rec.Schema(), f, parquet.NewWriterProperties(props...), pqarrow.NewArrowWriterProperties())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteBuffered(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// mixedOptions sends id, x, t, k and r, t and k as tensors, and keeps
// id, k and s.
func mixedOptions(rowsPerRequest, maxBytes int) Options {
	return Options{
		Columns: []string{"id", "x", "t", "k", "r"}, Keep: []string{"id", "k", "s"},
		Shapes:         map[string][]int64{"t": {2, 3}, "k": {4}},
		RowsPerRequest: rowsPerRequest, MaxBytes: maxBytes,
	}
}

// readChunks reads path to the end or the first error (returned), with
// the Reader's buffers from a checked allocator that it checks for leaks.
func readChunks(t *testing.T, path string, opts Options) ([]Chunk, error) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	opts.Mem = mem
	r, err := Open([]string{path}, opts)
	if err != nil {
		t.Fatal(err)
	}
	var out []Chunk
	for {
		c, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			err = nil
		}
		if err != nil || c.Body == nil {
			if cerr := r.Close(); cerr != nil {
				t.Fatal(cerr)
			}
			// Keep batches come from the same allocator: copy them out
			// before checking it.
			for i := range out {
				k := out[i].Keep
				out[i].Keep = copyRecord(k)
				k.Release()
			}
			mem.AssertSize(t, 0)
			return out, err
		}
		out = append(out, c)
	}
}

// copyRecord copies rec onto Go's allocator.
func copyRecord(rec arrow.RecordBatch) arrow.RecordBatch {
	empty := rec.NewSlice(0, 0)
	defer empty.Release()
	return concat([]arrow.RecordBatch{rec, empty}, memory.DefaultAllocator)
}

// sameChunks reports how got differs from want: rows, body bytes and
// kept columns of each chunk.
func sameChunks(got, want []Chunk) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d chunks, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		switch {
		case g.Rows != w.Rows:
			return fmt.Errorf("chunk %d: %d rows, want %d", i, g.Rows, w.Rows)
		case !bytes.Equal(g.Body, w.Body):
			return fmt.Errorf("chunk %d: bodies of %d and %d bytes differ", i, len(g.Body), len(w.Body))
		case !array.RecordEqual(g.Keep, w.Keep) || !g.Keep.Schema().Equal(w.Keep.Schema()):
			return fmt.Errorf("chunk %d: kept columns differ", i)
		}
	}
	return nil
}

func releaseChunks(cs []Chunk) {
	for _, c := range cs {
		c.Keep.Release()
	}
}

// TestParquetDecodersGiveSameChunks reads files of many row groups, of
// one and of none with several decoders, budgets from none to plenty,
// and compares the request bodies and kept columns with those of one
// decoder reading the whole file (as before decoders), chunk by chunk.
func TestParquetDecodersGiveSameChunks(t *testing.T) {
	for _, f := range []struct {
		name          string
		rows, perRG   int
		perReq, bytes int
	}{
		{"row groups of 100, batches of 64", 1000, 100, 64, 0},
		{"row groups of 16, batches of 50", 400, 16, 50, 0},
		{"row groups of 128, batches of 64", 1024, 128, 64, 0},
		{"bodies halved to fit", 1000, 100, 64, 3000},
		{"one row group", 300, 1000, 64, 0},
		{"no rows", 0, 100, 64, 0},
	} {
		t.Run(f.name, func(t *testing.T) {
			rec := mixedTable(f.rows, nil)
			path := writeRowGroups(t, rec, int64(f.perRG))
			rec.Release()
			opts := mixedOptions(f.perReq, f.bytes)
			opts.decoders = 1
			want, err := readChunks(t, path, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer releaseChunks(want)
			rows := 0
			for _, c := range want {
				rows += c.Rows
			}
			if rows != f.rows {
				t.Fatalf("one decoder read %d rows, want %d", rows, f.rows)
			}
			for _, decoders := range []int{2, 4, 16} {
				for _, budget := range []int{1, 20 << 10, parquetAheadBytes} {
					opts.decoders, opts.aheadBytes = decoders, budget
					got, err := readChunks(t, path, opts)
					if err != nil {
						t.Fatalf("%d decoders, budget %d: %v", decoders, budget, err)
					}
					if err := sameChunks(got, want); err != nil {
						t.Errorf("%d decoders, budget %d: %v", decoders, budget, err)
					}
					releaseChunks(got)
				}
			}
		})
	}
}

// TestParquetDecodersErrorsInOrder makes a row of a tensor column wrong
// in ways found in the middle and at the end of a row group (of 100
// rows, batches of 64) and of the file, and checks that several decoders deliver the same chunks
// before the same error as one decoder.
func TestParquetDecodersErrorsInOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   int // the bad row
		k    int // its values; 0: null
		want string
	}{
		{"short", 437, 5, `row 437 has 5 values`},
		{"long", 437, 7, `row 437 has 7 values`},
		{"null", 437, 0, `row 437 is null or empty`},
		{"short at a row group's end", 499, 5, `row 499 has 5 values`},
		{"long at a row group's end", 499, 7, `row 499 has 7 values`},
		{"long at a row group's and a batch's end", 255, 7, `row 255 has more than 6 values`},
		{"long at a batch's end", 447, 7, `row 447 has more than 6 values`},
		{"short, the file's last", 999, 5, `239 of 240 values at the end of the file`},
		{"long, the file's last", 999, 7, `row 999 has 7 values`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := mixedTable(1000, func(i int, t *array.ListBuilder) bool {
				if i != tc.at {
					return false
				}
				if tc.k == 0 {
					t.AppendNull()
					return true
				}
				t.Append(true)
				for j := range tc.k {
					t.ValueBuilder().(*array.Float32Builder).Append(float32(j))
				}
				return true
			})
			perRG := int64(100)
			if tc.at == 255 {
				perRG = 128 // ends with a batch
			}
			path := writeRowGroups(t, rec, perRG)
			rec.Release()
			opts := mixedOptions(64, 0)
			opts.Keep = []string{"id"} // and k a directColumn too
			opts.decoders = 1
			want, wantErr := readChunks(t, path, opts)
			defer releaseChunks(want)
			if wantErr == nil || !bytes.Contains([]byte(wantErr.Error()), []byte(tc.want)) {
				t.Fatalf("one decoder: error %v, want one containing %q", wantErr, tc.want)
			}
			for _, decoders := range []int{2, 4} {
				for _, budget := range []int{1, parquetAheadBytes} {
					opts.decoders, opts.aheadBytes = decoders, budget
					got, err := readChunks(t, path, opts)
					if err == nil || err.Error() != wantErr.Error() {
						t.Errorf("%d decoders, budget %d: error %v, want %v", decoders, budget, err, wantErr)
					}
					if err := sameChunks(got, want); err != nil {
						t.Errorf("%d decoders, budget %d: before the error: %v", decoders, budget, err)
					}
					releaseChunks(got)
				}
			}
		})
	}
}

// TestParquetSourceBatches checks the batches of a parquetSource itself:
// those of several decoders equal one decoder's, also when next is
// called with a cancelled context on the way.
func TestParquetSourceBatches(t *testing.T) {
	rec := mixedTable(1000, nil)
	path := writeRowGroups(t, rec, 90)
	rec.Release()
	batches := func(decoders int, cancelEvery int) []arrow.RecordBatch {
		opts := mixedOptions(64, 0)
		opts.Keep = nil
		opts.Mem = memory.DefaultAllocator
		opts.decoders = decoders
		s, _, err := openParquet(path, opts, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		cancelled, cancel := context.WithCancel(context.Background())
		cancel()
		var out []arrow.RecordBatch
		for i := 0; ; i++ {
			ctx := context.Background()
			if cancelEvery > 0 && i%cancelEvery == 0 {
				ctx = cancelled // next returns what is ready, else stops waiting
			}
			b, err := s.next(ctx)
			if errors.Is(err, context.Canceled) {
				continue
			}
			if errors.Is(err, io.EOF) {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
	}
	want := batches(1, 0)
	got := batches(4, 3)
	if len(got) != len(want) {
		t.Fatalf("%d batches, want %d", len(got), len(want))
	}
	for i := range got {
		if !array.RecordEqual(got[i], want[i]) {
			t.Fatalf("batch %d differs", i)
		}
		if n := got[i].NumRows(); n != 64 && i != len(got)-1 {
			t.Fatalf("batch %d has %d rows, want 64", i, n)
		}
		got[i].Release()
		want[i].Release()
	}
}

// TestParquetCloseMidway closes Readers of several decoders after a few
// chunks, with decoded batches waiting, and checks that every goroutine
// ends and every buffer is released.
func TestParquetCloseMidway(t *testing.T) {
	rec := mixedTable(2000, nil)
	path := writeRowGroups(t, rec, 100)
	rec.Release()
	before := runtime.NumGoroutine()
	for _, budget := range []int{1, parquetAheadBytes} {
		for read := range 4 {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			opts := mixedOptions(64, 0)
			opts.Mem, opts.decoders, opts.aheadBytes = mem, 4, budget
			r, err := Open([]string{path}, opts)
			if err != nil {
				t.Fatal(err)
			}
			for range read {
				c, err := r.Next(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				c.Keep.Release()
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			mem.AssertSize(t, 0)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestParquetAheadCountsWhatBatchesHold lets two decoders read only
// flat columns ahead of a reader that takes nothing, with score's
// allocator and batch size, and checks that the memory they hold stays
// within the budget plus what the decoders work on and the batch the
// reader would take: pqarrow reserves room for twice a batch's rows and
// shrinks the values when it hands them out; while the allocator kept the
// whole reservation behind the shrunk buffers, the decoders held about
// twice the budget.
func TestParquetAheadCountsWhatBatchesHold(t *testing.T) {
	rec := mixedTable(200000, nil)
	path := writeRowGroups(t, rec, 20000)
	rec.Release()
	const budget = 1 << 20
	mem := &capCounter{}
	opts := Options{Columns: []string{"id", "x"}, RowsPerRequest: DefaultRowsPerRequest, Mem: mem, decoders: 2, aheadBytes: budget}
	s, _, err := openParquet(path, opts, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	// The decoders stop when the budget is spent: wait until it is, then
	// until nothing more is allocated for a while.
	deadline := time.Now().Add(10 * time.Second)
	for spent := false; !spent; {
		if time.Now().After(deadline) {
			t.Fatal("the decoders did not spend the budget within 10s")
		}
		time.Sleep(10 * time.Millisecond)
		s.mu.Lock()
		spent = s.ahead >= s.budget
		s.mu.Unlock()
	}
	last, still := -1, 0
	for still < 20 {
		if time.Now().After(deadline) {
			t.Fatal("the decoders did not stop within 10s")
		}
		time.Sleep(10 * time.Millisecond)
		if n := mem.held(); n != last {
			last, still = n, 0
		} else {
			still++
		}
	}
	s.mu.Lock()
	batch := 0 // the largest batch decoded
	for _, task := range s.tasks {
		for _, r := range task.ready {
			batch = max(batch, RecordBytes(r))
		}
	}
	s.mu.Unlock()
	// Besides the budget: the batch the reader would take, and per
	// decoder the batch it may start while under the budget and pqarrow's
	// reservation for its next one (twice a batch).
	if limit := budget + 7*batch; last > limit {
		t.Errorf("decoded batches ahead hold %d bytes; want at most the budget %d plus seven batches of %d = %d", last, budget, batch, limit)
	}
}

// capCounter is score's pooling allocator, counting the capacity of the
// buffers it has handed out and not taken back.
type capCounter struct {
	pool poolAllocator
	mu   sync.Mutex
	n    int
}

func (c *capCounter) add(d int) {
	c.mu.Lock()
	c.n += d
	c.mu.Unlock()
}

func (c *capCounter) held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *capCounter) Allocate(size int) []byte {
	b := c.pool.Allocate(size)
	c.add(cap(b))
	return b
}

func (c *capCounter) Reallocate(size int, b []byte) []byte {
	old := cap(b)
	nb := c.pool.Reallocate(size, b)
	c.add(cap(nb) - old)
	return nb
}

func (c *capCounter) Free(b []byte) {
	c.add(-cap(b))
	c.pool.Free(b)
}
