package table

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"

	"github.com/jetinfer/jetinfer/codec"
)

// DefaultRowsPerRequest is Options.RowsPerRequest's default.
const DefaultRowsPerRequest = 4096

// DefaultMaxBytes is Options.MaxBytes's default: NATS's default
// max_payload (1 MiB) less room for headers.
const DefaultMaxBytes = 1<<20 - 16<<10

// Options says how input rows become request bodies.
type Options struct {
	// Columns to send, each "name" (sent under its own name) or
	// "name=input" (sent as engine input "input"). Empty: every column
	// that is not only kept (Keep). An input column named "id" is the
	// request id column the worker echoes; send it to join results back.
	Columns []string
	// Shapes gives a row shape per engine input; a FixedSizeList column
	// of prod(shape) elements is then sent as arrow.fixed_shape_tensor
	// with that shape (Parquet has no tensor type).
	Shapes map[string][]int64
	// Keep names input columns copied to the output beside the results
	// (not sent unless also in Columns).
	Keep []string
	// RowsPerRequest caps the rows of one request (default
	// DefaultRowsPerRequest).
	RowsPerRequest int
	// MaxBytes caps the encoded size of one request body (default
	// DefaultMaxBytes); rows are split to fit, whatever the input's own
	// record batch sizes.
	MaxBytes int
	// Mem allocates Arrow buffers (default: a pool of freed buffers).
	Mem memory.Allocator

	// Start, when set, makes the Reader go on from a Position another
	// Reader of the same files and options gave (Checkpoint): it cuts the
	// same chunks that one cut after it.
	Start *Position

	// For tests: goroutines decoding a Parquet file (default
	// rowGroupWorkers(); 1 reads it in one task) and
	// their byte budget (default parquetAheadBytes).
	decoders, aheadBytes int
}

// Position is where a Reader stands between two chunks (Checkpoint).
type Position struct {
	File    int   `json:"file"`     // index of the file in the Reader's paths
	Row     int64 `json:"row"`      // rows of that file before the next chunk
	RowSize int   `json:"row_size"` // the body bytes per row the Reader had learned
}

// Chunk is one request's worth of input rows.
type Chunk struct {
	Body []byte            // Arrow IPC stream: the sent columns of Rows rows
	Rows int               // rows in the request
	Keep arrow.RecordBatch // the kept columns of the same rows; nil without Options.Keep. Release it.
}

// Reader reads Parquet and Arrow IPC files in order and cuts their rows
// into request bodies. It cuts one input record batch at a time (for
// Parquet: RowsPerRequest rows) while the next are decoded in other
// goroutines: one batch ahead for Arrow IPC; for Parquet, row groups
// decoded by up to rowGroupWorkers() goroutines at once, about
// parquetAheadBytes of batches ahead (see parquetSource). So its memory
// does not depend on the input's size. It is not safe for concurrent use.
type Reader struct {
	opts    Options
	paths   []string
	next    int // index of the next file to open
	src     batchSource
	cur     arrow.RecordBatch // current input batch, projected
	off     int64             // rows of cur already cut
	send    []colMap          // sent columns
	keep    []int             // indices of kept columns in the input schema
	schema  *arrow.Schema     // schema of the bodies
	kschema *arrow.Schema     // schema of Chunk.Keep
	rows    int64             // total input rows, -1 when unknown
	rowSize int               // estimated body bytes per row (0: not yet known)
	fileIdx int
	fileRow int64       // rows of the open file before cur
	skip    int64       // rows of the open file still to skip (Options.Start)
	mixed   bool        // cur holds rows given back by cut: no Checkpoint until the next batch
	free    chan []byte // bodies given back by Recycle
}

// readAheadBatches is how many decoded input batches a Reader keeps
// ready beyond the one it cuts from an Arrow IPC file or stream:
// decoding the next batch overlaps with cutting and encoding the current
// one. (Parquet sources decode ahead by themselves: parquetSource.)
const readAheadBatches = 1

