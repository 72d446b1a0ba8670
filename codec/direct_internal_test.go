package codec

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/jetinfer/jetinfer/trt"
)

// TestDirectMatchesArrow encodes bodies of every layout the direct path
// takes (numeric dtypes; rank 1, 2 and 4; 0, 1 and 37 rows; int64, uint64,
// sliced or no ids) through it and through arrow-go's IPC writer, and
// checks that arrow-go's reader gets equal schemas and records from both
// and that our decoder gets equal columns and ids.
func TestDirectMatchesArrow(t *testing.T) {
	RegisterTensorExtension()
	rng := rand.New(rand.NewPCG(1, 2))
	mem := memory.NewGoAllocator()
	dtypes := []trt.DType{trt.Float16, trt.Float32, trt.Float64, trt.Int8, trt.Uint8, trt.Int32, trt.Int64}
	shapes := [][]int64{{}, {3}, {2, 1, 5}}
	idKinds := []string{"none", "int64", "uint64", "sliced"}
	for _, rows := range []int{0, 1, 37} {
		for _, ids := range idKinds {
			for i, dt := range dtypes {
				// Two outputs of different dtypes and shapes per body.
				cols := []trt.Tensor{
					randTensor(rng, "out_a", dt, rows, shapes[i%len(shapes)]),
					randTensor(rng, "out_b", dtypes[(i+3)%len(dtypes)], rows, shapes[(i+1)%len(shapes)]),
				}
				name := fmt.Sprintf("rows=%d/ids=%s/%s", rows, ids, dt)
				t.Run(name, func(t *testing.T) {
					idArr := makeIDs(mem, ids, rows)
					if idArr != nil {
						defer idArr.Release()
					}
					if !directLayout(cols, idArr) {
						t.Fatal("layout does not take the direct path")
					}
					direct, err := Encoder{}.AppendResult(nil, cols, idArr)
					if err != nil {
						t.Fatal(err)
					}
					var general bytes.Buffer
					if err := (Encoder{general: true}).EncodeResult(&general, cols, idArr); err != nil {
						t.Fatal(err)
					}
					var viaWriter bytes.Buffer
					if err := (Encoder{}).EncodeResult(&viaWriter, cols, idArr); err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(viaWriter.Bytes(), direct) {
						t.Fatal("EncodeResult and AppendResult differ on the direct path")
					}
					compareArrow(t, direct, general.Bytes())
					compareDecoded(t, direct, general.Bytes())
				})
			}
		}
	}
}

func randTensor(rng *rand.Rand, name string, dt trt.DType, rows int, rowShape []int64) trt.Tensor {
	shape := append(trt.Shape{int64(rows)}, rowShape...)
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	data := make([]byte, n*int64(dt.Size()))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if dt == trt.Float16 || dt == trt.Float32 || dt == trt.Float64 {
		// Keep NaN payloads out: arrow-go's equality treats NaN != NaN.
		for i := range data {
			data[i] &= 0x3f
		}
	}
	return trt.Tensor{Name: name, DType: dt, Shape: shape, Data: data}
}

func makeIDs(mem memory.Allocator, kind string, rows int) arrow.Array {
	switch kind {
	case "int64", "sliced":
		b := array.NewInt64Builder(mem)
		defer b.Release()
		extra := 0
		if kind == "sliced" {
			extra = 3
		}
		for i := range rows + 2*extra {
			b.Append(int64(i*7 - 11))
		}
		a := b.NewArray()
		if kind != "sliced" {
			return a
		}
		defer a.Release()
		return array.NewSlice(a, int64(extra), int64(extra+rows))
	case "uint64":
		b := array.NewUint64Builder(mem)
		defer b.Release()
		for i := range rows {
			b.Append(uint64(i) * 1_000_000_007)
		}
		return b.NewArray()
	}
	return nil
}

