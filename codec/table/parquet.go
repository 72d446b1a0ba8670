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

// parquetPlan says how the columns of one Parquet file are read. Every
// decoder of the file uses it at once, so nothing in it changes after
// newParquetPlan: f and fr are shared for reading only (file.Reader reads
// with ReadAt; the column readers fr makes, a set per groupReader, hold
// the reading state).
type parquetPlan struct {
	f      *file.Reader
	fr     *pqarrow.FileReader
	leaves []int           // leaf columns pqarrow reads
	direct []*directColumn // columns read directly, without reading state (see directColumn.over)
	schema *arrow.Schema   // every top-level column, in the file's order
	from   []int           // per schema field: index among pqarrow's fields, or -1-i for direct[i]
	batch  int64           // rows per batch
	mem    memory.Allocator
}

// newParquetPlan works out which columns of pf a directColumn reads and
// which pqarrow reads.
func newParquetPlan(pf *file.Reader, path string, opts Options) (*parquetPlan, error) {
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, opts.Mem)
	if err != nil {
		return nil, fmt.Errorf("reading Parquet schema of %s: %w", path, err)
	}
	p := &parquetPlan{f: pf, fr: fr, batch: int64(opts.RowsPerRequest), mem: opts.Mem}
	// Decoders share pf: parse its writer version now, which its row
	// group readers otherwise set on first use (FileMetaData.WriterVersion).
	pf.WriterVersion()
	var fields []arrow.Field
	perRow := opts.directColumns()
	need := opts.inputColumns()
	for _, sf := range fr.Manifest.Fields {
		if need != nil && !need[sf.Field.Name] {
			continue // neither sent nor kept: not decoded
		}
		if dc := newDirectColumn(pf, sf, perRow[sf.Field.Name], opts.Mem); dc != nil {
			p.from = append(p.from, -1-len(p.direct))
			p.direct = append(p.direct, dc)
			fields = append(fields, arrow.Field{Name: sf.Field.Name, Type: dc.typ, Nullable: sf.Field.Nullable, Metadata: sf.Field.Metadata})
			continue
		}
		p.from = append(p.from, len(p.from)-len(p.direct))
		fields = append(fields, *sf.Field)
		p.leaves = appendLeaves(p.leaves, sf)
	}
	p.schema = arrow.NewSchema(fields, nil)
	return p, nil
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

