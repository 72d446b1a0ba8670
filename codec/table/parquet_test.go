package table_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/codec/table"
	"github.com/jetinfer/jetinfer/trt"
)

// tensorTable returns rows of id, f32 (6 values a row), f64 (4), i32 (3)
// and i64 (2) list columns; value j of row i in column c is
// i*100+c*10+j, and f32 elements named in nullAt (row → element) are null.
func tensorTable(mem memory.Allocator, rows int, nullAt map[int]int) arrow.RecordBatch {
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "f32", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32), Nullable: true},
		{Name: "f64", Type: arrow.ListOf(arrow.PrimitiveTypes.Float64), Nullable: true},
		{Name: "i32", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32), Nullable: true},
		{Name: "i64", Type: arrow.ListOf(arrow.PrimitiveTypes.Int64), Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	for i := range rows {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		for c, k := range []int{6, 4, 3, 2} {
			lb := b.Field(c + 1).(*array.ListBuilder)
			lb.Append(true)
			for j := range k {
				v := i*100 + (c+1)*10 + j
				switch vb := lb.ValueBuilder().(type) {
				case *array.Float32Builder:
					if e, ok := nullAt[i]; ok && e == j {
						vb.AppendNull()
					} else {
						vb.Append(float32(v))
					}
				case *array.Float64Builder:
					vb.Append(float64(v))
				case *array.Int32Builder:
					vb.Append(int32(v))
				case *array.Int64Builder:
					vb.Append(int64(v))
				}
			}
		}
	}
	return b.NewRecordBatch()
}

// TestParquetTensorColumnsReadDirect reads list columns sent with a shape
// (read from their column chunks, not by pqarrow) of four element types
// across row groups, in batches that do not line up with them, beside
// columns pqarrow reads (id; i64 both kept and sent), and checks every
// value, null elements included, and that nothing leaks.
func TestParquetTensorColumnsReadDirect(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	const rows = 300
	nullAt := map[int]int{7: 2, 64: 0, 299: 5}
	rec := tensorTable(mem, rows, nullAt)
	path := filepath.Join(t.TempDir(), "in.parquet")
	writeParquet(t, path, rec, 64)
	rec.Release()

	r, err := table.Open([]string{path}, table.Options{
		Columns: []string{"id", "f32", "f64=x", "i32", "i64"}, Keep: []string{"i64"},
		Shapes:         map[string][]int64{"f32": {2, 3}, "x": {4}, "i32": {3}, "i64": {2}},
		RowsPerRequest: 50, Mem: mem,
	})
	if err != nil {
		t.Fatal(err)
	}
	row := 0
	nulls := 0
	for _, c := range readAll(t, r) {
		rd, err := ipc.NewReader(bytes.NewReader(c.Body), ipc.WithAllocator(mem))
		if err != nil {
			t.Fatal(err)
		}
		if kt := c.Keep.Schema().Field(0).Type; kt.ID() != arrow.LIST {
			t.Errorf("kept i64 is %s, want the list pqarrow reads", kt)
		}
		for rd.Next() {
			b := rd.RecordBatch()
			for i := range int(b.NumRows()) {
				if id := b.Column(0).(*array.Int64).Value(i); id != int64(row) {
					t.Fatalf("row %d has id %d", row, id)
				}
				for c, k := range []int{6, 4, 3, 2} {
					fsl := b.Column(c + 1).(array.ExtensionArray).Storage().(*array.FixedSizeList)
					vals := fsl.ListValues()
					for j := range k {
						pos := (int(fsl.Offset())+i)*k + j
						want := float64(row*100 + (c+1)*10 + j)
						if e, ok := nullAt[row]; ok && c == 0 && e == j {
							if !vals.IsNull(pos) {
								t.Fatalf("row %d f32[%d]: want null", row, j)
							}
							nulls++
							continue
						}
						var got float64
						switch v := vals.(type) {
						case *array.Float32:
							got = float64(v.Value(pos))
						case *array.Float64:
							got = v.Value(pos)
						case *array.Int32:
							got = float64(v.Value(pos))
						case *array.Int64:
							got = float64(v.Value(pos))
						}
						if vals.IsNull(pos) || got != want {
							t.Fatalf("row %d column %d value %d = %v (null %v), want %v", row, c, j, got, vals.IsNull(pos), want)
						}
					}
				}
				row++
			}
		}
		if err := rd.Err(); err != nil {
			t.Fatal(err)
		}
		rd.Release()
		c.Keep.Release()
	}
	if row != rows || nulls != len(nullAt) {
		t.Fatalf("read %d rows with %d null elements, want %d and %d", row, nulls, rows, len(nullAt))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	mem.AssertSize(t, 0)
}

// TestParquetTensorRowErrors checks that a row of another length than its
// shape, or a null row, stops the reader with the row's number.
func TestParquetTensorRowErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   int                      // the bad row (batches of 32 rows)
		bad  func(*array.ListBuilder) // appends it
		want string
	}{
		{"short", 70, func(lb *array.ListBuilder) {
			lb.Append(true)
			lb.ValueBuilder().(*array.Float32Builder).AppendValues([]float32{1, 2, 3, 4, 5}, nil)
		}, `column "v": row 70 has 5 values, its shape needs 6`},
		{"long", 70, func(lb *array.ListBuilder) {
			lb.Append(true)
			lb.ValueBuilder().(*array.Float32Builder).AppendValues([]float32{1, 2, 3, 4, 5, 6, 7}, nil)
		}, `column "v": row 70 has 7 values, its shape needs 6`},
		{"long at the end of a batch", 63, func(lb *array.ListBuilder) {
			lb.Append(true)
			lb.ValueBuilder().(*array.Float32Builder).AppendValues([]float32{1, 2, 3, 4, 5, 6, 7}, nil)
		}, `column "v": row 63 has more than 6 values`},
		{"null", 70, func(lb *array.ListBuilder) { lb.AppendNull() }, `column "v": row 70 is null or empty`},
		{"empty", 70, func(lb *array.ListBuilder) { lb.Append(true) }, `column "v": row 70 is null or empty`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.DefaultAllocator
			schema := arrow.NewSchema([]arrow.Field{{Name: "v", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32), Nullable: true}}, nil)
			b := array.NewRecordBuilder(mem, schema)
			lb := b.Field(0).(*array.ListBuilder)
			for i := range 100 {
				if i == tc.at {
					tc.bad(lb)
					continue
				}
				lb.Append(true)
				lb.ValueBuilder().(*array.Float32Builder).AppendValues(make([]float32, 6), nil)
			}
			rec := b.NewRecordBatch()
			b.Release()
			path := filepath.Join(t.TempDir(), "in.parquet")
			writeParquet(t, path, rec, 64)
			rec.Release()
			r, err := table.Open([]string{path}, table.Options{Shapes: map[string][]int64{"v": {6}}, RowsPerRequest: 32})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			for {
				_, err := r.Next(context.Background())
				if errors.Is(err, io.EOF) {
					t.Fatalf("read to the end; want an error at row %d", tc.at)
				}
				if err != nil {
					if !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("error %q, want it to contain %q", err, tc.want)
					}
					return
				}
			}
		})
	}
}

