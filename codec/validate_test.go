package codec_test

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
)

// testSpec is an engine with an image input, a ragged-capable token input
// and a fixed feature input, and two optimization profiles.
func testSpec() trt.Spec {
	return trt.Spec{
		Inputs: []trt.TensorDesc{
			{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{-1, 3, -1, -1}},
			{Name: "tokens", DType: trt.Int64, Shape: trt.Shape{-1, -1}},
			{Name: "feat", DType: trt.Float16, Shape: trt.Shape{-1, 4}},
		},
		Outputs: []trt.TensorDesc{{Name: "out", DType: trt.Float32, Shape: trt.Shape{-1, 10}}},
		Profiles: []trt.Profile{
			{
				Min: map[string]trt.Shape{"pixels": {1, 3, 8, 8}, "tokens": {1, 1}, "feat": {1, 4}},
				Opt: map[string]trt.Shape{"pixels": {16, 3, 32, 32}, "tokens": {16, 64}, "feat": {16, 4}},
				Max: map[string]trt.Shape{"pixels": {32, 3, 64, 64}, "tokens": {32, 128}, "feat": {32, 4}},
			},
			{
				Min: map[string]trt.Shape{"pixels": {1, 3, 64, 64}, "tokens": {1, 1}, "feat": {1, 4}},
				Opt: map[string]trt.Shape{"pixels": {4, 3, 128, 128}, "tokens": {4, 256}, "feat": {4, 4}},
				Max: map[string]trt.Shape{"pixels": {8, 3, 256, 256}, "tokens": {8, 512}, "feat": {8, 4}},
			},
		},
	}
}

// fixedCol returns a zero-filled fixed-shape column of rows rows.
func fixedCol(name string, d trt.DType, rows int, rowShape ...int64) codec.Column {
	n, _ := trt.ByteSize(d, append(trt.Shape{int64(rows)}, rowShape...))
	return codec.Column{Name: name, DType: d, RowShape: rowShape, Data: make([]byte, n)}
}

// raggedCol returns a zero-filled ragged column with rows of the given
// lengths.
func raggedCol(name string, d trt.DType, lens []int32, posShape ...int64) codec.Column {
	offs := []int32{0}
	for _, l := range lens {
		offs = append(offs, offs[len(offs)-1]+l)
	}
	n, _ := trt.ByteSize(d, append(trt.Shape{int64(offs[len(lens)])}, posShape...))
	return codec.Column{Name: name, DType: d, RowShape: trt.Shape(posShape), Ragged: true, Offsets: offs, Data: make([]byte, n)}
}

func validRequest() *codec.Request {
	return &codec.Request{Rows: 3, Columns: []codec.Column{
		fixedCol("pixels", trt.Float32, 3, 3, 32, 32),
		raggedCol("tokens", trt.Int64, []int32{5, 100, 1}),
		fixedCol("feat", trt.Float16, 3, 4),
	}}
}

func TestValidateAccepts(t *testing.T) {
	if err := codec.ValidateRequest(validRequest(), testSpec(), codec.ValidateOptions{RejectNonFinite: true}); err != nil {
		t.Fatalf("valid request rejected: %v", err)
	}
	// Second profile: larger images, longer sequences.
	r := validRequest()
	r.Columns[0] = fixedCol("pixels", trt.Float32, 3, 3, 128, 200)
	r.Columns[1] = raggedCol("tokens", trt.Int64, []int32{300, 512, 0})
	if err := codec.ValidateRequest(r, testSpec(), codec.ValidateOptions{}); err != nil {
		t.Fatalf("request for profile 1 rejected: %v", err)
	}
	// A fixed-shape column may feed a dynamic sequence input too.
	r = validRequest()
	r.Columns[1] = fixedCol("tokens", trt.Int64, 3, 77)
	if err := codec.ValidateRequest(r, testSpec(), codec.ValidateOptions{}); err != nil {
		t.Fatalf("fixed tokens rejected: %v", err)
	}
}

func TestValidateRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		edit   func(r *codec.Request)
		opts   codec.ValidateOptions
		code   codec.Code
		column string
		frags  []string
	}{
		"wrong dtype": {
			edit:   func(r *codec.Request) { r.Columns[0] = fixedCol("pixels", trt.Float64, 3, 3, 32, 32) },
			column: "pixels", frags: []string{`column "pixels": dtype float64, engine expects float32`},
		},
		"missing column": {
			edit:   func(r *codec.Request) { r.Columns = r.Columns[:2] },
			column: "feat", frags: []string{"missing", "float16", "[4]"},
		},
		"generated input sent": {
			edit:   func(r *codec.Request) { r.Columns = append(r.Columns, fixedCol("attention_mask", trt.Int64, 3, 5)) },
			opts:   codec.ValidateOptions{Generated: map[string]string{"attention_mask": "mask"}},
			column: "attention_mask", frags: []string{"mask input", "worker fills", "do not send it", `"tokens"`},
		},
		"extra column": {
			edit:   func(r *codec.Request) { r.Columns = append(r.Columns, fixedCol("bogus", trt.Int8, 3)) },
			column: "bogus", frags: []string{"not an engine input", `"pixels"`, `"feat"`},
		},
		"wrong row shape": {
			edit:   func(r *codec.Request) { r.Columns[0] = fixedCol("pixels", trt.Float32, 3, 1, 32, 32) },
			column: "pixels", frags: []string{"row shape [1,32,32]", "engine expects [3,-1,-1]"},
		},
		"wrong rank": {
			edit:   func(r *codec.Request) { r.Columns[2] = fixedCol("feat", trt.Float16, 3, 4, 1) },
			column: "feat", frags: []string{"row shape [4,1]", "engine expects [4]"},
		},
		"outside every profile": {
			edit:   func(r *codec.Request) { r.Columns[0] = fixedCol("pixels", trt.Float32, 3, 3, 300, 300) },
			column: "pixels", frags: []string{"row shape [3,300,300]", "outside every optimization profile", "profile 0 accepts [3,8..64,8..64]", "profile 1 accepts [3,64..256,64..256]"},
		},
		"below every profile": {
			edit:   func(r *codec.Request) { r.Columns[0] = fixedCol("pixels", trt.Float32, 3, 3, 4, 4) },
			column: "pixels", frags: []string{"row shape [3,4,4]", "outside every optimization profile"},
		},
		"ragged too long": {
			edit:   func(r *codec.Request) { r.Columns[1] = raggedCol("tokens", trt.Int64, []int32{1, 513, 2}) },
			column: "tokens", frags: []string{"longest row of 513 positions", "profile 1 accepts [1..512]"},
		},
		"no single profile": {
			edit: func(r *codec.Request) {
				r.Columns[1] = raggedCol("tokens", trt.Int64, []int32{1, 300, 2}) // profile 1 only; pixels 32x32 fit profile 0 only
			},
			frags: []string{"no single profile accepts all columns"},
		},
		"ragged where fixed expected": {
			edit:   func(r *codec.Request) { r.Columns[2] = raggedCol("feat", trt.Float16, []int32{1, 2, 3}) },
			column: "feat", frags: []string{"ragged (list) rows [len]", "engine expects fixed rows [4]"},
		},
		"ragged position shape": {
			edit:   func(r *codec.Request) { r.Columns[1] = raggedCol("tokens", trt.Int64, []int32{1, 2, 3}, 2) },
			column: "tokens", frags: []string{"ragged rows [len,2]", "engine expects [-1]"},
		},
		"too many rows": {
			opts: codec.ValidateOptions{MaxRows: 2}, code: codec.CodeResourceExhausted,
			frags: []string{"3 rows, limit 2"},
		},
		"no rows": {
			edit:  func(r *codec.Request) { r.Rows = 0 },
			frags: []string{"no rows"},
		},
		"NaN": {
			edit: func(r *codec.Request) {
				binary.LittleEndian.PutUint32(r.Columns[0].Data[4*(3*32*32+17):], math.Float32bits(float32(math.NaN())))
			},
			opts:   codec.ValidateOptions{RejectNonFinite: true},
			column: "pixels", frags: []string{"row 1 holds NaN", "finite values only"},
		},
		"float16 +Inf": {
			edit:   func(r *codec.Request) { binary.LittleEndian.PutUint16(r.Columns[2].Data[2*9:], 0x7c00) },
			opts:   codec.ValidateOptions{RejectNonFinite: true},
			column: "feat", frags: []string{"row 2 holds +Inf"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := validRequest()
			if tc.edit != nil {
				tc.edit(r)
			}
			code := tc.code
			if code == "" {
				code = codec.CodeInvalidArgument
			}
			wantCode(t, codec.ValidateRequest(r, testSpec(), tc.opts), code, tc.column, tc.frags...)
		})
	}
}