// inputColumns returns the input columns the options send or keep; nil
// when every column is sent (no Columns).
func (o Options) inputColumns() map[string]bool {
	if len(o.Columns) == 0 {
		return nil
	}
	out := map[string]bool{}
	for _, c := range o.Columns {
		in, _, _ := strings.Cut(strings.TrimSpace(c), "=")
		out[in] = true
	}
	for _, k := range o.Keep {
		out[strings.TrimSpace(k)] = true
	}
	return out
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

// groupReader reads the rows of row groups [first, end) of a file in
// batches that end where the file's batches of plan.batch rows end: the
// file's own batches when it reads every row group, their parts in the
// row groups when not.
type groupReader struct {
	plan   *parquetPlan
	cols   []*pqarrow.ColumnReader // the columns pqarrow reads, in plan order
	direct []*directColumn
	row    int64 // the file's row to read next
	left   int64 // rows not yet read
}

// newGroupReader returns a groupReader over row groups [first, end),
// whose first row is the file's row row.
func newGroupReader(p *parquetPlan, first, end int, row int64) (*groupReader, error) {
	g := &groupReader{plan: p, row: row}
	groups := make([]int, 0, end-first)
	for rg := first; rg < end; rg++ {
		groups = append(groups, rg)
		g.left += p.f.MetaData().RowGroup(rg).NumRows()
	}
	if g.left == 0 {
		return g, nil // nothing to read (and pqarrow wants a row group)
	}
	for _, d := range p.direct {
		g.direct = append(g.direct, d.over(first, end, row))
	}
	if len(p.leaves) > 0 {
		cols, _, err := p.fr.GetFieldReaders(context.Background(), p.leaves, groups)
		if err != nil {
			return nil, err
		}
		g.cols = cols
	}
	return g, nil
}

// next reads the next batch; io.EOF after the last, once the direct
// columns' last rows are checked (directColumn.finish).
func (g *groupReader) next() (arrow.RecordBatch, error) {
	if g.left == 0 {
		for _, d := range g.direct {
			if err := d.finish(g.row%g.plan.batch == 0); err != nil {
				return nil, err
			}
		}
		return nil, io.EOF
	}
	n := min(g.left, g.plan.batch-g.row%g.plan.batch)
	cols := make([]arrow.Array, len(g.plan.from))
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	for i, from := range g.plan.from {
		var err error
		if from >= 0 {
			cols[i], err = readColumn(g.cols[from], n, g.plan.mem)
		} else {
			cols[i], err = g.direct[-1-from].next(context.Background(), n)
		}
		if err != nil {
			return nil, err
		}
	}
	g.row += n
	g.left -= n
	return array.NewRecordBatch(g.plan.schema, cols, n), nil
}

// readColumn reads the next n rows of a column pqarrow reads as one array.
func readColumn(c *pqarrow.ColumnReader, n int64, mem memory.Allocator) (arrow.Array, error) {
	name := c.Field().Name
	chunked, err := c.NextBatch(n)
	if err != nil {
		return nil, fmt.Errorf("reading column %q: %w", name, err)
	}
	defer chunked.Release()
	var a arrow.Array
	switch chunks := chunked.Chunks(); len(chunks) {
	case 0:
		return nil, fmt.Errorf("column %q: no rows left, %d to read", name, n)
	case 1:
		a = chunks[0]
		a.Retain()
	default:
		if a, err = array.Concatenate(chunks, mem); err != nil {
			return nil, fmt.Errorf("reading column %q: %w", name, err)
		}
	}
	if int64(a.Len()) != n {
		a.Release()
		return nil, fmt.Errorf("column %q: read %d rows, want %d", name, a.Len(), n)
	}
	return a, nil
}

// release releases the column readers.
func (g *groupReader) release() {
	for _, c := range g.cols {
		c.Release()
	}
	g.cols = nil
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
	pages   *repPages // cr's pages, checking the repetition levels; nil: cr decodes them
	lvl     int64     // levels of cr's chunk read
	defs    []int16
	reps    []int16
	row     int64  // the file's row to read next, for errors
	rowReps []byte // the repetition levels of a row, as bytes
}

// chunkPart is a run of a batch's levels read from one column chunk.
type chunkPart struct {
	pages *repPages
	from  int64 // the chunk's level the run starts at
	at, n int   // where in the batch, how many
}

// over returns a directColumn reading d's column in row groups
// [first, end), whose first row is the file's row row.
func (d *directColumn) over(first, end int, row int64) *directColumn {
	c := *d
	c.rg, c.end, c.row = first, end, row
	c.cr, c.pages, c.lvl, c.defs, c.reps, c.rowReps = nil, nil, 0, nil, nil, nil
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
	// The repetition levels come from d.pages (see repPages) where it
	// checks them, and only when some are needed: levels fills reps with
	// those of the batch read so far.
	var parts []chunkPart
	levels := func() {
		for _, c := range parts {
			if c.pages != nil {
				c.pages.fill(reps[c.at:c.at+c.n], c.from)
			}
		}
	}
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
					levels()
					return nil, d.rowError(reps[:got])
				}
				return nil, fmt.Errorf("column %q: %d of %d values at the end of the file (rows of other lengths?)", d.name, got, need)
			}
			if err := d.openChunk(); err != nil {
				return nil, fmt.Errorf("reading column %q: %w", d.name, err)
			}
			continue
		}
		lv, nv, err := d.read(need-got, vals.Bytes()[got*d.width:], defs[got:], reps[got:])
		if err != nil {
			return nil, fmt.Errorf("reading column %q: %w", d.name, err)
		}
		if k := len(parts) - 1; k >= 0 && parts[k].pages == d.pages && d.pages != nil && parts[k].from+int64(parts[k].n) == d.lvl {
			parts[k].n += int(lv)
		} else {
			parts = append(parts, chunkPart{pages: d.pages, from: d.lvl, at: got, n: int(lv)})
		}
		d.lvl += lv
		if nv < int(lv) {
			levels() // spread names the row of a null or empty one
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
	// new row) and k-1 ones. Where repPages found them so there is
	// nothing to compare; elsewhere they are compared as bytes.
	whole := true
	for _, c := range parts {
		whole = whole && c.pages != nil && c.pages.wholeRows(c.from, int64(c.n))
	}
	if !whole {
		if err := d.checkRows(reps, int(n), levels); err != nil {
			return nil, err
		}
	}
	if d.pages != nil {
		d.pages.forget(d.lvl)
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
// values are left after the last row (a row longer than its shape). It
// reports them as reading on into the next row group in the same batch
// would have (the row's values counted), or, when the batch ended with
// the row group (batchEnd), as the next batch would have.
func (d *directColumn) finish(batchEnd bool) error {
	if d.cr == nil {
		return nil
	}
	extra := 0
	var vals []byte
	for d.cr.HasNext() {
		if batchEnd {
			return fmt.Errorf("column %q: row %d has more than %d values, as its shape needs", d.name, d.row-1, d.k)
		}
		n := len(d.defs) // at least k: next read a row
		if vals == nil {
			vals = make([]byte, n*d.width)
		}
		lv, _, err := d.read(n, vals, d.defs[:n], d.reps[:n])
		if err != nil {
			return fmt.Errorf("reading column %q: %w", d.name, err)
		}
		if lv == 0 {
			break
		}
		extra += int(lv)
	}
	if err := d.cr.Err(); err != nil {
		return fmt.Errorf("reading column %q: %w", d.name, err)
	}
	if extra > 0 {
		return fmt.Errorf("column %q: row %d has %d values, its shape needs %d", d.name, d.row-1, d.k+extra, d.k)
	}
	return nil
}

// checkRows fills reps (levels) and compares them with n rows of the
// pattern.
func (d *directColumn) checkRows(reps []int16, n int, levels func()) error {
	levels()
	if d.rowReps == nil {
		pattern := make([]int16, d.k)
		for i := 1; i < d.k; i++ {
			pattern[i] = 1
		}
		d.rowReps = int16Bytes(pattern)
	}
	levelBytes := int16Bytes(reps)
	for r := range n {
		if !bytes.Equal(levelBytes[r*2*d.k:(r+1)*2*d.k], d.rowReps) {
			return d.rowError(reps)
		}
	}
	return nil
}

// openChunk opens the column chunk of row group d.rg, with a repPages
// under it unless its levels may be BIT_PACKED.
func (d *directColumn) openChunk() error {
	pages, err := newRepPages(d.f, d.rg, d.col, d.k)
	if err != nil {
		return err
	}
	d.pages, d.lvl = pages, 0
	if pages == nil {
		d.cr, err = d.f.RowGroup(d.rg).Column(d.col)
		return err
	}
	// The buffer pool RowGroup(…).Column uses, and the allocator of the
	// reader properties openParquet sets (arrow-go does not free its
	// decoders' buffers; the collector does).
	d.cr = file.NewColumnReader(d.f.MetaData().Schema.Column(d.col), pages, memory.DefaultAllocator, d.f.BufferPool())
	return nil
}

// read reads up to levels levels into dst (values packed, nulls left
// out) and the level slices; the repetition levels only when d.pages
// does not check them.
func (d *directColumn) read(levels int, dst []byte, defs, reps []int16) (int64, int, error) {
	if d.pages != nil {
		reps = nil
	}
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
