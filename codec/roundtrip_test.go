package codec_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
)

func TestRoundTripEveryDType(t *testing.T) {
	for _, d := range allDTypes {
		for _, shape := range []trt.Shape{{5}, {5, 7}, {5, 2, 3}, {0, 4}, {0}} {
			t.Run(fmt.Sprintf("%s%v", d, shape), func(t *testing.T) {
				in := randTensor("x", d, shape, uint64(d))
				b := encodeRequest(t, []trt.Tensor{in}, nil)
				req, err := codec.DecodeRequest(b, codec.Limits{})
				if err != nil {
					t.Fatalf("DecodeRequest: %v", err)
				}
				defer req.Release()
				if req.Rows != int(shape[0]) || len(req.Columns) != 1 || req.IDs != nil {
					t.Fatalf("got %d rows, %d columns, ids %v", req.Rows, len(req.Columns), req.IDs)
				}
				c := req.Columns[0]
				if c.Name != "x" || c.DType != d || c.Ragged || !c.RowShape.Equal(shape[1:]) {
					t.Fatalf("column %q %s %v ragged=%v, want x %s %v", c.Name, c.DType, c.RowShape, c.Ragged, d, shape[1:])
				}
				if !bytes.Equal(c.Data, in.Data) {
					t.Fatalf("data differs after round trip")
				}
				if d != trt.Bool && !aliases(c.Data, b) {
					t.Fatalf("single-batch column data does not alias the body")
				}
				got, ok := c.Tensor()
				if !ok || !got.Shape.Equal(shape) {
					t.Fatalf("Tensor() shape %v, want %v", got.Shape, shape)
				}
				if shape[0] > 0 && !bytes.Equal(c.Row(1), in.Data[c.RowBytes():2*c.RowBytes()]) {
					t.Fatalf("Row(1) differs")
				}
			})
		}
	}
}

func TestRoundTripSeveralColumnsAndResult(t *testing.T) {
	cols := []trt.Tensor{
		randTensor("pixels", trt.Float32, trt.Shape{6, 3, 4, 4}, 1),
		randTensor("mask", trt.Bool, trt.Shape{6, 16}, 2),
		randTensor("scale", trt.Float16, trt.Shape{6}, 3),
		randTensor("emb", trt.BFloat16, trt.Shape{6, 8}, 4),
	}
	mem := checkedAlloc(t)
	ids := stringIDs(mem, "a", "b", "c", "d", "e", "f")
	defer ids.Release()
	b, err := codec.Encoder{Mem: mem}.AppendResult(nil, cols, ids)
	if err != nil {
		t.Fatalf("AppendResult: %v", err)
	}
	res, err := codec.Decoder{Mem: mem}.DecodeResult(b)
	if err != nil {
		t.Fatalf("DecodeResult: %v", err)
	}
	defer res.Release()
	if res.Rows != 6 || len(res.Columns) != len(cols) {
		t.Fatalf("got %d rows, %d columns", res.Rows, len(res.Columns))
	}
	for i, want := range cols {
		got, ok := res.Column(want.Name)
		if !ok || &res.Columns[i] != got {
			t.Fatalf("column %q missing or out of order", want.Name)
		}
		if got.DType != want.DType || !got.RowShape.Equal(want.Shape[1:]) || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("column %q: %s %v, want %s %v (data equal %v)", want.Name, got.DType, got.RowShape, want.DType, want.Shape[1:], bytes.Equal(got.Data, want.Data))
		}
	}
	if !array.Equal(res.IDs, ids) {
		t.Fatalf("ids %v, want %v", res.IDs, ids)
	}
	// Results put the id column first.
	rdr, err := ipc.NewReader(bytes.NewReader(b), ipc.WithAllocator(mem))
	if err != nil {
		t.Fatalf("arrow-go reader: %v", err)
	}
	defer rdr.Release()
	if names := fieldNames(rdr.Schema()); !slices.Equal(names, []string{"id", "pixels", "mask", "scale", "emb"}) {
		t.Fatalf("result columns %v", names)
	}
}

func fieldNames(s *arrow.Schema) []string {
	var n []string
	for _, f := range s.Fields() {
		n = append(n, f.Name)
	}
	return n
}

func stringIDs(mem memory.Allocator, v ...string) arrow.Array {
	b := array.NewStringBuilder(mem)
	defer b.Release()
	b.AppendValues(v, nil)
	return b.NewArray()
}

