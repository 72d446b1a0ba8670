package table

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// parquetSource reads the record batches of one Parquet file. Tensor
// columns (Parquet lists sent with a shape, see directColumn) are read
// straight from their column chunks; pqarrow reads the others.
type parquetSource struct {
	f      *file.Reader
	rr     pqarrow.RecordReader // the other columns; nil when there are none
	direct []*directColumn
	schema *arrow.Schema // every top-level column, in the file's order
	from   []int         // per schema field: index in rr's batch, or -1-i for direct[i]
	batch  int64         // rows per batch when rr is nil
	left   int64         // rows not yet read when rr is nil
}

// openParquet opens path; columns named in direct (input name → elements
// per row) that qualify are read by a directColumn.
func openParquet(path string, opts Options) (*parquetSource, *arrow.Schema, error) {
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		return nil, nil, fmt.Errorf("opening Parquet file %s: %w", path, err)
	}
	s, err := newParquetSource(pf, path, opts)
	if err != nil {
		pf.Close()
		return nil, nil, err
	}
	return s, s.schema, nil
}

func newParquetSource(pf *file.Reader, path string, opts Options) (*parquetSource, error) {
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: int64(opts.RowsPerRequest)}, opts.Mem)
	if err != nil {
		return nil, fmt.Errorf("reading Parquet schema of %s: %w", path, err)
	}
	s := &parquetSource{f: pf, batch: int64(opts.RowsPerRequest), left: pf.NumRows()}
	var fields []arrow.Field
	var leaves []int // leaf columns pqarrow reads
	perRow := opts.directColumns()
	for _, sf := range fr.Manifest.Fields {
		if dc := newDirectColumn(pf, sf, perRow[sf.Field.Name], opts.Mem); dc != nil {
			s.from = append(s.from, -1-len(s.direct))
			s.direct = append(s.direct, dc.over(0, pf.NumRowGroups(), 0))
			fields = append(fields, arrow.Field{Name: sf.Field.Name, Type: dc.typ, Nullable: sf.Field.Nullable, Metadata: sf.Field.Metadata})
			continue
		}
		s.from = append(s.from, len(leaves)) // fixed below: index among pqarrow's fields
		fields = append(fields, *sf.Field)
		leaves = appendLeaves(leaves, sf)
	}
	if len(s.direct) == 0 || len(leaves) > 0 {
		rr, err := fr.GetRecordReader(context.Background(), leaves, nil)
		if err != nil {
			return nil, fmt.Errorf("reading Parquet file %s: %w", path, err)
		}
		s.rr = rr
	}
	n := 0
	for i := range s.from {
		if s.from[i] >= 0 {
			s.from[i] = n
			n++
		}
	}
	s.schema = arrow.NewSchema(fields, nil)
	return s, nil
}

func appendLeaves(dst []int, sf pqarrow.SchemaField) []int {
	if sf.IsLeaf() {
		return append(dst, sf.ColIndex)
	}
	for _, c := range sf.Children {
		dst = appendLeaves(dst, c)
	}
	return dst
}

// directColumns returns the input columns to read as tensors, with their
// elements per row: those sent with a shape and not kept (a kept column
// keeps the type pqarrow gives it).
func (o Options) directColumns() map[string]int64 {
	out := map[string]int64{}
	add := func(in, as string) {
		shape, ok := o.Shapes[as]
		if !ok {
			return
		}
		for _, k := range o.Keep {
			if k == in {
				return
			}
		}
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		out[in] = n
	}
	if len(o.Columns) == 0 {
		for name := range o.Shapes {
			add(name, name)
		}
		return out
	}
	for _, c := range o.Columns {
		in, as, ok := strings.Cut(strings.TrimSpace(c), "=")
		if !ok {
			as = in
		}
		add(in, as)
	}
	return out
}

func (s *parquetSource) next(ctx context.Context) (arrow.RecordBatch, error) {
	var rec arrow.RecordBatch
	var n int64
	if s.rr != nil {
		r, err := s.rr.Read()
		if r == nil {
			if err == nil {
				err = s.finish()
			}
			return nil, err
		}
		rec, n = r, r.NumRows()
	} else {
		if s.left == 0 {
			return nil, s.finish()
		}
		n = min(s.batch, s.left)
		s.left -= n
	}
	if len(s.direct) == 0 {
		rec.Retain()
		return rec, nil
	}
	cols := make([]arrow.Array, len(s.from))
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	for i, from := range s.from {
		if from >= 0 {
			cols[i] = rec.Column(from)
			cols[i].Retain()
			continue
		}
		c, err := s.direct[-1-from].next(ctx, n)
		if err != nil {
			return nil, err
		}
		cols[i] = c
	}
	return array.NewRecordBatch(s.schema, cols, n), nil
}

// finish checks the direct columns at the end of the file; io.EOF when
// they are fine.
func (s *parquetSource) finish() error {
	for _, d := range s.direct {
		if err := d.finish(); err != nil {
			return err
		}
	}
	return io.EOF
}

