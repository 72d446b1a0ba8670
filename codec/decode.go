package codec

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sort"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jetinfer/jetinfer/trt"
)

// Column is one decoded tensor column: raw little-endian elements,
// row-major, rows back to back.
type Column struct {
	// Name is the column (engine input or output) name.
	Name string
	// DType is the element type.
	DType trt.DType
	// RowShape is the shape of one row for fixed-shape columns, and the
	// shape of one position for ragged ones ([] for List<T>, [k] or the
	// fixed_shape_tensor shape for List<FixedSizeList<T>[k]>).
	RowShape trt.Shape
	// Ragged marks a List column whose rows have their own length.
	Ragged bool
	// Offsets, for ragged columns only, has Rows+1 entries starting at 0:
	// row i holds positions Offsets[i] to Offsets[i+1].
	Offsets []int32
	// Data holds every element of the column. It aliases the decoded body
	// when the body has one non-empty record batch and the column is not
	// bool; otherwise it is a private copy.
	Data []byte

	rows int
}

// RowBytes returns the size of one row of a fixed-shape column, and 0 for
// a ragged column.
func (c *Column) RowBytes() int {
	if c.Ragged {
		return 0
	}
	return c.PositionBytes()
}

// PositionBytes returns the size of one element of RowShape: one row of a
// fixed-shape column, one position of a ragged column.
func (c *Column) PositionBytes() int {
	n, err := trt.ByteSize(c.DType, c.RowShape)
	if err != nil {
		return 0
	}
	return n
}

// Positions returns the number of positions of row i of a ragged column,
// and 1 for a fixed-shape column.
func (c *Column) Positions(i int) int {
	if !c.Ragged {
		return 1
	}
	return int(c.Offsets[i+1] - c.Offsets[i])
}

// Row returns the bytes of row i; it aliases Data.
func (c *Column) Row(i int) []byte {
	pb := c.PositionBytes()
	if c.Ragged {
		return c.Data[int(c.Offsets[i])*pb : int(c.Offsets[i+1])*pb]
	}
	return c.Data[i*pb : (i+1)*pb]
}

// Tensor returns a fixed-shape column as one tensor of shape
// [rows, RowShape...] sharing Data, or false for a ragged column.
func (c *Column) Tensor() (trt.Tensor, bool) {
	if c.Ragged {
		return trt.Tensor{}, false
	}
	rows := c.rows
	if rb := c.RowBytes(); rows == 0 && rb > 0 {
		rows = len(c.Data) / rb // a Column built by hand
	}
	shape := append(trt.Shape{int64(rows)}, c.RowShape...)
	return trt.Tensor{Name: c.Name, DType: c.DType, Shape: shape, Data: c.Data}, true
}

// Request is a decoded request body.
type Request struct {
	// Rows is the number of samples, summed over the record batches.
	Rows int
	// Columns are the tensor columns in schema order, the id column
	// excluded.
	Columns []Column
	// IDs is the id column (int64, uint64, string or large string array),
	// or nil. It is retained until Release.
	IDs arrow.Array
}

// Column returns the column named name.
func (r *Request) Column(name string) (*Column, bool) { return findColumn(r.Columns, name) }

// Release releases IDs. Columns stay readable as long as the decoded bytes do.
func (r *Request) Release() { releaseIDs(&r.IDs) }

// Result is a decoded result body; its fields mean what Request's do.
type Result struct {
	Rows    int
	Columns []Column
	IDs     arrow.Array
}

// Column returns the column named name.
func (r *Result) Column(name string) (*Column, bool) { return findColumn(r.Columns, name) }

// Release releases IDs.
func (r *Result) Release() { releaseIDs(&r.IDs) }

func findColumn(cols []Column, name string) (*Column, bool) {
	for i := range cols {
		if cols[i].Name == name {
			return &cols[i], true
		}
	}
	return nil, false
}

func releaseIDs(ids *arrow.Array) {
	if *ids != nil {
		(*ids).Release()
		*ids = nil
	}
}

// Decoder decodes bodies under chosen limits and allocator. The zero value
// uses DefaultLimits and memory.DefaultAllocator. A Decoder is a value
// without state; it is safe for concurrent use.
type Decoder struct {
	Limits Limits
	// Mem allocates only what cannot alias the body: the id column of a
	// body with several record batches. Tensor copies use Go memory.
	Mem memory.Allocator
}

