package table

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// RowGroupBytes bounds the Arrow data the Writer holds for one Parquet row
// group: a row group ends at RowGroupRows rows or at this many bytes,
// whichever comes first, so wide rows do not grow the writer's memory.
const RowGroupBytes = 64 << 20

// rowGroups writes a Parquet file whose columns are all flat (numbers,
// strings, booleans, ...) or lists of flat elements, which is what score's
// outputs are: the levels of such columns are computed here in one pass
// (for fixed-shape tensors, copied from a cache), and each row group is
// written column after column straight to the file once its rows are
// held as Arrow batches. pqarrow's general writer walks every column's
// nesting per batch and buffers encoded pages of all columns until the
// row group ends; this does the same work in about half the CPU
// (BenchmarkWriterParquet). Columns of any other shape go through
// pqarrow.FileWriter (useRowGroups says which).
type rowGroups struct {
	wr     *file.Writer
	ctx    context.Context
	nulls  []bool // per column: the field is nullable
	lists  []bool // per column: a list of flat elements
	held   []arrow.RecordBatch
	rows   int64
	bytes  int64
	def    []int16 // levels of the column being written
	rep    []int16
	fixedK int     // fixed-shape levels cached in fixDef/fixRep: k positions per row
	fixedD int16   // and the present-element definition level
	fixDef []int16 // cached levels of rows of fixedK present elements
	fixRep []int16
}

// useRowGroups reports whether every column of schema is flat or a list of
// flat elements.
func useRowGroups(schema *arrow.Schema) bool {
	for _, f := range schema.Fields() {
		t := f.Type
		if lt, ok := t.(*arrow.ListType); ok {
			t = lt.Elem()
		}
		if !flat(t) {
			return false
		}
	}
	return true
}

// flat reports whether t is written as one Parquet leaf of no nesting.
func flat(t arrow.DataType) bool {
	switch t.(type) {
	case arrow.NestedType, arrow.ExtensionType, *arrow.DictionaryType:
		return false
	}
	return true
}

// newRowGroups writes schema's Parquet file to w. The Arrow schema is
// stored in the file's metadata (ARROW:schema) as pqarrow stores it, so
// readers get the same Arrow types and field metadata back.
func newRowGroups(schema *arrow.Schema, w io.Writer, props *parquet.WriterProperties) (*rowGroups, error) {
	arrowProps := pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(props.Allocator()))
	pqschema, err := pqarrow.ToParquet(schema, props, arrowProps)
	if err != nil {
		return nil, fmt.Errorf("parquet schema: %w", err)
	}
	// As pqarrow stores it: the schema's own metadata, then the schema
	// with list elements named "element" like the Parquet columns.
	meta := metadata.KeyValueMetadata{}
	sm := schema.Metadata()
	for i, k := range sm.Keys() {
		if err := meta.Append(k, sm.Values()[i]); err != nil {
			return nil, err
		}
	}
	stored := make([]arrow.Field, schema.NumFields())
	for i, f := range schema.Fields() {
		if lt, ok := f.Type.(*arrow.ListType); ok {
			elem := lt.ElemField()
			elem.Name = "element"
			f.Type = arrow.ListOfField(elem)
		}
		stored[i] = f
	}
	ser := flight.SerializeSchema(arrow.NewSchema(stored, &sm), props.Allocator())
	if err := meta.Append("ARROW:schema", base64.StdEncoding.EncodeToString(ser)); err != nil {
		return nil, err
	}
	wr, err := file.NewParquetWriterWithError(w, pqschema.Root(), file.WithWriterProps(props), file.WithWriteMetadata(meta))
	if err != nil {
		return nil, err
	}
	g := &rowGroups{wr: wr, ctx: pqarrow.NewArrowWriteContext(context.Background(), &arrowProps)}
	for _, f := range schema.Fields() {
		_, isList := f.Type.(*arrow.ListType)
		g.nulls = append(g.nulls, f.Nullable)
		g.lists = append(g.lists, isList)
	}
	return g, nil
}

// write holds rec's rows for the current row group, writing the group
// each time it reaches RowGroupRows rows or RowGroupBytes bytes.
func (g *rowGroups) write(rec arrow.RecordBatch) error {
	perRow := int64(0)
	for _, c := range rec.Columns() {
		perRow += int64(dataBytes(c.Data()))
	}
	perRow /= max(rec.NumRows(), 1)
	for off := int64(0); off < rec.NumRows(); {
		n := min(rec.NumRows()-off, RowGroupRows-g.rows)
		part := rec
		if n == rec.NumRows() {
			rec.Retain()
		} else {
			part = rec.NewSlice(off, off+n)
		}
		g.held = append(g.held, part)
		g.rows += n
		g.bytes += perRow * n
		if g.rows >= RowGroupRows || g.bytes >= RowGroupBytes {
			if err := g.flush(); err != nil {
				return err
			}
		}
		off += n
	}
	return nil
}

