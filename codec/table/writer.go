package table

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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

// Error columns: every output ends with them; they are null in the rows
// of successful results.
const (
	ErrorCodeColumn    = "error_code"    // the error result's code (e.g. INVALID_ARGUMENT)
	ErrorMessageColumn = "error_message" // the error result's message
)

// errorFields are the error columns' fields.
var errorFields = []arrow.Field{
	{Name: ErrorCodeColumn, Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: ErrorMessageColumn, Type: arrow.BinaryTypes.String, Nullable: true},
}

// Writer writes result bodies, with the kept input columns beside them,
// to one output file in the order they are given, one row per input row:
// the rows of an error result (WriteFailed) hold nulls in the result
// columns and the error in the error columns. Its schema is the kept
// columns, then the result's columns (the result's id column is left out
// when "id" is also kept), then ErrorCodeColumn and ErrorMessageColumn;
// result and error columns are nullable. The result's columns are known
// from the first successful result: rows failed before it are held in a
// temporary Arrow IPC file beside the output (not in memory) and written
// when it comes, or at Close, where an output without any successful
// result has no result columns. In Parquet, tensor and FixedSizeList
// columns (kept or result) are written as lists with their row shape in
// the field metadata (ShapeMetadataKey). It is not safe for concurrent
// use.
type Writer struct {
	path   string // where the output goes at Close
	part   string // where it is written until then
	format Format
	mem    memory.Allocator
	f      *os.File
	pw     *pqarrow.FileWriter // Parquet with columns rowGroups does not write
	rg     *rowGroups
	fw     *ipc.FileWriter
	schema *arrow.Schema // nil until the first successful result (or Close)
	nkeep  int           // kept columns at the front of schema
	rows   int64
	lim    codec.Limits
	tmp    []arrow.Array // converted columns of the batch being joined
	// Rows failed before the schema was known: kept columns and error
	// columns, in an IPC stream in a temporary file.
	spill       *os.File
	spillW      *ipc.Writer
	spillSchema *arrow.Schema
	meta        *arrow.Metadata // SetMetadata's, on the output's schema
	carry       *carried        // CarryOver's earlier output
}

// PartSuffix ends the name of the file a Writer writes until Close puts it
// at its path.
const PartSuffix = ".part"

// Create returns a Writer of path in format (empty: FormatOf(path)) whose
// Arrow buffers come from mem (nil: a pool of freed buffers). The Writer
// writes path+PartSuffix and renames it to path at Close (replacing any
// file there), so path holds either what was there before or a whole
// output.
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
	part := path + PartSuffix
	f, err := os.Create(part)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", part, err)
	}
	lim := codec.DefaultLimits()
	lim.MaxBodyBytes = 1 << 30
	return &Writer{path: path, part: part, format: format, mem: mem, f: f, lim: lim}, nil
}

// Rows returns the rows written so far, failed rows included.
func (w *Writer) Rows() int64 { return w.rows }

// Write appends the rows of one successful result body, beside keep (nil
// or the same number of rows), and returns the rows written. The body is
// checked by codec.DecodeResult before arrow-go reads it.
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

// WriteFailed appends rows rows for an error result (code, message),
// beside keep (nil or rows rows): nulls in the result columns, the error
// in the error columns.
func (w *Writer) WriteFailed(keep arrow.RecordBatch, rows int, code, message string) error {
	if keep != nil && keep.NumRows() != int64(rows) {
		return fmt.Errorf("failed request of %d rows with %d kept rows", rows, keep.NumRows())
	}
	if rows == 0 {
		return nil
	}
	codes, msgs := w.repeat(code, rows), w.repeat(message, rows)
	defer codes.Release()
	defer msgs.Release()
	var fields []arrow.Field
	var cols []arrow.Array
	if keep != nil {
		fields = append(fields, keep.Schema().Fields()...)
		cols = append(cols, keep.Columns()...)
	}
	fields = append(fields, errorFields...)
	cols = append(cols, codes, msgs)
	rec := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, int64(rows))
	defer rec.Release()
	var err error
	if w.schema == nil {
		err = w.spillFailed(rec)
	} else {
		err = w.writeFailed(rec)
	}
	if err != nil {
		return err
	}
	w.rows += int64(rows)
	return nil
}

