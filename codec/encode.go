package codec

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jetinfer/jetinfer/trt"
)

// Encoder writes request and result bodies. The zero value uses
// memory.DefaultAllocator. An Encoder is a value without state; it is safe
// for concurrent use.
type Encoder struct {
	// Mem allocates what cannot alias the tensors: packed bool bits and,
	// for a sliced id array, its rebased offsets. Tensor bytes are
	// written straight from trt.Tensor.Data.
	Mem memory.Allocator

	general bool // tests: always the general path (arrow-go's IPC writer)
}

// EncodeRequest writes cols as one request body: an Arrow IPC stream with
// the id column first (when ids is not nil) and one column per tensor, in
// order. Every cols[i].Shape[0] is the row count; a tensor of rank 1 becomes
// a plain primitive column, any other an arrow.fixed_shape_tensor column
// with shape Shape[1:]. A ragged tensor (Offsets set, Shape [rows,
// trt.Dynamic, dims...]) becomes a List column: List<T> without dims,
// List<FixedSizeList<T>[k]> for dims [k], and List<arrow.fixed_shape_tensor>
// for two or more dims. ids, when set, must have that many rows and be
// int64, uint64, string or large string. Invalid tensors give an *Error
// with CodeInvalidArgument.
func EncodeRequest(w io.Writer, cols []trt.Tensor, ids arrow.Array) error {
	return Encoder{}.encode(w, cols, ids, CodeInvalidArgument)
}

// EncodeResult writes outputs as one result body, laid out like a request
// body (see EncodeRequest). outputs[i].Shape[0] is the row count for all i.
// Invalid outputs are a worker bug and give an *Error with CodeInternal.
func EncodeResult(w io.Writer, outputs []trt.Tensor, ids arrow.Array) error {
	return Encoder{}.encode(w, outputs, ids, CodeInternal)
}

// EncodeResultBytes appends a result body to dst and returns the extended
// slice. It grows dst once to the body's size, so a dst reused across
// calls (dst[:0]) makes encoding one pass over the tensor bytes.
func EncodeResultBytes(dst []byte, outputs []trt.Tensor, ids arrow.Array) ([]byte, error) {
	return Encoder{}.AppendResult(dst, outputs, ids)
}

// EncodeRequest is EncodeRequest with e's allocator.
func (e Encoder) EncodeRequest(w io.Writer, cols []trt.Tensor, ids arrow.Array) error {
	return e.encode(w, cols, ids, CodeInvalidArgument)
}

// EncodeResult is EncodeResult with e's allocator.
func (e Encoder) EncodeResult(w io.Writer, outputs []trt.Tensor, ids arrow.Array) error {
	return e.encode(w, outputs, ids, CodeInternal)
}

// AppendRequest appends a request body to dst (see EncodeResultBytes).
func (e Encoder) AppendRequest(dst []byte, cols []trt.Tensor, ids arrow.Array) ([]byte, error) {
	return e.appendBody(dst, cols, ids, CodeInvalidArgument)
}

// AppendResult appends a result body to dst (see EncodeResultBytes).
func (e Encoder) AppendResult(dst []byte, outputs []trt.Tensor, ids arrow.Array) ([]byte, error) {
	return e.appendBody(dst, outputs, ids, CodeInternal)
}

func (e Encoder) appendBody(dst []byte, cols []trt.Tensor, ids arrow.Array, code Code) ([]byte, error) {
	if !e.general {
		rows, err := checkTensors(cols, ids, code)
		if err != nil {
			return dst, err
		}
		if directLayout(cols, ids) {
			return appendDirect(slices.Grow(dst, estimateSize(cols, ids)), cols, ids, rows), nil
		}
	}
	w := appendWriter{b: slices.Grow(dst, estimateSize(cols, ids))}
	if err := e.encode(&w, cols, ids, code); err != nil {
		return dst, err
	}
	return w.b, nil
}

type appendWriter struct{ b []byte }

func (a *appendWriter) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

// estimateSize bounds the encoded size from above for typical bodies: the
// tensor and id bytes, 8 bytes of padding per buffer, and room for the
// schema and record batch metadata.
func estimateSize(cols []trt.Tensor, ids arrow.Array) int {
	n := 1024
	for _, t := range cols {
		n += len(t.Data) + 4*len(t.Offsets) + 512 + 4*8
	}
	if ids != nil {
		n += 512
		for _, b := range ids.Data().Buffers() {
			if b != nil {
				n += b.Len() + 8
			}
		}
	}
	return n
}