// flush writes the held batches as one row group and releases them.
func (g *rowGroups) flush() error {
	if len(g.held) == 0 {
		return nil
	}
	defer func() {
		for _, r := range g.held {
			r.Release()
		}
		g.held, g.rows, g.bytes = g.held[:0], 0, 0
	}()
	rg, err := g.wr.AppendRowGroupChecked()
	if err != nil {
		return err
	}
	for i := range g.nulls {
		cw, err := rg.NextColumn()
		if err != nil {
			return err
		}
		for _, rec := range g.held {
			if err := g.column(cw, i, rec.Column(i)); err != nil {
				return fmt.Errorf("column %s: %w", rec.Schema().Field(i).Name, err)
			}
		}
	}
	return rg.Close()
}

// column writes one batch's column i to cw.
func (g *rowGroups) column(cw file.ColumnChunkWriter, i int, col arrow.Array) error {
	if col.Len() == 0 {
		return nil
	}
	if !g.lists[i] {
		var def []int16
		if g.nulls[i] {
			def = g.flatLevels(col)
		}
		return pqarrow.WriteArrowToColumn(g.ctx, cw, col, def, nil, g.nulls[i])
	}
	l := col.(*array.List)
	info := cw.LevelInfo()
	offs := l.Offsets()[l.Data().Offset():][:l.Len()+1] // Offsets() is the whole buffer, not the slice's
	for j := 0; l.NullN() > 0 && j < l.Len(); j++ {
		if l.IsNull(j) && offs[j+1] != offs[j] {
			return fmt.Errorf("row %d: a null list with %d elements", j, offs[j+1]-offs[j])
		}
	}
	first, last := int64(offs[0]), int64(offs[len(offs)-1])
	values := array.NewSlice(l.ListValues(), first, last)
	defer values.Release()
	def, rep := g.listLevels(l, offs, info.DefLevel, info.RepeatedAncestorDefLevel)
	return pqarrow.WriteArrowToColumn(g.ctx, cw, values, def, rep, true)
}

// flatLevels returns the definition levels of a nullable flat column:
// 1 where a value is present, 0 where it is null.
func (g *rowGroups) flatLevels(col arrow.Array) []int16 {
	n := col.Len()
	g.def = resize(g.def, n)
	if col.NullN() == 0 {
		for j := range g.def {
			g.def[j] = 1
		}
		return g.def
	}
	bits, off := col.NullBitmapBytes(), col.Data().Offset()
	for j := range g.def {
		g.def[j] = 0
		if bitutil.BitIsSet(bits, off+j) {
			g.def[j] = 1
		}
	}
	return g.def
}

// listLevels returns the definition and repetition levels of a list
// column whose elements are flat and nullable (as listField makes them):
// maxDef for a present element, maxDef-1 for a null one, nonEmpty-1 for
// an empty list and nonEmpty-2 for a null list. Rows of a fixed number
// of present elements, a tensor column's, take cached levels. offs
// are l's own n+1 offsets.
func (g *rowGroups) listLevels(l *array.List, offs []int32, maxDef, nonEmpty int16) (def, rep []int16) {
	n := l.Len()
	k := 0
	if n > 0 {
		k = int(offs[1] - offs[0])
	}
	fixed := k > 0 && l.NullN() == 0 && l.ListValues().NullN() == 0
	for j := 1; fixed && j <= n; j++ {
		fixed = int(offs[j]-offs[j-1]) == k
	}
	if fixed {
		if g.fixedK != k || g.fixedD != maxDef || len(g.fixDef) < n*k {
			g.fixedK, g.fixedD = k, maxDef
			g.fixDef, g.fixRep = resize(g.fixDef, n*k), resize(g.fixRep, n*k)
			for j := range g.fixDef {
				g.fixDef[j] = maxDef
				g.fixRep[j] = 1
				if j%k == 0 {
					g.fixRep[j] = 0
				}
			}
		}
		return g.fixDef[:n*k], g.fixRep[:n*k]
	}
	g.def, g.rep = g.def[:0], g.rep[:0]
	vals := l.ListValues()
	for j := range n {
		switch s, e := int(offs[j]), int(offs[j+1]); {
		case l.IsNull(j):
			g.def, g.rep = append(g.def, nonEmpty-2), append(g.rep, 0)
		case s == e:
			g.def, g.rep = append(g.def, nonEmpty-1), append(g.rep, 0)
		default:
			for v := s; v < e; v++ {
				d, r := maxDef, int16(1)
				if vals.IsNull(v) {
					d = maxDef - 1
				}
				if v == s {
					r = 0
				}
				g.def, g.rep = append(g.def, d), append(g.rep, r)
			}
		}
	}
	return g.def, g.rep
}

// resize returns s with length n, reusing its array when it is large
// enough.
func resize(s []int16, n int) []int16 {
	if cap(s) < n {
		return make([]int16, n)
	}
	return s[:n]
}

// Close writes the held rows and the file's footer, and closes the
// file's writer (and the io.Writer when it is an io.Closer).
func (g *rowGroups) Close() error {
	err := g.flush()
	if cerr := g.wr.Close(); err == nil {
		err = cerr
	}
	return err
}