// TestParquetTensorLongLastRow checks that values left after the file's
// last row (a last row longer than its shape) are an error too, not
// dropped: no later batch reads them.
func TestParquetTensorLongLastRow(t *testing.T) {
	schema := arrow.NewSchema([]arrow.Field{{Name: "v", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32), Nullable: true}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	lb := b.Field(0).(*array.ListBuilder)
	for i := range 100 {
		lb.Append(true)
		lb.ValueBuilder().(*array.Float32Builder).AppendValues(make([]float32, 6+i/99), nil)
	}
	rec := b.NewRecordBatch()
	b.Release()
	path := filepath.Join(t.TempDir(), "in.parquet")
	writeParquet(t, path, rec, 64)
	rec.Release()
	r, err := table.Open([]string{path}, table.Options{Shapes: map[string][]int64{"v": {6}}, RowsPerRequest: 32})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const want = `column "v": row 99 has 7 values, its shape needs 6`
	for {
		_, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			t.Fatalf("read to the end; want %q", want)
		}
		if err != nil {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q, want it to contain %q", err, want)
			}
			return
		}
	}
}

// TestParquetWrittenByDuckDB reads the pixels of files DuckDB wrote
// (testdata/README.md; dictionary-encoded, V1 and V2 encodings) as 8×8
// tensors with their ids kept, checks every value against the formula
// they were made with, and checks that the file with a short row stops
// the reader naming that row.
func TestParquetWrittenByDuckDB(t *testing.T) {
	pixel := func(i, j int) float32 {
		if (i*7+j*13)%5 == 0 {
			return 0
		}
		return float32(float64((i*7+j*13)%17) / 16)
	}
	for _, name := range []string{"duckdb_pixels_v1.parquet", "duckdb_pixels_v2.parquet", "duckdb_pixels_short.parquet"} {
		t.Run(name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			if !strings.Contains(name, "v2") {
				// In the v2 file DuckDB writes the ids DELTA_BINARY_PACKED,
				// and arrow-go v18.8.0's delta decoder (pqarrow reads the
				// kept ids) never frees a 64-byte block it allocates.
				defer mem.AssertSize(t, 0)
			}
			r, err := table.Open([]string{filepath.Join("..", "..", "testdata", name)}, table.Options{
				Columns: []string{"pixels"}, Keep: []string{"id"},
				Shapes: map[string][]int64{"pixels": {8, 8}}, RowsPerRequest: 700, Mem: mem,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			row := 0
			for {
				c, err := r.Next(context.Background())
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					if want := `column "pixels": row 1500 has 63 values, its shape needs 64`; !strings.Contains(name, "short") || !strings.Contains(err.Error(), want) {
						t.Fatalf("after %d rows: %v (want %q only from the short file)", row, err, want)
					}
					if row > 1500 {
						t.Fatalf("error after %d rows, beyond row 1500", row)
					}
					return
				}
				req, err := codec.DecodeRequest(c.Body, codec.DefaultLimits())
				if err != nil {
					t.Fatalf("decoding body: %v", err)
				}
				px, ok := req.Column("pixels")
				if !ok || px.DType != trt.Float32 || px.RowShape.String() != "[8,8]" {
					t.Fatalf("pixels column %+v", px)
				}
				ids := c.Keep.Column(0).(*array.Int64)
				for i := range req.Rows {
					if ids.Value(i) != int64(row) {
						t.Fatalf("row %d has id %d", row, ids.Value(i))
					}
					vals := px.Row(i)
					for j := range 64 {
						if got := math.Float32frombits(binary.LittleEndian.Uint32(vals[4*j:])); got != pixel(row, j) {
							t.Fatalf("row %d pixel %d = %v, want %v", row, j, got, pixel(row, j))
						}
					}
					row++
				}
				c.Keep.Release()
			}
			if strings.Contains(name, "short") || row != 3000 {
				t.Fatalf("read %d rows to the end; want 3000, or an error from the short file", row)
			}
		})
	}
}
