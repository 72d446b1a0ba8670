package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/jetinfer/jetinfer/codec"
)

// TestScoreFloat16FromParquet scores the fp16 digits model from a Parquet
// file whose pixels are lists of float16 (raw bits end to end) into an
// Arrow IPC file, and compares the fp16 logits with PyTorch's.
func TestScoreFloat16FromParquet(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "digits_fp16_ref.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := codec.DecodeRequest(b, codec.Limits{MaxBodyBytes: len(b) + 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Release()
	px, _ := ref.Column("pixels")
	logits, _ := ref.Column("logits")
	ids := ref.IDs.(*array.Int64).Int64Values()
	want := map[int64][]byte{}
	for i, id := range ids {
		want[id] = logits.Row(i)
	}

	// Parquet input: id, pixels as list<float16>.
	mem := memory.DefaultAllocator
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "pixels", Type: arrow.ListOf(arrow.FixedWidthTypes.Float16)},
	}, nil)
	rb := array.NewRecordBuilder(mem, schema)
	for i, id := range ids {
		rb.Field(0).(*array.Int64Builder).Append(id)
		lb := rb.Field(1).(*array.ListBuilder)
		lb.Append(true)
		row := px.Row(i)
		for j := 0; j < len(row); j += 2 {
			lb.ValueBuilder().(*array.Float16Builder).Append(float16.FromBits(uint16(row[j]) | uint16(row[j+1])<<8))
		}
	}
	rec := rb.NewRecordBatch()
	rb.Release()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "fp16.parquet"), filepath.Join(dir, "out.arrow")
	f, _ := os.Create(in)
	w, err := pqarrow.NewFileWriter(schema, f, parquet.NewWriterProperties(), pqarrow.NewArrowWriterProperties())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	rec.Release()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	ns := startTestServer(t)
	startModelProcess(t, ns.ClientURL(), "digits16", "digits_fp16.onnx")
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"score", "-nats", ns.ClientURL(), "-model", "digits16", "-shape", "pixels=8x8",
		"-progress", "none", "-rows-per-request", "50", "-out", out, in}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("score: %v\n%s", err, stderr.String())
	}

	of, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer of.Close()
	fr, err := ipc.NewFileReader(of)
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Close()
	row := 0
	for i := range fr.NumRecords() {
		rec, err := fr.RecordBatch(i)
		if err != nil {
			t.Fatal(err)
		}
		idx := rec.Schema().FieldIndices("logits")
		if len(idx) != 1 {
			t.Fatalf("output schema %s", rec.Schema())
		}
		ext, ok := rec.Column(idx[0]).(array.ExtensionArray)
		if !ok || ext.ExtensionType().ExtensionName() != codec.TensorExtensionName {
			t.Fatalf("logits column is %s, want %s", rec.Column(idx[0]).DataType(), codec.TensorExtensionName)
		}
		vals := ext.Storage().(*array.FixedSizeList).ListValues().(*array.Float16).Values()
		for r, id := range rec.Column(rec.Schema().FieldIndices("id")[0]).(*array.Int64).Int64Values() {
			if id != ids[row] {
				t.Fatalf("row %d has id %d, want %d", row, id, ids[row])
			}
			ref := want[id]
			for j := range 10 {
				got := vals[(r+int(ext.Data().Offset()))*10+j].Float32()
				exp := float16.FromBits(uint16(ref[2*j]) | uint16(ref[2*j+1])<<8).Float32()
				if math.Abs(float64(got-exp)) > 1e-2*math.Max(1, math.Abs(float64(exp))) {
					t.Fatalf("id %d logit %d = %v, PyTorch fp16 reference %v", id, j, got, exp)
				}
			}
			row++
		}
	}
	if row != len(ids) {
		t.Fatalf("%d rows out, want %d", row, len(ids))
	}
}