func (s *parquetSource) close() error {
	if s.rr != nil {
		s.rr.Release()
	}
	return s.f.Close()
}

// directColumn reads a Parquet list column whose rows all hold k values
// of a primitive type straight from its column chunks into a
// FixedSizeList<T>[k] column: pqarrow's general list reader spends five
// times as long on the same column (rebuilding offsets from the
// repetition levels, growing buffers, then checking every row's length
// again). Row lengths are checked from the repetition levels; a row of
// another length, or a null or empty row, is an error, as for a list
// column converted to a tensor (listToTensor). Null elements stay null.
type directColumn struct {
	f       *file.Reader
	name    string
	col     int   // leaf column index
	k       int   // values per row
	width   int   // bytes per value
	def     int16 // definition level of a non-null value
	present int16 // definition level of a present (possibly null) value
	typ     *arrow.FixedSizeListType
	mem     memory.Allocator

	// The reading state, set by over; newDirectColumn's column has none.
	rg      int // row group of cr
	end     int // the row group after the last one to read
	cr      file.ColumnChunkReader
	defs    []int16
	reps    []int16
	row     int64  // the file's row to read next, for errors
	rowReps []byte // the repetition levels of a row, as bytes
}

// over returns a directColumn reading d's column in row groups
// [first, end), whose first row is the file's row row.
func (d *directColumn) over(first, end int, row int64) *directColumn {
	c := *d
	c.rg, c.end, c.row = first, end, row
	c.cr, c.defs, c.reps, c.rowReps = nil, nil, nil, nil
	return &c
}

func int16Bytes(s []int16) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), 2*len(s))
}

// newDirectColumn returns a directColumn for sf, or nil when sf is not a
// one-level list of k float32, float64, int32 or int64 values.
func newDirectColumn(pf *file.Reader, sf pqarrow.SchemaField, k int64, mem memory.Allocator) *directColumn {
	if k <= 0 || k > 1<<24 || len(sf.Children) != 1 || !sf.Children[0].IsLeaf() {
		return nil
	}
	switch t := sf.Field.Type.(type) {
	case *arrow.ListType:
	case *arrow.FixedSizeListType:
		if int64(t.Len()) != k {
			return nil // plan reports the mismatch
		}
	default:
		return nil
	}
	leaf := sf.Children[0]
	descr := pf.MetaData().Schema.Column(leaf.ColIndex)
	if descr.MaxRepetitionLevel() != 1 {
		return nil
	}
	var width int
	switch elem := leaf.Field.Type; {
	case elem.ID() == arrow.FLOAT32 && descr.PhysicalType() == parquet.Types.Float,
		elem.ID() == arrow.INT32 && descr.PhysicalType() == parquet.Types.Int32:
		width = 4
	case elem.ID() == arrow.FLOAT64 && descr.PhysicalType() == parquet.Types.Double,
		elem.ID() == arrow.INT64 && descr.PhysicalType() == parquet.Types.Int64:
		width = 8
	default:
		return nil
	}
	return &directColumn{
		f: pf, name: sf.Field.Name, col: leaf.ColIndex, k: int(k), width: width,
		def: leaf.LevelInfo.DefLevel, present: leaf.LevelInfo.RepeatedAncestorDefLevel,
		typ: arrow.FixedSizeListOf(int32(k), leaf.Field.Type), mem: mem,
	}
}

// next reads the next n rows.
func (d *directColumn) next(_ context.Context, n int64) (arrow.Array, error) {
	need := int(n) * d.k
	vals := memory.NewResizableBuffer(d.mem)
	defer vals.Release()
	vals.Resize(need * d.width)
	if len(d.defs) < need {
		d.defs, d.reps = make([]int16, need), make([]int16, need)
	}
	defs, reps := d.defs[:need], d.reps[:need]
	var validity *memory.Buffer
	defer func() {
		if validity != nil {
			validity.Release()
		}
	}()
	nulls := 0
	got := 0
	for got < need {
		if d.cr == nil || !d.cr.HasNext() {
			if d.cr != nil {
				if err := d.cr.Err(); err != nil {
					return nil, fmt.Errorf("reading column %q: %w", d.name, err)
				}
				d.rg++
			}
			if d.rg >= d.end {
				if d.end < d.f.NumRowGroups() && got > 0 {
					// The rows go on in the next row group, which another
					// directColumn reads: some row here is short. This is
					// the error reading on would report.
					return nil, d.rowError(reps[:got])
				}
				return nil, fmt.Errorf("column %q: %d of %d values at the end of the file (rows of other lengths?)", d.name, got, need)
			}
			cr, err := d.f.RowGroup(d.rg).Column(d.col)
			if err != nil {
				return nil, fmt.Errorf("reading column %q: %w", d.name, err)
			}
			d.cr = cr
			continue
		}
		lv, nv, err := d.read(need-got, vals.Bytes()[got*d.width:], defs[got:], reps[got:])
		if err != nil {
			return nil, fmt.Errorf("reading column %q: %w", d.name, err)
		}
		if nv < int(lv) {
			if validity == nil {
				validity = memory.NewResizableBuffer(d.mem)
				validity.Resize(int(bitutil.BytesForBits(int64(need))))
				bitutil.SetBitsTo(validity.Bytes(), 0, int64(need), true)
			}
			c, err := d.spread(vals.Bytes(), validity.Bytes(), got, int(lv), nv)
			if err != nil {
				return nil, err
			}
			nulls += c
		}
		got += int(lv)
	}
	// Every row holds exactly k values: its repetition levels are 0 (a
	// new row) and k-1 ones, compared as bytes.
	if d.rowReps == nil {
		pattern := make([]int16, d.k)
		for i := 1; i < d.k; i++ {
			pattern[i] = 1
		}
		d.rowReps = int16Bytes(pattern)
	}
	levelBytes := int16Bytes(reps)
	for r := range int(n) {
		if !bytes.Equal(levelBytes[r*2*d.k:(r+1)*2*d.k], d.rowReps) {
			return nil, d.rowError(reps)
		}
	}
	d.row += n
	var bufs []*memory.Buffer
	if validity != nil && nulls > 0 {
		bufs = []*memory.Buffer{validity, vals}
	} else {
		bufs, nulls = []*memory.Buffer{nil, vals}, 0
	}
	values := array.NewData(d.typ.Elem(), need, bufs, nil, nulls, 0)
	defer values.Release()
	data := array.NewData(d.typ, int(n), []*memory.Buffer{nil}, []arrow.ArrayData{values}, 0, 0)
	defer data.Release()
	return array.MakeFromData(data), nil
}