// readAhead is a batchSource that decodes src's batches in its own
// goroutine, up to readAheadBatches ahead of its user.
type readAhead struct {
	src  batchSource
	out  chan fetched
	stop chan struct{}
}

// fetched is one result of batchSource.next.
type fetched struct {
	rec arrow.RecordBatch
	err error
}

func startReadAhead(src batchSource) *readAhead {
	ra := &readAhead{src: src, out: make(chan fetched, readAheadBatches), stop: make(chan struct{})}
	go func() {
		defer close(ra.out)
		for {
			// Files do not block; close waits for this read to end.
			rec, err := src.next(context.Background())
			select {
			case ra.out <- fetched{rec, err}:
			case <-ra.stop:
				if rec != nil {
					rec.Release()
				}
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ra
}

func (ra *readAhead) next(ctx context.Context) (arrow.RecordBatch, error) {
	select {
	case f, ok := <-ra.out:
		if !ok {
			return nil, io.EOF
		}
		return f.rec, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// close stops the decoding goroutine, releases what it decoded ahead and
// closes the file.
func (ra *readAhead) close() error {
	close(ra.stop)
	for f := range ra.out {
		if f.rec != nil {
			f.rec.Release()
		}
	}
	return ra.src.close()
}

// colMap maps an input column onto a sent column.
type colMap struct {
	in, out string
	shape   []int64
}

// batchSource yields the record batches of one file.
type batchSource interface {
	next(ctx context.Context) (arrow.RecordBatch, error) // io.EOF at the end; the caller releases
	close() error
}

// Open returns a Reader over paths (Parquet by the ".parquet"/".pq"
// extension or magic bytes, else Arrow IPC file or stream format).
func Open(paths []string, opts Options) (*Reader, error) {
	codec.RegisterTensorExtension()
	if len(paths) == 0 {
		return nil, errors.New("opening input: no files")
	}
	if opts.RowsPerRequest <= 0 {
		opts.RowsPerRequest = DefaultRowsPerRequest
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Mem == nil {
		opts.Mem = &poolAllocator{}
	}
	r := &Reader{opts: opts, paths: paths, rows: 0, free: make(chan []byte, recycledBodies)}
	if st := opts.Start; st != nil {
		if st.File < 0 || st.File >= len(paths) || st.Row < 0 || st.RowSize < 0 {
			return nil, fmt.Errorf("opening input at %+v: not a position in %d files", *st, len(paths))
		}
		r.next, r.rowSize = st.File, st.RowSize
	}
	for _, p := range paths {
		n, err := countRows(p)
		if err != nil {
			return nil, err
		}
		if n < 0 {
			r.rows = -1
			break
		}
		r.rows += n
	}
	return r, nil
}

// recycledBodies is how many bodies given back by Recycle a Reader keeps
// for reuse.
const recycledBodies = 8

// Recycle gives back the Body of a chunk that its user no longer needs,
// for a later chunk to reuse. It may be called from any goroutine, also
// while Next runs. Nothing may read the body after.
func (r *Reader) Recycle(body []byte) {
	select {
	case r.free <- body[:0]:
	default:
	}
}

// Rows returns the number of input rows, or -1 when some input does not
// say without being read (Arrow IPC streams).
func (r *Reader) Rows() int64 { return r.rows }

// Checkpoint returns where the Reader stands after the last chunk it
// returned: a Reader opened at that Position (Options.Start) cuts the
// chunks this one cuts next. It is false while the Reader cuts rows a
// chunk cut in half gave back (until the input batch they came from is
// used up): no Position says how they were batched.
func (r *Reader) Checkpoint() (Position, bool) {
	if r.mixed {
		return Position{}, false
	}
	if r.src == nil && r.cur == nil {
		// Before the first file or between two: the next file's start.
		return Position{File: min(r.next, len(r.paths)-1), RowSize: r.rowSize}, r.next < len(r.paths)
	}
	row := r.fileRow
	if r.cur != nil {
		row += r.off
	}
	return Position{File: r.fileIdx, Row: row, RowSize: r.rowSize}, true
}

// NextRows returns the kept columns (Chunk.Keep) of the next n rows, and
// no body: for rows whose requests need none (a resumed job's finished
// ones, whose row counts are known).
func (r *Reader) NextRows(ctx context.Context, n int) (Chunk, error) {
	var parts []arrow.RecordBatch
	defer func() {
		for _, p := range parts {
			p.Release()
		}
	}()
	for got := 0; got < n; {
		if r.cur == nil || r.off >= r.cur.NumRows() {
			if err := r.advance(ctx); err != nil {
				if errors.Is(err, io.EOF) {
					return Chunk{}, fmt.Errorf("input ended %d rows before the end of a finished request of %d", n-got, n)
				}
				return Chunk{}, err
			}
			continue
		}
		k := min(int64(n-got), r.cur.NumRows()-r.off)
		parts = append(parts, r.cur.NewSlice(r.off, r.off+k))
		r.off += k
		got += int(k)
	}
	c := Chunk{Rows: n}
	if len(r.keep) > 0 {
		var err error
		if c.Keep, err = r.keepOf(parts); err != nil {
			return Chunk{}, err
		}
	}
	return c, nil
}

// Next returns the next chunk, or io.EOF after the last row.
func (r *Reader) Next(ctx context.Context) (Chunk, error) {
	var parts []arrow.RecordBatch
	defer func() {
		for _, p := range parts {
			p.Release()
		}
	}()
	want := r.opts.RowsPerRequest
	if r.rowSize > 0 {
		want = max(1, min(want, (r.opts.MaxBytes-4096)/r.rowSize))
	}
	got := 0
	for got < want {
		if r.cur == nil || r.off >= r.cur.NumRows() {
			if err := r.advance(ctx); err != nil {
				if errors.Is(err, io.EOF) && got > 0 {
					break
				}
				return Chunk{}, err
			}
			if r.rowSize == 0 {
				if r.rowSize = rowBytes(r.cur); r.rowSize > 0 {
					want = max(1, min(want, (r.opts.MaxBytes-4096)/r.rowSize))
				}
			}
			continue
		}
		n := min(int64(want-got), r.cur.NumRows()-r.off)
		parts = append(parts, r.cur.NewSlice(r.off, r.off+n))
		r.off += n
		got += int(n)
	}
	return r.cut(parts, got)
}

// cut encodes parts (got rows) as one body, halving the rows until the
// body fits MaxBytes; rows left over go back to the reader.
func (r *Reader) cut(parts []arrow.RecordBatch, got int) (Chunk, error) {
	for {
		body, err := r.encode(parts)
		if err != nil {
			return Chunk{}, err
		}
		if len(body) <= r.opts.MaxBytes {
			c := Chunk{Body: body, Rows: got}
			if len(r.keep) > 0 {
				if c.Keep, err = r.keepOf(parts); err != nil {
					return Chunk{}, err
				}
			}
			if got > 0 {
				r.rowSize = max(r.rowSize, (len(body)+got-1)/got)
			}
			return c, nil
		}
		if got == 1 {
			return Chunk{}, fmt.Errorf("encoding request: one row takes %d bytes, more than the %d allowed per request", len(body), r.opts.MaxBytes)
		}
		// Give the second half back: it starts the next chunk.
		half := got / 2
		var keep []arrow.RecordBatch
		var back []arrow.RecordBatch
		acc := 0
		for _, p := range parts {
			n := int(p.NumRows())
			switch {
			case acc >= half:
				back = append(back, p)
			case acc+n <= half:
				keep = append(keep, p)
			default:
				k := int64(half - acc)
				keep = append(keep, p.NewSlice(0, k))
				back = append(back, p.NewSlice(k, int64(n)))
				p.Release()
			}
			acc += n
		}
		r.pushBack(back)
		parts, got = keep, half
	}
}

// pushBack returns rows to the front of the reader's input.
func (r *Reader) pushBack(back []arrow.RecordBatch) {
	if len(back) == 0 {
		return
	}
	// cur becomes the rows given back and the rest of cur: it starts
	// that many rows before where the Reader stood (in an earlier file,
	// maybe: fileRow is right again once cur is used up).
	pos := r.fileRow
	if r.cur != nil {
		pos += r.off
	}
	for _, b := range back {
		pos -= b.NumRows()
	}
	r.fileRow, r.mixed = pos, true
	if r.cur != nil && r.off < r.cur.NumRows() {
		back = append(back, r.cur.NewSlice(r.off, r.cur.NumRows()))
	}
	if r.cur != nil {
		r.cur.Release()
	}
	if len(back) == 1 {
		r.cur = back[0]
	} else {
		r.cur = concat(back, r.opts.Mem)
		for _, b := range back {
			b.Release()
		}
	}
	r.off = 0
}

func concat(recs []arrow.RecordBatch, mem memory.Allocator) arrow.RecordBatch {
	cols := make([]arrow.Array, recs[0].NumCols())
	var rows int64
	for _, rec := range recs {
		rows += rec.NumRows()
	}
	for i := range cols {
		arrs := make([]arrow.Array, len(recs))
		for j, rec := range recs {
			arrs[j] = rec.Column(i)
		}
		c, err := array.Concatenate(arrs, mem)
		if err != nil {
			panic(fmt.Sprintf("concatenating equal-typed slices: %v", err)) // cannot happen: one schema
		}
		cols[i] = c
		defer c.Release()
	}
	return array.NewRecordBatch(recs[0].Schema(), cols, rows)
}

// encode writes the sent columns of parts as one IPC stream.
func (r *Reader) encode(parts []arrow.RecordBatch) ([]byte, error) {
	var buf *bytes.Buffer
	select {
	case b := <-r.free:
		buf = bytes.NewBuffer(b)
	default:
		buf = new(bytes.Buffer)
	}
	rows := 0
	for _, p := range parts {
		rows += int(p.NumRows())
	}
	buf.Grow(min(r.opts.MaxBytes, rows*max(r.rowSize, 1)+4096)) // no doubling garbage
	w := ipc.NewWriter(buf, ipc.WithSchema(r.schema), ipc.WithAllocator(r.opts.Mem))
	for _, p := range parts {
		rec, err := r.sendOf(p)
		if err != nil {
			return nil, err
		}
		err = w.Write(rec)
		rec.Release()
		if err != nil {
			return nil, fmt.Errorf("encoding request: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encoding request: %w", err)
	}
	return buf.Bytes(), nil
}

// sendOf projects a batch of the input schema onto the body schema.
func (r *Reader) sendOf(p arrow.RecordBatch) (arrow.RecordBatch, error) {
	cols := make([]arrow.Array, len(r.send))
	for i, m := range r.send {
		idx := p.Schema().FieldIndices(m.in)
		col := p.Column(idx[0])
		if want := r.schema.Field(i).Type; !arrow.TypeEqual(col.DataType(), want) {
			ext, ok := want.(*codec.FixedShapeTensorType)
			var a arrow.Array
			var err error
			switch {
			case ok && arrow.TypeEqual(col.DataType(), ext.StorageType()):
				a = array.NewExtensionArrayWithStorage(ext, col)
			case ok && col.DataType().ID() == arrow.LIST:
				if a, err = listToTensor(col, ext); err != nil {
					return nil, fmt.Errorf("column %q of %s: %w", m.in, r.paths[r.fileIdx], err)
				}
			default:
				return nil, fmt.Errorf("column %q of %s is %s, the first file's is %s", m.in, r.paths[r.fileIdx], col.DataType(), want)
			}
			defer a.Release()
			col = a
		}
		cols[i] = col
	}
	return array.NewRecordBatch(r.schema, cols, p.NumRows()), nil
}

// keepOf returns the kept columns of parts as one batch, copied: a
// request's kept columns stay in memory until its result is written, and
// a slice would pin the whole input batch it came from for that long,
// while RecordBytes of it, what the client charges a request against
// Job.HeldBytes, would count that batch's rows once per request sharing
// it. The copy is a few bytes per row.
func (r *Reader) keepOf(parts []arrow.RecordBatch) (arrow.RecordBatch, error) {
	recs := make([]arrow.RecordBatch, len(parts))
	for i, p := range parts {
		cols := make([]arrow.Array, len(r.keep))
		for j, name := range r.kschema.Fields() {
			cols[j] = p.Column(p.Schema().FieldIndices(name.Name)[0])
		}
		recs[i] = array.NewRecordBatch(r.kschema, cols, p.NumRows())
	}
	defer func() {
		for _, rec := range recs {
			rec.Release()
		}
	}()
	if len(recs) == 0 {
		return array.NewRecordBatch(r.kschema, nil, 0), nil
	}
	return concat(recs, r.opts.Mem), nil
}

// advance moves to the next non-empty input batch, opening files as
// needed; io.EOF after the last.
func (r *Reader) advance(ctx context.Context) error {
	if r.cur != nil {
		r.fileRow += r.cur.NumRows()
		r.cur.Release()
		r.cur = nil
	}
	r.mixed = false
	for {
		if r.src == nil {
			if r.next >= len(r.paths) {
				return io.EOF
			}
			var from int64
			if st := r.opts.Start; st != nil && st.File == r.next {
				from = st.Row
				r.opts.Start = nil
			}
			src, schema, first, err := openFile(r.paths[r.next], r.opts, from)
			if err != nil {
				return err
			}
			r.fileIdx = r.next
			r.fileRow, r.skip = first, from-first
			r.next++
			r.src = src
			if err := r.plan(schema); err != nil {
				return err
			}
		}
		rec, err := r.src.next(ctx)
		if errors.Is(err, io.EOF) {
			err = r.src.close()
			r.src = nil
			if err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", r.paths[r.fileIdx], err)
		}
		if rec.NumRows() == 0 {
			rec.Release()
			continue
		}
		if n := rec.NumRows(); r.skip >= n { // rows before Options.Start
			r.skip -= n
			r.fileRow += n
			rec.Release()
			continue
		}
		r.cur, r.off, r.skip = rec, r.skip, 0
		return nil
	}
}

// plan resolves the column options against the schema of a file; every
// file after the first must give the same body schema.
func (r *Reader) plan(s *arrow.Schema) error {
	path := r.paths[r.fileIdx]
	find := func(name string) (arrow.Field, error) {
		idx := s.FieldIndices(name)
		if len(idx) != 1 {
			return arrow.Field{}, fmt.Errorf("column %q: found %d times in %s (columns: %s)", name, len(idx), path, fieldNames(s))
		}
		return s.Field(idx[0]), nil
	}
	var send []colMap
	if len(r.opts.Columns) == 0 {
		for _, f := range s.Fields() {
			if !slices.Contains(r.opts.Keep, f.Name) || f.Name == codec.IDColumn {
				send = append(send, colMap{in: f.Name, out: f.Name})
			}
		}
	} else {
		for _, c := range r.opts.Columns {
			in, out, ok := strings.Cut(strings.TrimSpace(c), "=")
			if !ok {
				out = in
			}
			send = append(send, colMap{in: in, out: out})
		}
	}
	fields := make([]arrow.Field, len(send))
	for i := range send {
		f, err := find(send[i].in)
		if err != nil {
			return err
		}
		f.Name = send[i].out
		if shape, ok := r.opts.Shapes[send[i].out]; ok {
			if f.Type, err = tensorType(f, shape); err != nil {
				return fmt.Errorf("column %q of %s: %w", send[i].in, path, err)
			}
			send[i].shape = shape
		}
		fields[i] = f
	}
	schema := arrow.NewSchema(fields, nil)
	var kfields []arrow.Field
	for _, k := range r.opts.Keep {
		f, err := find(k)
		if err != nil {
			return err
		}
		kfields = append(kfields, f)
	}
	kschema := arrow.NewSchema(kfields, nil)
	if r.schema != nil {
		if !r.schema.Equal(schema) || !r.kschema.Equal(kschema) {
			return fmt.Errorf("columns of %s (%s) differ from those of %s (%s)", path, schema, r.paths[0], r.schema)
		}
		return nil
	}
	r.schema, r.kschema, r.send = schema, kschema, send
	r.keep = make([]int, len(kfields))
	return nil
}

func fieldNames(s *arrow.Schema) string {
	names := make([]string, s.NumFields())
	for i, f := range s.Fields() {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

// tensorType returns the fixed_shape_tensor type of shape over a
// FixedSizeList or List column (or checks an existing tensor column's
// shape).
func tensorType(f arrow.Field, shape []int64) (arrow.DataType, error) {
	if t, ok := f.Type.(*codec.FixedShapeTensorType); ok {
		if !slices.Equal(t.Shape(), shape) {
			return nil, fmt.Errorf("tensor shape %v, asked for %v", t.Shape(), shape)
		}
		return t, nil
	}
	var elem arrow.DataType
	size := int64(-1)
	switch lt := f.Type.(type) {
	case *arrow.FixedSizeListType:
		elem, size = lt.Elem(), int64(lt.Len())
	case *arrow.ListType:
		elem = lt.Elem() // row lengths are checked per batch
	default:
		return nil, fmt.Errorf("type %s: a shape applies to FixedSizeList and List columns only", f.Type)
	}
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	if size >= 0 && n != size {
		return nil, fmt.Errorf("FixedSizeList of %d elements cannot take shape %v (%d elements)", size, shape, n)
	}
	return codec.NewFixedShapeTensorType(elem, shape, nil)
}

// rowBytes estimates the body bytes of one row of rec.
func rowBytes(rec arrow.RecordBatch) int {
	if rec.NumRows() == 0 {
		return 0
	}
	var n int
	for _, c := range rec.Columns() {
		n += dataBytes(c.Data())
	}
	return max(1, n/int(rec.NumRows()))
}

// RecordBytes returns the bytes of the buffers rec references: whole
// buffers, also where rec is a slice, because that is the memory it keeps
// alive. Chunk.Keep's weight while it waits for its result.
func RecordBytes(rec arrow.RecordBatch) int {
	var n int
	for _, c := range rec.Columns() {
		n += dataBytes(c.Data())
	}
	return n
}

func dataBytes(d arrow.ArrayData) int {
	n := 0
	for _, b := range d.Buffers() {
		if b != nil {
			n += b.Len()
		}
	}
	for _, c := range d.Children() {
		n += dataBytes(c)
	}
	return n
}

// Close releases the reader's buffers and closes the open file.
func (r *Reader) Close() error {
	if r.cur != nil {
		r.cur.Release()
		r.cur = nil
	}
	if r.src != nil {
		err := r.src.close()
		r.src = nil
		return err
	}
	return nil
}

// isParquet reports whether path is a Parquet file, by name or magic.
func isParquet(path string) (bool, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".parquet", ".pq":
		return true, nil
	case ".arrow", ".arrows", ".ipc", ".feather":
		return false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	var magic [4]byte
	_, err = io.ReadFull(f, magic[:])
	return err == nil && string(magic[:]) == "PAR1", nil
}

// countRows returns the rows of a file when its metadata says so cheaply
// (Parquet footer, Arrow IPC file footer blocks are not counted), else -1.
func countRows(path string) (int64, error) {
	pq, err := isParquet(path)
	if err != nil || !pq {
		return -1, err
	}
	f, err := file.OpenParquetFile(path, false)
	if err != nil {
		return 0, fmt.Errorf("opening Parquet file %s: %w", path, err)
	}
	defer f.Close()
	return f.NumRows(), nil
}

// openFile opens one input file as a batch source that decodes ahead of
// its user, starting at or before row from (a Parquet file at the row
// group of from's batch, other files at their start), and returns the
// row its first batch starts at.
func openFile(path string, opts Options, from int64) (batchSource, *arrow.Schema, int64, error) {
	pq, err := isParquet(path)
	if err != nil {
		return nil, nil, 0, err
	}
	if pq {
		s, schema, err := openParquet(path, opts, from)
		if err != nil {
			return nil, nil, 0, err
		}
		return s, schema, s.first, nil
	}
	src, schema, err := openIPC(path, opts)
	return src, schema, 0, err
}

// openIPC opens an Arrow IPC file or stream as a batch source.
func openIPC(path string, opts Options) (batchSource, *arrow.Schema, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("opening %s: %w", path, err)
	}
	var magic [6]byte
	if _, err := io.ReadFull(f, magic[:]); err == nil && string(magic[:]) == "ARROW1" {
		fr, err := ipc.NewFileReader(f, ipc.WithAllocator(opts.Mem))
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("reading Arrow file %s: %w", path, err)
		}
		return startReadAhead(&ipcFileSource{f: f, fr: fr}), fr.Schema(), nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("reading %s: %w", path, err)
	}
	sr, err := ipc.NewReader(f, ipc.WithAllocator(opts.Mem))
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("reading %s as Parquet, Arrow IPC file or stream: %w", path, err)
	}
	return startReadAhead(&ipcStreamSource{f: f, sr: sr}), sr.Schema(), nil
}

type ipcFileSource struct {
	f  *os.File
	fr *ipc.FileReader
	i  int
}

func (s *ipcFileSource) next(context.Context) (arrow.RecordBatch, error) {
	if s.i >= s.fr.NumRecords() {
		return nil, io.EOF
	}
	rec, err := s.fr.RecordBatch(s.i)
	if err != nil {
		return nil, err
	}
	s.i++
	rec.Retain()
	return rec, nil
}

func (s *ipcFileSource) close() error { s.fr.Close(); return s.f.Close() }

type ipcStreamSource struct {
	f  *os.File
	sr *ipc.Reader
}

func (s *ipcStreamSource) next(context.Context) (arrow.RecordBatch, error) {
	if s.sr.Next() {
		rec := s.sr.RecordBatch()
		rec.Retain()
		return rec, nil
	}
	if err := s.sr.Err(); err != nil {
		return nil, err
	}
	return nil, io.EOF
}

func (s *ipcStreamSource) close() error { s.sr.Release(); return s.f.Close() }

// Expand turns arguments (files, directories, globs) into a sorted list of
// files; a directory contributes its *.parquet, *.arrow and *.arrows
// files.
func Expand(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		matches, err := filepath.Glob(a)
		if err != nil {
			return nil, fmt.Errorf("expanding %q: %w", a, err)
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("input %q: no such file", a)
		}
		for _, m := range matches {
			st, err := os.Stat(m)
			if err != nil {
				return nil, fmt.Errorf("reading input %s: %w", m, err)
			}
			if !st.IsDir() {
				out = append(out, m)
				continue
			}
			ents, err := os.ReadDir(m)
			if err != nil {
				return nil, fmt.Errorf("reading input directory %s: %w", m, err)
			}
			var files []string
			for _, e := range ents {
				switch strings.ToLower(filepath.Ext(e.Name())) {
				case ".parquet", ".pq", ".arrow", ".arrows", ".ipc", ".feather":
					if !e.IsDir() {
						files = append(files, filepath.Join(m, e.Name()))
					}
				}
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("input directory %s holds no .parquet or .arrow files", m)
			}
			slices.Sort(files)
			out = append(out, files...)
		}
	}
	return out, nil
}

// Fingerprint identifies the input files by absolute path, size and
// modification time: a changed file gives another fingerprint.
func Fingerprint(paths []string) (string, error) {
	h := sha256.New()
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", fmt.Errorf("resolving %s: %w", p, err)
		}
		st, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("reading input %s: %w", p, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\n", abs, st.Size(), st.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