// DecodeRequest parses b, one Arrow IPC stream, without copying tensor
// data: Column.Data aliases b, which must stay alive and unmodified while
// the Request is used. Every error is an *Error.
func DecodeRequest(b []byte, lim Limits) (*Request, error) {
	return Decoder{Limits: lim}.DecodeRequest(b)
}

// DecodeResult parses a result body the way DecodeRequest parses a request.
func DecodeResult(b []byte, lim Limits) (*Result, error) {
	return Decoder{Limits: lim}.DecodeResult(b)
}

// DecodeRequest is DecodeRequest with d's limits and allocator.
func (d Decoder) DecodeRequest(b []byte) (*Request, error) {
	rows, cols, ids, err := d.decode(b)
	if err != nil {
		return nil, err
	}
	return &Request{Rows: rows, Columns: cols, IDs: ids}, nil
}

// DecodeResult is DecodeResult with d's limits and allocator.
func (d Decoder) DecodeResult(b []byte) (*Result, error) {
	rows, cols, ids, err := d.decode(b)
	if err != nil {
		return nil, err
	}
	return &Result{Rows: rows, Columns: cols, IDs: ids}, nil
}

// colPart is one column of one record batch.
type colPart struct {
	rows    int
	data    []byte
	offsets []int32 // ragged: rebased to 0, rows+1 entries
	ids     arrow.Array
}

func (d Decoder) decode(b []byte) (rows int, cols []Column, ids arrow.Array, err error) {
	var parts [][]colPart // [column][batch]
	defer func() {
		// Last line of defense: every length is checked before use, so a
		// panic here is a decoder bug; it still must not take the worker
		// down, and the input that caused it is the one to reject.
		if p := recover(); p != nil {
			err = invalidf("", "malformed body (decoder panic: %v)", p)
		}
		// joinIDs retains what it keeps; the per-batch arrays go here.
		for _, ps := range parts {
			for _, p := range ps {
				if p.ids != nil {
					p.ids.Release()
				}
			}
		}
		if err != nil {
			if ids != nil {
				ids.Release()
			}
			rows, cols, ids = 0, nil, nil
		}
	}()
	lim := d.Limits.withDefaults()
	mem := d.Mem
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	if len(b) > lim.MaxBodyBytes {
		return 0, nil, nil, exhaustedf("", "body is %d bytes, limit %d", len(b), lim.MaxBodyBytes)
	}
	sr := streamReader{b: b}
	msg, ok, err := sr.next()
	if err != nil {
		return 0, nil, nil, err
	}
	if !ok {
		return 0, nil, nil, invalidf("", "empty IPC stream: no schema message")
	}
	if msg.kind != msgHeaderSchema {
		return 0, nil, nil, invalidf("", "first IPC message is a %s, expected a schema", msgKindName(msg.kind))
	}
	fields, err := readSchema(msg.header, lim)
	if err != nil {
		return 0, nil, nil, err
	}
	plans := make([]colPlan, len(fields))
	seen := make(map[string]bool, len(fields))
	var needNodes, needBuffers int
	for i := range fields {
		if fields[i].name == "" {
			// No engine input or id column has an empty name.
			return 0, nil, nil, invalidf("", "column %d has no name", i)
		}
		if seen[fields[i].name] {
			return 0, nil, nil, invalidf(fields[i].name, "duplicate column name")
		}
		seen[fields[i].name] = true
		if plans[i], err = planColumn(&fields[i], lim); err != nil {
			return 0, nil, nil, err
		}
		if plans[i].elems > lim.MaxRowElements {
			return 0, nil, nil, exhaustedf(plans[i].name, "%d elements per row, limit %d", plans[i].elems, lim.MaxRowElements)
		}
		needNodes += plans[i].nodes
		needBuffers += plans[i].buffers
	}
	parts = make([][]colPart, len(plans))
	for {
		msg, ok, err := sr.next()
		if err != nil {
			return 0, nil, nil, err
		}
		if !ok {
			break
		}
		switch msg.kind {
		case msgHeaderRecordBatch:
		case msgHeaderDictionaryBatch:
			return 0, nil, nil, invalidf("", "IPC message %d is a dictionary batch; dictionary encoding is not supported", msg.index)
		default:
			return 0, nil, nil, invalidf("", "IPC message %d is a %s, expected a record batch", msg.index, msgKindName(msg.kind))
		}
		n, err := readBatch(&msg, plans, parts, needNodes, needBuffers, rows, lim)
		if err != nil {
			return 0, nil, nil, err
		}
		rows += n
	}
	cols = make([]Column, 0, len(plans))
	for i, p := range plans {
		if p.kind == kindID {
			if ids, err = joinIDs(p, parts[i], mem); err != nil {
				return 0, nil, nil, err
			}
			continue
		}
		cols = append(cols, joinColumn(p, parts[i], rows))
	}
	return rows, cols, ids, nil
}

