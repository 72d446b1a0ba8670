package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
)

// seqRef holds the sequence encoder's reference samples: ragged inputs and
// the outputs PyTorch computed for each row alone, unpadded.
type seqRef struct {
	ids  []int64
	x    [][]float32 // row i: len_i × 16 values
	want map[int64][]float32
}

func loadSeqRef(t testing.TB) *seqRef {
	t.Helper()
	b, err := os.ReadFile(repoFile("testdata", "seq_ref.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := codec.DecodeRequest(b, codec.Limits{MaxBodyBytes: len(b) + 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	x, _ := r.Column("x")
	y, _ := r.Column("y")
	s := &seqRef{ids: r.IDs.(*array.Int64).Int64Values(), want: map[int64][]float32{}}
	for i := range r.Rows {
		s.x = append(s.x, floats(x.Row(i)))
		s.want[s.ids[i]] = floats(y.Data[i*32 : (i+1)*32])
	}
	return s
}

// raggedRequest encodes rows of the reference as a List<FixedSizeList<float32>[16]> column "x".
func (s *seqRef) raggedRequest(t testing.TB, rows []int) []byte {
	t.Helper()
	mem := memory.DefaultAllocator
	lb := array.NewListBuilder(mem, arrow.FixedSizeListOf(16, arrow.PrimitiveTypes.Float32))
	defer lb.Release()
	pos := lb.ValueBuilder().(*array.FixedSizeListBuilder)
	vals := pos.ValueBuilder().(*array.Float32Builder)
	ib := array.NewInt64Builder(mem)
	defer ib.Release()
	for _, i := range rows {
		lb.Append(true)
		for p := 0; p < len(s.x[i])/16; p++ {
			pos.Append(true)
			vals.AppendValues(s.x[i][p*16:(p+1)*16], nil)
		}
		ib.Append(s.ids[i])
	}
	xs, ids := lb.NewArray(), ib.NewArray()
	defer xs.Release()
	defer ids.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: ids.DataType()}, {Name: "x", Type: xs.DataType()}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{ids, xs}, int64(len(rows)))
	defer rec.Release()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRaggedSequencesBatchedWithPaddingMatchUnbatchedReference sends
// ragged rows of many lengths through JetStream; the worker pads them into
// shared batches and fills the model's mask input, and every result row
// must equal PyTorch's output for that row run alone.
func TestRaggedSequencesBatchedWithPaddingMatchUnbatchedReference(t *testing.T) {
	eng := loadEngine(t, "seq_encoder.onnx")
	ref := loadSeqRef(t)
	ns := startServer(t)
	nc := connect(t, ns)
	startWorker(t, nc, eng, worker.Config{Model: "seq", MaxDelay: 20 * time.Millisecond, MaxBatchRows: 16})
	c, _ := client.New(nc, client.Config{Model: "seq"})

	want := map[string][]int{}
	n := len(ref.ids)
	for k := range 30 {
		rows := []int{k % n, (k*7 + 3) % n, (k*11 + 5) % n}[:1+k%3]
		id := fmt.Sprintf("s%d", k)
		want[id] = rows
		if _, err := c.PublishAsync(context.Background(), client.Request{ID: id, Job: "seq", Body: ref.raggedRequest(t, rows)}); err != nil {
			t.Fatal(err)
		}
	}
	// A fixed-shape request for the same input: every row 5 positions.
	var fixed []float32
	for _, x := range ref.x {
		if len(x) >= 5*16 {
			fixed = x[:5*16]
			break
		}
	}
	var fb bytes.Buffer
	if err := codec.EncodeRequest(&fb, []trt.Tensor{{Name: "x", DType: trt.Float32, Shape: trt.Shape{1, 5, 16}, Data: f32bytes(fixed)}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PublishAsync(context.Background(), client.Request{ID: "fixed", Job: "seq", Body: fb.Bytes()}); err != nil {
		t.Fatal(err)
	}

	got := collect(t, c, "seq", len(want)+1)
	for id, rows := range want {
		r := got[id]
		if r.Status != codec.CodeOK {
			t.Fatalf("request %s: %s: %s", id, r.Status, r.Error)
		}
		res, err := codec.DecodeResult(r.Body, codec.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		y, _ := res.Column("y")
		if res.Rows != len(rows) {
			t.Fatalf("request %s: %d result rows, want %d", id, res.Rows, len(rows))
		}
		for j, i := range rows {
			if gotID := res.IDs.(*array.Int64).Value(j); gotID != ref.ids[i] {
				t.Fatalf("request %s row %d: id %d, want %d (rows out of order)", id, j, gotID, ref.ids[i])
			}
			assertClose(t, fmt.Sprintf("request %s row %d (len %d)", id, j, len(ref.x[i])/16), floats(y.Data[j*32:(j+1)*32]), ref.want[ref.ids[i]])
		}
		res.Release()
	}
	if r := got["fixed"]; r.Status != codec.CodeOK {
		t.Fatalf("fixed-shape sequence request: %s: %s", r.Status, r.Error)
	}
}

func assertClose(t testing.TB, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for k := range want {
		if d := math.Abs(float64(got[k] - want[k])); d > 1e-5+1e-4*math.Abs(float64(want[k])) {
			t.Fatalf("%s: value %d = %v, reference %v", what, k, got[k], want[k])
		}
	}
}

func f32bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		u := math.Float32bits(x)
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return b
}
