package traffic

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/nats-io/nats.go"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// MalformedMaxRows is the worker's MaxRequestRows (JETINFER_MAX_REQUEST_ROWS)
// that the malformed kinds assume: "too-many-rows" sends more.
const MalformedMaxRows = 100

// MalformedKind generates one kind of malformed request.
type MalformedKind struct {
	// Name names the kind in reports and in the fuzz corpus.
	Name string
	// New returns a request (body, headers, accepted statuses and what
	// the error message must mention) without an ID unless the kind is
	// about the id; valid rows come from ds.
	New func(g *rand.Rand, ds Dataset) *Request
}

// Rand returns a deterministic generator for a seed.
func Rand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6a6574696e666572)) }

var (
	invalid   = []codec.Code{codec.CodeInvalidArgument}
	exhausted = []codec.Code{codec.CodeResourceExhausted}
	// undecodable bytes may trip a size bound before anything else.
	garbage = []codec.Code{codec.CodeInvalidArgument, codec.CodeResourceExhausted}
)

func bad(body []byte, want []codec.Code, mention ...string) *Request {
	return &Request{Header: nats.Header{}, Body: body, Want: want, Mention: mention}
}

// tensor returns a column of n rows of the given dtype and row shape whose
// bytes are random.
func tensor(g *rand.Rand, name string, dt trt.DType, n int, row ...int64) trt.Tensor {
	sh := append(trt.Shape{int64(n)}, row...)
	size, err := trt.ByteSize(dt, sh)
	if err != nil {
		panic(err)
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(g.IntN(16)) // small values: finite in every float type
	}
	return trt.Tensor{Name: name, DType: dt, Shape: sh, Data: data}
}

// stream writes an IPC stream of schema and records with arrow-go.
func stream(schema *arrow.Schema, recs ...arrow.RecordBatch) []byte {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			panic(err)
		}
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// tensorField declares an arrow.fixed_shape_tensor column by hand, so that
// its metadata may lie about the storage.
func tensorField(name string, storage arrow.DataType, shapeJSON string) arrow.Field {
	return arrow.Field{Name: name, Type: storage, Nullable: true, Metadata: arrow.NewMetadata(
		[]string{"ARROW:extension:name", "ARROW:extension:metadata"},
		[]string{codec.TensorExtensionName, shapeJSON})}
}

// schemaEnd returns the offset just past the schema message of an IPC
// stream (continuation marker, length, flatbuffer).
func schemaEnd(b []byte) int {
	return 8 + int(binary.LittleEndian.Uint32(b[4:8]))
}

// withValue returns a copy of body with one random input value set to v,
// and the row it changed.
func withValue(g *rand.Rand, body []byte, rows int, v float32) ([]byte, int) {
	i := g.IntN(rows * RowValues)
	b, err := SetValue(body, i, v)
	if err != nil {
		panic(err) // body came from a Dataset
	}
	return b, i / RowValues
}

// firstRow returns the input values of ds's row 0.
func firstRow(ds Dataset) []float32 {
	req, err := codec.DecodeRequest(ds.Body(0, 1), codec.DefaultLimits())
	if err != nil {
		panic(err) // the body came from a Dataset
	}
	defer req.Release()
	px, _ := req.Column(Input)
	return floats(px.Data)
}

