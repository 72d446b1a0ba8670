package table

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/arrow-go/v18/parquet/schema"
	"golang.org/x/sync/semaphore"
)

// RowGroupBytes bounds a Parquet row group's rows in Arrow bytes: a row
// group ends at RowGroupRows rows or at this many bytes, whichever comes
// first, so that wide rows do not grow a group encoded in memory.
const RowGroupBytes = 64 << 20

// encodingBytes bounds the Arrow data handed to encoders and not yet
// encoded (a batch larger than this waits until it encodes alone).
const encodingBytes = RowGroupBytes

// queuedBatches is how many batches a group's encoder may have waiting.
const queuedBatches = 16

// rowGroups writes a Parquet file whose columns are all flat (numbers,
// strings, booleans, ...) or lists of flat elements, which is what score's
// outputs are. The levels of such columns are computed here in one pass
// (for fixed-shape tensors, copied from a cache). Each row group is
// encoded on its own goroutine, into a one-row-group Parquet file in
// memory, batch by batch as its rows are written, so that little is left
// to encode when the group or the file is closed; while one group's
// encoder finishes, the next group's starts, up to rowGroupWorkers at
// once. An appender goroutine copies each group's column chunks to the
// file in order and moves their offsets in the group's metadata to where
// they now stand; Close writes the footer of all the groups. The file is
// byte for byte the one a single file.Writer writes
// (TestRowGroupsParallelSameBytes).
//
// Memory: the batches waiting for an encoder (≤ encodingBytes of Arrow
// data, or one larger batch), and the encoded bytes of the groups being
// encoded or waiting to be appended (at most rowGroupWorkers groups).
//
// pqarrow's general writer walks every column's nesting per batch and
// buffers encoded pages of all columns until the row group ends; this
// does the same work in about half the CPU on one core
// (BenchmarkWriterParquet). Columns of any other shape go through
// pqarrow.FileWriter (useRowGroups says which).
type rowGroups struct {
	out   io.Writer
	root  *schema.GroupNode
	props *parquet.WriterProperties
	meta  metadata.KeyValueMetadata
	nulls []bool     // per column: the field is nullable
	lists []bool     // per column: a list of flat elements
	cur   *openGroup // the group being written, nil between groups

	encoders chan *groupEncoder // idle encoders
	budget   *semaphore.Weighted
	order    chan *encodedGroup // groups in file order, to the appender
	appended chan struct{}      // closed when the appender has ended
	bufs     chan []byte        // encoded groups' buffers, for reuse

	// The appender's state; read by others only after appended is
	// closed, except err (mu).
	pos    int64                  // bytes written to out
	groups int                    // row groups written
	footer *metadata.FileMetaData // the file's metadata: every group written so far
	mu     sync.Mutex
	err    error // the first error encoding or writing a group
}

// encodedGroup is one row group being encoded: a whole Parquet file of
// that one group, and its metadata.
type encodedGroup struct {
	done chan struct{} // closed when file, meta and err are set
	file []byte
	meta *metadata.FileMetaData
	err  error
}

// openGroup is the row group being written: its encoder takes the batches
// as they come.
type openGroup struct {
	batches     chan queuedBatch
	rows, bytes int64
}

// queuedBatch is a batch for an encoder and its share of the budget.
type queuedBatch struct {
	rec    arrow.RecordBatch
	weight int64
}

