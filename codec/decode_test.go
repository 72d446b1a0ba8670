package codec_test

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
)

// fslFloat32 builds a FixedSizeList<float32>[k] array from rows; a nil row
// is a null row.
func fslFloat32(mem memory.Allocator, k int32, rows ...[]float32) arrow.Array {
	b := array.NewFixedSizeListBuilder(mem, k, arrow.PrimitiveTypes.Float32)
	defer b.Release()
	vb := b.ValueBuilder().(*array.Float32Builder)
	for _, r := range rows {
		if r == nil {
			b.AppendNull()
			continue
		}
		b.Append(true)
		vb.AppendValues(r, nil)
	}
	return b.NewArray()
}

func float32Bytes(v ...float32) []byte {
	return slices.Clone(arrow.Float32Traits.CastToBytes(v))
}

func TestDecodePlainFixedSizeListAndPrimitive(t *testing.T) {
	mem := checkedAlloc(t)
	fsl := fslFloat32(mem, 3, []float32{1, 2, 3}, []float32{4, 5, 6})
	defer fsl.Release()
	ib := array.NewInt64Builder(mem)
	defer ib.Release()
	ib.AppendValues([]int64{10, 20}, nil)
	prim := ib.NewArray()
	defer prim.Release()
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "vec", Type: fsl.DataType()},
		{Name: "n", Type: prim.DataType()},
	}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{fsl, prim}, 2)
	defer rec.Release()
	b := writeStream(t, schema, rec)

	req, err := codec.DecodeRequest(b, codec.Limits{})
	if err != nil {
		t.Fatalf("DecodeRequest: %v", err)
	}
	defer req.Release()
	vec, _ := req.Column("vec")
	if vec.DType != trt.Float32 || !vec.RowShape.Equal(trt.Shape{3}) || !bytes.Equal(vec.Data, float32Bytes(1, 2, 3, 4, 5, 6)) {
		t.Fatalf("vec: %s %v %v", vec.DType, vec.RowShape, vec.Data)
	}
	n, _ := req.Column("n")
	if n.DType != trt.Int64 || len(n.RowShape) != 0 || binary.LittleEndian.Uint64(n.Data[8:]) != 20 {
		t.Fatalf("n: %s %v %v", n.DType, n.RowShape, n.Data)
	}
	if !aliases(vec.Data, b) || !aliases(n.Data, b) {
		t.Fatalf("single-batch data was copied")
	}
}

// tensorField returns a field whose metadata declares
// arrow.fixed_shape_tensor by hand, as a foreign producer would.
func tensorField(name string, storage arrow.DataType, metadata string, extra ...string) arrow.Field {
	keys := []string{"ARROW:extension:name", "ARROW:extension:metadata"}
	vals := []string{codec.TensorExtensionName, metadata}
	for i := 0; i+1 < len(extra); i += 2 {
		keys, vals = append(keys, extra[i]), append(vals, extra[i+1])
	}
	return arrow.Field{Name: name, Type: storage, Nullable: true, Metadata: arrow.NewMetadata(keys, vals)}
}

func TestDecodeHandWrittenTensorMetadata(t *testing.T) {
	mem := checkedAlloc(t)
	fsl := fslFloat32(mem, 6, []float32{1, 2, 3, 4, 5, 6})
	defer fsl.Release()
	for _, tc := range []struct {
		meta      string
		wantShape trt.Shape
		wantErr   string
	}{
		{`{"shape":[2,3]}`, trt.Shape{2, 3}, ""},
		{`{"shape":[2,3],"dim_names":["C","W"],"permutation":[0,1]}`, trt.Shape{2, 3}, ""},
		{`{"shape":[3,2],"permutation":[1,0]}`, nil, "not the identity"},
		{`{"shape":[4,2]}`, nil, "does not match fixed_size_list size 6"},
		{`{"dim_names":["a"]}`, nil, `no "shape"`},
		{`{"shape":[1,1,1,1,1,1,1,1,6]}`, nil, "9 dimensions, limit 8"},
		{`not json`, nil, "parsing arrow.fixed_shape_tensor metadata"},
	} {
		schema := arrow.NewSchema([]arrow.Field{tensorField("t", fsl.DataType(), tc.meta)}, nil)
		rec := array.NewRecordBatch(schema, []arrow.Array{fsl}, 1)
		req, err := codec.DecodeRequest(writeStream(t, schema, rec), codec.Limits{})
		rec.Release()
		if tc.wantErr != "" {
			code := codec.CodeInvalidArgument
			if bytes.Contains([]byte(tc.wantErr), []byte("limit")) {
				code = codec.CodeResourceExhausted
			}
			wantCode(t, err, code, "t", tc.wantErr)
			continue
		}
		if err != nil {
			t.Fatalf("metadata %s: %v", tc.meta, err)
		}
		if !req.Columns[0].RowShape.Equal(tc.wantShape) {
			t.Fatalf("metadata %s: row shape %v, want %v", tc.meta, req.Columns[0].RowShape, tc.wantShape)
		}
		req.Release()
	}
}

