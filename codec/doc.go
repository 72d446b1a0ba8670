// Package codec converts between Arrow IPC bodies and tensors: it decodes
// request bodies without copying tensor data, checks untrusted input
// against an engine's trt.Spec, and encodes result bodies. It imports
// nothing of jetinfer's but the trt vocabulary.
//
// # Body schemas (wire format jetinfer.v1)
//
// A request or result body is one Arrow IPC stream: a schema message, then
// zero or more record batches whose rows concatenate, then (optionally)
// the end-of-stream marker. Bodies are little-endian and uncompressed;
// dictionary batches are not allowed. One row is one sample. Each tensor
// column is named as the engine input (or output) it carries and has one
// of these types:
//
//   - arrow.fixed_shape_tensor (the canonical extension written by pyarrow's
//     pa.fixed_shape_tensor): storage FixedSizeList<T>[prod(shape)], field
//     metadata ARROW:extension:name and ARROW:extension:metadata
//     {"shape":[...]} with optional "dim_names" and "permutation" (only
//     the identity permutation is accepted). Row shape = shape.
//   - FixedSizeList<T>[k]: row shape [k].
//   - a primitive T: row shape [] (one scalar per row).
//   - List<T>: ragged rows of scalars; row i has its own length.
//   - List<FixedSizeList<T>[k]>: ragged rows of k-element positions (the
//     FixedSizeList may itself be an arrow.fixed_shape_tensor, giving its
//     shape to each position).
//
// T is float32, float16 (Arrow halffloat, carried as raw bits), float64,
// int8, uint8, int32, int64, bool, or uint16 with field metadata
// "jetinfer.dtype": "bfloat16" on the column field (Arrow has no bfloat16;
// uint16 without that key is rejected). Bool is bit-packed in Arrow and is
// the one type whose data is copied, to one byte (0 or 1) per element.
// Nulls are not allowed in tensor columns, at any nesting level.
//
// An optional column named "id" (int64, uint64, utf8 or large_utf8;
// nulls allowed) is echoed into the result unchanged, rows in request
// order; the name "id" is reserved for it. Results put it first, then one
// column per engine output: arrow.fixed_shape_tensor with the output shape
// without its batch dimension, or a primitive column when that shape is
// [] (one scalar per row).
//
// # Lifetimes and copies
//
// DecodeRequest and DecodeResult alias the body: Column.Data points into
// the bytes passed in, which must stay alive and unmodified while the
// decoded value is used. Tensor data is copied only for bool columns and
// when a body has more than one non-empty record batch (the batches are
// joined into one contiguous buffer). The id column is an arrow.Array that
// also aliases the body; Release it when done. Encoding writes tensor bytes
// straight from trt.Tensor.Data into the output.
//
// # Untrusted input
//
// Decoding never trusts the body: it reads the IPC framing and the
// flatbuffer metadata with its own bounds-checked reader (arrow-go's
// generated accessors assume valid input), checks every buffer against the
// message body, every node length and list offset against the schema, and
// every count against Limits before allocating. A panic is still recovered
// and reported as an invalid body. Errors are *Error values with stable
// Codes.
//
// # Concurrency and global state
//
// Decoder and Encoder are stateless values and safe for concurrent use;
// decoded values are read-only and may be shared between goroutines.
// The only process-wide state is arrow-go's extension registry: the first
// NewFixedShapeTensorType (which encoding calls) registers
// FixedShapeTensorType under arrow.fixed_shape_tensor so that arrow-go's
// own readers recognise it, tolerating a type already registered under
// that name. Decoding does not depend on the registry.
package codec
