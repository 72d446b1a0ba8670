package codec_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
)

var writeCorpus = flag.Bool("codec.write-corpus", false, "rewrite the fuzz seed corpus under testdata/fuzz")

// fuzzLimits keep each fuzz input cheap.
var fuzzLimits = codec.Limits{MaxBodyBytes: 1 << 20, MaxRows: 1 << 12, MaxRowElements: 1 << 16}

// seedBodies are real IPC payloads covering every accepted column layout.
func seedBodies(t testing.TB) map[string][]byte {
	mem := memory.NewGoAllocator()
	seeds := map[string][]byte{}
	for _, d := range allDTypes {
		seeds["fixed-"+d.String()] = encodeRequest(t, []trt.Tensor{randTensor("x", d, trt.Shape{3, 2, 2}, 1), randTensor("y", d, trt.Shape{3}, 2)}, nil)
	}
	ids := stringIDs(mem, "a", "bb", "")
	defer ids.Release()
	seeds["ids-utf8"] = encodeRequest(t, []trt.Tensor{randTensor("x", trt.Float32, trt.Shape{3, 4}, 3)}, ids)

	seq := raggedRows(mem, 0, []float32{1, 2, 3}, []float32{}, []float32{4})
	defer seq.Release()
	vecs := raggedRows(mem, 2, []float32{1, 2}, []float32{3, 4, 5, 6}, []float32{})
	defer vecs.Release()
	ib := array.NewInt64Builder(mem)
	defer ib.Release()
	ib.AppendValues([]int64{5, 6, 7}, []bool{true, false, true})
	iids := ib.NewArray()
	defer iids.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: iids.DataType(), Nullable: true}, {Name: "seq", Type: seq.DataType()}, {Name: "vecs", Type: vecs.DataType()}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{iids, seq, vecs}, 3)
	defer rec.Release()
	seeds["ragged"] = writeStream(t, schema, rec)
	seeds["ragged-multibatch"] = writeStream(t, schema, rec, rec)

	// Ragged columns as the worker encodes ragged results: List<FixedSizeList>
	// and List<fixed_shape_tensor>, with empty rows.
	seeds["ragged-encoded"] = encodeRequest(t, []trt.Tensor{
		raggedTensor("logits", trt.Float32, []int{2, 0, 3}, trt.Shape{3}, 1),
		raggedTensor("frames", trt.Float16, []int{1, 0, 2}, trt.Shape{2, 2}, 2),
	}, nil)

	fsl := fslFloat32(mem, 6, []float32{1, 2, 3, 4, 5, 6}, []float32{6, 5, 4, 3, 2, 1})
	defer fsl.Release()
	schema = arrow.NewSchema([]arrow.Field{tensorField("t", fsl.DataType(), `{"shape":[2,3],"dim_names":["a","b"],"permutation":[0,1]}`)}, nil)
	rec2 := array.NewRecordBatch(schema, []arrow.Array{fsl}, 2)
	defer rec2.Release()
	seeds["tensor-metadata"] = writeStream(t, schema, rec2)
	if tb, ok := t.(*testing.T); ok {
		seeds["legacy"] = toLegacy(tb, seeds["fixed-int8"])
	}
	return seeds
}

func fuzzDecode(t *testing.T, b []byte, result bool) {
	var req *codec.Request
	var err error
	if result {
		var res *codec.Result
		if res, err = codec.DecodeResult(b, fuzzLimits); err == nil {
			req = &codec.Request{Rows: res.Rows, Columns: res.Columns, IDs: res.IDs}
		}
	} else {
		req, err = codec.DecodeRequest(b, fuzzLimits)
	}
	if err != nil {
		e, ok := err.(*codec.Error)
		if !ok {
			t.Fatalf("error %v is a %T, want *codec.Error", err, err)
		}
		if bytes.Contains([]byte(e.Msg), []byte("decoder panic")) {
			t.Fatalf("decoder panicked: %v", err)
		}
		return
	}
	defer req.Release()
	checkInvariants(t, req)
	for i := range req.Rows {
		if req.IDs != nil {
			_ = req.IDs.ValueStr(i) // must not read outside the id buffers
		}
		for c := range req.Columns {
			_ = req.Columns[c].Row(i)
		}
	}
	// Whatever decodes must survive a round trip through the encoder.
	var cols []trt.Tensor
	for i := range req.Columns {
		tt, ok := req.Columns[i].Tensor()
		if !ok {
			return
		}
		if n, _ := tt.Shape[1:].NumElements(1 << 62); n == 0 {
			return
		}
		cols = append(cols, tt)
	}
	var buf bytes.Buffer
	if err := codec.EncodeRequest(&buf, cols, req.IDs); err != nil {
		t.Fatalf("re-encoding a decoded request: %v", err)
	}
	again, err := codec.DecodeRequest(buf.Bytes(), fuzzLimits)
	if err != nil {
		t.Fatalf("decoding a re-encoded request: %v", err)
	}
	defer again.Release()
	for i := range cols {
		if !bytes.Equal(again.Columns[i].Data, cols[i].Data) || !again.Columns[i].RowShape.Equal(cols[i].Shape[1:]) {
			t.Fatalf("column %q changed in a round trip", cols[i].Name)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, b := range seedBodies(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, b, false) })
}

func FuzzDecodeResult(f *testing.F) {
	for _, b := range seedBodies(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, b, true) })
}

// TestWriteFuzzCorpus rewrites testdata/fuzz/<FuzzName>/seed-* from
// seedBodies when run with -codec.write-corpus; otherwise it checks that
// the committed seeds exist.
func TestWriteFuzzCorpus(t *testing.T) {
	seeds := seedBodies(t)
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range seeds {
			if !yield(k) {
				return
			}
		}
	})
	for _, fuzz := range []string{"FuzzDecodeRequest", "FuzzDecodeResult"} {
		dir := filepath.Join("testdata", "fuzz", fuzz)
		for _, name := range names {
			path := filepath.Join(dir, "seed-"+name)
			if !*writeCorpus {
				if _, err := os.Stat(path); err != nil {
					t.Errorf("seed %s missing (regenerate with go test ./codec -run TestWriteFuzzCorpus -codec.write-corpus): %v", path, err)
				}
				continue
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seeds[name])
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