func TestDecodeBFloat16NeedsMetadata(t *testing.T) {
	mem := checkedAlloc(t)
	ub := array.NewUint16Builder(mem)
	defer ub.Release()
	ub.AppendValues([]uint16{0x3f80, 0x4000}, nil)
	arr := ub.NewArray()
	defer arr.Release()
	for _, tc := range []struct {
		md   arrow.Metadata
		want trt.DType
		err  string
	}{
		{arrow.Metadata{}, trt.Invalid, "unsupported dtype uint16"},
		{arrow.NewMetadata([]string{"jetinfer.dtype"}, []string{"bfloat16"}), trt.BFloat16, ""},
		{arrow.NewMetadata([]string{"jetinfer.dtype"}, []string{"float16"}), trt.Invalid, "uint16"},
	} {
		schema := arrow.NewSchema([]arrow.Field{{Name: "h", Type: arr.DataType(), Metadata: tc.md}}, nil)
		rec := array.NewRecordBatch(schema, []arrow.Array{arr}, 2)
		req, err := codec.DecodeRequest(writeStream(t, schema, rec), codec.Limits{})
		rec.Release()
		if tc.err != "" {
			wantCode(t, err, codec.CodeInvalidArgument, "h", tc.err)
			continue
		}
		if err != nil || req.Columns[0].DType != tc.want {
			t.Fatalf("got %v, %v; want %s", req, err, tc.want)
		}
		if !bytes.Equal(req.Columns[0].Data, []byte{0x80, 0x3f, 0x00, 0x40}) {
			t.Fatalf("bfloat16 bits changed: %x", req.Columns[0].Data)
		}
	}
}

func TestDecodeRejectsUnsupportedTypes(t *testing.T) {
	mem := checkedAlloc(t)
	mk := func(dt arrow.DataType) arrow.Array {
		b := array.NewBuilder(mem, dt)
		defer b.Release()
		b.AppendEmptyValue()
		return b.NewArray()
	}
	for _, tc := range []struct {
		dt   arrow.DataType
		frag string
	}{
		{arrow.PrimitiveTypes.Uint32, "unsupported dtype uint32"},
		{arrow.PrimitiveTypes.Int16, "unsupported dtype int16"},
		{arrow.BinaryTypes.String, "unsupported column type utf8"},
		{arrow.StructOf(arrow.Field{Name: "a", Type: arrow.PrimitiveTypes.Int8}), "unsupported column type struct"},
		{arrow.LargeListOf(arrow.PrimitiveTypes.Float32), "unsupported column type large_list"},
		{arrow.FixedSizeListOf(2, arrow.FixedSizeListOf(2, arrow.PrimitiveTypes.Float32)), "unsupported element type fixed_size_list"},
		{arrow.ListOf(arrow.ListOf(arrow.PrimitiveTypes.Float32)), "unsupported element type list<float32>"},
	} {
		arr := mk(tc.dt)
		schema := arrow.NewSchema([]arrow.Field{{Name: "c", Type: tc.dt, Nullable: true}}, nil)
		rec := array.NewRecordBatch(schema, []arrow.Array{arr}, 1)
		_, err := codec.DecodeRequest(writeStream(t, schema, rec), codec.Limits{})
		rec.Release()
		arr.Release()
		wantCode(t, err, codec.CodeInvalidArgument, "c", tc.frag)
	}
}

