package table

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// writeIPCFile writes rec as an Arrow IPC file of batches of n rows.
func writeIPCFile(t *testing.T, rec arrow.RecordBatch, n int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.arrow")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ipc.NewFileWriter(f, ipc.WithSchema(rec.Schema()))
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < rec.NumRows(); off += n {
		s := rec.NewSlice(off, min(off+n, rec.NumRows()))
		err := w.Write(s)
		s.Release()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// growingTable returns rows of an id and a list of int32 that is short in
// the first half of the table and long, of varying length, in the second,
// so that a Reader's learned bytes per row fall short and chunks get cut
// in half.
func growingTable(rows int) arrow.RecordBatch {
	mem := memory.DefaultAllocator
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "r", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32), Nullable: true},
	}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	lb := b.Field(1).(*array.ListBuilder)
	vb := lb.ValueBuilder().(*array.Int32Builder)
	for i := range rows {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		lb.Append(true)
		n := 1
		if i >= rows/2 {
			n = 100 + i%50
		}
		for j := range n {
			vb.Append(int32(i*j + 1))
		}
	}
	return b.NewRecordBatch()
}

// readFrom reads paths to the end from start (nil: the beginning) and
// returns the chunks and, before the first and after each, the
// Reader's Checkpoint (nil where it has none).
func readFrom(t *testing.T, paths []string, opts Options, start *Position) ([]Chunk, []*Position) {
	t.Helper()
	opts.Start = start
	r, err := Open(paths, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var chunks []Chunk
	var marks []*Position
	mark := func() {
		if p, ok := r.Checkpoint(); ok {
			marks = append(marks, &p)
		} else {
			marks = append(marks, nil)
		}
	}
	mark()
	for {
		c, err := r.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return chunks, marks
		}
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, c)
		mark()
	}
}

// TestReaderStartsAtCheckpoint reads inputs whole, then again from every
// Checkpoint the whole read gave: each Reader opened there must cut the
// very chunks (rows, body bytes, kept columns) the whole read cut after
// it. The inputs: Parquet files of many row groups (one and four
// decoders), bodies halved to fit (where some chunks have no
// checkpoint), and a Parquet file followed by an Arrow IPC file.
func TestReaderStartsAtCheckpoint(t *testing.T) {
	rec := mixedTable(1000, nil)
	defer rec.Release()
	pq := writeRowGroups(t, rec, 100)
	pq2 := writeRowGroups(t, rec, 333)
	arrowFile := writeIPCFile(t, rec, 150)
	grow := growingTable(600)
	defer grow.Release()
	growing, growing2 := writeRowGroups(t, grow, 128), writeRowGroups(t, grow, 1000)
	for _, c := range []struct {
		name     string
		paths    []string
		perReq   int
		bytes    int
		decoders int
		halved   bool // some chunks are cut in half: no checkpoint after them
	}{
		{"row groups of 100, requests of 64", []string{pq}, 64, 0, 1, false},
		{"four decoders", []string{pq}, 64, 0, 4, false},
		{"bodies halved to fit", []string{pq}, 64, 9000, 4, false},
		{"two Parquet files", []string{pq, pq2}, 70, 0, 4, false},
		{"two Parquet files, halved", []string{pq2, pq}, 64, 9000, 1, false},
		{"Arrow IPC file", []string{arrowFile}, 64, 0, 1, false},
		{"Arrow IPC file, halved", []string{arrowFile}, 64, 9000, 1, false},
		{"rows growing along the input", []string{growing}, 64, 8 << 10, 4, true},
		{"rows growing, one decoder, then Parquet", []string{growing, growing2}, 64, 8 << 10, 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := mixedOptions(c.perReq, c.bytes)
			if c.halved {
				opts = Options{Columns: []string{"id", "r"}, Keep: []string{"id"}, RowsPerRequest: c.perReq, MaxBytes: c.bytes}
			}
			opts.decoders = c.decoders
			whole, marks := readFrom(t, c.paths, opts, nil)
			defer releaseChunks(whole)
			rows, none, inside := 0, 0, 0
			for _, ch := range whole {
				rows += ch.Rows
			}
			if want := int(rec.NumRows()) * len(c.paths); c.halved && rows != int(grow.NumRows())*len(c.paths) || !c.halved && rows != want {
				t.Fatalf("read %d rows", rows)
			}
			for i, m := range marks {
				if m == nil {
					t.Logf("no checkpoint after chunk %d of %d", i, len(whole))
					none++
					continue
				}
				if m.Row > 0 && m.Row%100 != 0 {
					inside++
				}
				got, _ := readFrom(t, c.paths, opts, m)
				if err := sameChunks(got, whole[i:]); err != nil {
					t.Errorf("from checkpoint %d %+v: %v", i, *m, err)
				}
				releaseChunks(got)
			}
			if inside == 0 && !c.halved {
				t.Errorf("no checkpoint inside a row group or batch")
			}
			if c.halved && none < 2 {
				t.Errorf("rows grow along the input, but no chunk was cut in half (every chunk but the last had a checkpoint)")
			}
			t.Logf("%d chunks, %d checkpoints, %d without", len(whole), len(marks)-none, none)
		})
	}
}