func TestIDColumnTypes(t *testing.T) {
	mem := checkedAlloc(t)
	build := map[string]func() arrow.Array{
		"int64": func() arrow.Array {
			b := array.NewInt64Builder(mem)
			defer b.Release()
			b.AppendValues([]int64{7, -1, 1 << 40}, []bool{true, false, true})
			return b.NewArray()
		},
		"uint64": func() arrow.Array {
			b := array.NewUint64Builder(mem)
			defer b.Release()
			b.AppendValues([]uint64{1<<64 - 1, 0, 3}, nil)
			return b.NewArray()
		},
		"utf8": func() arrow.Array {
			b := array.NewStringBuilder(mem)
			defer b.Release()
			b.AppendValues([]string{"job-1", "", "ж"}, []bool{true, true, false})
			return b.NewArray()
		},
		"large_utf8": func() arrow.Array {
			b := array.NewLargeStringBuilder(mem)
			defer b.Release()
			b.AppendValues([]string{"x", "yy", "zzz"}, nil)
			return b.NewArray()
		},
	}
	for name, mk := range build {
		t.Run(name, func(t *testing.T) {
			ids := mk()
			defer ids.Release()
			col := randTensor("x", trt.Int32, trt.Shape{3, 2}, 9)
			b, err := codec.Encoder{Mem: mem}.AppendRequest(nil, []trt.Tensor{col}, ids)
			if err != nil {
				t.Fatalf("AppendRequest: %v", err)
			}
			req, err := codec.Decoder{Mem: mem}.DecodeRequest(b)
			if err != nil {
				t.Fatalf("DecodeRequest: %v", err)
			}
			defer req.Release()
			if !arrow.TypeEqual(req.IDs.DataType(), ids.DataType()) || !array.Equal(req.IDs, ids) {
				t.Fatalf("ids %v (%s), want %v (%s)", req.IDs, req.IDs.DataType(), ids, ids.DataType())
			}
			if req.IDs.NullN() != ids.NullN() {
				t.Fatalf("ids have %d nulls, want %d", req.IDs.NullN(), ids.NullN())
			}
			if len(req.Columns) != 1 || req.Columns[0].Name != "x" {
				t.Fatalf("id column leaked into Columns: %+v", req.Columns)
			}
		})
	}
}

func TestIDColumnWrongType(t *testing.T) {
	f32 := randTensor("v", trt.Float32, trt.Shape{2}, 1)
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Float32}}, nil)
	arr := array.MakeFromData(array.NewData(arrow.PrimitiveTypes.Float32, 2, []*memory.Buffer{nil, memory.NewBufferBytes(f32.Data)}, nil, 0, 0))
	defer arr.Release()
	rec := array.NewRecordBatch(schema, []arrow.Array{arr}, 2)
	defer rec.Release()
	_, err := codec.DecodeRequest(writeStream(t, schema, rec), codec.Limits{})
	wantCode(t, err, codec.CodeInvalidArgument, "id", "float32", "int64, uint64, utf8 or large_utf8")
}

// TestArrowGoReadsEncodedBodies decodes our output with arrow-go's own
// reader: the extension type is recognised and the storage holds the
// tensor bytes.
func TestArrowGoReadsEncodedBodies(t *testing.T) {
	mem := checkedAlloc(t)
	in := randTensor("logits", trt.Float32, trt.Shape{4, 8, 8}, 5)
	var buf bytes.Buffer
	if err := (codec.Encoder{Mem: mem}).EncodeResult(&buf, []trt.Tensor{in}, nil); err != nil {
		t.Fatalf("EncodeResult: %v", err)
	}
	rdr, err := ipc.NewReader(&buf, ipc.WithAllocator(mem))
	if err != nil {
		t.Fatalf("arrow-go reader: %v", err)
	}
	defer rdr.Release()
	if !rdr.Next() {
		t.Fatalf("no record batch: %v", rdr.Err())
	}
	rec := rdr.RecordBatch()
	ext, ok := rec.Column(0).DataType().(*codec.FixedShapeTensorType)
	if !ok {
		t.Fatalf("column type %T (%s), want *codec.FixedShapeTensorType", rec.Column(0).DataType(), rec.Column(0).DataType())
	}
	if !slices.Equal(ext.Shape(), []int64{8, 8}) || ext.ElemType().ID() != arrow.FLOAT32 {
		t.Fatalf("tensor type %s", ext)
	}
	storage := rec.Column(0).(array.ExtensionArray).Storage().(*array.FixedSizeList)
	vals := storage.ListValues().(*array.Float32)
	got := arrow.Float32Traits.CastToBytes(vals.Float32Values())
	if !bytes.Equal(got, in.Data) {
		t.Fatalf("arrow-go sees different values")
	}
}

func TestTensorExtensionMetadataBytes(t *testing.T) {
	for _, tc := range []struct {
		shape []int64
		names []string
		want  string
	}{
		{[]int64{8, 8}, nil, `{"shape":[8,8]}`},
		{[]int64{}, nil, `{"shape":[]}`},
		{[]int64{2, 3}, []string{"H", "W\""}, `{"shape":[2,3],"dim_names":["H","W\""]}`},
	} {
		typ, err := codec.NewFixedShapeTensorType(arrow.PrimitiveTypes.Float32, tc.shape, tc.names)
		if err != nil {
			t.Fatalf("NewFixedShapeTensorType: %v", err)
		}
		if got := typ.Serialize(); got != tc.want {
			t.Errorf("Serialize() = %s, want %s", got, tc.want)
		}
		back, err := typ.Deserialize(typ.StorageType(), typ.Serialize())
		if err != nil || !typ.ExtensionEquals(back) {
			t.Errorf("Deserialize(Serialize()) = %v, %v", back, err)
		}
	}
	// The bytes on the wire carry exactly pyarrow's form.
	b := encodeRequest(t, []trt.Tensor{randTensor("img", trt.Float32, trt.Shape{1, 8, 8}, 1)}, nil)
	for _, want := range []string{"ARROW:extension:name", "arrow.fixed_shape_tensor", "ARROW:extension:metadata", `{"shape":[8,8]}`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("encoded body lacks %q", want)
		}
	}
}