// raggedRows builds List<float32> (k == 0) or List<FixedSizeList<float32>[k]>.
func raggedRows(mem memory.Allocator, k int32, rows ...[]float32) arrow.Array {
	var b *array.ListBuilder
	if k == 0 {
		b = array.NewListBuilder(mem, arrow.PrimitiveTypes.Float32)
	} else {
		b = array.NewListBuilder(mem, arrow.FixedSizeListOf(k, arrow.PrimitiveTypes.Float32))
	}
	defer b.Release()
	for _, r := range rows {
		if r == nil {
			b.AppendNull()
			continue
		}
		b.Append(true)
		if k == 0 {
			b.ValueBuilder().(*array.Float32Builder).AppendValues(r, nil)
			continue
		}
		fb := b.ValueBuilder().(*array.FixedSizeListBuilder)
		for i := 0; i < len(r); i += int(k) {
			fb.Append(true)
			fb.ValueBuilder().(*array.Float32Builder).AppendValues(r[i:i+int(k)], nil)
		}
	}
	return b.NewArray()
}

func TestDecodeRagged(t *testing.T) {
	mem := checkedAlloc(t)
	seq := raggedRows(mem, 0, []float32{1, 2, 3}, []float32{}, []float32{4})
	defer seq.Release()
	vecs := raggedRows(mem, 2, []float32{1, 2}, []float32{3, 4, 5, 6}, []float32{})
	defer vecs.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "seq", Type: seq.DataType()}, {Name: "vecs", Type: vecs.DataType()}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{seq, vecs}, 3)
	defer rec.Release()
	b := writeStream(t, schema, rec)
	req, err := codec.DecodeRequest(b, codec.Limits{})
	if err != nil {
		t.Fatalf("DecodeRequest: %v", err)
	}
	defer req.Release()
	s, _ := req.Column("seq")
	if !s.Ragged || len(s.RowShape) != 0 || !slices.Equal(s.Offsets, []int32{0, 3, 3, 4}) || !bytes.Equal(s.Data, float32Bytes(1, 2, 3, 4)) {
		t.Fatalf("seq: ragged=%v shape %v offsets %v", s.Ragged, s.RowShape, s.Offsets)
	}
	if s.Positions(0) != 3 || !bytes.Equal(s.Row(2), float32Bytes(4)) || s.RowBytes() != 0 || s.PositionBytes() != 4 {
		t.Fatalf("seq accessors wrong")
	}
	v, _ := req.Column("vecs")
	if !v.Ragged || !v.RowShape.Equal(trt.Shape{2}) || !slices.Equal(v.Offsets, []int32{0, 1, 3, 3}) || !bytes.Equal(v.Row(1), float32Bytes(3, 4, 5, 6)) {
		t.Fatalf("vecs: shape %v offsets %v", v.RowShape, v.Offsets)
	}
	if !aliases(s.Data, b) || !aliases(v.Data, b) {
		t.Fatalf("ragged single-batch data was copied")
	}
	if _, ok := v.Tensor(); ok {
		t.Fatalf("Tensor() of a ragged column succeeded")
	}
}

// TestDecodeSlicedRagged feeds a list whose offsets do not start at zero,
// as a writer of a sliced array may produce.
func TestDecodeSlicedRagged(t *testing.T) {
	mem := checkedAlloc(t)
	full := raggedRows(mem, 0, []float32{9, 9}, []float32{1, 2}, []float32{3})
	defer full.Release()
	sliced := array.NewSlice(full, 1, 3)
	defer sliced.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "seq", Type: sliced.DataType()}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{sliced}, 2)
	defer rec.Release()
	req, err := codec.DecodeRequest(writeStream(t, schema, rec), codec.Limits{})
	if err != nil {
		t.Fatalf("DecodeRequest: %v", err)
	}
	defer req.Release()
	c := req.Columns[0]
	if !slices.Equal(c.Offsets, []int32{0, 2, 3}) || !bytes.Equal(c.Data, float32Bytes(1, 2, 3)) {
		t.Fatalf("offsets %v data %v", c.Offsets, c.Data)
	}
}

