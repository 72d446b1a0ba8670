package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/trt/trttest"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
)

// taggerSeqMax is the longest sequence the tagger tests configure as the
// engine profile's max (onnxrt.Options.DimRanges), and the longest
// reference row.
const taggerSeqMax = 128

// seqCase is one token-level sequence model with its reference file.
type seqCase struct {
	model   string // testdata/models/<model>.onnx, testdata/<model>_ref.arrow
	input   string // the ragged data input; the mask is generated
	mask    string
	inDType trt.DType
	inPos   trt.Shape // shape of one input position
	outputs []string  // checked outputs, ragged or fixed
	rtol    float64
	atol    float64
}

var (
	taggerCase = seqCase{model: "tagger", input: "input_ids", mask: "attention_mask", inDType: trt.Int64,
		outputs: []string{"logits", "pooled"}, rtol: trttest.RTolFP32, atol: trttest.ATolFP32}
	taggerFP16Case = seqCase{model: "tagger_fp16", input: "x", mask: "mask", inDType: trt.Float16, inPos: trt.Shape{32},
		outputs: []string{"y"}, rtol: trttest.RTolFP16, atol: trttest.ATolFP16}
)

// seqRefRows is a reference file decoded: ids, and per column each row's
// bytes and number of positions (1 for fixed columns).
type seqRefRows struct {
	ids  []int64
	rows map[string][][]byte
	lens map[string][]int
}

