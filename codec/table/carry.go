package table

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/parquet/metadata"
)

// arrowSchemaKey is the Parquet key-value metadata entry in which pqarrow
// (and rowGroups) store the Arrow schema.
const arrowSchemaKey = "ARROW:schema"

// carried is an earlier output whose rows a Writer copies to the front of
// its own (Writer.CarryOver).
type carried struct {
	f      *os.File
	rows   int64
	schema *arrow.Schema // as the earlier output stored it
	// Parquet: the footer, and where the column chunks end.
	meta    *metadata.FileMetaData
	dataEnd int64
}

// SetMetadata sets key-value metadata on the output's schema (in Parquet,
// also the file's key-value metadata), e.g. which job wrote it. It must
// be called before the first row is written.
func (w *Writer) SetMetadata(md map[string]string) {
	keys := slices.Sorted(maps.Keys(md))
	vals := make([]string, len(keys))
	for i, k := range keys {
		vals[i] = md[k]
	}
	m := arrow.NewMetadata(keys, vals)
	w.meta = &m
}

// CarryOver makes the rows of the file now at the Writer's path, the
// output of an earlier run that wrote the same job's first rows rows and
// was stopped (Writer.Close ran), the first rows of this output, copied as
// they are: Parquet column chunks byte for byte (no decoding), Arrow IPC
// record batches. The Writer writes to a file beside the path and puts it
// in place at Close, so the earlier output stays whole until then. It
// must be called before the first row is written, after SetMetadata.
//
// CarryOver refuses, and the Writer writes every row itself, when the
// file is missing, is not a whole file of the Writer's format, holds
// another number of rows, lacks any SetMetadata entry with the same
// value, or has columns the Writer does not copy (Parquet written through
// pqarrow's general writer). When the columns of this run's results turn
// out to differ from the earlier output's, the first Write fails.
func (w *Writer) CarryOver(rows int64) error {
	if w.rows > 0 || w.schema != nil || w.spill != nil || w.carry != nil {
		return errors.New("carrying rows over: the output is already written to")
	}
	f, err := os.Open(w.path)
	if err != nil {
		return fmt.Errorf("carrying rows over: %w", err)
	}
	c := &carried{f: f, rows: rows}
	if w.format == Parquet {
		err = c.readParquet()
	} else {
		err = c.readArrow(w)
	}
	if err == nil {
		err = w.sameMetadata(c.schema)
	}
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("carrying rows over from %s: %w", w.path, err)
	}
	w.carry, w.rows = c, rows
	return nil
}

// sameMetadata checks that schema carries every SetMetadata entry.
func (w *Writer) sameMetadata(schema *arrow.Schema) error {
	if w.meta == nil {
		return nil
	}
	got := schema.Metadata()
	for i, k := range w.meta.Keys() {
		if v, ok := got.GetValue(k); !ok || v != w.meta.Values()[i] {
			return fmt.Errorf("metadata %s is %q, this output's is %q", k, v, w.meta.Values()[i])
		}
	}
	return nil
}