func TestDecodeMultiBatch(t *testing.T) {
	mem := checkedAlloc(t)
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "vec", Type: arrow.FixedSizeListOf(2, arrow.PrimitiveTypes.Float32), Nullable: true},
		{Name: "seq", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32), Nullable: true},
	}, nil)
	batch := func(ids []int64, vec [][]float32, seq [][]float32) arrow.RecordBatch {
		ib := array.NewInt64Builder(mem)
		defer ib.Release()
		ib.AppendValues(ids, nil)
		a, v, s := ib.NewArray(), fslFloat32(mem, 2, vec...), raggedRows(mem, 0, seq...)
		defer a.Release()
		defer v.Release()
		defer s.Release()
		return array.NewRecordBatch(schema, []arrow.Array{a, v, s}, int64(len(ids)))
	}
	r1 := batch([]int64{1, 2}, [][]float32{{1, 2}, {3, 4}}, [][]float32{{1}, {2, 3}})
	r0 := batch(nil, nil, nil)
	r2 := batch([]int64{3}, [][]float32{{5, 6}}, [][]float32{{4, 5, 6}})
	defer r1.Release()
	defer r0.Release()
	defer r2.Release()

	b := writeStream(t, schema, r1, r0, r2)
	req, err := codec.Decoder{Mem: mem}.DecodeRequest(b)
	if err != nil {
		t.Fatalf("DecodeRequest: %v", err)
	}
	if req.Rows != 3 {
		t.Fatalf("rows %d", req.Rows)
	}
	vec, _ := req.Column("vec")
	if !bytes.Equal(vec.Data, float32Bytes(1, 2, 3, 4, 5, 6)) || aliases(vec.Data, b) {
		t.Fatalf("vec data %v (aliases %v)", vec.Data, aliases(vec.Data, b))
	}
	seq, _ := req.Column("seq")
	if !slices.Equal(seq.Offsets, []int32{0, 1, 3, 6}) || !bytes.Equal(seq.Data, float32Bytes(1, 2, 3, 4, 5, 6)) {
		t.Fatalf("seq offsets %v", seq.Offsets)
	}
	if got := req.IDs.(*array.Int64).Int64Values(); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("ids %v", got)
	}
	req.Release()
	if req.IDs != nil {
		t.Fatalf("Release left IDs set")
	}

	// One non-empty batch among empty ones still aliases the body.
	b = writeStream(t, schema, r0, r2, r0)
	req, err = codec.Decoder{Mem: mem}.DecodeRequest(b)
	if err != nil {
		t.Fatalf("DecodeRequest: %v", err)
	}
	defer req.Release()
	if vec, _ := req.Column("vec"); req.Rows != 1 || !aliases(vec.Data, b) {
		t.Fatalf("rows %d, aliases %v", req.Rows, aliases(vec.Data, b))
	}
}

func TestDecodeSchemaOnly(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.BinaryTypes.String},
		{Name: "x", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32)},
	}, nil)
	mem := checkedAlloc(t)
	req, err := codec.Decoder{Mem: mem}.DecodeRequest(writeStream(t, schema))
	if err != nil {
		t.Fatalf("DecodeRequest: %v", err)
	}
	defer req.Release()
	if req.Rows != 0 || req.IDs.Len() != 0 || len(req.Columns[0].Data) != 0 || !slices.Equal(req.Columns[0].Offsets, []int32{0}) {
		t.Fatalf("schema-only request: %+v", req)
	}
}