func loadSeqCase(t *testing.T, c seqCase) (*onnxrt.Engine, *seqRefRows) {
	t.Helper()
	if ortRuntime == nil {
		t.Skip(ortMissing)
	}
	if _, err := os.Stat(repoFile("testdata", c.model+"_ref.arrow")); err != nil {
		t.Skipf("%s's reference data is absent (generate it with scripts/gen_models.py, which needs PyTorch): %v", c.model, err)
	}
	eng, err := ortRuntime.LoadFile(context.Background(), repoFile("testdata", "models", c.model+".onnx"), onnxrt.Options{
		IntraOpThreads: 1, MaxBatch: 16, DimRanges: map[string]onnxrt.DimRange{"seq": {Min: 1, Max: taggerSeqMax}},
	})
	if err != nil {
		t.Fatalf("loading %s: %v", c.model, err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	b, err := os.ReadFile(repoFile("testdata", c.model+"_ref.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := codec.DecodeRequest(b, codec.Limits{MaxBodyBytes: len(b) + 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	ref := &seqRefRows{ids: r.IDs.(*array.Int64).Int64Values(), rows: map[string][][]byte{}, lens: map[string][]int{}}
	for _, col := range r.Columns {
		for i := range r.Rows {
			ref.rows[col.Name] = append(ref.rows[col.Name], bytes.Clone(col.Row(i)))
			ref.lens[col.Name] = append(ref.lens[col.Name], col.Positions(i))
		}
	}
	return eng, ref
}

// request encodes reference rows as a ragged (List) column of the input,
// with the rows' ids.
func (c seqCase) request(t *testing.T, ref *seqRefRows, rows []int, extra ...trt.Tensor) []byte {
	t.Helper()
	in := trt.Tensor{Name: c.input, DType: c.inDType, Shape: append(trt.Shape{int64(len(rows)), trt.Dynamic}, c.inPos...),
		Offsets: []int32{0}}
	ib := array.NewInt64Builder(memory.DefaultAllocator)
	defer ib.Release()
	for _, i := range rows {
		in.Data = append(in.Data, ref.rows[c.input][i]...)
		in.Offsets = append(in.Offsets, in.Offsets[len(in.Offsets)-1]+int32(ref.lens[c.input][i]))
		ib.Append(ref.ids[i])
	}
	ids := ib.NewArray()
	defer ids.Release()
	var buf bytes.Buffer
	if err := codec.EncodeRequest(&buf, append([]trt.Tensor{in}, extra...), ids); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// check compares a result body with the per-row unpadded references:
// ids in request order, ragged outputs with each row's own number of
// positions, values within the case's tolerance.
func (c seqCase) check(t *testing.T, what string, body []byte, ref *seqRefRows, rows []int) {
	t.Helper()
	res, err := codec.DecodeResult(body, codec.DefaultLimits())
	if err != nil {
		t.Fatalf("%s: decoding result: %v", what, err)
	}
	defer res.Release()
	if res.Rows != len(rows) {
		t.Fatalf("%s: %d result rows, want %d", what, res.Rows, len(rows))
	}
	for _, name := range c.outputs {
		col, ok := res.Column(name)
		if !ok {
			t.Fatalf("%s: no output column %q", what, name)
		}
		for j, i := range rows {
			if got := res.IDs.(*array.Int64).Value(j); got != ref.ids[i] {
				t.Fatalf("%s row %d: id %d, want %d", what, j, got, ref.ids[i])
			}
			if ragged := ref.lens[name][i] != 1 || col.Ragged; ragged && col.Positions(j) != ref.lens[name][i] {
				t.Fatalf("%s row %d (%s): %d positions of %q, want %d (the input's length)", what, j, name, col.Positions(j), name, ref.lens[name][i])
			}
			got := trt.Tensor{Name: name, DType: col.DType, Shape: trt.Shape{int64(len(col.Row(j)) / col.DType.Size())}, Data: col.Row(j)}
			want := trt.Tensor{Name: name, DType: col.DType, Shape: trt.Shape{int64(len(ref.rows[name][i]) / col.DType.Size())}, Data: ref.rows[name][i]}
			if err := trttest.Compare(got, want, c.rtol, c.atol); err != nil {
				t.Fatalf("%s row %d (reference row %d, %d positions): %v", what, j, i, ref.lens[c.input][i], err)
			}
		}
	}
}

// runSeqCase sends every reference row through JetStream in requests of
// 1 to 4 rows and one request holding all of them (larger than a batch),
// and checks each result against the unpadded references. The reference
// rows include empty rows and rows at the profile's max.
func runSeqCase(t *testing.T, c seqCase) {
	eng, ref := loadSeqCase(t, c)
	var empty, full int
	for _, n := range ref.lens[c.input] {
		switch n {
		case 0:
			empty++
		case taggerSeqMax:
			full++
		}
	}
	if empty == 0 || full == 0 {
		t.Fatalf("reference rows lack empty rows (%d) or rows of %d positions (%d)", empty, taggerSeqMax, full)
	}
	ns := startServer(t)
	nc := connect(t, ns)
	startWorker(t, nc, eng, worker.Config{Model: c.model, MaxDelay: 20 * time.Millisecond, MaxBatchRows: 8})
	cl, _ := client.New(nc, client.Config{Model: c.model})

	want := map[string][]int{}
	n := len(ref.ids)
	for i, k := 0, 0; i < n; k++ {
		m := min(1+k%4, n-i)
		rows := make([]int, m)
		for j := range rows {
			rows[j] = (i + j) * 7 % n // 7 is prime to n: a permutation mixing lengths
		}
		want[fmt.Sprintf("r%d", k)] = rows
		i += m
	}
	all := make([]int, n)
	for i := range all {
		all[i] = n - 1 - i
	}
	want["all"] = all
	for id, rows := range want {
		if _, err := cl.PublishAsync(context.Background(), client.Request{ID: id, Job: "tag", Body: c.request(t, ref, rows)}); err != nil {
			t.Fatal(err)
		}
	}
	got := collect(t, cl, "tag", len(want))
	for id, rows := range want {
		r := got[id]
		if r.Status != codec.CodeOK {
			t.Fatalf("request %s: %s: %s", id, r.Status, r.Error)
		}
		c.check(t, "request "+id, r.Body, ref, rows)
	}
}

// TestTaggerRaggedInRaggedOut: the transformer tagger's token-level
// logits come back as one List row per input row, exactly as long as the
// row, equal to PyTorch's output for the row run alone; empty rows get
// empty logits and the pooled embedding of a row of padding.
func TestTaggerRaggedInRaggedOut(t *testing.T) { runSeqCase(t, taggerCase) }

// TestTaggerFP16RaggedInRaggedOut is the same over float16 frames in and
// float16 logits out, raw bits end to end.
func TestTaggerFP16RaggedInRaggedOut(t *testing.T) { runSeqCase(t, taggerFP16Case) }

// TestTaggerRejectionsNameTheColumn: a producer that sends the mask the
// worker fills, or a row longer than the profile allows, gets
// INVALID_ARGUMENT naming the column and the limit.
func TestTaggerRejectionsNameTheColumn(t *testing.T) {
	c := taggerCase
	eng, ref := loadSeqCase(t, c)
	ns := startServer(t)
	nc := connect(t, ns)
	startWorker(t, nc, eng, worker.Config{Model: c.model, MaxDelay: 5 * time.Millisecond, MaxBatchRows: 8})
	cl, _ := client.New(nc, client.Config{Model: c.model})

	mask := trt.Tensor{Name: "attention_mask", DType: trt.Int64, Shape: trt.Shape{1, 2}, Data: make([]byte, 16)}
	var long int
	for i, n := range ref.lens[c.input] {
		if n == taggerSeqMax {
			long = i
		}
	}
	tooLong := ref.rows[c.input][long]
	ref.rows[c.input] = append(ref.rows[c.input], append(bytes.Clone(tooLong), tooLong[:8]...))
	ref.lens[c.input] = append(ref.lens[c.input], taggerSeqMax+1)
	ref.ids = append(ref.ids, 999)
	cases := map[string]struct {
		body  []byte
		frags []string
	}{
		"mask": {c.request(t, ref, []int{1}, mask), []string{`column "attention_mask"`, "worker fills", "do not send it"}},
		"long": {c.request(t, ref, []int{0, len(ref.ids) - 1}), []string{`column "input_ids"`, "129 positions", fmt.Sprint(taggerSeqMax)}},
	}
	for id, tc := range cases {
		if _, err := cl.PublishAsync(context.Background(), client.Request{ID: id, Job: "bad", Body: tc.body}); err != nil {
			t.Fatal(err)
		}
	}
	got := collect(t, cl, "bad", len(cases))
	for id, tc := range cases {
		r := got[id]
		if r.Status != codec.CodeInvalidArgument {
			t.Fatalf("request %s: status %s (%s), want INVALID_ARGUMENT", id, r.Status, r.Error)
		}
		for _, f := range tc.frags {
			if !strings.Contains(r.Error, f) {
				t.Errorf("request %s: error %q does not mention %q", id, r.Error, f)
			}
		}
	}
}
