package table

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// outputBatch is a batch of every column shape rowGroups writes: required
// and nullable flat columns, a fixed-length list (a tensor column as
// listField makes it) with null rows, and a ragged list with null and
// empty lists and null elements, its element named "item".
func outputBatch(mem memory.Allocator, first, n int) arrow.RecordBatch {
	tensor := arrow.ListOfField(arrow.Field{Name: "element", Type: arrow.PrimitiveTypes.Float32, Nullable: true})
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "label", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "ok", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		{Name: "half", Type: arrow.FixedWidthTypes.Float16, Nullable: true},
		{Name: "logits", Type: tensor, Nullable: true, Metadata: arrow.NewMetadata([]string{ShapeMetadataKey}, []string{"[10]"})},
		{Name: "tokens", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32), Nullable: true},
	}, func() *arrow.Metadata { m := arrow.NewMetadata([]string{"job"}, []string{"j1"}); return &m }())
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	for r := first; r < first+n; r++ {
		b.Field(0).(*array.Int64Builder).Append(int64(r))
		if r%7 == 3 {
			b.Field(1).AppendNull()
			b.Field(2).AppendNull()
			b.Field(3).AppendNull()
		} else {
			b.Field(1).(*array.StringBuilder).Append(string(rune('a' + r%26)))
			b.Field(2).(*array.BooleanBuilder).Append(r%2 == 0)
			b.Field(3).(*array.Float16Builder).Append(float16.New(float32(r%100) / 4))
		}
		lb := b.Field(4).(*array.ListBuilder)
		if r%11 == 5 { // a failed row: null result
			lb.AppendNull()
		} else {
			lb.Append(true)
			for j := range 10 {
				lb.ValueBuilder().(*array.Float32Builder).Append(float32(r) + float32(j)/10)
			}
		}
		tb := b.Field(5).(*array.ListBuilder)
		switch r % 5 {
		case 0:
			tb.AppendNull()
		case 1:
			tb.AppendEmptyValue()
		default:
			tb.Append(true)
			for j := range r % 5 {
				if (r+j)%4 == 0 {
					tb.ValueBuilder().AppendNull()
				} else {
					tb.ValueBuilder().(*array.Int32Builder).Append(int32(r * j))
				}
			}
		}
	}
	return b.NewRecordBatch()
}

