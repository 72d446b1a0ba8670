package table_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/codec/table"
	"github.com/jetinfer/jetinfer/trt"
)

// writePart writes part of a test job: 4+part rows, kept column "neg",
// a result of columns id and y (two floats per row), or an error result.
func writePart(t *testing.T, w *table.Writer, mem memory.Allocator, part int, failed bool) int64 {
	t.Helper()
	n := 4 + part
	data := make([]byte, 0, n*2*4)
	ids := array.NewInt64Builder(mem)
	keepB := array.NewInt64Builder(mem)
	for i := range n {
		row := int64(part*100 + i)
		ids.Append(row)
		keepB.Append(-row)
		for j := range 2 {
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(row)+float32(j)/2))
		}
	}
	idArr := ids.NewArray()
	ids.Release()
	defer idArr.Release()
	kArr := keepB.NewArray()
	keepB.Release()
	keep := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "neg", Type: arrow.PrimitiveTypes.Int64}}, nil), []arrow.Array{kArr}, int64(n))
	kArr.Release()
	defer keep.Release()
	if failed {
		if err := w.WriteFailed(keep, n, "INVALID_ARGUMENT", fmt.Sprint("bad part ", part)); err != nil {
			t.Fatal(err)
		}
		return int64(n)
	}
	body, err := codec.EncodeResultBytes(nil, []trt.Tensor{{Name: "y", DType: trt.Float32, Shape: trt.Shape{int64(n), 2}, Data: data}}, idArr)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := w.Write(keep, body); err != nil || got != n {
		t.Fatalf("Write = %d, %v; want %d rows", got, err, n)
	}
	return int64(n)
}

// jobMeta is the metadata of the test job's outputs.
var jobMeta = map[string]string{"jetinfer.job": "carry", "jetinfer.fingerprint": "f1"}

// TestWriterCarriesEarlierOutputOver writes the first parts of a job,
// closes the output as an interrupted run does, and writes the rest in a
// second Writer that carries the first output's rows over: the result
// reads back equal to one Writer's output of every part, in both formats,
// whether the parts after the carried ones succeed, fail, or are none.
// Until Close, the path still holds the earlier output.
func TestWriterCarriesEarlierOutputOver(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	const parts, first = 7, 4
	for _, format := range []string{"parquet", "arrow"} {
		for _, tc := range []struct {
			name   string
			failed func(part int) bool
			parts  int
		}{
			{"mixed", func(part int) bool { return part%3 == 1 }, parts},
			{"rest failed", func(part int) bool { return part >= first || part == 0 }, parts},
			{"nothing after", func(part int) bool { return part == 2 }, first},
		} {
			t.Run(format+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				write := func(path string, from, to int, carry int64) *table.Writer {
					w, err := table.Create(path, "", mem)
					if err != nil {
						t.Fatal(err)
					}
					w.SetMetadata(jobMeta)
					if carry > 0 {
						if err := w.CarryOver(carry); err != nil {
							t.Fatal(err)
						}
					}
					for part := from; part < to; part++ {
						writePart(t, w, mem, part, tc.failed(part))
					}
					return w
				}
				whole := filepath.Join(dir, "whole."+format)
				if err := write(whole, 0, tc.parts, 0).Close(); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(dir, "out."+format)
				w := write(out, 0, first, 0)
				carried := w.Rows()
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				earlier, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				w = write(out, first, tc.parts, carried)
				if now, _ := os.ReadFile(out); !bytes.Equal(now, earlier) {
					t.Fatal("the earlier output changed before Close")
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(out + table.PartSuffix); !os.IsNotExist(err) {
					t.Errorf("%s left behind: %v", out+table.PartSuffix, err)
				}
				if tc.parts == first {
					if now, _ := os.ReadFile(out); !bytes.Equal(now, earlier) {
						t.Error("a Writer that only carried rows over changed the earlier output")
					}
				}
				want, got := readBack(t, whole), readBack(t, out)
				defer want.Release()
				defer got.Release()
				if !array.TableEqual(want, got) {
					t.Fatalf("carried output differs from the whole one:\n%v\nwant schema %v", got.Schema(), want.Schema())
				}
				if format == "arrow" {
					if v, _ := got.Schema().Metadata().GetValue("jetinfer.job"); v != "carry" {
						t.Errorf("output metadata %v, want jetinfer.job=carry", got.Schema().Metadata())
					}
					return
				}
				pf, err := file.OpenParquetFile(out, false)
				if err != nil {
					t.Fatal(err)
				}
				defer pf.Close()
				if v := pf.MetaData().KeyValueMetadata().FindValue("jetinfer.job"); v == nil || *v != "carry" {
					t.Errorf("output metadata %v, want jetinfer.job=carry", pf.MetaData().KeyValueMetadata())
				}
				// The earlier row group is copied, not merged with the new rows.
				if n := pf.NumRowGroups(); tc.parts > first && (n != 2 || pf.RowGroup(0).NumRows() != carried) {
					t.Errorf("%d row groups, the first of %d rows; want 2, the first the %d carried", n, pf.RowGroup(0).NumRows(), carried)
				}
			})
		}
	}
}

// TestWriterRefusesToCarryOver offers CarryOver outputs it must not
// copy: each is refused with the reason, and the Writer then writes every
// row itself.
func TestWriterRefusesToCarryOver(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	for _, format := range []string{"parquet", "arrow"} {
		for _, tc := range []struct {
			name  string
			meta  map[string]string
			rows  int64 // to carry; 0: what was written
			spoil func(path string)
			want  string
		}{
			{"other job", map[string]string{"jetinfer.job": "carry", "jetinfer.fingerprint": "f2"}, 0, nil, "fingerprint"},
			{"other rows", jobMeta, 13, nil, "holds 9 rows"},
			{"missing", jobMeta, 0, func(p string) { _ = os.Remove(p) }, "no such file"},
			{"cut short", jobMeta, 0, func(p string) {
				b, _ := os.ReadFile(p)
				_ = os.WriteFile(p, b[:len(b)-3], 0o600)
			}, ""},
		} {
			t.Run(format+"/"+tc.name, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "out."+format)
				w, err := table.Create(out, "", mem)
				if err != nil {
					t.Fatal(err)
				}
				w.SetMetadata(jobMeta)
				var rows int64
				for part := range 2 {
					rows += writePart(t, w, mem, part, false)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if tc.spoil != nil {
					tc.spoil(out)
				}
				if tc.rows != 0 {
					rows = tc.rows
				}
				w, err = table.Create(out, "", mem)
				if err != nil {
					t.Fatal(err)
				}
				w.SetMetadata(tc.meta)
				err = w.CarryOver(rows)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("CarryOver = %v, want an error naming %q", err, tc.want)
				}
				for part := range 3 {
					writePart(t, w, mem, part, false)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				got := readBack(t, out)
				defer got.Release()
				if got.NumRows() != 4+5+6 {
					t.Fatalf("%d rows written after a refused carry, want 15", got.NumRows())
				}
			})
		}
	}
}