// repeat returns a string column of n copies of s.
func (w *Writer) repeat(s string, n int) arrow.Array {
	b := array.NewStringBuilder(w.mem)
	defer b.Release()
	b.Reserve(n)
	b.ReserveData(n * len(s))
	for range n {
		b.Append(s)
	}
	return b.NewArray()
}

// spillFailed keeps rec (kept and error columns) in the temporary file
// until the schema is known.
func (w *Writer) spillFailed(rec arrow.RecordBatch) error {
	if w.spill == nil {
		f, err := os.CreateTemp(filepath.Dir(w.path), ".jetinfer-failed-*.arrows")
		if err != nil {
			return fmt.Errorf("holding failed rows: %w", err)
		}
		w.spill, w.spillSchema = f, rec.Schema()
		w.spillW = ipc.NewWriter(f, ipc.WithSchema(rec.Schema()), ipc.WithAllocator(w.mem))
	} else if !w.spillSchema.Equal(rec.Schema()) {
		return fmt.Errorf("kept columns %s differ from the first failed request's %s", rec.Schema(), w.spillSchema)
	}
	if err := w.spillW.Write(rec); err != nil {
		return fmt.Errorf("holding failed rows: %w", err)
	}
	return nil
}

// writeFailed writes rec (kept and error columns) with nulls in the
// result columns.
func (w *Writer) writeFailed(rec arrow.RecordBatch) error {
	n := int(rec.NumRows())
	cols := make([]arrow.Array, w.schema.NumFields())
	var made []arrow.Array
	defer func() {
		for _, a := range made {
			a.Release()
		}
	}()
	nerr := len(errorFields)
	if int(rec.NumCols())-nerr != w.nkeep {
		return fmt.Errorf("failed request with %d kept columns, the output has %d", int(rec.NumCols())-nerr, w.nkeep)
	}
	for i := range w.nkeep {
		col := rec.Column(i)
		if w.format == Parquet {
			if _, lc, ok := tensorToList(rec.Schema().Field(i), col, w.mem); ok {
				made = append(made, lc)
				col = lc
			}
		}
		if f := w.schema.Field(i); !arrow.TypeEqual(col.DataType(), f.Type) {
			return fmt.Errorf("failed request's kept column %s is %s, the output's %s", f.Name, col.DataType(), f.Type)
		}
		cols[i] = col
	}
	for i := w.nkeep; i < len(cols)-nerr; i++ {
		a := array.MakeArrayOfNull(w.mem, w.schema.Field(i).Type, n)
		made = append(made, a)
		cols[i] = a
	}
	for j := range nerr {
		cols[len(cols)-nerr+j] = rec.Column(int(rec.NumCols()) - nerr + j)
	}
	out := array.NewRecordBatch(w.schema, cols, int64(n))
	defer out.Release()
	return w.write(out)
}

// join puts the kept columns beside a result batch, and null error
// columns after.
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
	nkeep := 0
	if keep != nil {
		for i, f := range keep.Schema().Fields() {
			add(f, keep.Column(i))
			keptID = keptID || f.Name == codec.IDColumn
		}
		nkeep = int(keep.NumCols())
	}
	for i, f := range res.Schema().Fields() {
		if f.Name != codec.IDColumn || !keptID {
			f.Nullable = true // null in the rows of failed requests
			add(f, res.Column(i))
		}
	}
	n := int(res.NumRows())
	for _, f := range errorFields {
		a := array.MakeArrayOfNull(w.mem, f.Type, n)
		w.tmp = append(w.tmp, a)
		fields = append(fields, f)
		cols = append(cols, a)
	}
	defer func() {
		for _, a := range w.tmp {
			a.Release()
		}
		w.tmp = w.tmp[:0]
	}()
	schema := arrow.NewSchema(fields, nil)
	if w.schema == nil {
		if err := w.open(schema, nkeep); err != nil {
			return nil, err
		}
	} else if !w.schema.Equal(schema) {
		return nil, fmt.Errorf("result columns %s differ from the first result's %s", schema, w.schema)
	}
	return array.NewRecordBatch(w.schema, cols, res.NumRows()), nil
}

