package codec_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
)

// Interop with pyarrow runs in two halves. This machine has no pyarrow:
// go test -run TestWriteInterop -codec.write-interop writes Go-encoded
// bodies plus expectations to testdata/interop; pyarrow_interop.py, run
// where pyarrow is installed, checks them with pyarrow, rewrites them with
// pyarrow and writes pyarrow-made bodies, which are committed under
// testdata/interop/pyarrow and decoded by TestPyarrowBodies.
var writeInterop = flag.Bool("codec.write-interop", false, "rewrite testdata/interop/go_* for pyarrow_interop.py")

type interopColumn struct {
	Name      string  `json:"name"`
	ValueType string  `json:"value_type"` // pyarrow's name of the element type
	Shape     []int64 `json:"shape"`      // tensor row shape; null for a primitive column
	DTypeMeta string  `json:"dtype_meta,omitempty"`
	SHA256    string  `json:"sha256"` // of the elements, one byte per bool
	// Ragged columns (List<...>): Shape is the shape of one position and
	// Lengths the number of positions of each row.
	Ragged  bool  `json:"ragged,omitempty"`
	Lengths []int `json:"lengths,omitempty"`
}

type interopBody struct {
	File    string          `json:"file"`
	Rows    int             `json:"rows"`
	IDs     []any           `json:"ids,omitempty"`
	Columns []interopColumn `json:"columns"`
}

var pyarrowNames = map[trt.DType]string{
	trt.Float32: "float", trt.Float16: "halffloat", trt.BFloat16: "uint16", trt.Float64: "double",
	trt.Int8: "int8", trt.Uint8: "uint8", trt.Int32: "int32", trt.Int64: "int64", trt.Bool: "bool",
}

