package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// Stream and subject names: the worker's defaults.
const (
	model     = "digits"
	reqStream = wire.DefaultRequestStream
	resStream = wire.DefaultResultStream
)

var reqSubject = wire.RequestSubject("jetinfer", model)

// digits is the digits model's test split and its PyTorch reference
// logits, from testdata.
type digits struct {
	rows   int
	ids    []int64
	pixels []byte // rows × 64 float32
	ref    map[int64][]float32
}

func loadDigits(root string) (*digits, error) {
	read := func(name string) (*codec.Request, error) {
		b, err := os.ReadFile(filepath.Join(root, "testdata", name))
		if err != nil {
			return nil, fmt.Errorf("reading testdata: %w", err)
		}
		r, err := codec.DecodeRequest(b, codec.Limits{MaxBodyBytes: len(b) + 1})
		if err != nil {
			return nil, fmt.Errorf("decoding %s: %w", name, err)
		}
		return r, nil
	}
	test, err := read("digits_test.arrow")
	if err != nil {
		return nil, err
	}
	ref, err := read("digits_ref.arrow")
	if err != nil {
		return nil, err
	}
	px, ok := test.Column("pixels")
	ids, ok2 := test.IDs.(*array.Int64)
	logits, ok3 := ref.Column("logits")
	refIDs, ok4 := ref.IDs.(*array.Int64)
	if !ok || !ok2 || !ok3 || !ok4 {
		return nil, errors.New("testdata digits files lack pixels, logits or int64 ids")
	}
	d := &digits{rows: test.Rows, ids: slices.Clone(ids.Int64Values()), pixels: slices.Clone(px.Data), ref: map[int64][]float32{}}
	for i, id := range refIDs.Int64Values() {
		d.ref[id] = floats(logits.Data[i*40 : (i+1)*40])
	}
	test.Release()
	ref.Release()
	return d, nil
}

func floats(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// body encodes rows n rows of the test split starting at lo (wrapping
// around) as a request body with an id column.
func (d *digits) body(lo, n int) []byte {
	ids := make([]int64, n)
	px := make([]byte, 0, n*256)
	for i := range n {
		r := (lo + i) % d.rows
		ids[i] = d.ids[r]
		px = append(px, d.pixels[r*256:(r+1)*256]...)
	}
	return encode([]trt.Tensor{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{int64(n), 8, 8}, Data: px}}, ids)
}

// encode writes a request body; ids may be nil.
func encode(cols []trt.Tensor, ids []int64) []byte {
	var buf bytes.Buffer
	var idArr *array.Int64
	if ids != nil {
		b := array.NewInt64Builder(memory.DefaultAllocator)
		b.AppendValues(ids, nil)
		idArr = b.NewInt64Array()
		b.Release()
		defer idArr.Release()
	}
	var err error
	if idArr != nil {
		err = codec.EncodeRequest(&buf, cols, idArr)
	} else {
		err = codec.EncodeRequest(&buf, cols, nil)
	}
	if err != nil {
		panic(fmt.Sprintf("encoding a request body: %v", err)) // a bug in this runner
	}
	return buf.Bytes()
}

// checkOK verifies an OK result body: wantRows rows whose logits equal
// the PyTorch references of their ids.
func (d *digits) checkOK(body []byte, wantRows int) error {
	res, err := codec.DecodeResult(body, codec.DefaultLimits())
	if err != nil {
		return fmt.Errorf("decoding result: %w", err)
	}
	defer res.Release()
	logits, ok := res.Column("logits")
	ids, ok2 := res.IDs.(*array.Int64)
	if !ok || !ok2 || res.Rows != wantRows {
		return fmt.Errorf("result has %d rows (want %d), logits column %v, int64 ids %v", res.Rows, wantRows, ok, ok2)
	}
	for i, id := range ids.Int64Values() {
		got, want := floats(logits.Data[i*40:(i+1)*40]), d.ref[id]
		if len(want) == 0 {
			return fmt.Errorf("row %d has unknown id %d", i, id)
		}
		for j := range want {
			if math.Abs(float64(got[j]-want[j])) > 1e-5+1e-4*math.Abs(float64(want[j])) {
				return fmt.Errorf("id %d logit %d = %v, PyTorch reference %v", id, j, got[j], want[j])
			}
		}
	}
	return nil
}

// request is one request a scenario sends, and what its result must be.
type request struct {
	id      string
	header  nats.Header // extra request headers
	body    []byte
	rows    int          // rows of an OK result
	want    []codec.Code // acceptable statuses
	mention []string     // substrings an error result's message must contain
	kind    string       // bad-input category, for the report
	// resultID is the Jetinfer-Request-Id its result carries, when it
	// differs from id (an id over the 1024-byte limit is replaced).
	resultID string
	// anyOK accepts an OK result without checking its logits (a body
	// with flipped bits that still decodes).
	anyOK bool
	// version, when set, is the Jetinfer-Model-Version an OK result
	// must name (a pinned request, or one sent after a rollout ended).
	version string
	// known: the request is pinned to a version the model repository
	// has, so a NOT_FOUND answer is wrong whatever want says.
	known bool
}