func msgKindName(k uint8) string {
	switch k {
	case msgHeaderSchema:
		return "schema"
	case msgHeaderDictionaryBatch:
		return "dictionary batch"
	case msgHeaderRecordBatch:
		return "record batch"
	case 4:
		return "tensor message"
	case 5:
		return "sparse tensor message"
	}
	return fmt.Sprintf("message of type %d", k)
}

// RecordBatch table slots (Message.fbs).
const (
	rbSlotLength      = 0
	rbSlotNodes       = 1
	rbSlotBuffers     = 2
	rbSlotCompression = 3
	rbSlotVariadic    = 4
)

// batchCursor hands out the field nodes and buffers of one record batch
// in schema pre-order, checking each against the body.
type batchCursor struct {
	msg        *ipcMessage
	nodes, buf fbVector
	ni, bi     int
}

func (c *batchCursor) node(col string) (length, nulls int64, err error) {
	length, nulls = c.nodes.int64At(c.ni, 0), c.nodes.int64At(c.ni, 8)
	c.ni++
	if length < 0 || nulls < 0 || nulls > length {
		return 0, 0, invalidf(col, "malformed field node in IPC message %d: length %d, null count %d", c.msg.index, length, nulls)
	}
	return length, nulls, nil
}

func (c *batchCursor) buffer(col string) ([]byte, error) {
	off, n := c.buf.int64At(c.bi, 0), c.buf.int64At(c.bi, 8)
	c.bi++
	body := int64(len(c.msg.body))
	if off < 0 || n < 0 || off > body || n > body-off {
		return nil, invalidf(col, "buffer %d (offset %d, length %d) lies outside the %d-byte body of IPC message %d", c.bi-1, off, n, body, c.msg.index)
	}
	return c.msg.body[off : off+n : off+n], nil
}

// readBatch reads one record batch into parts and returns its row count.
func readBatch(msg *ipcMessage, plans []colPlan, parts [][]colPart, needNodes, needBuffers, rowsBefore int, lim Limits) (int, error) {
	h := msg.header
	length, err := h.int64(rbSlotLength, 0)
	if err != nil {
		return 0, invalidf("", "reading record batch %d: %v", msg.index, err)
	}
	if length < 0 {
		return 0, invalidf("", "record batch %d has negative length %d", msg.index, length)
	}
	if length > int64(lim.MaxRows-rowsBefore) {
		return 0, exhaustedf("", "body has at least %d rows, more than the limit of %d rows", int64(rowsBefore)+length, lim.MaxRows)
	}
	if _, compressed, err := h.ref(rbSlotCompression); err != nil || compressed {
		if err != nil {
			return 0, invalidf("", "reading record batch %d: %v", msg.index, err)
		}
		return 0, invalidf("", "record batch %d is compressed; jetinfer accepts uncompressed IPC bodies only", msg.index)
	}
	variadic, err := h.vector(rbSlotVariadic, 8)
	if err != nil {
		return 0, invalidf("", "reading record batch %d: %v", msg.index, err)
	}
	if variadic.n != 0 {
		return 0, invalidf("", "record batch %d has variadic buffers, which no accepted column type uses", msg.index)
	}
	nodes, err := h.vector(rbSlotNodes, 16)
	if err != nil {
		return 0, invalidf("", "reading record batch %d nodes: %v", msg.index, err)
	}
	buffers, err := h.vector(rbSlotBuffers, 16)
	if err != nil {
		return 0, invalidf("", "reading record batch %d buffers: %v", msg.index, err)
	}
	if nodes.n != needNodes || buffers.n != needBuffers {
		return 0, invalidf("", "record batch %d has %d field nodes and %d buffers; the schema needs %d and %d", msg.index, nodes.n, buffers.n, needNodes, needBuffers)
	}
	c := batchCursor{msg: msg, nodes: nodes, buf: buffers}
	n := int(length)
	for i := range plans {
		part, err := readColumn(&c, &plans[i], n, rowsBefore, lim)
		if err != nil {
			return 0, err
		}
		if n == 0 {
			// Checked, but nothing to keep: empty batches add no parts,
			// which bounds the parts by the row count.
			if part.ids != nil {
				part.ids.Release()
			}
			continue
		}
		parts[i] = append(parts[i], part)
	}
	return n, nil
}