func TestDecodeNullsNameColumnAndRow(t *testing.T) {
	mem := checkedAlloc(t)
	fslNullRow := fslFloat32(mem, 2, []float32{1, 2}, []float32{3, 4}, nil)
	defer fslNullRow.Release()

	eb := array.NewFixedSizeListBuilder(mem, 2, arrow.PrimitiveTypes.Float32)
	defer eb.Release()
	for i := range 3 {
		eb.Append(true)
		vb := eb.ValueBuilder().(*array.Float32Builder)
		vb.Append(1)
		if i == 1 {
			vb.AppendNull()
		} else {
			vb.Append(2)
		}
	}
	fslNullElem := eb.NewArray()
	defer fslNullElem.Release()

	listNullRow := raggedRows(mem, 0, []float32{1}, nil, []float32{2})
	defer listNullRow.Release()

	lb := array.NewListBuilder(mem, arrow.PrimitiveTypes.Float32)
	defer lb.Release()
	lvb := lb.ValueBuilder().(*array.Float32Builder)
	lb.Append(true)
	lvb.AppendValues([]float32{1, 2}, nil)
	lb.Append(true)
	lvb.AppendValues([]float32{1, 2}, nil)
	lb.Append(true)
	lvb.Append(3)
	lvb.AppendNull()
	listNullPos := lb.NewArray()
	defer listNullPos.Release()

	pb := array.NewFloat32Builder(mem)
	defer pb.Release()
	pb.AppendValues([]float32{1, 2, 3}, []bool{true, true, false})
	primNull := pb.NewArray()
	defer primNull.Release()

	for name, tc := range map[string]struct {
		arr  arrow.Array
		frag string
	}{
		"fsl row":      {fslNullRow, "null row at row 2"},
		"fsl element":  {fslNullElem, "null element at row 1"},
		"list row":     {listNullRow, "null row at row 1"},
		"list element": {listNullPos, "null position at row 2"},
		"primitive":    {primNull, "null row at row 2"},
	} {
		t.Run(name, func(t *testing.T) {
			schema := arrow.NewSchema([]arrow.Field{{Name: "col", Type: tc.arr.DataType(), Nullable: true}}, nil)
			rec := array.NewRecordBatch(schema, []arrow.Array{tc.arr}, int64(tc.arr.Len()))
			defer rec.Release()
			_, err := codec.DecodeRequest(writeStream(t, schema, rec), codec.Limits{})
			wantCode(t, err, codec.CodeInvalidArgument, "col", tc.frag)
		})
	}
}

// toLegacy rewrites an IPC stream into the pre-0.15 framing without
// continuation markers: each message becomes int32 length + metadata
// (padded by 4 bytes to keep 8-byte alignment) + body.
func toLegacy(t *testing.T, b []byte) []byte {
	t.Helper()
	var out []byte
	for len(b) >= 8 {
		if binary.LittleEndian.Uint32(b) != 0xFFFFFFFF {
			t.Fatalf("expected a continuation marker")
		}
		n := int(binary.LittleEndian.Uint32(b[4:]))
		if n == 0 {
			return binary.LittleEndian.AppendUint32(out, 0)
		}
		meta := b[8 : 8+n]
		// The body length lives in the metadata; pass the body bytes
		// through by finding the next continuation marker.
		rest := b[8+n:]
		next := bytes.Index(rest, []byte{0xFF, 0xFF, 0xFF, 0xFF})
		out = binary.LittleEndian.AppendUint32(out, uint32(n+4))
		out = append(out, meta...)
		out = append(out, 0, 0, 0, 0)
		out = append(out, rest[:next]...)
		b = rest[next:]
	}
	return out
}

func TestDecodeLegacyFraming(t *testing.T) {
	in := randTensor("x", trt.Int32, trt.Shape{3, 2}, 4)
	// Int32 values 0..5 avoid 0xFFFFFFFF inside the body, which toLegacy
	// would mistake for a marker.
	for i := range 6 {
		binary.LittleEndian.PutUint32(in.Data[4*i:], uint32(i))
	}
	b := toLegacy(t, encodeRequest(t, []trt.Tensor{in}, nil))
	req, err := codec.DecodeRequest(b, codec.Limits{})
	if err != nil {
		t.Fatalf("DecodeRequest(legacy): %v", err)
	}
	defer req.Release()
	if !bytes.Equal(req.Columns[0].Data, in.Data) {
		t.Fatalf("legacy data differs")
	}
}