func (e Encoder) encode(w io.Writer, cols []trt.Tensor, ids arrow.Array, code Code) (err error) {
	mem := e.Mem
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	rows, err := checkTensors(cols, ids, code)
	if err != nil {
		return err
	}
	if directLayout(cols, ids) && !e.general {
		_, err := w.Write(appendDirect(make([]byte, 0, estimateSize(cols, ids)), cols, ids, rows))
		return err
	}
	fields := make([]arrow.Field, 0, len(cols)+1)
	arrs := make([]arrow.Array, 0, len(cols)+1)
	defer func() {
		for _, a := range arrs {
			a.Release()
		}
		if p := recover(); p != nil {
			err = &Error{Code: CodeInternal, Msg: fmt.Sprintf("encoding IPC stream: arrow panicked: %v", p)}
		}
	}()
	if ids != nil {
		ids.Retain()
		arrs = append(arrs, ids)
		fields = append(fields, arrow.Field{Name: IDColumn, Type: ids.DataType(), Nullable: true})
	}
	for _, t := range cols {
		f, a, err := tensorColumn(t, rows, mem)
		if err != nil {
			return &Error{Code: code, Column: t.Name, Msg: err.Error()}
		}
		fields = append(fields, f)
		arrs = append(arrs, a)
	}
	schema := arrow.NewSchema(fields, nil)
	rec := array.NewRecordBatch(schema, arrs, int64(rows))
	defer rec.Release()
	iw := ipc.NewWriter(w, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	if err := iw.Write(rec); err != nil {
		_ = iw.Close()
		return fmt.Errorf("writing IPC record batch: %w", err)
	}
	if err := iw.Close(); err != nil {
		return fmt.Errorf("closing IPC stream: %w", err)
	}
	return nil
}

// checkTensors checks that the tensors and ids agree on a row count and
// returns it.
func checkTensors(cols []trt.Tensor, ids arrow.Array, code Code) (int, error) {
	rows := -1
	if ids != nil {
		switch ids.DataType().ID() {
		case arrow.INT64, arrow.UINT64, arrow.STRING, arrow.LARGE_STRING:
		default:
			return 0, &Error{Code: code, Column: IDColumn, Msg: fmt.Sprintf("id column has type %s; expected int64, uint64, utf8 or large_utf8", ids.DataType())}
		}
		rows = ids.Len()
	}
	seen := make(map[string]bool, len(cols))
	for _, t := range cols {
		bad := func(format string, args ...any) error {
			return &Error{Code: code, Column: t.Name, Msg: fmt.Sprintf(format, args...)}
		}
		switch {
		case t.Name == "":
			return 0, &Error{Code: code, Msg: "tensor without a name"}
		case t.Name == IDColumn:
			return 0, bad("the name %q is reserved for the id column", IDColumn)
		case seen[t.Name]:
			return 0, bad("duplicate tensor name")
		case !t.DType.Valid():
			return 0, bad("invalid dtype %v", t.DType)
		case len(t.Shape) == 0:
			return 0, bad("shape [] has no row dimension")
		}
		seen[t.Name] = true
		if t.Offsets != nil {
			if err := checkRagged(t); err != nil {
				return 0, bad("%v", err)
			}
		} else {
			size, err := trt.ByteSize(t.DType, t.Shape)
			if err != nil {
				return 0, bad("%v", err)
			}
			if size != len(t.Data) {
				return 0, bad("%d data bytes for %s %v (%d bytes)", len(t.Data), t.DType, t.Shape, size)
			}
		}
		if rows >= 0 && t.Shape[0] != int64(rows) {
			return 0, bad("%d rows, want %d like the columns before it", t.Shape[0], rows)
		}
		rows = int(t.Shape[0])
	}
	return max(rows, 0), nil
}

// checkRagged checks a ragged tensor's shape, offsets and data size.
func checkRagged(t trt.Tensor) error {
	if len(t.Shape) < 2 || t.Shape[1] != trt.Dynamic || t.Shape[0] < 0 {
		return fmt.Errorf("ragged tensor has shape %v; want [rows, %d, dims...]", t.Shape, trt.Dynamic)
	}
	rows := t.Shape[0]
	if int64(len(t.Offsets)) != rows+1 {
		return fmt.Errorf("ragged tensor has %d offsets for %d rows; want %d", len(t.Offsets), rows, rows+1)
	}
	if t.Offsets[0] != 0 {
		return fmt.Errorf("ragged tensor offsets start at %d, not 0", t.Offsets[0])
	}
	for i := 1; i < len(t.Offsets); i++ {
		if t.Offsets[i] < t.Offsets[i-1] {
			return fmt.Errorf("ragged tensor offsets decrease at row %d (%d after %d)", i-1, t.Offsets[i], t.Offsets[i-1])
		}
	}
	pos, err := trt.ByteSize(t.DType, t.Shape[2:])
	if err != nil {
		return err
	}
	if want := int64(t.Offsets[rows]) * int64(pos); int64(len(t.Data)) != want {
		return fmt.Errorf("%d data bytes for %d positions of %s %v (%d bytes)", len(t.Data), t.Offsets[rows], t.DType, t.Shape[2:], want)
	}
	return nil
}

// arrowElemType maps a dtype to the Arrow type that carries its elements.
func arrowElemType(d trt.DType) arrow.DataType {
	switch d {
	case trt.Float32:
		return arrow.PrimitiveTypes.Float32
	case trt.Float16:
		return arrow.FixedWidthTypes.Float16
	case trt.BFloat16:
		return arrow.PrimitiveTypes.Uint16
	case trt.Float64:
		return arrow.PrimitiveTypes.Float64
	case trt.Int8:
		return arrow.PrimitiveTypes.Int8
	case trt.Uint8:
		return arrow.PrimitiveTypes.Uint8
	case trt.Int32:
		return arrow.PrimitiveTypes.Int32
	case trt.Int64:
		return arrow.PrimitiveTypes.Int64
	case trt.Bool:
		return arrow.FixedWidthTypes.Boolean
	}
	return nil
}

// tensorColumn wraps t's bytes, without copying them (bool excepted), as
// one column of rows rows.
func tensorColumn(t trt.Tensor, rows int, mem memory.Allocator) (arrow.Field, arrow.Array, error) {
	if t.Offsets != nil {
		return raggedColumn(t, rows, mem)
	}
	rowShape := t.Shape[1:]
	elems, err := tensorListSize(rowShape)
	if err != nil {
		return arrow.Field{}, nil, err
	}
	leaf := arrowElemType(t.DType)
	var values *memory.Buffer
	if t.DType == trt.Bool {
		values = packBits(t.Data, mem)
	} else {
		values = memory.NewBufferBytes(t.Data)
	}
	defer values.Release()
	leafData := array.NewData(leaf, rows*int(elems), []*memory.Buffer{nil, values}, nil, 0, 0)
	defer leafData.Release()

	field := arrow.Field{Name: t.Name}
	if t.DType == trt.BFloat16 {
		field.Metadata = arrow.NewMetadata([]string{DTypeMetadataKey}, []string{BFloat16Value})
	}
	if len(rowShape) == 0 {
		field.Type = leaf
		return field, array.MakeFromData(leafData), nil
	}
	ext, err := NewFixedShapeTensorType(leaf, rowShape, nil)
	if err != nil {
		return arrow.Field{}, nil, err
	}
	listData := array.NewData(ext.Storage, rows, []*memory.Buffer{nil}, []arrow.ArrayData{leafData}, 0, 0)
	defer listData.Release()
	storage := array.MakeFromData(listData)
	defer storage.Release()
	field.Type = ext
	return field, array.NewExtensionArrayWithStorage(ext, storage), nil
}

// raggedColumn wraps a ragged tensor (checked by checkRagged) as a List
// column whose items are the positions: the elements themselves, a
// FixedSizeList<T>[k] per position, or an arrow.fixed_shape_tensor per
// position. Only the offsets (and bool bits) are copied.
func raggedColumn(t trt.Tensor, rows int, mem memory.Allocator) (arrow.Field, arrow.Array, error) {
	posShape := t.Shape[2:]
	elems, err := tensorListSize(posShape)
	if err != nil {
		return arrow.Field{}, nil, err
	}
	positions := int(t.Offsets[rows])
	leaf := arrowElemType(t.DType)
	var values *memory.Buffer
	if t.DType == trt.Bool {
		values = packBits(t.Data, mem)
	} else {
		values = memory.NewBufferBytes(t.Data)
	}
	defer values.Release()
	child := array.NewData(leaf, positions*int(elems), []*memory.Buffer{nil, values}, nil, 0, 0)
	defer child.Release()
	childType := arrow.DataType(leaf)
	switch len(posShape) {
	case 0:
	case 1:
		childType = arrow.FixedSizeListOf(int32(posShape[0]), leaf)
		fsl := array.NewData(childType, positions, []*memory.Buffer{nil}, []arrow.ArrayData{child}, 0, 0)
		child.Release()
		child = fsl
	default:
		ext, err := NewFixedShapeTensorType(leaf, posShape, nil)
		if err != nil {
			return arrow.Field{}, nil, err
		}
		storage := array.NewData(ext.Storage, positions, []*memory.Buffer{nil}, []arrow.ArrayData{child}, 0, 0)
		child.Release()
		// An extension array's data carries the extension type over its
		// storage's buffers.
		child = array.NewData(ext, positions, storage.Buffers(), storage.Children(), 0, 0)
		storage.Release()
		childType = ext
	}
	offsets := memory.NewResizableBuffer(mem)
	offsets.Resize(4 * (rows + 1))
	ob := offsets.Bytes()
	for i, o := range t.Offsets[:rows+1] {
		binary.LittleEndian.PutUint32(ob[4*i:], uint32(o))
	}
	defer offsets.Release()
	listData := array.NewData(arrow.ListOf(childType), rows, []*memory.Buffer{nil, offsets}, []arrow.ArrayData{child}, 0, 0)
	defer listData.Release()
	field := arrow.Field{Name: t.Name, Type: listData.DataType()}
	if t.DType == trt.BFloat16 {
		field.Metadata = arrow.NewMetadata([]string{DTypeMetadataKey}, []string{BFloat16Value})
	}
	return field, array.MakeFromData(listData), nil
}

// packBits packs one-byte bools (nonzero is true) into an Arrow bitmap.
func packBits(b []byte, mem memory.Allocator) *memory.Buffer {
	buf := memory.NewResizableBuffer(mem)
	buf.Resize((len(b) + 7) / 8)
	out := buf.Bytes()
	clear(out)
	for i, v := range b {
		if v != 0 {
			out[i>>3] |= 1 << (i & 7)
		}
	}
	return buf
}