// readColumn reads one column of a record batch of n rows.
func readColumn(c *batchCursor, p *colPlan, n, rowBase int, lim Limits) (colPart, error) {
	length, nulls, err := c.node(p.name)
	if err != nil {
		return colPart{}, err
	}
	if length != int64(n) {
		return colPart{}, invalidf(p.name, "column has %d rows in IPC message %d, the record batch has %d", length, c.msg.index, n)
	}
	validity, err := c.buffer(p.name)
	if err != nil {
		return colPart{}, err
	}
	if p.kind == kindID {
		return readID(c, p, n, nulls, validity)
	}
	rowOf := func(i int64) int64 { return i }
	if err := checkNoNulls(p.name, "row", validity, nulls, 0, int64(n), rowBase, rowOf); err != nil {
		return colPart{}, err
	}
	switch {
	case p.kind == kindFixed && !p.nested:
		values, err := c.buffer(p.name)
		if err != nil {
			return colPart{}, err
		}
		data, err := elements(p, values, 0, int64(n), int64(n))
		return colPart{rows: n, data: data}, err

	case p.kind == kindFixed:
		clen, cnulls, err := c.node(p.name)
		if err != nil {
			return colPart{}, err
		}
		if p.elems != 0 && int64(n) > math.MaxInt64/p.elems || clen != int64(n)*p.elems {
			return colPart{}, invalidf(p.name, "fixed_size_list values have %d elements, want %d rows × %d", clen, n, p.elems)
		}
		cvalid, err := c.buffer(p.name)
		if err != nil {
			return colPart{}, err
		}
		rowOf := func(e int64) int64 { return e / max(p.elems, 1) }
		if err := checkNoNulls(p.name, "element", cvalid, cnulls, 0, clen, rowBase, rowOf); err != nil {
			return colPart{}, err
		}
		values, err := c.buffer(p.name)
		if err != nil {
			return colPart{}, err
		}
		data, err := elements(p, values, 0, clen, clen)
		return colPart{rows: n, data: data}, err
	}
	return readRagged(c, p, n, rowBase, lim)
}

// readRagged reads the offsets and values of a List column whose own
// node and validity have been read.
func readRagged(c *batchCursor, p *colPlan, n, rowBase int, lim Limits) (colPart, error) {
	raw, err := c.buffer(p.name)
	if err != nil {
		return colPart{}, err
	}
	offsets := make([]int32, n+1)
	var first, last int64
	if n > 0 || len(raw) > 0 {
		if int64(len(raw)) < 4*(int64(n)+1) {
			return colPart{}, invalidf(p.name, "list offsets buffer has %d bytes, want %d for %d rows", len(raw), 4*(n+1), n)
		}
		first = int64(int32(binary.LittleEndian.Uint32(raw)))
		if first < 0 {
			return colPart{}, invalidf(p.name, "list offset %d is negative", first)
		}
		prev := first
		for i := 1; i <= n; i++ {
			o := int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
			if o < prev {
				return colPart{}, invalidf(p.name, "list offsets decrease at row %d (%d after %d)", rowBase+i-1, o, prev)
			}
			if p.elems != 0 && o-prev > lim.MaxRowElements/p.elems {
				return colPart{}, exhaustedf(p.name, "row %d has %d positions of %d elements, limit %d elements per row", rowBase+i-1, o-prev, p.elems, lim.MaxRowElements)
			}
			offsets[i] = int32(o - first)
			prev = o
		}
		last = prev
	}
	// row of position q (absolute index into the child).
	rowOfPos := func(q int64) int64 {
		return int64(sort.Search(n, func(i int) bool { return int64(offsets[i+1])+first > q }))
	}
	clen, cnulls, err := c.node(p.name)
	if err != nil {
		return colPart{}, err
	}
	if last > clen {
		return colPart{}, invalidf(p.name, "list offsets end at %d, past the %d list values", last, clen)
	}
	cvalid, err := c.buffer(p.name)
	if err != nil {
		return colPart{}, err
	}
	if err := checkNoNulls(p.name, "position", cvalid, cnulls, first, last, rowBase, rowOfPos); err != nil {
		return colPart{}, err
	}
	if !p.nested {
		values, err := c.buffer(p.name)
		if err != nil {
			return colPart{}, err
		}
		data, err := elements(p, values, first, last, clen)
		return colPart{rows: n, data: data, offsets: offsets}, err
	}
	llen, lnulls, err := c.node(p.name)
	if err != nil {
		return colPart{}, err
	}
	if p.elems != 0 && clen > math.MaxInt64/p.elems || llen != clen*p.elems {
		return colPart{}, invalidf(p.name, "fixed_size_list values have %d elements, want %d positions × %d", llen, clen, p.elems)
	}
	lvalid, err := c.buffer(p.name)
	if err != nil {
		return colPart{}, err
	}
	rowOfElem := func(e int64) int64 { return rowOfPos(e / max(p.elems, 1)) }
	if err := checkNoNulls(p.name, "element", lvalid, lnulls, first*p.elems, last*p.elems, rowBase, rowOfElem); err != nil {
		return colPart{}, err
	}
	values, err := c.buffer(p.name)
	if err != nil {
		return colPart{}, err
	}
	data, err := elements(p, values, first*p.elems, last*p.elems, llen)
	return colPart{rows: n, data: data, offsets: offsets}, err
}

