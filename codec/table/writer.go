package table

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/jetinfer/jetinfer/codec"
)

// Format is an output file format.
type Format string

// Output formats.
const (
	Parquet Format = "parquet"
	Arrow   Format = "arrow" // Arrow IPC file format
)

// FormatOf returns the format named by a path's extension: Parquet for
// ".parquet" and ".pq", else Arrow.
func FormatOf(path string) Format {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".parquet", ".pq":
		return Parquet
	}
	return Arrow
}

// RowGroupRows is the number of rows per Parquet row group the Writer
// writes: it bounds the rows the Writer buffers.
const RowGroupRows = 64 << 10

// Writer writes result bodies, with the kept input columns beside them,
// to one output file in the order they are given. Its schema is fixed by
// the first Write: the kept columns, then the result's columns (the
// result's id column is left out when "id" is also kept). In Parquet,
// tensor and FixedSizeList columns (kept or result) are written as lists
// with their row shape in the field metadata (ShapeMetadataKey). It is not safe
// for concurrent use.
type Writer struct {
	path   string
	format Format
	mem    memory.Allocator
	f      *os.File
	pw     *pqarrow.FileWriter
	fw     *ipc.FileWriter
	schema *arrow.Schema
	rows   int64
	lim    codec.Limits
	tmp    []arrow.Array // converted columns of the batch being joined
}

// Create creates (truncates) path and returns a Writer in format (empty:
// FormatOf(path)) whose Arrow buffers come from mem (nil: a pool of
// freed buffers).
func Create(path string, format Format, mem memory.Allocator) (*Writer, error) {
	codec.RegisterTensorExtension()
	if format == "" {
		format = FormatOf(path)
	}
	if format != Parquet && format != Arrow {
		return nil, fmt.Errorf("output format %q: want parquet or arrow", format)
	}
	if mem == nil {
		mem = &poolAllocator{}
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	lim := codec.DefaultLimits()
	lim.MaxBodyBytes = 1 << 30
	return &Writer{path: path, format: format, mem: mem, f: f, lim: lim}, nil
}

// Rows returns the rows written so far.
func (w *Writer) Rows() int64 { return w.rows }

// Write appends the rows of one result body, beside keep (nil or the same
// number of rows), and returns the rows written. The body is checked by
// codec.DecodeResult before arrow-go reads it.
func (w *Writer) Write(keep arrow.RecordBatch, body []byte) (int, error) {
	res, err := codec.DecodeResult(body, w.lim)
	if err != nil {
		return 0, fmt.Errorf("checking result body: %w", err)
	}
	rows := res.Rows
	res.Release()
	if keep != nil && keep.NumRows() != int64(rows) {
		return 0, fmt.Errorf("result has %d rows, its request %d", rows, keep.NumRows())
	}
	rd, err := ipc.NewReader(bytes.NewReader(body), ipc.WithAllocator(w.mem))
	if err != nil {
		return 0, fmt.Errorf("reading result body: %w", err)
	}
	defer rd.Release()
	var off int64
	for rd.Next() {
		rec := rd.RecordBatch()
		if rec.NumRows() == 0 {
			continue
		}
		var k arrow.RecordBatch
		if keep != nil {
			k = keep.NewSlice(off, off+rec.NumRows())
		}
		out, err := w.join(k, rec)
		if k != nil {
			k.Release()
		}
		if err != nil {
			return 0, err
		}
		err = w.write(out)
		out.Release()
		if err != nil {
			return 0, err
		}
		off += rec.NumRows()
	}
	if err := rd.Err(); err != nil {
		return 0, fmt.Errorf("reading result body: %w", err)
	}
	w.rows += int64(rows)
	return rows, nil
}

// join puts the kept columns beside a result batch.
func (w *Writer) join(keep, res arrow.RecordBatch) (arrow.RecordBatch, error) {
	var fields []arrow.Field
	var cols []arrow.Array
	keptID := false
	add := func(f arrow.Field, col arrow.Array) {
		if w.format == Parquet {
			if lf, lc, ok := tensorToList(f, col, w.mem); ok {
				w.tmp = append(w.tmp, lc)
				f, col = lf, lc
			}
		}
		fields = append(fields, f)
		cols = append(cols, col)
	}
	if keep != nil {
		for i, f := range keep.Schema().Fields() {
			add(f, keep.Column(i))
			keptID = keptID || f.Name == codec.IDColumn
		}
	}
	for i, f := range res.Schema().Fields() {
		if f.Name != codec.IDColumn || !keptID {
			add(f, res.Column(i))
		}
	}
	defer func() {
		for _, a := range w.tmp {
			a.Release()
		}
		w.tmp = w.tmp[:0]
	}()
	schema := arrow.NewSchema(fields, nil)
	if w.schema == nil {
		if err := w.open(schema); err != nil {
			return nil, err
		}
	} else if !w.schema.Equal(schema) {
		return nil, fmt.Errorf("result columns %s differ from the first result's %s", schema, w.schema)
	}
	return array.NewRecordBatch(w.schema, cols, res.NumRows()), nil
}

func (w *Writer) open(schema *arrow.Schema) error {
	w.schema = schema
	var err error
	switch w.format {
	case Parquet:
		props := parquet.NewWriterProperties(
			parquet.WithCompression(compress.Codecs.Snappy),
			parquet.WithDictionaryDefault(false), // half the CPU on model outputs (BenchmarkWriterParquet)
			parquet.WithMaxRowGroupLength(RowGroupRows),
			parquet.WithAllocator(w.mem))
		w.pw, err = pqarrow.NewFileWriter(schema, w.f, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(w.mem)))
	default:
		w.fw, err = ipc.NewFileWriter(w.f, ipc.WithSchema(schema), ipc.WithAllocator(w.mem))
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", w.path, err)
	}
	return nil
}

func (w *Writer) write(rec arrow.RecordBatch) error {
	var err error
	if w.pw != nil {
		err = w.pw.WriteBuffered(rec)
	} else {
		err = w.fw.Write(rec)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", w.path, err)
	}
	return nil
}

// Close finishes the file (footer, last row group). A Writer that wrote
// nothing leaves an empty file.
func (w *Writer) Close() error {
	var err error
	switch {
	case w.pw != nil:
		err = w.pw.Close() // closes w.f too
		w.f = nil
	case w.fw != nil:
		err = w.fw.Close()
	}
	if w.f != nil {
		err = errors.Join(err, w.f.Close())
	}
	if err != nil {
		return fmt.Errorf("closing %s: %w", w.path, err)
	}
	return nil
}