func TestDecodeLimits(t *testing.T) {
	body := encodeRequest(t, []trt.Tensor{
		randTensor("a", trt.Float32, trt.Shape{10, 2, 3}, 1),
		randTensor("b", trt.Float32, trt.Shape{10}, 2),
	}, nil)
	for name, tc := range map[string]struct {
		lim  codec.Limits
		frag string
	}{
		"body":     {codec.Limits{MaxBodyBytes: len(body) - 1}, "limit"},
		"rows":     {codec.Limits{MaxRows: 9}, "at least 10 rows, more than the limit of 9"},
		"columns":  {codec.Limits{MaxColumns: 1}, "2 columns, limit 1"},
		"dims":     {codec.Limits{MaxDims: 1}, "2 dimensions, limit 1"},
		"elements": {codec.Limits{MaxRowElements: 5}, "6 elements per row, limit 5"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := codec.DecodeRequest(body, tc.lim)
			col := ""
			if name == "dims" || name == "elements" {
				col = "a"
			}
			wantCode(t, err, codec.CodeResourceExhausted, col, tc.frag)
		})
	}
	mem := checkedAlloc(t)
	long := raggedRows(mem, 0, []float32{1, 2, 3, 4, 5, 6, 7})
	defer long.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "seq", Type: long.DataType()}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{long}, 1)
	defer rec.Release()
	_, err := codec.DecodeRequest(writeStream(t, schema, rec), codec.Limits{MaxRowElements: 6})
	wantCode(t, err, codec.CodeResourceExhausted, "seq", "row 0 has 7 positions")
}

func TestDecodeMalformedFraming(t *testing.T) {
	good := encodeRequest(t, []trt.Tensor{randTensor("x", trt.Float32, trt.Shape{2, 4}, 1)}, nil)
	le := binary.LittleEndian
	for name, tc := range map[string]struct {
		b    []byte
		frag string
	}{
		"empty":         {nil, "no schema message"},
		"file format":   {append([]byte("ARROW1\x00\x00"), good...), "Arrow IPC file"},
		"short prefix":  {[]byte{0xFF, 0xFF, 0xFF}, "too few"},
		"huge metadata": {le.AppendUint32([]byte{0xFF, 0xFF, 0xFF, 0xFF}, 1<<30), "exceeds"},
		"negative":      {le.AppendUint32([]byte{0xFF, 0xFF, 0xFF, 0xFF}, 0x80000000), "negative metadata length"},
		"unaligned":     {append(le.AppendUint32([]byte{0xFF, 0xFF, 0xFF, 0xFF}, 12), make([]byte, 12)...), "unaligned"},
		"trailing":      {append(slices.Clone(good), 1, 2, 3), "after the IPC end-of-stream marker"},
		"truncated":     {good[:len(good)-20], ""},
		"zero metadata": {append(le.AppendUint32([]byte{0xFF, 0xFF, 0xFF, 0xFF}, 8), make([]byte, 8)...), "message"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := codec.DecodeRequest(tc.b, codec.Limits{})
			wantCode(t, err, codec.CodeInvalidArgument, "", tc.frag)
		})
	}
}

// TestDecodeNeverPanics truncates a body at every length and flips every
// byte: the decoder must answer each with a result or an *Error, never a
// panic (which it would report as "decoder panic"). For scale: on the third
// body here, flipping bit 0 of byte 14 (in
// the schema flatbuffer) makes arrow-go v18.8.0's own ipc.NewReader die
// with "fatal error: runtime: out of memory", which recover cannot catch.
func TestDecodeNeverPanics(t *testing.T) {
	mem := checkedAlloc(t)
	ids := stringIDs(mem, "a", "bb", "ccc")
	defer ids.Release()
	seq := raggedRows(mem, 2, []float32{1, 2}, []float32{}, []float32{3, 4, 5, 6})
	defer seq.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: ids.DataType()}, {Name: "seq", Type: seq.DataType()}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{ids, seq}, 3)
	defer rec.Release()
	bodies := [][]byte{
		writeStream(t, schema, rec, rec),
		encodeRequest(t, []trt.Tensor{randTensor("x", trt.Bool, trt.Shape{3, 2, 2}, 1), randTensor("y", trt.BFloat16, trt.Shape{3}, 2)}, ids),
		encodeRequest(t, []trt.Tensor{randTensor("x", trt.Float32, trt.Shape{2, 4}, 1)}, nil),
	}
	for _, good := range bodies {
		for n := range len(good) {
			checkDecode(t, mem, good[:n])
		}
		for i := range good {
			for _, x := range []byte{0x01, 0x80, 0xFF} {
				b := slices.Clone(good)
				b[i] ^= x
				checkDecode(t, mem, b)
			}
		}
	}
}