// elements returns elements [from, to) of a values buffer that must hold
// total elements of p.dtype. Bool bits are unpacked to one byte each.
func elements(p *colPlan, values []byte, from, to, total int64) ([]byte, error) {
	if p.boolBits {
		if int64(len(values)) < (total+7)/8 {
			return nil, invalidf(p.name, "bool values buffer has %d bytes, want %d bits", len(values), total)
		}
		out := make([]byte, to-from)
		for i := range out {
			e := from + int64(i)
			out[i] = (values[e>>3] >> (e & 7)) & 1
		}
		return out, nil
	}
	size := int64(p.dtype.Size())
	if total > int64(len(values))/size {
		return nil, invalidf(p.name, "values buffer has %d bytes, want %d %s elements", len(values), total, p.dtype)
	}
	return values[from*size : to*size : to*size], nil
}

// checkNoNulls fails if slots [from, to) of a validity bitmap hold a null.
// what names a slot ("row", "position", "element") and rowOf maps a slot to
// its row within the batch, for the error.
func checkNoNulls(col, what string, bitmap []byte, nulls, from, to int64, rowBase int, rowOf func(int64) int64) error {
	if len(bitmap) == 0 {
		if nulls > 0 {
			return invalidf(col, "%d null %ss without a validity bitmap", nulls, what)
		}
		return nil
	}
	if int64(len(bitmap))*8 < to {
		return invalidf(col, "validity bitmap has %d bytes, want %d bits", len(bitmap), to)
	}
	// The bitmap, not the declared null count, is authoritative for the
	// slots that are actually used.
	if i, ok := firstZeroBit(bitmap, from, to); ok {
		return invalidf(col, "null %s at row %d; tensor columns must not contain nulls", what, int64(rowBase)+rowOf(i))
	}
	return nil
}

// firstZeroBit returns the first clear bit in [from, to) of an LSB-first
// bitmap long enough to hold to bits.
func firstZeroBit(bitmap []byte, from, to int64) (int64, bool) {
	i := from
	for ; i < to && i&7 != 0; i++ {
		if bitmap[i>>3]&(1<<(i&7)) == 0 {
			return i, true
		}
	}
	for ; i+8 <= to; i += 8 {
		if b := bitmap[i>>3]; b != 0xFF {
			return i + int64(bits.TrailingZeros8(^b)), true
		}
	}
	for ; i < to; i++ {
		if bitmap[i>>3]&(1<<(i&7)) == 0 {
			return i, true
		}
	}
	return 0, false
}

// countZeroBits counts the clear bits in [0, n).
func countZeroBits(bitmap []byte, n int64) int {
	set := 0
	full := n >> 3
	for _, b := range bitmap[:full] {
		set += bits.OnesCount8(b)
	}
	for i := full << 3; i < n; i++ {
		set += int(bitmap[i>>3] >> (i & 7) & 1)
	}
	return int(n) - set
}