func interopBodies(t *testing.T) ([]interopBody, map[string][]byte) {
	mem := memory.NewGoAllocator()
	var bodies []interopBody
	files := map[string][]byte{}
	add := func(file string, cols []trt.Tensor, ids arrow.Array, idVals []any) {
		b := encodeRequest(t, cols, ids)
		body := interopBody{File: file, Rows: int(cols[0].Shape[0]), IDs: idVals}
		for _, c := range cols {
			ic := interopColumn{Name: c.Name, ValueType: pyarrowNames[c.DType], SHA256: sha(c.Data)}
			switch {
			case c.Offsets != nil:
				ic.Ragged, ic.Shape = true, c.Shape[2:]
				for i := 1; i < len(c.Offsets); i++ {
					ic.Lengths = append(ic.Lengths, int(c.Offsets[i]-c.Offsets[i-1]))
				}
			case len(c.Shape) > 1:
				ic.Shape = c.Shape[1:]
			}
			if c.DType == trt.BFloat16 {
				ic.DTypeMeta = "bfloat16"
			}
			body.Columns = append(body.Columns, ic)
		}
		bodies = append(bodies, body)
		files[file] = b
	}
	var cols []trt.Tensor
	for i, d := range allDTypes {
		cols = append(cols, randTensor("t_"+d.String(), d, trt.Shape{4, 2, 3}, uint64(i)))
	}
	ib := array.NewInt64Builder(mem)
	ib.AppendValues([]int64{100, 101, 102, 103}, nil)
	ids := ib.NewArray()
	ib.Release()
	defer ids.Release()
	add("go_every_dtype.arrows", cols, ids, []any{100, 101, 102, 103})

	sids := stringIDs(mem, "a", "b")
	defer sids.Release()
	add("go_logits_8x8.arrows", []trt.Tensor{
		randTensor("logits", trt.Float32, trt.Shape{2, 8, 8}, 7),
		randTensor("score", trt.Float64, trt.Shape{2}, 8),
	}, sids, []any{"a", "b"})

	// The layout most results have, which the encoder writes without
	// arrow-go (direct.go): int64 ids, fixed-shape and rank-1 outputs.
	di := array.NewInt64Builder(mem)
	di.AppendValues([]int64{-5, 0, 1 << 40}, nil)
	dids := di.NewArray()
	di.Release()
	defer dids.Release()
	add("go_direct_result.arrows", []trt.Tensor{
		randTensor("logits", trt.Float32, trt.Shape{3, 10}, 11),
		randTensor("mask", trt.Float16, trt.Shape{3, 2, 4}, 12),
		randTensor("label", trt.Int64, trt.Shape{3}, 13),
	}, dids, []any{-5, 0, 1 << 40})

	// A result with ragged outputs of each position rank, empty rows
	// included (the worker's answer for a sequence model).
	rb := array.NewInt64Builder(mem)
	rb.AppendValues([]int64{7, 8, 9, 10}, nil)
	rids := rb.NewArray()
	rb.Release()
	defer rids.Release()
	add("go_ragged_result.arrows", []trt.Tensor{
		raggedTensor("logits", trt.Float32, []int{2, 0, 3, 1}, trt.Shape{3}, 11),
		raggedTensor("frames", trt.Float16, []int{1, 0, 0, 2}, trt.Shape{2, 2}, 12),
		raggedTensor("tokens", trt.Int64, []int{0, 3, 1, 0}, trt.Shape{}, 13),
		randTensor("pooled", trt.Float32, trt.Shape{4, 2}, 14),
	}, rids, []any{7, 8, 9, 10})
	return bodies, files
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestWriteInterop(t *testing.T) {
	bodies, files := interopBodies(t)
	dir := filepath.Join("testdata", "interop")
	for name, b := range files {
		path := filepath.Join(dir, name)
		if !*writeInterop {
			// The committed bodies must still be what the encoder writes.
			old, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%s missing (regenerate with -codec.write-interop): %v", path, err)
			}
			if !bytes.Equal(old, b) {
				t.Errorf("%s differs from the encoder's output; regenerate with -codec.write-interop and rerun pyarrow_interop.py", path)
			}
			continue
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if *writeInterop {
		js, _ := json.MarshalIndent(bodies, "", "  ")
		if err := os.WriteFile(filepath.Join(dir, "go_expect.json"), append(js, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// pyarrowDir holds bodies written by pyarrow (see pyarrow_interop.py).
var pyarrowDir = filepath.Join("testdata", "interop", "pyarrow")

func readPyarrow(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(pyarrowDir, name))
	if err != nil {
		t.Skipf("pyarrow body %s absent (generate with testdata/interop/pyarrow_interop.py where pyarrow is installed): %v", name, err)
	}
	return b
}

func f32Range(n int) []byte {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i)
	}
	return float32Bytes(v...)
}

func TestPyarrowReport(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(pyarrowDir, "report.json"))
	if err != nil {
		t.Skipf("no pyarrow report (run pyarrow_interop.py): %v", err)
	}
	var rep struct {
		Pyarrow string   `json:"pyarrow"`
		Checks  []string `json:"checks"`
		Errors  []string `json:"errors"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) > 0 {
		t.Errorf("pyarrow %s reported: %s", rep.Pyarrow, strings.Join(rep.Errors, "; "))
	}
	if len(rep.Checks) == 0 {
		t.Errorf("pyarrow report has no checks")
	}
}

func TestPyarrowTensorF32(t *testing.T) {
	b := readPyarrow(t, "tensor_f32_8x8.arrows")
	// FixedShapeTensorArray.from_numpy_ndarray spells out the identity
	// permutation; pa.fixed_shape_tensor(...) alone does not (see
	// TestRepoTestdata and tensor_dim_names.arrows).
	if !bytes.Contains(b, []byte(`{"shape":[8,8],"permutation":[0,1]}`)) {
		t.Errorf("pyarrow's metadata is not in the expected form")
	}
	req, err := codec.DecodeRequest(b, codec.Limits{})
	if err != nil {
		t.Fatalf("decoding pyarrow body: %v", err)
	}
	defer req.Release()
	c, ok := req.Column("pixels")
	if !ok || req.Rows != 3 || c.DType != trt.Float32 || !c.RowShape.Equal(trt.Shape{8, 8}) {
		t.Fatalf("got rows %d, column %+v", req.Rows, c)
	}
	if !bytes.Equal(c.Data, f32Range(3*64)) {
		t.Fatalf("pyarrow tensor values differ")
	}
	if !aliases(c.Data, b) {
		t.Fatalf("pyarrow single-batch body was copied")
	}
	if got := req.IDs.(*array.Int64).Int64Values(); !slices.Equal(got, []int64{10, 11, 12}) {
		t.Fatalf("ids %v", got)
	}
}

func TestPyarrowBodies(t *testing.T) {
	for _, tc := range []struct {
		file  string
		check func(t *testing.T, req *codec.Request)
		err   string
	}{
		{file: "tensor_dim_names.arrows", check: func(t *testing.T, req *codec.Request) {
			typ, _ := codec.NewFixedShapeTensorType(arrow.PrimitiveTypes.Float32, []int64{2, 3}, []string{"H", "W"})
			if b := readPyarrow(t, "tensor_dim_names.arrows"); !bytes.Contains(b, []byte(typ.Serialize())) {
				t.Fatalf("pyarrow's metadata differs from ours: %s", typ.Serialize())
			}
			c := req.Columns[0]
			if !c.RowShape.Equal(trt.Shape{2, 3}) || !bytes.Equal(c.Data, f32Range(12)) {
				t.Fatalf("shape %v", c.RowShape)
			}
		}},
		{file: "tensor_permuted.arrows", err: "not the identity"},
		{file: "file_format.arrow", err: "Arrow IPC file"},
		{file: "dtypes.arrows", check: func(t *testing.T, req *codec.Request) {
			want := map[string]trt.DType{"f16": trt.Float16, "bf16": trt.BFloat16, "f64": trt.Float64, "i8": trt.Int8, "u8": trt.Uint8, "i32": trt.Int32, "i64": trt.Int64, "fsl": trt.Float32, "prim": trt.Float64}
			for name, d := range want {
				c, ok := req.Column(name)
				if !ok || c.DType != d {
					t.Fatalf("column %s: %+v, want dtype %s", name, c, d)
				}
			}
			if c, _ := req.Column("f16"); !bytes.Equal(c.Data[2:4], []byte{0x00, 0x3c}) { // 1.0 in binary16
				t.Fatalf("float16 bits %x", c.Data[:8])
			}
			if c, _ := req.Column("bf16"); !bytes.Equal(c.Data[:2], []byte{0x80, 0x3f}) {
				t.Fatalf("bfloat16 bits %x", c.Data[:4])
			}
			if c, _ := req.Column("fsl"); !c.RowShape.Equal(trt.Shape{4}) || !bytes.Equal(c.Data, f32Range(8)) {
				t.Fatalf("fsl %v", c.RowShape)
			}
			if c, _ := req.Column("prim"); len(c.RowShape) != 0 {
				t.Fatalf("prim row shape %v", c.RowShape)
			}
		}},
		{file: "bool_tensor.arrows", check: func(t *testing.T, req *codec.Request) {
			c := req.Columns[0]
			if c.DType != trt.Bool || !bytes.Equal(c.Data, []byte{1, 0, 0, 1, 0, 0, 1, 0}) {
				t.Fatalf("bool %s %v", c.DType, c.Data)
			}
		}},
		{file: "ragged.arrows", check: func(t *testing.T, req *codec.Request) {
			s, _ := req.Column("seq")
			if !s.Ragged || !slices.Equal(s.Offsets, []int32{0, 3, 3, 4}) || !bytes.Equal(s.Data, float32Bytes(1, 2, 3, 4)) {
				t.Fatalf("seq %+v", s)
			}
			v, _ := req.Column("vecs")
			if !v.RowShape.Equal(trt.Shape{3}) || !slices.Equal(v.Offsets, []int32{0, 1, 3, 3}) {
				t.Fatalf("vecs %+v", v)
			}
		}},
		{file: "ragged_sliced.arrows", check: func(t *testing.T, req *codec.Request) {
			s := req.Columns[0]
			if req.Rows != 2 || !slices.Equal(s.Offsets, []int32{0, 0, 1}) || !bytes.Equal(s.Data, float32Bytes(4)) {
				t.Fatalf("sliced seq rows %d %+v", req.Rows, s)
			}
		}},
		{file: "multibatch.arrows", check: func(t *testing.T, req *codec.Request) {
			c, _ := req.Column("pixels")
			if req.Rows != 5 || !bytes.Equal(c.Data, f32Range(5*4)) {
				t.Fatalf("rows %d", req.Rows)
			}
			if req.IDs.ValueStr(3) != "r3" || !req.IDs.IsNull(4) {
				t.Fatalf("ids %v", req.IDs)
			}
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b := readPyarrow(t, tc.file)
			req, err := codec.DecodeRequest(b, codec.Limits{})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("decoding: %v", err)
			}
			defer req.Release()
			tc.check(t, req)
		})
	}
}

// TestPyarrowRewrites decodes the Go bodies after pyarrow read and wrote
// them again: same columns, same bytes.
func TestPyarrowRewrites(t *testing.T) {
	_, files := interopBodies(t)
	for name, orig := range files {
		t.Run(name, func(t *testing.T) { checkRewrite(t, name, orig) })
	}
}

// checkRewrite compares one Go body with its pyarrow rewrite (skipped
// while pyarrow_interop.py has not been run on it).
func checkRewrite(t *testing.T, name string, orig []byte) {
	{
		b := readPyarrow(t, "rewritten_"+name)
		want, err := codec.DecodeRequest(orig, codec.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := codec.DecodeRequest(b, codec.Limits{})
		if err != nil {
			t.Fatalf("%s rewritten by pyarrow: %v", name, err)
		}
		if got.Rows != want.Rows || len(got.Columns) != len(want.Columns) || !array.Equal(got.IDs, want.IDs) {
			t.Fatalf("%s: rows %d/%d, columns %d/%d", name, got.Rows, want.Rows, len(got.Columns), len(want.Columns))
		}
		for i := range want.Columns {
			w, g := want.Columns[i], got.Columns[i]
			if g.Name != w.Name || g.DType != w.DType || !g.RowShape.Equal(w.RowShape) || !bytes.Equal(g.Data, w.Data) ||
				g.Ragged != w.Ragged || !slices.Equal(g.Offsets, w.Offsets) {
				t.Fatalf("%s column %s changed through pyarrow: %s %v vs %s %v", name, w.Name, g.DType, g.RowShape, w.DType, w.RowShape)
			}
		}
		want.Release()
		got.Release()
	}
}

// TestRepoTestdata decodes the repository's pyarrow-made bodies in
// ../testdata (written by the model-export helper).
func TestRepoTestdata(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "*.arrow"))
	if len(paths) == 0 {
		t.Skip("no ../testdata/*.arrow bodies yet (produced by the model-export helper with pyarrow)")
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.HasPrefix(b, []byte("ARROW1")) {
			t.Errorf("%s is an Arrow IPC file; bodies are IPC streams", path)
			continue
		}
		req, err := codec.DecodeRequest(b, codec.Limits{MaxBodyBytes: len(b)})
		if err != nil {
			t.Errorf("decoding %s: %v", path, err)
			continue
		}
		if req.Rows == 0 || len(req.Columns) == 0 {
			t.Errorf("%s: %d rows, %d columns", path, req.Rows, len(req.Columns))
		}
		for _, c := range req.Columns {
			t.Logf("%s: %d rows, column %q %s row shape %v ragged=%v", filepath.Base(path), req.Rows, c.Name, c.DType, c.RowShape, c.Ragged)
		}
		if filepath.Base(path) == "digits_test.arrow" {
			if !bytes.Contains(b, []byte(`{"shape":[8,8]}`)) {
				t.Errorf("%s: pa.fixed_shape_tensor metadata is not {\"shape\":[8,8]}", path)
			}
			c, ok := req.Column("pixels")
			if !ok || c.DType != trt.Float32 || !c.RowShape.Equal(trt.Shape{8, 8}) || !aliases(c.Data, b) {
				t.Errorf("%s: pixels column %+v", path, c)
			}
		}
		req.Release()
	}
}
