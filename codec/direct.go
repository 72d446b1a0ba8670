package codec

import (
	"encoding/binary"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/jetinfer/jetinfer/trt"
)

// This file writes the common body layouts straight into the output: int64
// or uint64 ids without nulls (or none) and tensors of numeric types that
// are not ragged, as fixed_shape_tensor columns (rank 1: plain columns).
// The general path builds Arrow arrays and goes through arrow-go's IPC
// writer, which builds the schema and the record batch metadata through
// generic visitors: 74 allocations and 8–19 µs per small result
// (BenchmarkSmallMessages). Here the flatbuffers are built directly from
// the tensors, from the Arrow IPC format's Schema.fbs and Message.fbs, and
// the tensor bytes are appended once (slot and tag constants: schema.go,
// stream.go, decode.go). Every other layout (ragged, bool,
// bfloat16, string ids, ids with nulls) takes the general path. Both give
// the same schema and record to any Arrow reader (TestDirectMatchesArrow).

// directIDs returns the bytes of ids for the direct path, or ok false when
// ids need the general path. Nil ids are fine (no id column).
func directIDs(ids arrow.Array) (data []byte, signed, ok bool) {
	if ids == nil {
		return nil, false, true
	}
	if ids.NullN() != 0 {
		return nil, false, false
	}
	switch a := ids.(type) {
	case *array.Int64:
		return int64Bytes(a.Int64Values()), true, true
	case *array.Uint64:
		return uint64Bytes(a.Uint64Values()), false, true
	}
	return nil, false, false
}

func int64Bytes(v []int64) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), len(v)*8)
}

func uint64Bytes(v []uint64) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), len(v)*8)
}

// directType returns the flatbuffer type of an element of d, or ok false
// for the dtypes the general path handles (bool, bfloat16).
func directType(d trt.DType) (typeType byte, bits int32, signed, ok bool) {
	switch d {
	case trt.Float16:
		return fbTypeFloatingPoint, precisionHalf, false, true
	case trt.Float32:
		return fbTypeFloatingPoint, precisionSingle, false, true
	case trt.Float64:
		return fbTypeFloatingPoint, precisionDouble, false, true
	case trt.Int8:
		return fbTypeInt, 8, true, true
	case trt.Uint8:
		return fbTypeInt, 8, false, true
	case trt.Int32:
		return fbTypeInt, 32, true, true
	case trt.Int64:
		return fbTypeInt, 64, true, true
	}
	return 0, 0, false, false
}

// directLayout reports whether cols and ids can take the direct path.
// cols are checked already (checkTensors).
func directLayout(cols []trt.Tensor, ids arrow.Array) bool {
	if _, _, ok := directIDs(ids); !ok {
		return false
	}
	for _, t := range cols {
		if t.Offsets != nil {
			return false
		}
		if _, _, _, ok := directType(t.DType); !ok {
			return false
		}
		if len(t.Shape) > 1 {
			// The general path names what is wrong with a row shape.
			if k, err := tensorListSize(t.Shape[1:]); err != nil || k == 0 {
				return false
			}
		}
	}
	return true
}

// appendDirect appends cols (rows rows, checked by directLayout) and ids
// as one Arrow IPC stream: schema, one record batch, end of stream.
func appendDirect(dst []byte, cols []trt.Tensor, ids arrow.Array, rows int) []byte {
	idData, idSigned, _ := directIDs(ids)
	b := flatbuffers.NewBuilder(512 + 160*len(cols))

	// Schema message.
	fields := make([]flatbuffers.UOffsetT, 0, len(cols)+1)
	if ids != nil {
		fields = append(fields, fbField(b, IDColumn, true, fbTypeInt, fbInt(b, 64, idSigned), nil, nil))
	}
	for _, t := range cols {
		typeType, bits, signed, _ := directType(t.DType)
		elem := fbElemType(b, typeType, bits, signed)
		if len(t.Shape) == 1 {
			fields = append(fields, fbField(b, t.Name, false, typeType, elem, nil, nil))
			continue
		}
		rowShape := t.Shape[1:]
		k, _ := tensorListSize(rowShape) // checked by checkTensors
		child := fbField(b, "item", true, typeType, elem, nil, nil)
		meta := appendTensorMetadata(nil, rowShape, nil, nil)
		fields = append(fields, fbField(b, t.Name, false, fbTypeFixedSizeList, fbFixedSizeList(b, k),
			[]flatbuffers.UOffsetT{child}, [][2]string{
				{extNameKey, TensorExtensionName},
				{extMetadataKey, string(meta)},
			}))
	}
	fieldVec := fbOffsets(b, fields)
	b.StartObject(4)
	b.PrependUOffsetTSlot(schemaSlotFields, fieldVec, 0) // endianness: Little, the default
	schema := b.EndObject()
	dst = appendMessage(dst, b, msgHeaderSchema, schema, 0)

	// Record batch message: field nodes and buffers in schema order, each
	// buffer 8-byte aligned in the body; no validity bitmaps (no nulls).
	type node struct{ length int64 }
	type buf struct{ off, len int64 }
	nodes := make([]node, 0, 2*len(cols)+1)
	bufs := make([]buf, 0, 3*len(cols)+2)
	var body int64
	add := func(n int) {
		bufs = append(bufs, buf{body, int64(n)})
		body += int64(padTo(n, ipcAlignment))
	}
	if ids != nil {
		nodes = append(nodes, node{int64(rows)})
		add(0)
		add(len(idData))
	}
	for _, t := range cols {
		nodes = append(nodes, node{int64(rows)})
		add(0)
		if len(t.Shape) > 1 {
			k, _ := tensorListSize(t.Shape[1:])
			nodes = append(nodes, node{int64(rows) * int64(k)})
			add(0)
		}
		add(len(t.Data))
	}
	b.Reset()
	b.StartVector(16, len(nodes), 8)
	for i := len(nodes) - 1; i >= 0; i-- {
		b.Prep(8, 16)
		b.PrependInt64(0) // null_count
		b.PrependInt64(nodes[i].length)
	}
	nodeVec := b.EndVector(len(nodes))
	b.StartVector(16, len(bufs), 8)
	for i := len(bufs) - 1; i >= 0; i-- {
		b.Prep(8, 16)
		b.PrependInt64(bufs[i].len)
		b.PrependInt64(bufs[i].off)
	}
	bufVec := b.EndVector(len(bufs))
	b.StartObject(5)
	b.PrependInt64Slot(rbSlotLength, int64(rows), 0)
	b.PrependUOffsetTSlot(rbSlotNodes, nodeVec, 0)
	b.PrependUOffsetTSlot(rbSlotBuffers, bufVec, 0)
	batch := b.EndObject()
	dst = appendMessage(dst, b, msgHeaderRecordBatch, batch, body)

	// Body.
	if ids != nil {
		dst = appendPadded(dst, idData)
	}
	for _, t := range cols {
		dst = appendPadded(dst, t.Data)
	}
	// End of stream.
	dst = binary.LittleEndian.AppendUint32(dst, ipcContinuation)
	return binary.LittleEndian.AppendUint32(dst, 0)
}