// Malformed lists the malformed request kinds, for a model whose one input
// is Input (float32 [8,8]), served by a worker with MaxRequestRows
// MalformedMaxRows and RejectNonFinite set. Each kind's request must be
// answered by exactly one error result whose message names what was wrong;
// "bit-flips" may also be answered OK (flipped pixel bits still decode).
var Malformed = []MalformedKind{
	{"random-bytes", func(g *rand.Rand, _ Dataset) *Request {
		b := make([]byte, 1+g.IntN(4096))
		for i := range b {
			b[i] = byte(g.Uint32())
		}
		return bad(b, garbage, "decoding request")
	}},
	{"empty-body", func(*rand.Rand, Dataset) *Request {
		return bad(nil, invalid, "empty IPC stream")
	}},
	{"truncated-ipc", func(g *rand.Rand, ds Dataset) *Request {
		b := ds.Body(g.IntN(ds.Rows()), 1+g.IntN(16))
		lo, hi := schemaEnd(b)+1, len(b)-8 // cut inside the record batch message
		return bad(b[:lo+g.IntN(hi-lo)], garbage, "decoding request")
	}},
	{"schema-only", func(_ *rand.Rand, ds Dataset) *Request {
		b := ds.Body(0, 1)
		return bad(b[:schemaEnd(b)], invalid, "no rows")
	}},
	{"bit-flips", func(g *rand.Rand, ds Dataset) *Request {
		// Flipped bits in the framing or metadata must be caught; flipped
		// bits in pixel data may still decode, so OK is allowed (without
		// checking the rows) as long as there is exactly one result.
		b := bytes.Clone(ds.Body(g.IntN(ds.Rows()), 1+g.IntN(16)))
		for range 1 + g.IntN(4) {
			i := g.IntN(schemaEnd(b) + 200)
			b[min(i, len(b)-1)] ^= 1 << g.IntN(8)
		}
		return bad(b, []codec.Code{codec.CodeOK, codec.CodeInvalidArgument, codec.CodeResourceExhausted})
	}},
	{"arrow-file-format", func(g *rand.Rand, _ Dataset) *Request {
		col := tensor(g, Input, trt.Float32, 2, 64)
		b := array.NewFloat32Builder(memory.DefaultAllocator)
		b.AppendValues(floats(col.Data), nil)
		arr := b.NewArray()
		schema := arrow.NewSchema([]arrow.Field{{Name: Input, Type: arrow.PrimitiveTypes.Float32}}, nil)
		rec := array.NewRecordBatch(schema, []arrow.Array{arr}, int64(arr.Len()))
		var buf bytes.Buffer
		fw, err := ipc.NewFileWriter(&buf, ipc.WithSchema(schema))
		if err == nil {
			err = fw.Write(rec)
		}
		if err == nil {
			err = fw.Close()
		}
		if err != nil {
			panic(err)
		}
		return bad(buf.Bytes(), invalid, "IPC file")
	}},
	{"wrong-dtype", func(g *rand.Rand, _ Dataset) *Request {
		dt := []trt.DType{trt.Float64, trt.Float16, trt.Int32, trt.Uint8}[g.IntN(4)]
		return bad(Encode([]trt.Tensor{tensor(g, Input, dt, 1+g.IntN(8), 8, 8)}, nil), invalid, Input, dt.String(), "float32")
	}},
	{"wrong-shape", func(g *rand.Rand, _ Dataset) *Request {
		rows := [][]int64{{7, 8}, {8, 9}, {64}, {8, 8, 1}, {2, 4, 8}}[g.IntN(5)]
		return bad(Encode([]trt.Tensor{tensor(g, Input, trt.Float32, 1+g.IntN(8), rows...)}, nil), invalid, Input, "[8,8]")
	}},
	{"huge-declared-shape", func(*rand.Rand, Dataset) *Request {
		// Metadata declares a 40000x40000 tensor per row over a 64-element
		// storage: the decoder must compare, not allocate.
		schema := arrow.NewSchema([]arrow.Field{tensorField(Input, arrow.FixedSizeListOf(64, arrow.PrimitiveTypes.Float32), `{"shape":[40000,40000]}`)}, nil)
		return bad(stream(schema), invalid, Input, "40000")
	}},
	{"huge-row-storage", func(*rand.Rand, Dataset) *Request {
		// 2^30 elements per row, declared consistently: over the row limit.
		schema := arrow.NewSchema([]arrow.Field{tensorField(Input, arrow.FixedSizeListOf(1<<30, arrow.PrimitiveTypes.Float32), `{"shape":[32768,32768]}`)}, nil)
		return bad(stream(schema), exhausted, Input, "limit")
	}},
	{"too-many-rows", func(g *rand.Rand, _ Dataset) *Request {
		n := MalformedMaxRows + 1 + g.IntN(200)
		return bad(Encode([]trt.Tensor{tensor(g, Input, trt.Float32, n, 8, 8)}, nil), exhausted, fmt.Sprint(MalformedMaxRows))
	}},
	{"missing-column", func(g *rand.Rand, _ Dataset) *Request {
		return bad(Encode([]trt.Tensor{tensor(g, "image", trt.Float32, 1+g.IntN(8), 8, 8)}, nil), invalid, "image", Input)
	}},
	{"id-column-only", func(*rand.Rand, Dataset) *Request {
		b := array.NewInt64Builder(memory.DefaultAllocator)
		b.AppendValues([]int64{1, 2, 3}, nil)
		ids := b.NewArray()
		schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}}, nil)
		return bad(stream(schema, array.NewRecordBatch(schema, []arrow.Array{ids}, 3)), invalid, Input, "missing")
	}},
	{"extra-column", func(g *rand.Rand, _ Dataset) *Request {
		n := 1 + g.IntN(8)
		return bad(Encode([]trt.Tensor{tensor(g, Input, trt.Float32, n, 8, 8), tensor(g, "extra", trt.Float32, n, 3)}, nil), invalid, "extra", Input)
	}},
	{"null-row", func(_ *rand.Rand, ds Dataset) *Request {
		vb := array.NewFixedSizeListBuilder(memory.DefaultAllocator, 64, arrow.PrimitiveTypes.Float32)
		fb := vb.ValueBuilder().(*array.Float32Builder)
		vb.Append(true)
		fb.AppendValues(firstRow(ds), nil)
		vb.AppendNull() // appends 64 null values to the child too
		arr := vb.NewArray()
		schema := arrow.NewSchema([]arrow.Field{tensorField(Input, arr.DataType(), `{"shape":[8,8]}`)}, nil)
		return bad(stream(schema, array.NewRecordBatch(schema, []arrow.Array{arr}, 2)), invalid, Input, "null")
	}},
	{"float-id-column", func(_ *rand.Rand, ds Dataset) *Request {
		fb := array.NewFloat64Builder(memory.DefaultAllocator)
		fb.Append(1.5)
		ids := fb.NewArray()
		px := array.NewFixedSizeListBuilder(memory.DefaultAllocator, 64, arrow.PrimitiveTypes.Float32)
		px.Append(true)
		px.ValueBuilder().(*array.Float32Builder).AppendValues(firstRow(ds), nil)
		pxa := px.NewArray()
		schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Float64}, tensorField(Input, pxa.DataType(), `{"shape":[8,8]}`)}, nil)
		return bad(stream(schema, array.NewRecordBatch(schema, []arrow.Array{ids, pxa}, 1)), invalid, "id", "float64")
	}},
	{"nan", func(g *rand.Rand, ds Dataset) *Request {
		lo := g.IntN(ds.Rows())
		n := 1 + g.IntN(8)
		b, row := withValue(g, ds.Body(lo, n), n, float32(math.NaN()))
		return bad(b, invalid, Input, "NaN", fmt.Sprintf("row %d", row))
	}},
	{"inf", func(g *rand.Rand, ds Dataset) *Request {
		sign := []int{1, -1}[g.IntN(2)]
		lo := g.IntN(ds.Rows())
		n := 1 + g.IntN(8)
		b, row := withValue(g, ds.Body(lo, n), n, float32(math.Inf(sign)))
		return bad(b, invalid, Input, "Inf", fmt.Sprintf("row %d", row))
	}},
	{"oversized-msg-id", func(g *rand.Rand, ds Dataset) *Request {
		q := bad(ds.Body(0, 1), invalid, wire.HeaderMsgID, "1024")
		q.ID = strings.Repeat("m", 1025+g.IntN(3000)) // MixMalformed appends a unique suffix
		return q
	}},
	{"long-ids-sharing-a-prefix", func(_ *rand.Rand, ds Dataset) *Request {
		// Ids over the limit that differ only after byte 1024: each must
		// still get its own result.
		q := bad(ds.Body(0, 1), invalid, wire.HeaderMsgID, "1024")
		q.ID = sharedPrefix
		return q
	}},
	{"oversized-job", func(g *rand.Rand, ds Dataset) *Request {
		q := bad(ds.Body(0, 1), invalid, wire.HeaderJob, "1024")
		q.Header.Set(wire.HeaderJob, strings.Repeat("j", 1025+g.IntN(3000)))
		return q
	}},
	{"bad-headers", func(g *rand.Rand, ds Dataset) *Request {
		q := bad(ds.Body(0, 1), invalid)
		switch g.IntN(3) {
		case 0:
			q.Mention = []string{wire.HeaderDeadline}
			q.Header.Set(wire.HeaderDeadline, "next tuesday")
		case 1:
			q.Mention = []string{wire.HeaderPriority}
			q.Header.Set(wire.HeaderPriority, "urgent")
		default:
			q.Mention = []string{wire.HeaderReplyTo}
			q.Header.Set(wire.HeaderReplyTo, "other.team.results")
		}
		return q
	}},
}

// sharedPrefix marks a kind whose ids share their first 1024 bytes.
const sharedPrefix = "\x00shared"

// MixMalformed returns n malformed requests cycling through Malformed,
// each followed by a valid request of ds, all in job "bad". Ids are
// "bad-<kind>-<i>" and "good-<i>" (kinds about the id make theirs longer).
func MixMalformed(ds Dataset, n int, seed uint64) []*Request {
	g := Rand(seed)
	var reqs []*Request
	for i := range n {
		k := Malformed[i%len(Malformed)]
		q := k.New(g, ds)
		q.Kind = k.Name
		suffix := fmt.Sprintf("bad-%s-%d", k.Name, i)
		switch q.ID {
		case "":
			q.ID = suffix
		case sharedPrefix:
			q.ID = strings.Repeat("s", 1024) + suffix
		default:
			q.ID = suffix + "-" + q.ID
		}
		if q.Header.Get(wire.HeaderJob) == "" {
			q.Header.Set(wire.HeaderJob, "bad")
		}
		reqs = append(reqs, q, NewRequest(ds, fmt.Sprintf("good-%d", i), "bad", g.IntN(ds.Rows()), 1+g.IntN(16)))
	}
	return reqs
}