func compareArrow(t *testing.T, direct, general []byte) {
	t.Helper()
	read := func(b []byte) (*arrow.Schema, []arrow.RecordBatch) {
		r, err := ipc.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("arrow-go cannot read the body: %v", err)
		}
		defer r.Release()
		var recs []arrow.RecordBatch
		for r.Next() {
			rec := r.RecordBatch()
			rec.Retain()
			recs = append(recs, rec)
		}
		if err := r.Err(); err != nil {
			t.Fatalf("arrow-go reading the body: %v", err)
		}
		return r.Schema(), recs
	}
	ds, drecs := read(direct)
	gs, grecs := read(general)
	if !ds.Equal(gs) {
		t.Fatalf("schemas differ:\ndirect  %s\ngeneral %s", ds, gs)
	}
	for i, f := range ds.Fields() {
		if !f.Metadata.Equal(gs.Field(i).Metadata) {
			t.Fatalf("field %s metadata differs: %v vs %v", f.Name, f.Metadata, gs.Field(i).Metadata)
		}
	}
	if len(drecs) != len(grecs) {
		t.Fatalf("%d record batches, general path %d", len(drecs), len(grecs))
	}
	for i := range drecs {
		if !array.RecordEqual(drecs[i], grecs[i]) {
			t.Fatalf("record batch %d differs", i)
		}
		drecs[i].Release()
		grecs[i].Release()
	}
}

func compareDecoded(t *testing.T, direct, general []byte) {
	t.Helper()
	d, err := DecodeResult(direct, DefaultLimits())
	if err != nil {
		t.Fatalf("decoding the direct body: %v", err)
	}
	defer d.Release()
	g, err := DecodeResult(general, DefaultLimits())
	if err != nil {
		t.Fatalf("decoding the general body: %v", err)
	}
	defer g.Release()
	if d.Rows != g.Rows || len(d.Columns) != len(g.Columns) {
		t.Fatalf("rows %d, %d columns; general %d, %d", d.Rows, len(d.Columns), g.Rows, len(g.Columns))
	}
	for i, c := range d.Columns {
		o := g.Columns[i]
		if c.Name != o.Name || c.DType != o.DType || !slices.Equal(c.RowShape, o.RowShape) || !bytes.Equal(c.Data, o.Data) {
			t.Fatalf("column %d: %s %s %v (%d bytes); general %s %s %v (%d bytes)", i,
				c.Name, c.DType, c.RowShape, len(c.Data), o.Name, o.DType, o.RowShape, len(o.Data))
		}
	}
	if (d.IDs == nil) != (g.IDs == nil) || (d.IDs != nil && !array.Equal(d.IDs, g.IDs)) {
		t.Fatalf("ids differ: %v vs %v", d.IDs, g.IDs)
	}
}

// TestDirectFallsBack checks that layouts the direct path does not write
// go the general way: bool and bfloat16 tensors, ragged tensors, string
// ids and ids with nulls.
func TestDirectFallsBack(t *testing.T) {
	mem := memory.NewGoAllocator()
	f32 := trt.Tensor{Name: "x", DType: trt.Float32, Shape: trt.Shape{2, 2}, Data: make([]byte, 16)}
	strIDs := func() arrow.Array {
		b := array.NewStringBuilder(mem)
		defer b.Release()
		b.AppendValues([]string{"a", "b"}, nil)
		return b.NewArray()
	}()
	defer strIDs.Release()
	nullIDs := func() arrow.Array {
		b := array.NewInt64Builder(mem)
		defer b.Release()
		b.AppendValues([]int64{1, 0}, []bool{true, false})
		return b.NewArray()
	}()
	defer nullIDs.Release()
	cases := map[string]struct {
		cols []trt.Tensor
		ids  arrow.Array
	}{
		"bool":       {[]trt.Tensor{{Name: "b", DType: trt.Bool, Shape: trt.Shape{2, 3}, Data: make([]byte, 6)}}, nil},
		"bfloat16":   {[]trt.Tensor{{Name: "h", DType: trt.BFloat16, Shape: trt.Shape{2, 3}, Data: make([]byte, 12)}}, nil},
		"ragged":     {[]trt.Tensor{{Name: "r", DType: trt.Float32, Shape: trt.Shape{2, trt.Dynamic}, Offsets: []int32{0, 1, 3}, Data: make([]byte, 12)}}, nil},
		"string ids": {[]trt.Tensor{f32}, strIDs},
		"null ids":   {[]trt.Tensor{f32}, nullIDs},
	}
	for name, c := range cases {
		if directLayout(c.cols, c.ids) {
			t.Errorf("%s: takes the direct path", name)
		}
		b, err := Encoder{}.AppendResult(nil, c.cols, c.ids)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := DecodeResult(b, DefaultLimits()); err != nil {
			t.Errorf("%s: decoding: %v", name, err)
		}
	}
}