func TestValidateNonFiniteEveryFloatType(t *testing.T) {
	for _, tc := range []struct {
		d    trt.DType
		put  func(b []byte)
		want string
	}{
		{trt.Float32, func(b []byte) { binary.LittleEndian.PutUint32(b, math.Float32bits(float32(math.Inf(-1)))) }, "-Inf"},
		{trt.Float64, func(b []byte) { binary.LittleEndian.PutUint64(b, math.Float64bits(math.NaN())) }, "NaN"},
		{trt.Float64, func(b []byte) { binary.LittleEndian.PutUint64(b, math.Float64bits(math.Inf(1))) }, "+Inf"},
		{trt.Float16, func(b []byte) { binary.LittleEndian.PutUint16(b, 0x7e00) }, "NaN"},
		{trt.BFloat16, func(b []byte) { binary.LittleEndian.PutUint16(b, 0xff80) }, "-Inf"},
		{trt.BFloat16, func(b []byte) { binary.LittleEndian.PutUint16(b, 0x7fc1) }, "NaN"},
	} {
		spec := trt.Spec{Inputs: []trt.TensorDesc{{Name: "seq", DType: tc.d, Shape: trt.Shape{-1, -1, 2}}}}
		r := &codec.Request{Rows: 3, Columns: []codec.Column{raggedCol("seq", tc.d, []int32{2, 0, 3}, 2)}}
		if err := codec.ValidateRequest(r, spec, codec.ValidateOptions{RejectNonFinite: true}); err != nil {
			t.Fatalf("%s: finite data rejected: %v", tc.d, err)
		}
		// Position 3 of the flattened data is in row 2 (row 1 is empty).
		tc.put(r.Columns[0].Data[3*2*tc.d.Size():])
		wantCode(t, codec.ValidateRequest(r, spec, codec.ValidateOptions{RejectNonFinite: true}), codec.CodeInvalidArgument, "seq", "row 2 holds "+tc.want)
		if err := codec.ValidateRequest(r, spec, codec.ValidateOptions{}); err != nil {
			t.Fatalf("%s: non-finite check ran without RejectNonFinite: %v", tc.d, err)
		}
	}
}

// TestValidateDecoded runs the validator on a decoded body, end to end.
func TestValidateDecoded(t *testing.T) {
	spec := trt.Spec{
		Inputs:   []trt.TensorDesc{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{-1, 8, 8}}},
		Profiles: []trt.Profile{{Min: map[string]trt.Shape{"pixels": {1, 8, 8}}, Max: map[string]trt.Shape{"pixels": {64, 8, 8}}}},
	}
	b := encodeRequest(t, []trt.Tensor{randTensor("pixels", trt.Float64, trt.Shape{2, 8, 8}, 1)}, nil)
	req, err := codec.DecodeRequest(b, codec.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer req.Release()
	wantCode(t, codec.ValidateRequest(req, spec, codec.ValidateOptions{}), codec.CodeInvalidArgument, "pixels", "dtype float64, engine expects float32")
}