// readID reads the id column of a batch as an arrow.Array aliasing the body.
func readID(c *batchCursor, p *colPlan, n int, nulls int64, validity []byte) (colPart, error) {
	nullCount := 0
	if len(validity) > 0 {
		if int64(len(validity))*8 < int64(n) {
			return colPart{}, invalidf(p.name, "validity bitmap has %d bytes, want %d bits", len(validity), n)
		}
		nullCount = countZeroBits(validity, int64(n))
	} else if nulls > 0 {
		return colPart{}, invalidf(p.name, "%d nulls without a validity bitmap", nulls)
	}
	var vbuf *memory.Buffer
	if nullCount > 0 {
		vbuf = memory.NewBufferBytes(validity)
	}
	var bufs []*memory.Buffer
	switch p.idType.ID() {
	case arrow.INT64, arrow.UINT64:
		values, err := c.buffer(p.name)
		if err != nil {
			return colPart{}, err
		}
		if int64(len(values)) < 8*int64(n) {
			return colPart{}, invalidf(p.name, "values buffer has %d bytes, want %d", len(values), 8*n)
		}
		bufs = []*memory.Buffer{vbuf, memory.NewBufferBytes(values[:8*n])}
	default:
		width := int64(4)
		if p.idType.ID() == arrow.LARGE_STRING {
			width = 8
		}
		offs, err := c.buffer(p.name)
		if err != nil {
			return colPart{}, err
		}
		data, err := c.buffer(p.name)
		if err != nil {
			return colPart{}, err
		}
		if n == 0 && len(offs) == 0 {
			offs = make([]byte, width)
		}
		if int64(len(offs)) < width*(int64(n)+1) {
			return colPart{}, invalidf(p.name, "string offsets buffer has %d bytes, want %d for %d rows", len(offs), width*(int64(n)+1), n)
		}
		offs = offs[:width*(int64(n)+1)]
		prev := int64(0)
		for i := 0; i <= n; i++ {
			var o int64
			if width == 4 {
				o = int64(int32(binary.LittleEndian.Uint32(offs[4*i:])))
			} else {
				o = int64(binary.LittleEndian.Uint64(offs[8*i:]))
			}
			if o < prev || o > int64(len(data)) {
				return colPart{}, invalidf(p.name, "string offset %d at row %d is out of order or past the %d data bytes", o, i, len(data))
			}
			prev = o
		}
		bufs = []*memory.Buffer{vbuf, memory.NewBufferBytes(offs), memory.NewBufferBytes(data)}
	}
	d := array.NewData(p.idType, n, bufs, nil, nullCount, 0)
	defer d.Release()
	return colPart{rows: n, ids: array.MakeFromData(d)}, nil
}

// joinColumn assembles a tensor column from its batches, aliasing the body
// when only one batch has rows.
func joinColumn(p colPlan, parts []colPart, rows int) Column {
	col := Column{Name: p.name, DType: p.dtype, RowShape: p.shape, Ragged: p.kind == kindRagged, rows: rows}
	var nonEmpty []colPart
	for _, part := range parts {
		if part.rows > 0 {
			nonEmpty = append(nonEmpty, part)
		}
	}
	switch {
	case len(nonEmpty) == 1:
		col.Data, col.Offsets = nonEmpty[0].data, nonEmpty[0].offsets
	case len(nonEmpty) == 0:
		col.Data = []byte{}
		if col.Ragged {
			col.Offsets = []int32{0}
		}
	default:
		size := 0
		for _, part := range nonEmpty {
			size += len(part.data)
		}
		col.Data = make([]byte, 0, size)
		if col.Ragged {
			col.Offsets = make([]int32, 1, rows+1)
		}
		for _, part := range nonEmpty {
			if col.Ragged {
				base := col.Offsets[len(col.Offsets)-1]
				for _, o := range part.offsets[1:] {
					col.Offsets = append(col.Offsets, base+o)
				}
			}
			col.Data = append(col.Data, part.data...)
		}
	}
	return col
}

// joinIDs assembles the id column, concatenating when several batches
// have rows.
func joinIDs(p colPlan, parts []colPart, mem memory.Allocator) (arrow.Array, error) {
	var nonEmpty []arrow.Array
	for _, part := range parts {
		if part.rows > 0 {
			nonEmpty = append(nonEmpty, part.ids)
		}
	}
	switch len(nonEmpty) {
	case 0:
		b := array.NewBuilder(mem, p.idType)
		defer b.Release()
		return b.NewArray(), nil
	case 1:
		nonEmpty[0].Retain()
		return nonEmpty[0], nil
	}
	out, err := array.Concatenate(nonEmpty, mem)
	if err != nil {
		return nil, invalidf(p.name, "concatenating id column: %v", err)
	}
	return out, nil
}