func TestTensorExtensionDeserializeRejects(t *testing.T) {
	typ, _ := codec.NewFixedShapeTensorType(arrow.PrimitiveTypes.Float32, []int64{2, 3}, nil)
	for _, md := range []string{
		``, `{}`, `{"shape":[2,2]}`, `{"shape":[2,-3]}`, `{"shape":[3,2],"permutation":[1,0]}`,
		`{"shape":[2,3],"dim_names":["a"]}`, `{"shape":[2.5,3]}`, `[1]`,
	} {
		if _, err := typ.Deserialize(typ.StorageType(), md); err == nil {
			t.Errorf("Deserialize(%s) accepted", md)
		}
	}
	if _, err := typ.Deserialize(arrow.PrimitiveTypes.Float32, `{"shape":[1]}`); err == nil {
		t.Errorf("Deserialize accepted non-list storage")
	}
	if _, err := typ.Deserialize(typ.StorageType(), `{"shape":[2,3],"permutation":[0,1]}`); err != nil {
		t.Errorf("identity permutation rejected: %v", err)
	}
}

func TestRegisterTensorExtensionIsIdempotent(t *testing.T) {
	codec.RegisterTensorExtension()
	codec.RegisterTensorExtension()
	if got := arrow.GetExtensionType(codec.TensorExtensionName); got == nil {
		t.Fatalf("%s not registered", codec.TensorExtensionName)
	}
}

func TestEncodeRejectsBadTensors(t *testing.T) {
	good := randTensor("a", trt.Float32, trt.Shape{2, 3}, 1)
	for name, tc := range map[string]struct {
		cols []trt.Tensor
		col  string
		frag string
	}{
		"short data":    {[]trt.Tensor{{Name: "a", DType: trt.Float32, Shape: trt.Shape{2, 3}, Data: make([]byte, 5)}}, "a", "5 data bytes"},
		"rows disagree": {[]trt.Tensor{good, randTensor("b", trt.Int8, trt.Shape{3}, 1)}, "b", "3 rows, want 2"},
		"reserved name": {[]trt.Tensor{randTensor("id", trt.Int8, trt.Shape{2}, 1)}, "id", "reserved"},
		"duplicate":     {[]trt.Tensor{good, good}, "a", "duplicate"},
		"scalar":        {[]trt.Tensor{{Name: "s", DType: trt.Float32, Shape: trt.Shape{}, Data: make([]byte, 4)}}, "s", "no row dimension"},
		"empty rows":    {[]trt.Tensor{{Name: "e", DType: trt.Float32, Shape: trt.Shape{2, 0}, Data: []byte{}}}, "e", "no elements"},
		"dynamic":       {[]trt.Tensor{{Name: "d", DType: trt.Float32, Shape: trt.Shape{2, -1}}}, "d", "not concrete"},
	} {
		t.Run(name, func(t *testing.T) {
			err := codec.EncodeRequest(&bytes.Buffer{}, tc.cols, nil)
			wantCode(t, err, codec.CodeInvalidArgument, tc.col, tc.frag)
			err = codec.EncodeResult(&bytes.Buffer{}, tc.cols, nil)
			wantCode(t, err, codec.CodeInternal, tc.col, tc.frag)
		})
	}
}

func TestErrorIsComparesCode(t *testing.T) {
	err := fmt.Errorf("decoding request r1: %w", &codec.Error{Code: codec.CodeInvalidArgument, Column: "x", Msg: "bad"})
	if !errors.Is(err, &codec.Error{Code: codec.CodeInvalidArgument}) {
		t.Fatalf("errors.Is does not match on code")
	}
	if errors.Is(err, &codec.Error{Code: codec.CodeResourceExhausted}) {
		t.Fatalf("errors.Is matches a different code")
	}
	if got := codec.CodeOf(err); got != codec.CodeInvalidArgument {
		t.Fatalf("CodeOf = %s", got)
	}
	if codec.CodeOf(nil) != codec.CodeOK || codec.CodeOf(errors.New("x")) != codec.CodeInternal {
		t.Fatalf("CodeOf of nil / plain error wrong")
	}
	if got := (&codec.Error{Column: "pixels", Msg: "dtype float64, engine expects float32"}).Error(); got != `column "pixels": dtype float64, engine expects float32` {
		t.Fatalf("Error() = %s", got)
	}
}