// finish checks, once every row of d's row groups is read, that no
// values are left after the last row (a row longer than its shape): read
// on in the same directColumn, they would start the next batch and fail
// its row check; after the file's last row nothing else would see them.
func (d *directColumn) finish() error {
	if d.cr == nil {
		return nil
	}
	if d.cr.HasNext() {
		return fmt.Errorf("column %q: row %d has more than %d values, as its shape needs", d.name, d.row-1, d.k)
	}
	if err := d.cr.Err(); err != nil {
		return fmt.Errorf("reading column %q: %w", d.name, err)
	}
	return nil
}

// read reads up to levels levels into dst (values packed, nulls left
// out) and the level slices.
func (d *directColumn) read(levels int, dst []byte, defs, reps []int16) (int64, int, error) {
	switch cr := d.cr.(type) {
	case *file.Float32ColumnChunkReader:
		return cr.ReadBatch(int64(levels), arrow.Float32Traits.CastFromBytes(dst), defs, reps)
	case *file.Float64ColumnChunkReader:
		return cr.ReadBatch(int64(levels), arrow.Float64Traits.CastFromBytes(dst), defs, reps)
	case *file.Int32ColumnChunkReader:
		return cr.ReadBatch(int64(levels), arrow.Int32Traits.CastFromBytes(dst), defs, reps)
	case *file.Int64ColumnChunkReader:
		return cr.ReadBatch(int64(levels), arrow.Int64Traits.CastFromBytes(dst), defs, reps)
	}
	return 0, 0, fmt.Errorf("column %q: unexpected column reader %T", d.name, d.cr)
}

// spread moves the nv packed values read at level off on to their slots
// among lv levels, clearing the validity bit of null values; it returns
// the number of nulls. A level with no slot (a null or empty row) is an
// error.
func (d *directColumn) spread(vals, validity []byte, off, lv, nv int) (int, error) {
	defs := d.defs[off : off+lv]
	j := nv - 1
	nulls := 0
	for i := lv - 1; i >= 0; i-- {
		slot := vals[(off+i)*d.width : (off+i+1)*d.width]
		switch {
		case defs[i] >= d.def:
			copy(slot, vals[(off+j)*d.width:(off+j+1)*d.width])
			j--
		case defs[i] >= d.present:
			clear(slot)
			bitutil.ClearBit(validity, off+i)
			nulls++
		default:
			row := d.row + int64(rowOfLevel(d.reps[:off+i+1]))
			return 0, fmt.Errorf("column %q: row %d is null or empty; tensor rows need %d values", d.name, row, d.k)
		}
	}
	return nulls, nil
}

// rowOfLevel returns the row (within the batch) of the last level in reps.
func rowOfLevel(reps []int16) int {
	r := -1
	for _, l := range reps {
		if l == 0 {
			r++
		}
	}
	return max(r, 0)
}

// rowError describes the first row of a batch (its levels' repetition
// levels) whose length is not k.
func (d *directColumn) rowError(reps []int16) error {
	if reps[0] != 0 {
		return fmt.Errorf("column %q: row %d has more than %d values, as its shape needs", d.name, d.row-1, d.k)
	}
	row, n := 0, 0
	for _, l := range reps {
		if l == 0 && n > 0 {
			if n != d.k {
				break
			}
			row, n = row+1, 0
		}
		n++
	}
	return fmt.Errorf("column %q: row %d has %d values, its shape needs %d", d.name, d.row+int64(row), n, d.k)
}