// replay writes the failed rows held before the schema was known.
func (w *Writer) replay() error {
	if w.spill == nil {
		return nil
	}
	if err := w.spillW.Close(); err != nil {
		return fmt.Errorf("holding failed rows: %w", err)
	}
	if _, err := w.spill.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("reading failed rows back: %w", err)
	}
	rd, err := ipc.NewReader(w.spill, ipc.WithAllocator(w.mem))
	if err != nil {
		return fmt.Errorf("reading failed rows back: %w", err)
	}
	defer rd.Release()
	for rd.Next() {
		if err := w.writeFailed(rd.RecordBatch()); err != nil {
			return err
		}
	}
	if err := rd.Err(); err != nil {
		return fmt.Errorf("reading failed rows back: %w", err)
	}
	return w.dropSpill()
}

// dropSpill removes the temporary file of failed rows.
func (w *Writer) dropSpill() error {
	if w.spill == nil {
		return nil
	}
	name := w.spill.Name()
	err := errors.Join(w.spill.Close(), os.Remove(name))
	w.spill, w.spillW = nil, nil
	return err
}

// open fixes the schema (nkeep kept columns first), opens the file's
// writer and writes the failed rows held until now.
func (w *Writer) open(schema *arrow.Schema, nkeep int) error {
	if w.meta != nil {
		schema = arrow.NewSchema(schema.Fields(), w.meta)
	}
	w.schema, w.nkeep = schema, nkeep
	var err error
	switch w.format {
	case Parquet:
		props := parquet.NewWriterProperties(
			parquet.WithCompression(compress.Codecs.Snappy),
			parquet.WithDictionaryDefault(false), // half the CPU on model outputs (BenchmarkWriterParquet)
			parquet.WithMaxRowGroupLength(RowGroupRows),
			parquet.WithAllocator(w.mem))
		if useRowGroups(schema) {
			w.rg, err = newRowGroups(schema, w.f, props, 0)
		} else {
			w.pw, err = pqarrow.NewFileWriter(schema, w.f, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(w.mem)))
		}
	default:
		w.fw, err = ipc.NewFileWriter(w.f, ipc.WithSchema(schema), ipc.WithAllocator(w.mem))
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", w.path, err)
	}
	if w.carry != nil {
		if err := w.copyCarried(); err != nil {
			return err
		}
	}
	return w.replay()
}

func (w *Writer) write(rec arrow.RecordBatch) error {
	var err error
	switch {
	case w.rg != nil:
		err = w.rg.write(rec)
	case w.pw != nil:
		err = w.pw.WriteBuffered(rec)
	default:
		err = w.fw.Write(rec)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", w.path, err)
	}
	return nil
}

// Close finishes the file (footer, last row group) and puts it at the
// Writer's path. Failed rows still held (no request succeeded) are written
// first, under the schema of the rows carried over or else of the kept and
// error columns only. A Writer that wrote nothing leaves an empty file,
// one that only carried rows over leaves the earlier output as it was, and
// one that fails leaves what was at the path before.
func (w *Writer) Close() error {
	var err error
	onlyCarried := false
	switch {
	case w.schema == nil && w.spill != nil && w.carry != nil:
		err = w.open(w.carry.schema, w.spillSchema.NumFields()-len(errorFields))
	case w.schema == nil && w.carry != nil:
		onlyCarried = true
	case w.schema == nil && w.spill != nil:
		fields := w.spillSchema.Fields()
		if w.format == Parquet {
			for i, f := range fields {
				if lf, ok := listField(f); ok {
					fields[i] = lf
				}
			}
		}
		err = w.open(arrow.NewSchema(fields, nil), len(fields)-len(errorFields))
	}
	err = errors.Join(err, w.dropSpill())
	switch {
	case w.rg != nil:
		err = errors.Join(err, w.rg.Close()) // closes w.f too
		w.f = nil
	case w.pw != nil:
		err = errors.Join(err, w.pw.Close()) // closes w.f too
		w.f = nil
	case w.fw != nil:
		err = errors.Join(err, w.fw.Close())
	}
	if w.f != nil {
		err = errors.Join(err, w.f.Close())
	}
	if w.carry != nil {
		err = errors.Join(err, w.carry.f.Close())
	}
	if err != nil || onlyCarried {
		err = errors.Join(err, os.Remove(w.part))
	} else {
		err = os.Rename(w.part, w.path)
	}
	if err != nil {
		return fmt.Errorf("closing %s: %w", w.path, err)
	}
	return nil
}