// groupEncoder encodes row groups, one at a time, with its own scratch.
type groupEncoder struct {
	ctx    context.Context // pqarrow's write context: its buffers are per encoder
	def    []int16         // levels of the column being written
	rep    []int16
	fixedK int   // fixed-shape levels cached in fixDef/fixRep: k positions per row
	fixedD int16 // and the present-element definition level
	fixDef []int16
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

// newRowGroups writes schema's Parquet file to w (which Close closes when
// it is an io.Closer). The Arrow schema is stored in the file's metadata
// (ARROW:schema) as pqarrow stores it, so readers get the same Arrow
// types and field metadata back. props must not enable page indexes,
// bloom filters or encryption (score's do not). Up to encoders row groups
// (0: rowGroupWorkers) are encoded at once.
func newRowGroups(arrowSchema *arrow.Schema, w io.Writer, props *parquet.WriterProperties, encoders int) (*rowGroups, error) {
	arrowProps := pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(props.Allocator()))
	pqschema, err := pqarrow.ToParquet(arrowSchema, props, arrowProps)
	if err != nil {
		return nil, fmt.Errorf("parquet schema: %w", err)
	}
	// As pqarrow stores it: the schema's own metadata, then the schema
	// with list elements named "element" like the Parquet columns.
	meta := metadata.KeyValueMetadata{}
	sm := arrowSchema.Metadata()
	for i, k := range sm.Keys() {
		if err := meta.Append(k, sm.Values()[i]); err != nil {
			return nil, err
		}
	}
	stored := make([]arrow.Field, arrowSchema.NumFields())
	for i, f := range arrowSchema.Fields() {
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
	g := &rowGroups{out: w, root: pqschema.Root(), props: props, meta: meta}
	for _, f := range arrowSchema.Fields() {
		_, isList := f.Type.(*arrow.ListType)
		g.nulls = append(g.nulls, f.Nullable)
		g.lists = append(g.lists, isList)
	}
	// The footer starts as an empty file's: schema, key-value metadata,
	// column orders, no row group.
	empty, err := g.newFile(io.Discard)
	if err != nil {
		return nil, err
	}
	if err := empty.Close(); err != nil {
		return nil, err
	}
	if g.footer, err = empty.FileMetadata(); err != nil {
		return nil, err
	}
	if _, err := io.WriteString(w, "PAR1"); err != nil {
		return nil, err
	}
	g.pos = 4
	n := encoders
	if n <= 0 {
		n = rowGroupWorkers()
	}
	g.encoders = make(chan *groupEncoder, n)
	for range n {
		g.encoders <- &groupEncoder{ctx: pqarrow.NewArrowWriteContext(context.Background(), &arrowProps)}
	}
	g.budget = semaphore.NewWeighted(encodingBytes)
	g.order = make(chan *encodedGroup, n)
	g.bufs = make(chan []byte, n+1)
	g.appended = make(chan struct{})
	go g.appendGroups()
	return g, nil
}

// newFile starts a Parquet file of the output's schema on w.
func (g *rowGroups) newFile(w io.Writer) (*file.Writer, error) {
	return file.NewParquetWriterWithError(w, g.root, file.WithWriterProps(g.props), file.WithWriteMetadata(g.meta))
}

// write hands rec's rows to the current row group's encoder, starting a
// group when none is open and ending it at RowGroupRows rows or
// RowGroupBytes bytes.
func (g *rowGroups) write(rec arrow.RecordBatch) error {
	perRow := int64(0)
	for _, c := range rec.Columns() {
		perRow += int64(dataBytes(c.Data()))
	}
	perRow /= max(rec.NumRows(), 1)
	for off := int64(0); off < rec.NumRows(); {
		if err := g.failed(); err != nil {
			return err
		}
		if g.cur == nil {
			g.open()
		}
		n := min(rec.NumRows()-off, RowGroupRows-g.cur.rows)
		part := rec
		if n == rec.NumRows() {
			rec.Retain()
		} else {
			part = rec.NewSlice(off, off+n)
		}
		weight := min(perRow*n, encodingBytes)
		_ = g.budget.Acquire(context.Background(), weight) // never fails without a deadline
		g.cur.batches <- queuedBatch{rec: part, weight: weight}
		g.cur.rows += n
		g.cur.bytes += perRow * n
		if g.cur.rows >= RowGroupRows || g.cur.bytes >= RowGroupBytes {
			g.flush()
		}
		off += n
	}
	return nil
}

// failed returns the first error of an encoder or the appender.
func (g *rowGroups) failed() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

func (g *rowGroups) fail(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err == nil {
		g.err = err
	}
}

// open starts a row group on an idle encoder (waiting for one) and queues
// it for the appender.
func (g *rowGroups) open() {
	e := <-g.encoders
	eg := &encodedGroup{done: make(chan struct{})}
	var buf []byte
	select {
	case buf = <-g.bufs:
	default:
	}
	og := &openGroup{batches: make(chan queuedBatch, queuedBatches)}
	go func() {
		defer func() { g.encoders <- e }()
		defer close(eg.done)
		eg.file, eg.meta, eg.err = e.encode(g, og.batches, buf)
	}()
	g.order <- eg
	g.cur = og
}

// flush ends the current row group, if any: its encoder finishes it.
func (g *rowGroups) flush() {
	if g.cur != nil {
		close(g.cur.batches)
		g.cur = nil
	}
}

// encode writes the batches it is given, until the channel closes, as the
// one row group of a Parquet file in buf's memory and returns the file
// and its metadata. After an error it takes the remaining batches and
// drops them.
func (e *groupEncoder) encode(g *rowGroups, batches <-chan queuedBatch, buf []byte) ([]byte, *metadata.FileMetaData, error) {
	b := bytes.NewBuffer(buf[:0])
	wr, err := g.newFile(b)
	var rg file.BufferedRowGroupWriter
	if err == nil {
		rg, err = wr.AppendBufferedRowGroupChecked()
	}
	for qb := range batches {
		if err == nil {
			err = e.writeBatch(rg, g, qb.rec)
		}
		qb.rec.Release()
		g.budget.Release(qb.weight)
	}
	if err == nil {
		err = rg.Close()
	}
	if wr == nil {
		return nil, nil, err
	}
	if err != nil {
		_ = wr.Close() // releases its buffers; the file is dropped
		return nil, nil, err
	}
	if err := wr.Close(); err != nil {
		return nil, nil, err
	}
	meta, err := wr.FileMetadata()
	if err != nil {
		return nil, nil, err
	}
	return b.Bytes(), meta, nil
}

// writeBatch writes rec's columns to rg.
func (e *groupEncoder) writeBatch(rg file.BufferedRowGroupWriter, g *rowGroups, rec arrow.RecordBatch) error {
	for i := range g.nulls {
		cw, err := rg.Column(i)
		if err != nil {
			return err
		}
		if err := e.column(cw, g.nulls[i], g.lists[i], rec.Column(i)); err != nil {
			return fmt.Errorf("column %s: %w", rec.Schema().Field(i).Name, err)
		}
	}
	return nil
}

// appendGroups copies the encoded groups' column chunks to the file in
// order, as each is done, and adds their metadata to the footer.
func (g *rowGroups) appendGroups() {
	defer close(g.appended)
	for eg := range g.order {
		<-eg.done
		err := eg.err
		if err == nil && g.failed() == nil {
			err = g.appendGroup(eg)
		}
		if err != nil {
			g.fail(err)
		}
		if eg.file != nil {
			select {
			case g.bufs <- eg.file[:0]:
			default:
			}
		}
	}
}

// appendGroup writes the column chunks of eg's file (everything between
// its leading magic and its footer) at the end of the output, moves the
// offsets in its row group's metadata by the distance, numbers the group,
// and adds it to the footer.
func (g *rowGroups) appendGroup(eg *encodedGroup) error {
	n := len(eg.file)
	if n < 12 {
		return fmt.Errorf("encoded row group: %d bytes", n)
	}
	footerLen := int(binary.LittleEndian.Uint32(eg.file[n-8:]))
	if footerLen > n-12 {
		return fmt.Errorf("encoded row group: footer of %d bytes in %d", footerLen, n)
	}
	chunks := eg.file[4 : n-8-footerLen]
	if err := g.moveGroups(eg.meta, g.pos-4); err != nil {
		return fmt.Errorf("encoded row group: %w", err)
	}
	if _, err := g.out.Write(chunks); err != nil {
		return err
	}
	g.pos += int64(len(chunks))
	return g.footer.AppendRowGroups(eg.meta)
}

// moveGroups moves the offsets in meta's row groups by delta bytes and
// numbers them after the groups written so far.
func (g *rowGroups) moveGroups(meta *metadata.FileMetaData, delta int64) error {
	for _, rg := range meta.RowGroups {
		if rg.FileOffset != nil {
			*rg.FileOffset += delta
		}
		ordinal := int16(g.groups) // as file.Writer numbers them
		rg.Ordinal = &ordinal
		for _, c := range rg.Columns {
			if c.OffsetIndexOffset != nil || c.ColumnIndexOffset != nil || c.MetaData == nil || c.MetaData.BloomFilterOffset != nil {
				return errors.New("page indexes and bloom filters are not supported")
			}
			c.FileOffset += delta
			c.MetaData.DataPageOffset += delta
			if p := c.MetaData.DictionaryPageOffset; p != nil {
				*p += delta
			}
			if p := c.MetaData.IndexPageOffset; p != nil {
				*p += delta
			}
		}
		g.groups++
	}
	return nil
}

// column writes one batch's column to cw.
func (e *groupEncoder) column(cw file.ColumnChunkWriter, nullable, list bool, col arrow.Array) error {
	if col.Len() == 0 {
		return nil
	}
	if !list {
		var def []int16
		if nullable {
			def = e.flatLevels(col)
		}
		return pqarrow.WriteArrowToColumn(e.ctx, cw, col, def, nil, nullable)
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
	def, rep := e.listLevels(l, offs, info.DefLevel, info.RepeatedAncestorDefLevel)
	return pqarrow.WriteArrowToColumn(e.ctx, cw, values, def, rep, true)
}

// flatLevels returns the definition levels of a nullable flat column:
// 1 where a value is present, 0 where it is null.
func (e *groupEncoder) flatLevels(col arrow.Array) []int16 {
	n := col.Len()
	e.def = resize(e.def, n)
	if col.NullN() == 0 {
		for j := range e.def {
			e.def[j] = 1
		}
		return e.def
	}
	bits, off := col.NullBitmapBytes(), col.Data().Offset()
	for j := range e.def {
		e.def[j] = 0
		if bitutil.BitIsSet(bits, off+j) {
			e.def[j] = 1
		}
	}
	return e.def
}

// listLevels returns the definition and repetition levels of a list
// column whose elements are flat and nullable (as listField makes them):
// maxDef for a present element, maxDef-1 for a null one, nonEmpty-1 for
// an empty list and nonEmpty-2 for a null list. Rows of a fixed number
// of present elements, a tensor column's, take cached levels. offs
// are l's own n+1 offsets.
func (e *groupEncoder) listLevels(l *array.List, offs []int32, maxDef, nonEmpty int16) (def, rep []int16) {
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
		if e.fixedK != k || e.fixedD != maxDef || len(e.fixDef) < n*k {
			e.fixedK, e.fixedD = k, maxDef
			e.fixDef, e.fixRep = resize(e.fixDef, n*k), resize(e.fixRep, n*k)
			for j := range e.fixDef {
				e.fixDef[j] = maxDef
				e.fixRep[j] = 1
				if j%k == 0 {
					e.fixRep[j] = 0
				}
			}
		}
		return e.fixDef[:n*k], e.fixRep[:n*k]
	}
	e.def, e.rep = e.def[:0], e.rep[:0]
	vals := l.ListValues()
	for j := range n {
		switch start, end := int(offs[j]), int(offs[j+1]); {
		case l.IsNull(j):
			e.def, e.rep = append(e.def, nonEmpty-2), append(e.rep, 0)
		case start == end:
			e.def, e.rep = append(e.def, nonEmpty-1), append(e.rep, 0)
		default:
			for v := start; v < end; v++ {
				d, r := maxDef, int16(1)
				if vals.IsNull(v) {
					d = maxDef - 1
				}
				if v == start {
					r = 0
				}
				e.def, e.rep = append(e.def, d), append(e.rep, r)
			}
		}
	}
	return e.def, e.rep
}

// resize returns s with length n, reusing its array when it is large
// enough.
func resize(s []int16, n int) []int16 {
	if cap(s) < n {
		return make([]int16, n)
	}
	return s[:n]
}

// Close hands on the held rows, waits for every group to be written,
// writes the footer and closes the file's writer (when an io.Closer).
func (g *rowGroups) Close() error {
	g.flush()
	close(g.order)
	<-g.appended
	err := g.err
	if err == nil {
		err = g.writeFooter()
	}
	if c, ok := g.out.(io.Closer); ok {
		err = errors.Join(err, c.Close())
	}
	return err
}

// writeFooter writes the file's metadata, its length and the magic.
func (g *rowGroups) writeFooter() error {
	var b bytes.Buffer
	if _, err := g.footer.WriteTo(&b, nil); err != nil {
		return fmt.Errorf("parquet footer: %w", err)
	}
	n := b.Len()
	b.Write(binary.LittleEndian.AppendUint32(nil, uint32(n)))
	b.WriteString("PAR1")
	_, err := g.out.Write(b.Bytes())
	return err
}
