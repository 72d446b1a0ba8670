// Package table turns tables into request bodies and result bodies back
// into a table: it is what `jetinfer score` reads and writes.
//
// A Reader reads Parquet files (arrow-go's parquet/pqarrow), Arrow IPC
// files and Arrow IPC streams, in order, selects and renames columns onto
// engine inputs, gives FixedSizeList columns a tensor shape
// (arrow.fixed_shape_tensor) where asked, and cuts the rows into request
// bodies of at most Options.RowsPerRequest rows and Options.MaxBytes
// bytes, whatever the input's own batching. List columns pass through as
// ragged inputs. It cuts one input batch at a time while other
// goroutines decode the next, a bounded number of bytes ahead; those of
// a Parquet file decode up to four of its row groups at once (one per
// eight cores), and the
// batches still come in the file's order, cut as one goroutine would.
// Parquet list columns sent with a shape (and not kept) whose values are
// float32, float64, int32 or int64 are read straight from their column
// chunks into the tensor's FixedSizeList (directColumn), five times as
// fast as pqarrow's list reader; pqarrow reads the other columns. Their
// repetition levels are checked against the rows' pattern page by page,
// run by run, as stored (repPages), not decoded level by level.
//
// A Writer writes result bodies, in the order given, with kept input
// columns beside them, to a Parquet file (row groups of at most
// RowGroupRows rows or RowGroupBytes bytes, the Arrow schema stored so
// that pyarrow restores the tensor extension type) or an Arrow IPC file.
// When every column is flat or a list of flat elements (score's
// outputs), it computes the Parquet levels itself (rowGroups), about 1.4
// times as fast as pqarrow's general writer, which writes the others, and
// encodes each row group batch by batch as its rows come, on a goroutine
// of its own, into memory (up to four groups at once, one per eight
// cores), copying them into the file in order (the same bytes as one
// goroutine writes); what it holds is bounded in bytes. It writes
// PATH.part and renames it to PATH at Close; CarryOver first copies the rows of an earlier output
// at PATH (an interrupted run of the same job, recognised by its
// SetMetadata entries and row count) to the front, Parquet column chunks
// byte for byte.
//
// Both allocate Arrow buffers from a pool of freed buffers by default
// (Options.Mem, Create's mem), and a Reader reuses the request bodies
// given back to Recycle: arrow-go's Parquet code builds every batch's
// buffers anew, and with Go's allocator that garbage cost more CPU than
// decoding (BenchmarkReaderParquet). The Writer writes Parquet values
// PLAIN and Snappy-compressed, without dictionary encoding, which halved
// its CPU time on model outputs (BenchmarkWriterParquet).
//
// Neither is safe for concurrent use; each belongs to one goroutine
// (Reader.Recycle excepted).
package table