// readParquet reads the footer of a Parquet file and the Arrow schema
// stored in it.
func (c *carried) readParquet() error {
	st, err := c.f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	var tail [8]byte
	if size < 12 {
		return fmt.Errorf("%d bytes: not a whole Parquet file", size)
	}
	if _, err := c.f.ReadAt(tail[:], size-8); err != nil {
		return err
	}
	n := int64(binary.LittleEndian.Uint32(tail[:4]))
	if string(tail[4:]) != "PAR1" || n > size-12 {
		return errors.New("not a whole Parquet file (no footer)")
	}
	footer := make([]byte, n)
	if _, err := c.f.ReadAt(footer, size-8-n); err != nil {
		return err
	}
	if c.meta, err = metadata.NewFileMetaData(footer, nil); err != nil {
		return fmt.Errorf("reading its footer: %w", err)
	}
	c.dataEnd = size - 8 - n
	if c.meta.NumRows != c.rows {
		return fmt.Errorf("it holds %d rows, the job finished %d", c.meta.NumRows, c.rows)
	}
	for _, rg := range c.meta.RowGroups {
		for _, col := range rg.Columns {
			if col.MetaData == nil || col.OffsetIndexOffset != nil || col.ColumnIndexOffset != nil || col.MetaData.BloomFilterOffset != nil {
				return errors.New("its column chunks have page indexes or bloom filters (not written by jetinfer)")
			}
		}
	}
	stored := c.meta.KeyValueMetadata().FindValue(arrowSchemaKey)
	if stored == nil {
		return errors.New("it has no stored Arrow schema")
	}
	ser, err := base64.StdEncoding.DecodeString(*stored)
	if err != nil {
		return fmt.Errorf("decoding its Arrow schema: %w", err)
	}
	if c.schema, err = flight.DeserializeSchema(ser, nil); err != nil {
		return fmt.Errorf("decoding its Arrow schema: %w", err)
	}
	if !useRowGroups(c.schema) {
		return errors.New("its columns are copied by pqarrow's writer, not by jetinfer's")
	}
	return nil
}

// readArrow reads the schema of an Arrow IPC file and counts its rows.
func (c *carried) readArrow(w *Writer) error {
	rd, err := ipc.NewFileReader(c.f, ipc.WithAllocator(w.mem))
	if err != nil {
		return err
	}
	defer rd.Close()
	c.schema = rd.Schema()
	var n int64
	for i := range rd.NumRecords() {
		rec, err := rd.RecordBatch(i)
		if err != nil {
			return err
		}
		n += rec.NumRows()
	}
	if n != c.rows {
		return fmt.Errorf("it holds %d rows, the job finished %d", n, c.rows)
	}
	return nil
}

// copyCarried writes the carried rows to the output just opened, ahead of
// any other.
func (w *Writer) copyCarried() error {
	c := w.carry
	var err error
	switch {
	case w.rg != nil:
		err = w.rg.carry(c.f, c.meta, c.dataEnd)
	case w.fw != nil:
		err = c.copyArrow(w)
	default:
		err = errors.New("its columns are not written by jetinfer's Parquet writer")
	}
	if err != nil {
		return fmt.Errorf("carrying rows over from the earlier %s: %w (remove it to write every row again)", w.path, err)
	}
	return nil
}

// copyArrow writes the record batches of the earlier Arrow IPC output.
func (c *carried) copyArrow(w *Writer) error {
	rd, err := ipc.NewFileReader(c.f, ipc.WithAllocator(w.mem))
	if err != nil {
		return err
	}
	defer rd.Close()
	if !rd.Schema().Equal(w.schema) {
		return fmt.Errorf("its columns %s differ from this run's %s", rd.Schema(), w.schema)
	}
	for i := range rd.NumRecords() {
		rec, err := rd.RecordBatch(i)
		if err != nil {
			return err
		}
		if err := w.fw.Write(rec); err != nil {
			return err
		}
	}
	return nil
}

// carry copies the column chunks of an earlier Parquet output (f, its
// footer meta, chunks ending at dataEnd) to the front of the file, byte
// for byte, and adds its row groups, moved, to the footer. It runs before
// any group of this Writer reaches the appender.
func (g *rowGroups) carry(f *os.File, meta *metadata.FileMetaData, dataEnd int64) error {
	if stored, ours := meta.KeyValueMetadata().FindValue(arrowSchemaKey), g.meta.FindValue(arrowSchemaKey); stored == nil || ours == nil || *stored != *ours {
		return errors.New("its columns differ from this run's")
	}
	if !g.footer.Schema.Equals(meta.Schema) {
		return errors.New("its Parquet schema differs from this run's")
	}
	if err := g.moveGroups(meta, g.pos-4); err != nil {
		return err
	}
	n, err := io.Copy(g.out, io.NewSectionReader(f, 4, dataEnd-4))
	g.pos += n
	if err != nil {
		return err
	}
	return g.footer.AppendRowGroups(meta)
}