func (q *request) rid() string {
	if q.resultID != "" {
		return q.resultID
	}
	return q.id
}

func okRequest(id, job string, d *digits, lo, n int) *request {
	h := nats.Header{}
	h.Set(wire.HeaderJob, job)
	return &request{id: id, header: h, body: d.body(lo, n), rows: n, want: []codec.Code{codec.CodeOK}}
}

func (q *request) msg() *nats.Msg {
	h := nats.Header{}
	for k, v := range q.header {
		h[k] = slices.Clone(v)
	}
	h.Set(jetstream.MsgIDHeader, q.id)
	return &nats.Msg{Subject: reqSubject, Header: h, Data: q.body}
}

// sendStats counts what publishing cost.
type sendStats struct {
	published  atomic.Int64 // publishes acknowledged (stored or duplicate)
	duplicates atomic.Int64 // of those, acknowledged as duplicates
	failures   atomic.Int64 // publish attempts that failed and were retried
}

// send publishes every request with its Nats-Msg-Id, retrying each until
// the server acknowledges it, from conc goroutines. With rate > 0 it
// spreads the requests over time at about rate per second. It returns
// when all are stored or ctx ends.
func send(ctx context.Context, js jetstream.JetStream, reqs []*request, conc int, rate float64, st *sendStats) error {
	next := make(chan *request)
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for range conc {
		wg.Go(func() {
			for q := range next {
				if err := publishRetry(ctx, js, q.msg(), st); err != nil {
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	start := time.Now()
	for i, q := range reqs {
		if rate > 0 {
			if wait := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); wait > 0 {
				time.Sleep(wait)
			}
		}
		select {
		case next <- q:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return *p
	}
	return ctx.Err()
}

// publishRetry publishes msg until the server acknowledges it, as a
// producer that wants its request stored exactly once does: every retry
// carries the same Nats-Msg-Id.
func publishRetry(ctx context.Context, js jetstream.JetStream, msg *nats.Msg, st *sendStats) error {
	id := msg.Header.Get(jetstream.MsgIDHeader)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ack, err := js.PublishMsg(pctx, msg, jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			st.published.Add(1)
			if ack.Duplicate {
				st.duplicates.Add(1)
			}
			return nil
		}
		st.failures.Add(1)
		if ctx.Err() != nil {
			return fmt.Errorf("publishing request %s: %w", id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// audit is what the result stream says about a scenario's requests.
type audit struct {
	requests   int // distinct request ids sent
	results    int // result messages for those ids
	answered   int // ids with at least one result
	lost       int // ids without a result
	duplicated int // result messages beyond the first per id
	errorCoded int // ids whose (first) result is an error code
	wrong      int // ids whose result has an unexpected status, message or logits
	foreign    int // result messages for ids never sent
	internal   int // ids answered INTERNAL that did not ask for it
	notFound   int // ids pinned to a version the repository has, answered NOT_FOUND
	byCode     map[codec.Code]int
	examples   []string // a few descriptions of wrong results
	// sample holds one error message per request kind.
	sample map[string]string
}

func (a *audit) addExample(format string, args ...any) {
	if len(a.examples) < 5 {
		a.examples = append(a.examples, fmt.Sprintf(format, args...))
	}
}

// auditResults reads every message of the result stream and checks it
// against reqs: one result per request id, with an acceptable status and,
// for OK results, the reference logits.
func auditResults(ctx context.Context, js jetstream.JetStream, d *digits, reqs []*request) (*audit, error) {
	byID := make(map[string]*request, len(reqs))
	for _, q := range reqs {
		byID[q.rid()] = q
	}
	a := &audit{requests: len(reqs), byCode: map[codec.Code]int{}, sample: map[string]string{}}
	seen := map[*request]int{}
	var s jetstream.Stream
	if err := retry(ctx, "looking up the result stream", func(ctx context.Context) (err error) {
		s, err = js.Stream(ctx, resStream)
		return err
	}); err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading result stream info: %w", err)
	}
	last := info.State.LastSeq
	if info.State.Msgs > 0 {
		cons, err := js.OrderedConsumer(ctx, resStream, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return nil, fmt.Errorf("reading the result stream: %w", err)
		}
		for done := false; !done; {
			batch, err := cons.Fetch(1000, jetstream.FetchMaxBytes(16<<20), jetstream.FetchMaxWait(2*time.Second))
			if err != nil {
				return nil, fmt.Errorf("reading the result stream: %w", err)
			}
			n := 0
			for m := range batch.Messages() {
				n++
				a.result(d, byID, seen, m.Headers(), m.Data())
				if md, err := m.Metadata(); err == nil && md.Sequence.Stream >= last {
					done = true
				}
			}
			if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
				return nil, fmt.Errorf("reading the result stream: %w", err)
			}
			if n == 0 && !done {
				return nil, fmt.Errorf("result stream read stalled before sequence %d", last)
			}
		}
	}
	for _, q := range reqs {
		if seen[q] == 0 {
			a.lost++
			a.addExample("request %s has no result", truncate(q.id, 80))
		}
	}
	return a, nil
}

func (a *audit) result(d *digits, byID map[string]*request, seen map[*request]int, h nats.Header, body []byte) {
	id := h.Get(wire.HeaderRequestID)
	q, ok := byID[id]
	if !ok {
		a.foreign++
		a.addExample("result for unknown request id %q", truncate(id, 80))
		return
	}
	a.results++
	seen[q]++
	if seen[q] > 1 {
		a.duplicated++
		a.addExample("request %s has %d results", truncate(id, 80), seen[q])
		return
	}
	a.answered++
	code := codec.Code(h.Get(wire.HeaderStatus))
	a.byCode[code]++
	if code != codec.CodeOK {
		a.errorCoded++
	}
	if code == codec.CodeInternal && !slices.Contains(q.want, code) {
		a.internal++
	}
	if code == codec.CodeNotFound && q.known {
		a.notFound++
	}
	msg := h.Get(wire.HeaderError)
	if _, ok := a.sample[q.kind]; !ok && q.kind != "" && code != codec.CodeOK {
		a.sample[q.kind] = string(code) + ": " + truncate(msg, 200)
	}
	switch {
	case !slices.Contains(q.want, code):
		a.wrong++
		a.addExample("request %s (%s): status %s (%s), want one of %v", id, q.kind, code, truncate(msg, 120), q.want)
	case strings.Contains(msg, "decoder panic"):
		a.wrong++
		a.addExample("request %s (%s): the decoder panicked: %s", id, q.kind, truncate(msg, 200))
	case code == codec.CodeOK && q.anyOK:
	case code == codec.CodeOK && q.version != "" && h.Get(wire.HeaderModelVersion) != q.version:
		a.wrong++
		a.addExample("request %s: answered by version %q, want %q", id, h.Get(wire.HeaderModelVersion), q.version)
	case code == codec.CodeOK:
		if err := d.checkOK(body, q.rows); err != nil {
			a.wrong++
			a.addExample("request %s: %v", id, err)
		}
	case msg == "":
		a.wrong++
		a.addExample("request %s: error result %s without a message", id, code)
	default:
		for _, s := range q.mention {
			if !strings.Contains(msg, s) {
				a.wrong++
				a.addExample("request %s (%s): message %q does not mention %q", id, q.kind, truncate(msg, 160), s)
				break
			}
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// queueState reports what is left of the work: messages in the request
// stream, and the consumer's pending and ack-pending counts.
type queueState struct {
	stored, pending, ackPending uint64
	noConsumer                  bool // the model's consumer does not exist
}

func (q queueState) empty() bool { return q.stored == 0 && q.pending == 0 && q.ackPending == 0 }

func readQueue(ctx context.Context, js jetstream.JetStream) (queueState, error) {
	var q queueState
	s, err := js.Stream(ctx, reqStream)
	if err != nil {
		return q, err
	}
	si, err := s.Info(ctx)
	if err != nil {
		return q, err
	}
	c, err := s.Consumer(ctx, model)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return queueState{stored: si.State.Msgs, noConsumer: true}, nil
	}
	if err != nil {
		return q, err
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return q, err
	}
	return queueState{stored: si.State.Msgs, pending: ci.NumPending, ackPending: uint64(ci.NumAckPending)}, nil
}

// countResults returns the number of messages in the result stream.
func countResults(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	s, err := js.Stream(ctx, resStream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// settle waits until the work queue is empty and the result stream holds
// at least want messages, or the queue is empty and no result arrived for
// 3 s (then nothing more can come: every request was acked or
// terminated), or timeout passes. It returns the last queue state.
func settle(ctx context.Context, js jetstream.JetStream, want int, timeout time.Duration) (queueState, error) {
	deadline := time.Now().Add(timeout)
	var q queueState
	var err error
	var last uint64
	lastChange := time.Now()
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		q, err = readQueue(cctx, js)
		var n uint64
		if err == nil {
			n, err = countResults(cctx, js)
		}
		cancel()
		if n != last {
			last, lastChange = n, time.Now()
		}
		if err == nil && q.empty() && n >= uint64(want) {
			return q, nil
		}
		quiet := err == nil && (q.empty() || q.noConsumer) && time.Since(lastChange) > 3*time.Second
		if quiet || time.Now().After(deadline) || ctx.Err() != nil {
			if err == nil {
				err = fmt.Errorf("work settled with %d stored, %d pending, %d ack-pending and %d of %d results",
					q.stored, q.pending, q.ackPending, n, want)
				if q.noConsumer {
					err = fmt.Errorf("%w; the consumer %s does not exist", err, model)
				}
			}
			return q, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rng returns a deterministic generator for a scenario.
func rng(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6a6574696e666572)) }
