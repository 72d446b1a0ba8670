package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/nats-io/nats.go"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// badMaxRows is the bad-input worker's JETINFER_MAX_REQUEST_ROWS.
const badMaxRows = 100

// badKind generates one kind of malformed request.
type badKind struct {
	name string
	// gen returns a request (body and headers) and what its error result
	// must say; id and job are filled in by the caller.
	gen func(g *rand.Rand, d *digits) *request
}

var (
	invalid   = []codec.Code{codec.CodeInvalidArgument}
	exhausted = []codec.Code{codec.CodeResourceExhausted}
	// undecodable bytes may trip a size bound before anything else.
	garbage = []codec.Code{codec.CodeInvalidArgument, codec.CodeResourceExhausted}
)

func bad(body []byte, want []codec.Code, mention ...string) *request {
	return &request{header: nats.Header{}, body: body, want: want, mention: mention}
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

// withFloat returns a copy of body (a pixels request) with one element set
// to v; it returns the row it changed.
func withFloat(g *rand.Rand, body []byte, v float32) ([]byte, int) {
	req, err := codec.DecodeRequest(body, codec.DefaultLimits())
	if err != nil {
		panic(err)
	}
	defer req.Release()
	px, _ := req.Column("pixels")
	data := bytes.Clone(px.Data)
	i := g.IntN(len(data) / 4)
	binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
	var buf bytes.Buffer
	if err := codec.EncodeRequest(&buf, []trt.Tensor{{Name: "pixels", DType: trt.Float32,
		Shape: trt.Shape{int64(req.Rows), 8, 8}, Data: data}}, req.IDs); err != nil {
		panic(err)
	}
	return buf.Bytes(), i / 64
}

var badKinds = []badKind{
	{"random-bytes", func(g *rand.Rand, _ *digits) *request {
		b := make([]byte, 1+g.IntN(4096))
		for i := range b {
			b[i] = byte(g.Uint32())
		}
		return bad(b, garbage, "decoding request")
	}},
	{"empty-body", func(*rand.Rand, *digits) *request {
		return bad(nil, invalid, "empty IPC stream")
	}},
	{"truncated-ipc", func(g *rand.Rand, d *digits) *request {
		b := d.body(g.IntN(d.rows), 1+g.IntN(16))
		lo, hi := schemaEnd(b)+1, len(b)-8 // cut inside the record batch message
		return bad(b[:lo+g.IntN(hi-lo)], garbage, "decoding request")
	}},
	{"schema-only", func(g *rand.Rand, d *digits) *request {
		b := d.body(0, 1)
		return bad(b[:schemaEnd(b)], invalid, "no rows")
	}},
	{"bit-flips", func(g *rand.Rand, d *digits) *request {
		// Flipped bits in the framing or metadata must be caught; flipped
		// bits in pixel data may still decode, so OK is allowed (without
		// the logits check) as long as there is exactly one result.
		b := bytes.Clone(d.body(g.IntN(d.rows), 1+g.IntN(16)))
		for range 1 + g.IntN(4) {
			i := g.IntN(schemaEnd(b) + 200)
			b[min(i, len(b)-1)] ^= 1 << g.IntN(8)
		}
		q := bad(b, []codec.Code{codec.CodeOK, codec.CodeInvalidArgument, codec.CodeResourceExhausted})
		q.anyOK = true
		return q
	}},
	{"arrow-file-format", func(g *rand.Rand, _ *digits) *request {
		col := tensor(g, "pixels", trt.Float32, 2, 64)
		b := array.NewFloat32Builder(memory.DefaultAllocator)
		b.AppendValues(floats(col.Data), nil)
		arr := b.NewArray()
		schema := arrow.NewSchema([]arrow.Field{{Name: "pixels", Type: arrow.PrimitiveTypes.Float32}}, nil)
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
	{"wrong-dtype", func(g *rand.Rand, _ *digits) *request {
		dt := []trt.DType{trt.Float64, trt.Float16, trt.Int32, trt.Uint8}[g.IntN(4)]
		return bad(encode([]trt.Tensor{tensor(g, "pixels", dt, 1+g.IntN(8), 8, 8)}, nil), invalid, "pixels", dt.String(), "float32")
	}},
	{"wrong-shape", func(g *rand.Rand, _ *digits) *request {
		rows := [][]int64{{7, 8}, {8, 9}, {64}, {8, 8, 1}, {2, 4, 8}}[g.IntN(5)]
		return bad(encode([]trt.Tensor{tensor(g, "pixels", trt.Float32, 1+g.IntN(8), rows...)}, nil), invalid, "pixels", "[8,8]")
	}},
	{"huge-declared-shape", func(g *rand.Rand, _ *digits) *request {
		// Metadata declares a 40000x40000 tensor per row over a 64-element
		// storage: the decoder must compare, not allocate.
		schema := arrow.NewSchema([]arrow.Field{tensorField("pixels", arrow.FixedSizeListOf(64, arrow.PrimitiveTypes.Float32), `{"shape":[40000,40000]}`)}, nil)
		return bad(stream(schema), invalid, "pixels", "40000")
	}},
	{"huge-row-storage", func(g *rand.Rand, _ *digits) *request {
		// 2^30 elements per row, declared consistently: over the row limit.
		schema := arrow.NewSchema([]arrow.Field{tensorField("pixels", arrow.FixedSizeListOf(1<<30, arrow.PrimitiveTypes.Float32), `{"shape":[32768,32768]}`)}, nil)
		return bad(stream(schema), exhausted, "pixels", "limit")
	}},
	{"too-many-rows", func(g *rand.Rand, _ *digits) *request {
		n := badMaxRows + 1 + g.IntN(200)
		return bad(encode([]trt.Tensor{tensor(g, "pixels", trt.Float32, n, 8, 8)}, nil), exhausted, fmt.Sprint(badMaxRows))
	}},
	{"missing-column", func(g *rand.Rand, _ *digits) *request {
		return bad(encode([]trt.Tensor{tensor(g, "image", trt.Float32, 1+g.IntN(8), 8, 8)}, nil), invalid, "image", "pixels")
	}},
	{"id-column-only", func(g *rand.Rand, _ *digits) *request {
		b := array.NewInt64Builder(memory.DefaultAllocator)
		b.AppendValues([]int64{1, 2, 3}, nil)
		ids := b.NewArray()
		schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}}, nil)
		return bad(stream(schema, array.NewRecordBatch(schema, []arrow.Array{ids}, 3)), invalid, "pixels", "missing")
	}},
	{"extra-column", func(g *rand.Rand, d *digits) *request {
		n := 1 + g.IntN(8)
		return bad(encode([]trt.Tensor{tensor(g, "pixels", trt.Float32, n, 8, 8), tensor(g, "extra", trt.Float32, n, 3)}, nil), invalid, "extra", "pixels")
	}},
	{"null-row", func(g *rand.Rand, d *digits) *request {
		vb := array.NewFixedSizeListBuilder(memory.DefaultAllocator, 64, arrow.PrimitiveTypes.Float32)
		fb := vb.ValueBuilder().(*array.Float32Builder)
		vb.Append(true)
		fb.AppendValues(floats(d.pixels[:256]), nil)
		vb.AppendNull() // appends 64 null values to the child too
		arr := vb.NewArray()
		schema := arrow.NewSchema([]arrow.Field{tensorField("pixels", arr.DataType(), `{"shape":[8,8]}`)}, nil)
		return bad(stream(schema, array.NewRecordBatch(schema, []arrow.Array{arr}, 2)), invalid, "pixels", "null")
	}},
	{"float-id-column", func(g *rand.Rand, d *digits) *request {
		fb := array.NewFloat64Builder(memory.DefaultAllocator)
		fb.Append(1.5)
		ids := fb.NewArray()
		px := array.NewFixedSizeListBuilder(memory.DefaultAllocator, 64, arrow.PrimitiveTypes.Float32)
		px.Append(true)
		px.ValueBuilder().(*array.Float32Builder).AppendValues(floats(d.pixels[:256]), nil)
		pxa := px.NewArray()
		schema := arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Float64}, tensorField("pixels", pxa.DataType(), `{"shape":[8,8]}`)}, nil)
		return bad(stream(schema, array.NewRecordBatch(schema, []arrow.Array{ids, pxa}, 1)), invalid, "id", "float64")
	}},
	{"nan", func(g *rand.Rand, d *digits) *request {
		b, row := withFloat(g, d.body(g.IntN(d.rows), 1+g.IntN(8)), float32(math.NaN()))
		return bad(b, invalid, "pixels", "NaN", fmt.Sprintf("row %d", row))
	}},
	{"inf", func(g *rand.Rand, d *digits) *request {
		sign := []int{1, -1}[g.IntN(2)]
		b, row := withFloat(g, d.body(g.IntN(d.rows), 1+g.IntN(8)), float32(math.Inf(sign)))
		return bad(b, invalid, "pixels", "Inf", fmt.Sprintf("row %d", row))
	}},
	{"oversized-msg-id", func(g *rand.Rand, d *digits) *request {
		q := bad(d.body(0, 1), invalid, wire.HeaderMsgID, "1024")
		q.id = strings.Repeat("m", 1025+g.IntN(3000)) // the caller appends a unique suffix
		return q
	}},
	{"long-ids-sharing-a-prefix", func(g *rand.Rand, d *digits) *request {
		// Ids over the limit that differ only after byte 1024: each must
		// still get its own result.
		q := bad(d.body(0, 1), invalid, wire.HeaderMsgID, "1024")
		q.id = "shared"
		return q
	}},
	{"oversized-job", func(g *rand.Rand, d *digits) *request {
		q := bad(d.body(0, 1), invalid, wire.HeaderJob, "1024")
		q.header.Set(wire.HeaderJob, strings.Repeat("j", 1025+g.IntN(3000)))
		return q
	}},
	{"bad-headers", func(g *rand.Rand, d *digits) *request {
		switch g.IntN(3) {
		case 0:
			q := bad(d.body(0, 1), invalid, wire.HeaderDeadline)
			q.header.Set(wire.HeaderDeadline, "next tuesday")
			return q
		case 1:
			q := bad(d.body(0, 1), invalid, wire.HeaderPriority)
			q.header.Set(wire.HeaderPriority, "urgent")
			return q
		default:
			q := bad(d.body(0, 1), invalid, wire.HeaderReplyTo)
			q.header.Set(wire.HeaderReplyTo, "other.team.results")
			return q
		}
	}},
}

