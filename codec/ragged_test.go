package codec_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
)

// raggedTensor returns a ragged tensor with rows of the given lengths and
// positions of shape pos, filled with deterministic pseudo-random bytes.
func raggedTensor(name string, d trt.DType, lens []int, pos trt.Shape, seed uint64) trt.Tensor {
	offsets := make([]int32, len(lens)+1)
	for i, n := range lens {
		offsets[i+1] = offsets[i] + int32(n)
	}
	flat := randTensor(name, d, append(trt.Shape{int64(offsets[len(lens)])}, pos...), seed)
	return trt.Tensor{Name: name, DType: d, Shape: append(trt.Shape{int64(len(lens)), trt.Dynamic}, pos...),
		Data: flat.Data, Offsets: offsets}
}

// TestRaggedResultRoundTrip encodes ragged outputs of every dtype and
// position rank, empty rows included, and decodes them back.
func TestRaggedResultRoundTrip(t *testing.T) {
	lens := []int{3, 0, 1, 5, 0}
	for _, d := range allDTypes {
		for _, pos := range []trt.Shape{{}, {4}, {2, 3}} {
			t.Run(fmt.Sprintf("%s%v", d, pos), func(t *testing.T) {
				mem := checkedAlloc(t)
				out := raggedTensor("y", d, lens, pos, uint64(d)+7)
				fixed := randTensor("score", trt.Float32, trt.Shape{int64(len(lens)), 2}, 3)
				b, err := codec.Encoder{Mem: mem}.AppendResult(nil, []trt.Tensor{out, fixed}, nil)
				if err != nil {
					t.Fatalf("AppendResult: %v", err)
				}
				res, err := codec.DecodeResult(b, codec.Limits{})
				if err != nil {
					t.Fatalf("DecodeResult: %v", err)
				}
				defer res.Release()
				c, ok := res.Column("y")
				if !ok || res.Rows != len(lens) {
					t.Fatalf("rows %d, column y present %v", res.Rows, ok)
				}
				if !c.Ragged || c.DType != d || !c.RowShape.Equal(pos) {
					t.Fatalf("column ragged=%v %s %v, want ragged %s %v", c.Ragged, c.DType, c.RowShape, d, pos)
				}
				for i, n := range lens {
					if c.Positions(i) != n {
						t.Fatalf("row %d has %d positions, want %d", i, c.Positions(i), n)
					}
				}
				if !bytes.Equal(c.Data, out.Data) {
					t.Fatal("elements differ after the round trip")
				}
				if s, _ := res.Column("score"); s.Ragged || !bytes.Equal(s.Data, fixed.Data) {
					t.Fatal("fixed column beside the ragged one differs")
				}
			})
		}
	}
}

// TestRaggedResultArrowTypes checks the Arrow type each position rank is
// written as, read with arrow-go's own IPC reader.
func TestRaggedResultArrowTypes(t *testing.T) {
	for _, tc := range []struct {
		pos  trt.Shape
		want string
	}{
		{trt.Shape{}, "list<item: float16, nullable>"},
		{trt.Shape{9}, "list<item: fixed_size_list<item: float16, nullable>[9], nullable>"},
		{trt.Shape{2, 3}, "list<item: extension<arrow.fixed_shape_tensor[value_type=float16, shape=[2 3]]>, nullable>"},
	} {
		out := raggedTensor("logits", trt.Float16, []int{2, 0, 4}, tc.pos, 1)
		var buf bytes.Buffer
		if err := codec.EncodeResult(&buf, []trt.Tensor{out}, nil); err != nil {
			t.Fatal(err)
		}
		r, err := ipc.NewReader(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Schema().Field(0).Type.String(); got != tc.want {
			t.Errorf("position shape %v: type %s, want %s", tc.pos, got, tc.want)
		}
		if !r.Next() {
			t.Fatalf("no record batch: %v", r.Err())
		}
		l := r.RecordBatch().Column(0).(*array.List)
		if l.Len() != 3 || l.IsNull(1) {
			t.Fatalf("list of %d rows, row 1 null %v", l.Len(), l.IsNull(1))
		}
		if s, e := l.ValueOffsets(1); s != e {
			t.Fatalf("row 1 spans [%d, %d), want empty", s, e)
		}
		r.Release()
	}
}

func TestRaggedEncodeRejectsBadOffsets(t *testing.T) {
	good := raggedTensor("y", trt.Float32, []int{2, 1}, trt.Shape{3}, 1)
	for name, mut := range map[string]func(*trt.Tensor){
		"offsets count":    func(x *trt.Tensor) { x.Offsets = x.Offsets[:2] },
		"offsets start":    func(x *trt.Tensor) { x.Offsets = []int32{1, 2, 3} },
		"offsets decrease": func(x *trt.Tensor) { x.Offsets = []int32{0, 3, 2} },
		"data size":        func(x *trt.Tensor) { x.Data = x.Data[:len(x.Data)-4] },
		"shape not dynamic": func(x *trt.Tensor) {
			x.Shape = trt.Shape{2, 3, 3}
		},
	} {
		bad := good
		bad.Offsets = append([]int32(nil), good.Offsets...)
		mut(&bad)
		err := codec.EncodeResult(&bytes.Buffer{}, []trt.Tensor{bad}, nil)
		t.Run(name, func(t *testing.T) { wantCode(t, err, codec.CodeInternal, "y") })
	}
}

// TestRaggedRequestEncodes checks that EncodeRequest writes ragged
// columns too, so that Go producers can send List rows.
func TestRaggedRequestEncodes(t *testing.T) {
	in := raggedTensor("ids", trt.Int64, []int{4, 0, 2}, trt.Shape{}, 5)
	b := encodeRequest(t, []trt.Tensor{in}, nil)
	req, err := codec.DecodeRequest(b, codec.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer req.Release()
	c, _ := req.Column("ids")
	if !c.Ragged || !bytes.Equal(c.Data, in.Data) || c.Positions(1) != 0 || c.Positions(2) != 2 {
		t.Fatalf("ragged request column did not round-trip: ragged=%v offsets %v", c.Ragged, c.Offsets)
	}
}
