package table_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/codec/table"
	"github.com/jetinfer/jetinfer/trt"
)

// readAll reads every chunk of r.
func readAll(t *testing.T, r *table.Reader) []table.Chunk {
	t.Helper()
	var out []table.Chunk
	for {
		c, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		out = append(out, c)
	}
}

// writeParquet writes rec to path in row groups of rowGroup rows.
func writeParquet(t testing.TB, path string, rec arrow.RecordBatch, rowGroup int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pqarrow.NewFileWriter(rec.Schema(), f, parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(rowGroup)),
		pqarrow.NewArrowWriterProperties())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteBuffered(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestParquetRaggedAndFloat16 reads a Parquet file with a ragged list
// column and a float16 list column given a tensor shape, and checks the
// request bodies' values bit for bit.
func TestParquetRaggedAndFloat16(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "tokens", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)},
		{Name: "half", Type: arrow.ListOf(arrow.FixedWidthTypes.Float16)},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	const rows = 50
	var wantTokens [][]float32
	var wantHalf [][]uint16
	for i := range rows {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		tb := b.Field(1).(*array.ListBuilder)
		tb.Append(true)
		var toks []float32
		for j := range i%7 + 1 {
			toks = append(toks, float32(i*10+j))
		}
		tb.ValueBuilder().(*array.Float32Builder).AppendValues(toks, nil)
		wantTokens = append(wantTokens, toks)
		hb := b.Field(2).(*array.ListBuilder)
		hb.Append(true)
		var halves []uint16
		for j := range 6 {
			h := float16.New(float32(i) + float32(j)/8)
			halves = append(halves, h.Uint16())
			hb.ValueBuilder().(*array.Float16Builder).Append(h)
		}
		wantHalf = append(wantHalf, halves)
	}
	rec := b.NewRecordBatch()
	b.Release()
	path := filepath.Join(t.TempDir(), "in.parquet")
	writeParquet(t, path, rec, 16)
	rec.Release()

	r, err := table.Open([]string{path}, table.Options{
		Columns: []string{"id", "tokens=x", "half"}, Shapes: map[string][]int64{"half": {2, 3}},
		RowsPerRequest: 12, Mem: mem,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Rows() != rows {
		t.Errorf("Rows() = %d, want %d", r.Rows(), rows)
	}
	row := 0
	for _, c := range readAll(t, r) {
		req, err := codec.DecodeRequest(c.Body, codec.DefaultLimits())
		if err != nil {
			t.Fatalf("decoding body: %v", err)
		}
		if req.Rows != c.Rows || c.Rows > 12 {
			t.Fatalf("chunk of %d rows decodes to %d (cap 12)", c.Rows, req.Rows)
		}
		x, ok1 := req.Column("x")
		half, ok2 := req.Column("half")
		if !ok1 || !ok2 || !x.Ragged || x.DType != trt.Float32 || half.DType != trt.Float16 || half.RowShape.String() != "[2,3]" {
			t.Fatalf("columns: x=%+v half=%+v", x, half)
		}
		for i := range req.Rows {
			if got := req.IDs.(*array.Int64).Value(i); got != int64(row) {
				t.Fatalf("row %d has id %d", row, got)
			}
			vals := x.Row(i)
			if len(vals) != 4*len(wantTokens[row]) {
				t.Fatalf("row %d: %d token bytes, want %d", row, len(vals), 4*len(wantTokens[row]))
			}
			for j, w := range wantTokens[row] {
				if got := math.Float32frombits(binary.LittleEndian.Uint32(vals[4*j:])); got != w {
					t.Fatalf("row %d token %d = %v, want %v", row, j, got, w)
				}
			}
			hv := half.Row(i)
			for j, w := range wantHalf[row] {
				if got := binary.LittleEndian.Uint16(hv[2*j:]); got != w {
					t.Fatalf("row %d half %d = %#x, want %#x (raw bits)", row, j, got, w)
				}
			}
			row++
		}
		req.Release()
	}
	if row != rows {
		t.Fatalf("read %d rows, want %d", row, rows)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	mem.AssertSize(t, 0)
}

// TestBodiesFitMaxBytes cuts an Arrow IPC file of one large record batch
// into bodies that fit MaxBytes, whatever the input's batching, keeps the
// kept columns aligned, and reads the same rows from the stream format.
func TestBodiesFitMaxBytes(t *testing.T) {
	mem := memory.DefaultAllocator
	const rows, width = 1000, 64
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "v", Type: arrow.FixedSizeListOf(width, arrow.PrimitiveTypes.Float32)},
		{Name: "label", Type: arrow.BinaryTypes.String},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	for i := range rows {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		fb := b.Field(1).(*array.FixedSizeListBuilder)
		fb.Append(true)
		for j := range width {
			fb.ValueBuilder().(*array.Float32Builder).Append(float32(i*width + j))
		}
		b.Field(2).(*array.StringBuilder).Append("L" + string(rune('a'+i%26)))
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	dir := t.TempDir()
	var fileBuf, streamBuf bytes.Buffer
	fw, _ := ipc.NewFileWriter(&fileBuf, ipc.WithSchema(schema))
	sw := ipc.NewWriter(&streamBuf, ipc.WithSchema(schema))
	for _, w := range []interface{ Write(arrow.RecordBatch) error }{fw, sw} {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	_ = fw.Close()
	_ = sw.Close()
	_ = os.WriteFile(filepath.Join(dir, "a.arrow"), fileBuf.Bytes(), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "b.arrows"), streamBuf.Bytes(), 0o600)

	files, err := table.Expand([]string{dir})
	if err != nil || len(files) != 2 {
		t.Fatalf("Expand(dir) = %v, %v; want both files", files, err)
	}
	const maxBytes = 40 << 10 // ≈ 150 rows of 260 bytes
	r, err := table.Open(files, table.Options{Columns: []string{"id", "v"}, Keep: []string{"label"},
		Shapes: map[string][]int64{"v": {8, 8}}, MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Rows() != -1 {
		t.Errorf("Rows() = %d, want -1 (streams do not say)", r.Rows())
	}
	next := int64(0)
	chunks := readAll(t, r)
	for _, c := range chunks {
		if len(c.Body) > maxBytes {
			t.Fatalf("body of %d bytes exceeds %d", len(c.Body), maxBytes)
		}
		req, err := codec.DecodeRequest(c.Body, codec.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		labels := c.Keep.Column(0).(*array.String)
		for i, id := range req.IDs.(*array.Int64).Int64Values() {
			if id != next%rows {
				t.Fatalf("id %d, want %d", id, next%rows)
			}
			if want := "L" + string(rune('a'+int(id)%26)); labels.Value(i) != want {
				t.Fatalf("kept label of id %d = %q, want %q", id, labels.Value(i), want)
			}
			next++
		}
		req.Release()
		c.Keep.Release()
	}
	if next != 2*rows || len(chunks) < 2*rows*260/maxBytes {
		t.Fatalf("read %d rows in %d chunks; want %d rows in ≥ %d chunks", next, len(chunks), 2*rows, 2*rows*260/maxBytes)
	}
}

// TestWriterParquetAndArrow writes result bodies and error results, the
// first of them failed (held until the schema is known), with kept
// columns, and reads both formats back: one row per input row, in order,
// nulls in the result columns and the error in the error columns of
// failed rows; a file where every request failed has no result columns.
func TestWriterParquetAndArrow(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	failed := func(part int) bool { return part%2 == 0 }
	for _, name := range []string{"out.parquet", "out.arrow", "allfailed.parquet", "allfailed.arrow"} {
		t.Run(name, func(t *testing.T) {
			allFailed := strings.HasPrefix(name, "allfailed")
			dir := t.TempDir()
			path := filepath.Join(dir, name)
			w, err := table.Create(path, "", mem)
			if err != nil {
				t.Fatal(err)
			}
			for part := range 4 {
				writePart(t, w, mem, part, failed(part) || allFailed)
			}
			if w.Rows() != 22 {
				t.Errorf("Rows() = %d, want 22", w.Rows())
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("directory holds %d files, want the output only (failed rows held in a temporary file)", len(ents))
			}
			tbl := readBack(t, path)
			defer tbl.Release()
			wantCols := []string{"neg", "id", "y", "error_code", "error_message"}
			if allFailed {
				wantCols = []string{"neg", "error_code", "error_message"}
			}
			if tbl.NumRows() != 22 || int(tbl.NumCols()) != len(wantCols) {
				t.Fatalf("read back %d rows, schema %s; want 22 rows of %v", tbl.NumRows(), tbl.Schema(), wantCols)
			}
			for i, c := range wantCols {
				if got := tbl.Schema().Field(i).Name; got != c {
					t.Fatalf("column %d is %q, want %q", i, got, c)
				}
			}
			col := func(i int) arrow.Array { return tbl.Column(i).Data().Chunk(0) }
			neg := col(0).(*array.Int64)
			codes := col(len(wantCols) - 2).(*array.String)
			msgs := col(len(wantCols) - 1).(*array.String)
			row := 0
			for part := range 4 {
				for i := range 4 + part {
					want := int64(part*100 + i)
					if neg.Value(row) != -want {
						t.Fatalf("row %d: kept %d, want %d (rows out of order)", row, neg.Value(row), -want)
					}
					if failed(part) || allFailed {
						if codes.IsNull(row) || codes.Value(row) != "INVALID_ARGUMENT" || msgs.Value(row) != fmt.Sprint("bad part ", part) {
							t.Fatalf("failed row %d: error %q %q", row, codes.Value(row), msgs.Value(row))
						}
						if !allFailed && (!col(1).IsNull(row) || !col(2).IsNull(row)) {
							t.Fatalf("failed row %d: result columns not null", row)
						}
					} else {
						if !codes.IsNull(row) || !msgs.IsNull(row) {
							t.Fatalf("row %d of a success: error columns %q %q, want null", row, codes.Value(row), msgs.Value(row))
						}
						if id := col(1).(*array.Int64).Value(row); id != want || col(2).IsNull(row) {
							t.Fatalf("row %d: id %d (want %d), y null %v", row, id, want, col(2).IsNull(row))
						}
					}
					row++
				}
			}
		})
	}
}

func readBack(t *testing.T, path string) arrow.Table {
	t.Helper()
	if table.FormatOf(path) == table.Parquet {
		pf, err := file.OpenParquetFile(path, false)
		if err != nil {
			t.Fatal(err)
		}
		defer pf.Close()
		fr, _ := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
		tbl, err := fr.ReadTable(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return tbl
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fr, err := ipc.NewFileReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var recs []arrow.RecordBatch
	for i := range fr.NumRecords() {
		rec, err := fr.RecordBatch(i)
		if err != nil {
			t.Fatal(err)
		}
		rec.Retain() // valid only until the next call otherwise
		recs = append(recs, rec)
	}
	// One chunk per column is what the assertions read.
	tbl := array.NewTableFromRecords(fr.Schema(), recs)
	cols := make([]arrow.Array, tbl.NumCols())
	for i := range cols {
		cols[i], _ = array.Concatenate(tbl.Column(i).Data().Chunks(), memory.DefaultAllocator)
	}
	rec := array.NewRecordBatch(fr.Schema(), cols, tbl.NumRows())
	tbl.Release()
	return array.NewTableFromRecords(fr.Schema(), []arrow.RecordBatch{rec})
}

// TestKeptColumnsHoldOnlyTheirRows reads a Parquet file whose requests
// are cut smaller than the decoded batches (by bytes) and checks that each
// request's kept columns own buffers of its rows alone, so that what the
// client charges for them (RecordBytes) is what they hold: a slice of
// the input batch would keep the whole batch's buffers for as long as the
// request is in flight.
func TestKeptColumnsHoldOnlyTheirRows(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "label", Type: arrow.PrimitiveTypes.Int64},
		{Name: "v", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	const rows = 2000
	for i := range rows {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		b.Field(1).(*array.Int64Builder).Append(int64(i % 10))
		lb := b.Field(2).(*array.ListBuilder)
		lb.Append(true)
		for j := range 64 {
			lb.ValueBuilder().(*array.Float32Builder).Append(float32(i + j))
		}
	}
	rec := b.NewRecordBatch()
	b.Release()
	path := filepath.Join(t.TempDir(), "in.parquet")
	writeParquet(t, path, rec, 1000)
	rec.Release()

	const maxBytes = 40 << 10 // ≈ 140 rows of the 64-float tensor per request, of 512-row batches
	r, err := table.Open([]string{path}, table.Options{Columns: []string{"id", "v"}, Keep: []string{"id", "label"},
		Shapes: map[string][]int64{"v": {64}}, RowsPerRequest: 512, MaxBytes: maxBytes, Mem: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	next := int64(0)
	for _, c := range readAll(t, r) {
		if c.Rows >= 512 {
			t.Fatalf("a request of %d rows: the test needs requests smaller than the input batches", c.Rows)
		}
		if got, want := table.RecordBytes(c.Keep), c.Rows*16; got != want {
			t.Errorf("request of %d rows: its kept columns hold %d bytes of buffers, want %d (its rows' alone)", c.Rows, got, want)
		}
		for i, id := range c.Keep.Column(0).(*array.Int64).Int64Values() {
			if id != next || c.Keep.Column(1).(*array.Int64).Value(i) != next%10 {
				t.Fatalf("kept row %d: id %d label %d", next, id, c.Keep.Column(1).(*array.Int64).Value(i))
			}
			next++
		}
		c.Keep.Release()
	}
	if next != rows {
		t.Fatalf("kept %d rows, want %d", next, rows)
	}
}