// badRequests returns n malformed requests cycling through badKinds,
// interleaved with n valid ones.
func (r *runner) badRequests(n int) []*request {
	g := rng(31)
	var reqs []*request
	for i := range n {
		k := badKinds[i%len(badKinds)]
		q := k.gen(g, r.d)
		q.kind = k.name
		suffix := fmt.Sprintf("bad-%s-%d", k.name, i)
		switch q.id {
		case "":
			q.id = suffix
		case "shared":
			// Over-long ids equal in their first 1024 bytes.
			q.id = strings.Repeat("s", 1024) + suffix
		default:
			q.id = suffix + "-" + q.id
		}
		if len(q.id) > 1024 {
			// docs/protocol.md: an over-long id is answered under
			// sha256-<hex SHA-256 of the id>.
			sum := sha256.Sum256([]byte(q.id))
			q.resultID = "sha256-" + hex.EncodeToString(sum[:])
		}
		if q.header.Get(wire.HeaderJob) == "" {
			q.header.Set(wire.HeaderJob, "bad")
		}
		reqs = append(reqs, q)
		reqs = append(reqs, okRequest(fmt.Sprintf("good-%d", i), "bad", r.d, g.IntN(r.d.rows), 1+g.IntN(16)))
	}
	return reqs
}

func badInput(ctx context.Context, r *runner, rw *row) error {
	b, nc, js, err := r.single()
	if err != nil {
		return err
	}
	defer b.shutdown()
	defer nc.Close()
	env := r.env(b.url(), "JETINFER_REJECT_NON_FINITE", "true", "JETINFER_MAX_REQUEST_ROWS", fmt.Sprint(badMaxRows))
	rw.rssBound = boundOf(env)
	w, err := r.startWorker(realWorker, "w1", env)
	if err != nil {
		return err
	}
	reqs := r.badRequests(r.n(40 * len(badKinds)))
	var st sendStats
	if err := send(ctx, js, reqs, 4, 0, &st); err != nil {
		return err
	}
	if err := r.finish(ctx, rw, js, reqs, 60*time.Second); err != nil {
		return err
	}
	perKind := map[string]int{}
	for _, q := range reqs {
		if q.kind != "" {
			perKind[q.kind]++
		}
	}
	var parts []string
	for _, k := range badKinds {
		parts = append(parts, fmt.Sprintf("%s %d", k.name, perKind[k.name]))
	}
	rw.note("%d malformed requests (%s) interleaved with %d valid ones; JETINFER_REJECT_NON_FINITE=true, JETINFER_MAX_REQUEST_ROWS=%d",
		len(reqs)/2, strings.Join(parts, ", "), len(reqs)/2, badMaxRows)
	for _, k := range badKinds {
		rw.note("%s → %s", k.name, rw.a.sample[k.name])
	}
	rw.check(w.countLog("panic") == 0, "the worker logged a panic")
	return nil
}

// writeCorpus writes one body of each malformed kind to the codec's fuzz
// corpus (codec/testdata/fuzz/FuzzDecodeRequest/bad-<kind>).
func (r *runner) writeCorpus() error {
	dir := filepath.Join(r.root, "codec", "testdata", "fuzz", "FuzzDecodeRequest")
	g := rng(47)
	for _, k := range badKinds {
		q := k.gen(g, r.d)
		if len(q.body) == 0 || slices.ContainsFunc(q.mention, func(s string) bool { return strings.HasPrefix(s, "Jetinfer-") || s == wire.HeaderMsgID }) {
			continue // the body is fine or empty; the headers are what is wrong
		}
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", q.body)
		if err := os.WriteFile(filepath.Join(dir, "bad-"+k.name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}