// appendMessage finishes b with a Message of header and appends it
// framed: continuation marker, metadata length, metadata padded to 8.
func appendMessage(dst []byte, b *flatbuffers.Builder, headerType byte, header flatbuffers.UOffsetT, bodyLen int64) []byte {
	b.StartObject(5)
	b.PrependInt64Slot(msgSlotBodyLength, bodyLen, 0)
	b.PrependUOffsetTSlot(msgSlotHeader, header, 0)
	b.PrependInt16Slot(msgSlotVersion, metadataV5, 0)
	b.PrependByteSlot(msgSlotHeaderType, headerType, 0)
	b.Finish(b.EndObject())
	meta := b.FinishedBytes()
	padded := padTo(len(meta), ipcAlignment)
	dst = binary.LittleEndian.AppendUint32(dst, ipcContinuation)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(padded))
	return appendPadded(dst, meta)
}

// appendPadded appends p and zeros up to a multiple of 8 bytes.
func appendPadded(dst, p []byte) []byte {
	dst = append(dst, p...)
	var zeros [ipcAlignment]byte
	return append(dst, zeros[:padTo(len(p), ipcAlignment)-len(p)]...)
}

func padTo(n, align int) int { return (n + align - 1) / align * align }

// fbField builds a Field table. As on the general path, the id column
// and list items are nullable, tensor columns are not. Children are always
// written (an empty vector when none): Arrow C++ refuses a Field without
// them.
func fbField(b *flatbuffers.Builder, name string, nullable bool, typeType byte, typ flatbuffers.UOffsetT, children []flatbuffers.UOffsetT, meta [][2]string) flatbuffers.UOffsetT {
	nameOff := b.CreateString(name)
	childVec := fbOffsets(b, children)
	var metaVec flatbuffers.UOffsetT
	if len(meta) > 0 {
		kvs := make([]flatbuffers.UOffsetT, len(meta))
		for i, kv := range meta {
			k, v := b.CreateString(kv[0]), b.CreateString(kv[1])
			b.StartObject(2)
			b.PrependUOffsetTSlot(kvSlotKey, k, 0)
			b.PrependUOffsetTSlot(kvSlotValue, v, 0)
			kvs[i] = b.EndObject()
		}
		metaVec = fbOffsets(b, kvs)
	}
	b.StartObject(7)
	b.PrependUOffsetTSlot(fieldSlotName, nameOff, 0)
	b.PrependBoolSlot(fieldSlotNullable, nullable, false)
	b.PrependByteSlot(fieldSlotTypeType, typeType, 0)
	b.PrependUOffsetTSlot(fieldSlotType, typ, 0)
	b.PrependUOffsetTSlot(fieldSlotChildren, childVec, 0)
	if metaVec != 0 {
		b.PrependUOffsetTSlot(fieldSlotMetadata, metaVec, 0)
	}
	return b.EndObject()
}

// fbOffsets builds a vector of tables.
func fbOffsets(b *flatbuffers.Builder, offs []flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	b.StartVector(4, len(offs), 4)
	for i := len(offs) - 1; i >= 0; i-- {
		b.PrependUOffsetT(offs[i])
	}
	return b.EndVector(len(offs))
}

func fbElemType(b *flatbuffers.Builder, typeType byte, bits int32, signed bool) flatbuffers.UOffsetT {
	if typeType == fbTypeFloatingPoint {
		b.StartObject(1)
		b.PrependInt16Slot(fpSlotPrecision, int16(bits), 0)
		return b.EndObject()
	}
	return fbInt(b, bits, signed)
}

func fbInt(b *flatbuffers.Builder, bits int32, signed bool) flatbuffers.UOffsetT {
	b.StartObject(2)
	b.PrependInt32Slot(intSlotBitWidth, bits, 0)
	b.PrependBoolSlot(intSlotSigned, signed, false)
	return b.EndObject()
}

func fbFixedSizeList(b *flatbuffers.Builder, size int32) flatbuffers.UOffsetT {
	b.StartObject(1)
	b.PrependInt32Slot(fslSlotListSize, size, 0)
	return b.EndObject()
}