// TestRowGroupsMatchPqarrow writes the same batches with rowGroups and
// with pqarrow's FileWriter and reads both back with pqarrow: the same
// Arrow schema (field metadata and the stored ARROW:schema included) and
// the same values, with no row group over RowGroupRows rows.
func TestRowGroupsMatchPqarrow(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	// Batch sizes cross a row group boundary inside a batch and include
	// one batch larger than a row group.
	sizes := []int{1, 3000, 40000, RowGroupRows + 1234, 17}
	var batches []arrow.RecordBatch
	first := 0
	for _, n := range sizes {
		batches = append(batches, outputBatch(mem, first, n))
		first += n
	}
	defer func() {
		for _, b := range batches {
			b.Release()
		}
	}()
	schema := batches[0].Schema()
	if !useRowGroups(schema) {
		t.Fatalf("useRowGroups(%s) = false", schema)
	}
	props := parquet.NewWriterProperties(parquet.WithDictionaryDefault(false), parquet.WithMaxRowGroupLength(RowGroupRows), parquet.WithAllocator(mem))
	dir := t.TempDir()

	ours := filepath.Join(dir, "rowgroups.parquet")
	f, err := os.Create(ours)
	if err != nil {
		t.Fatal(err)
	}
	g, err := newRowGroups(schema, f, props, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		if err := g.write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}

	theirs := filepath.Join(dir, "pqarrow.parquet")
	f, err = os.Create(theirs)
	if err != nil {
		t.Fatal(err)
	}
	pw, err := pqarrow.NewFileWriter(schema, f, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		if err := pw.WriteBuffered(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := pw.Close(); err != nil {
		t.Fatal(err)
	}

	got, gotMeta := readParquetTable(t, ours)
	defer got.Release()
	want, wantMeta := readParquetTable(t, theirs)
	defer want.Release()
	if gotMeta != wantMeta {
		t.Errorf("stored ARROW:schema differs from pqarrow's")
	}
	if !got.Schema().Equal(want.Schema()) || !got.Schema().Metadata().Equal(want.Schema().Metadata()) {
		t.Fatalf("schema read back\n%s\nwant (pqarrow)\n%s", got.Schema(), want.Schema())
	}
	if got.NumRows() != int64(first) || want.NumRows() != int64(first) {
		t.Fatalf("rows read back %d (pqarrow %d), want %d", got.NumRows(), want.NumRows(), first)
	}
	for i := range int(got.NumCols()) {
		a, err := array.Concatenate(got.Column(i).Data().Chunks(), mem)
		if err != nil {
			t.Fatal(err)
		}
		b, err := array.Concatenate(want.Column(i).Data().Chunks(), mem)
		if err != nil {
			t.Fatal(err)
		}
		if !array.Equal(a, b) {
			t.Errorf("column %s differs from pqarrow's", got.Schema().Field(i).Name)
		}
		a.Release()
		b.Release()
	}

	pf, err := file.OpenParquetFile(ours, false)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	for i := range pf.NumRowGroups() {
		if n := pf.RowGroup(i).NumRows(); n > RowGroupRows {
			t.Errorf("row group %d holds %d rows, more than %d", i, n, RowGroupRows)
		}
	}
	if want := (first + RowGroupRows - 1) / RowGroupRows; pf.NumRowGroups() != want {
		t.Errorf("%d row groups, want %d", pf.NumRowGroups(), want)
	}
}

// readParquetTable reads path with pqarrow and returns its table and the
// stored Arrow schema.
func readParquetTable(t *testing.T, path string) (arrow.Table, string) {
	t.Helper()
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	stored := pf.MetaData().KeyValueMetadata().FindValue("ARROW:schema")
	if stored == nil {
		t.Fatalf("%s: no ARROW:schema", path)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tbl, *stored
}

// TestUseRowGroups: nested columns other than lists of flat elements go
// through pqarrow.
func TestUseRowGroups(t *testing.T) {
	for _, c := range []struct {
		typ  arrow.DataType
		want bool
	}{
		{arrow.PrimitiveTypes.Float64, true},
		{arrow.BinaryTypes.String, true},
		{arrow.ListOf(arrow.PrimitiveTypes.Float32), true},
		{arrow.ListOf(arrow.FixedSizeListOf(4, arrow.PrimitiveTypes.Float32)), false},
		{arrow.StructOf(arrow.Field{Name: "a", Type: arrow.PrimitiveTypes.Int8}), false},
		{arrow.LargeListOf(arrow.PrimitiveTypes.Float32), false},
		{&arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int32, ValueType: arrow.BinaryTypes.String}, false},
	} {
		s := arrow.NewSchema([]arrow.Field{{Name: "x", Type: c.typ, Nullable: true}}, nil)
		if got := useRowGroups(s); got != c.want {
			t.Errorf("useRowGroups(%s) = %v, want %v", c.typ, got, c.want)
		}
	}
}

// TestRowGroupsParallelSameBytes writes five row groups through rowGroups
// (each encoded batch by batch as it is written, groups concurrently,
// copied into the file, offsets moved) and the same groups through one
// file.Writer with the same column encoder, column after column: the two
// files must be byte for byte equal, footer included.
func TestRowGroupsParallelSameBytes(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	sizes := []int{RowGroupRows, RowGroupRows, RowGroupRows, RowGroupRows, 999}
	var groups []arrow.RecordBatch
	first := 0
	for _, n := range sizes {
		groups = append(groups, outputBatch(mem, first, n))
		first += n
	}
	defer releaseAll(groups)
	schema := groups[0].Schema()
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy), parquet.WithDictionaryDefault(false),
		parquet.WithMaxRowGroupLength(RowGroupRows), parquet.WithAllocator(mem))

	var ours bytes.Buffer
	g, err := newRowGroups(schema, &ours, props, 4) // four at once, whatever the cores
	if err != nil {
		t.Fatal(err)
	}
	// Each group written in slices, as score's results come: its encoder
	// takes them one by one.
	const slice = 7000
	pieces := make([][]arrow.RecordBatch, len(groups))
	for i, b := range groups {
		for lo := int64(0); lo < b.NumRows(); lo += slice {
			pieces[i] = append(pieces[i], b.NewSlice(lo, min(lo+slice, b.NumRows())))
		}
		defer releaseAll(pieces[i])
		for _, p := range pieces[i] {
			if err := g.write(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}

	var serial bytes.Buffer
	wr, err := g.newFile(&serial)
	if err != nil {
		t.Fatal(err)
	}
	e := &groupEncoder{ctx: pqarrow.NewArrowWriteContext(context.Background(), nil)}
	for i := range groups {
		rg, err := wr.AppendRowGroupChecked()
		if err != nil {
			t.Fatal(err)
		}
		if err := writeSerialGroup(e, rg, g, pieces[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := wr.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours.Bytes(), serial.Bytes()) {
		i := 0
		for i < min(ours.Len(), serial.Len()) && ours.Bytes()[i] == serial.Bytes()[i] {
			i++
		}
		t.Fatalf("rowGroups wrote %d bytes, one file.Writer %d; first difference at byte %d", ours.Len(), serial.Len(), i)
	}
	pf, err := file.NewParquetReader(bytes.NewReader(ours.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if pf.NumRowGroups() != len(sizes) || pf.NumRows() != int64(first) {
		t.Errorf("%d row groups of %d rows in all, want %d of %d", pf.NumRowGroups(), pf.NumRows(), len(sizes), first)
	}
}

// TestRowGroupsEncodingError: an error while a row group is encoded on
// its own goroutine comes back from a later write or from Close, and the
// file gets no footer.
func TestRowGroupsEncodingError(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	// A null list that holds elements cannot be written.
	lb := array.NewListBuilder(mem, arrow.PrimitiveTypes.Int32)
	defer lb.Release()
	lb.Append(true)
	lb.ValueBuilder().(*array.Int32Builder).Append(1)
	good := lb.NewListArray()
	defer good.Release()
	data := array.NewData(good.DataType(), 1, []*memory.Buffer{memory.NewBufferBytes([]byte{0}), good.Data().Buffers()[1]},
		[]arrow.ArrayData{good.ListValues().Data()}, 1, 0)
	defer data.Release()
	bad := array.NewListData(data)
	defer bad.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "tokens", Type: good.DataType(), Nullable: true}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{bad}, 1)
	defer rec.Release()
	var out bytes.Buffer
	g, err := newRowGroups(schema, &out, parquet.NewWriterProperties(parquet.WithAllocator(mem)), 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.write(rec); err != nil {
		t.Fatal(err)
	}
	g.flush() // handed on; the error comes later
	err = g.Close()
	if err == nil || !strings.Contains(err.Error(), "a null list with 1 elements") {
		t.Fatalf("Close: %v, want the null list's error", err)
	}
	if bytes.HasSuffix(out.Bytes(), []byte("PAR1")) && out.Len() > 4 {
		t.Errorf("a footer was written after the error (%d bytes)", out.Len())
	}
}

// writeSerialGroup writes held's columns, one after another, to rg (a
// serial row group, as one file.Writer writes) and closes it.
func writeSerialGroup(e *groupEncoder, rg file.SerialRowGroupWriter, g *rowGroups, held []arrow.RecordBatch) error {
	for i := range g.nulls {
		cw, err := rg.NextColumn()
		if err != nil {
			return err
		}
		for _, rec := range held {
			if err := e.column(cw, g.nulls[i], g.lists[i], rec.Column(i)); err != nil {
				return fmt.Errorf("column %s: %w", rec.Schema().Field(i).Name, err)
			}
		}
	}
	return rg.Close()
}
