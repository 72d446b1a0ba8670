package table_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/codec/table"
	"github.com/jetinfer/jetinfer/trt"
)

// benchRows is the rows of the benchmark table: two Parquet row groups of
// the `make bench-score` input's shape.
const benchRows = 128 << 10

// digitsLike returns a batch shaped like the digits input of `make
// bench-score`: id int64, pixels list<float32> of 64, label int64.
func digitsLike(n int) arrow.RecordBatch {
	mem := memory.DefaultAllocator
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "pixels", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)},
		{Name: "label", Type: arrow.PrimitiveTypes.Int64},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	ids := b.Field(0).(*array.Int64Builder)
	lb := b.Field(1).(*array.ListBuilder)
	vb := lb.ValueBuilder().(*array.Float32Builder)
	labels := b.Field(2).(*array.Int64Builder)
	for i := range n {
		ids.Append(int64(i))
		lb.Append(true)
		for j := range 64 {
			vb.Append(float32((i*7+j*13)%17) / 16) // digits pixels take 17 values
		}
		labels.Append(int64(i % 10))
	}
	return b.NewRecordBatch()
}

// BenchmarkReaderParquet is the read side of `jetinfer score`: Parquet
// row groups in, request bodies of at most DefaultMaxBytes out.
func BenchmarkReaderParquet(b *testing.B) {
	benchReaderParquet(b, 64<<10)
}

// BenchmarkReaderParquet8RowGroups reads the same rows from 8 row groups,
// enough to keep rowGroupWorkers() goroutines busy.
func BenchmarkReaderParquet8RowGroups(b *testing.B) {
	benchReaderParquet(b, benchRows/8)
}

// benchReaderParquet reads benchRows rows from a Parquet file of row
// groups of rowGroup rows.
func benchReaderParquet(b *testing.B, rowGroup int64) {
	path := filepath.Join(b.TempDir(), "in.parquet")
	rec := digitsLike(benchRows)
	writeParquet(b, path, rec, rowGroup)
	rec.Release()
	opts := table.Options{Columns: []string{"id", "pixels"}, Keep: []string{"id", "label"},
		Shapes: map[string][]int64{"pixels": {8, 8}}}
	b.ReportAllocs()
	for b.Loop() {
		r, err := table.Open([]string{path}, opts)
		if err != nil {
			b.Fatal(err)
		}
		rows := 0
		for {
			c, err := r.Next(context.Background())
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			rows += c.Rows
			c.Keep.Release()
			r.Recycle(c.Body)
		}
		if rows != benchRows {
			b.Fatalf("read %d rows, want %d", rows, benchRows)
		}
		if err := r.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchRows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkWriterParquet is the write side of `jetinfer score`: result
// bodies of the digits model (id and 10 float32 logits per row, ≈3,600
// rows each, as at the default max_payload) with id and label kept.
func BenchmarkWriterParquet(b *testing.B) {
	for _, format := range []string{"parquet", "arrow"} {
		b.Run(format, func(b *testing.B) {
			const perBody = 3600
			mem := memory.DefaultAllocator
			data := make([]byte, 0, perBody*10*4)
			idb := array.NewInt64Builder(mem)
			for i := range perBody {
				idb.Append(int64(i))
				for j := range 10 {
					data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(i*j)/7-3))
				}
			}
			ids := idb.NewArray()
			idb.Release()
			body, err := codec.EncodeResultBytes(nil, []trt.Tensor{{Name: "logits", DType: trt.Float32,
				Shape: trt.Shape{perBody, 10}, Data: data}}, ids)
			if err != nil {
				b.Fatal(err)
			}
			labels := array.NewInt64Builder(mem)
			for i := range perBody {
				labels.Append(int64(i % 10))
			}
			la := labels.NewArray()
			labels.Release()
			keep := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{
				{Name: "id", Type: arrow.PrimitiveTypes.Int64}, {Name: "label", Type: arrow.PrimitiveTypes.Int64}}, nil),
				[]arrow.Array{ids, la}, perBody)
			defer keep.Release()
			ids.Release()
			la.Release()
			path := filepath.Join(b.TempDir(), "out."+format)
			b.ReportAllocs()
			for b.Loop() {
				w, err := table.Create(path, table.Format(format), nil)
				if err != nil {
					b.Fatal(err)
				}
				for range benchRows / perBody {
					if _, err := w.Write(keep, body); err != nil {
						b.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(benchRows/perBody*perBody)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