func checkDecode(t *testing.T, mem memory.Allocator, b []byte) {
	t.Helper()
	req, err := codec.Decoder{Mem: mem}.DecodeRequest(b)
	if err != nil {
		e, ok := err.(*codec.Error)
		if !ok || bytes.Contains([]byte(e.Msg), []byte("decoder panic")) {
			t.Fatalf("decoding %x: %v", b, err)
		}
		return
	}
	checkInvariants(t, req)
	req.Release()
}

// checkInvariants verifies what DecodeRequest promises about a decoded
// request, whatever bytes it came from.
func checkInvariants(t *testing.T, req *codec.Request) {
	t.Helper()
	if req.IDs != nil && req.IDs.Len() != req.Rows {
		t.Fatalf("%d ids for %d rows", req.IDs.Len(), req.Rows)
	}
	for i := range req.Columns {
		c := &req.Columns[i]
		pb := c.PositionBytes()
		if !c.Ragged {
			if len(c.Data) != req.Rows*pb {
				t.Fatalf("column %q: %d bytes for %d rows of %d", c.Name, len(c.Data), req.Rows, pb)
			}
			continue
		}
		if len(c.Offsets) != req.Rows+1 || c.Offsets[0] != 0 {
			t.Fatalf("column %q: offsets %v for %d rows", c.Name, c.Offsets, req.Rows)
		}
		for r := range req.Rows {
			if c.Offsets[r+1] < c.Offsets[r] {
				t.Fatalf("column %q: offsets decrease", c.Name)
			}
		}
		if len(c.Data) != int(c.Offsets[req.Rows])*pb {
			t.Fatalf("column %q: %d bytes for %d positions of %d", c.Name, len(c.Data), c.Offsets[req.Rows], pb)
		}
	}
}

func TestDecodeRejectsCompressionAndDictionaries(t *testing.T) {
	mem := checkedAlloc(t)
	vals := fslFloat32(mem, 2, []float32{1, 2}, []float32{3, 4})
	defer vals.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "v", Type: vals.DataType()}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{vals}, 2)
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema), ipc.WithZstd(), ipc.WithMinSpaceSavings(0))
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := codec.DecodeRequest(buf.Bytes(), codec.Limits{})
	wantCode(t, err, codec.CodeInvalidArgument, "", "compressed")

	db := array.NewDictionaryBuilder(mem, &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.PrimitiveTypes.Float32})
	defer db.Release()
	if err := db.(*array.Float32DictionaryBuilder).Append(1.5); err != nil {
		t.Fatal(err)
	}
	dict := db.NewArray()
	defer dict.Release()
	schema = arrow.NewSchema([]arrow.Field{{Name: "d", Type: dict.DataType()}}, nil)
	rec2 := array.NewRecordBatch(schema, []arrow.Array{dict}, 1)
	defer rec2.Release()
	_, err = codec.DecodeRequest(writeStream(t, schema, rec2), codec.Limits{})
	wantCode(t, err, codec.CodeInvalidArgument, "d", "dictionary-encoded")
}

func TestDecodeDuplicateColumn(t *testing.T) {
	mem := checkedAlloc(t)
	v := fslFloat32(mem, 1, []float32{1})
	defer v.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "v", Type: v.DataType()}, {Name: "v", Type: v.DataType()}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{v, v}, 1)
	defer rec.Release()
	_, err := codec.DecodeRequest(writeStream(t, schema, rec), codec.Limits{})
	wantCode(t, err, codec.CodeInvalidArgument, "v", "duplicate")
}

// TestDecodeUnnamedColumn: a column with an empty name names no engine
// input; the fuzzer found one that decoded and could not be encoded again.
func TestDecodeUnnamedColumn(t *testing.T) {
	mem := checkedAlloc(t)
	v := fslFloat32(mem, 1, []float32{1})
	defer v.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "", Type: v.DataType()}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{v}, 1)
	defer rec.Release()
	_, err := codec.DecodeRequest(writeStream(t, schema, rec), codec.Limits{})
	wantCode(t, err, codec.CodeInvalidArgument, "", "column 0 has no name")
}
