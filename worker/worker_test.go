package worker_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// digits holds the test split and the PyTorch reference logits.
type digits struct {
	rows     int
	ids      []int64
	pixels   []byte // rows × 64 float32
	refByID  map[int64][]float32
	pixelRow int
}

func loadDigits(t testing.TB) *digits {
	t.Helper()
	read := func(name string) *codec.Request {
		b, err := os.ReadFile(repoFile("testdata", name))
		if err != nil {
			t.Fatalf("reading testdata: %v", err)
		}
		r, err := codec.DecodeRequest(b, codec.Limits{MaxBodyBytes: len(b) + 1})
		if err != nil {
			t.Fatalf("decoding %s: %v", name, err)
		}
		t.Cleanup(r.Release)
		return r
	}
	test, ref := read("digits_test.arrow"), read("digits_ref.arrow")
	px, _ := test.Column("pixels")
	d := &digits{rows: test.Rows, pixels: px.Data, pixelRow: px.RowBytes(), refByID: map[int64][]float32{}}
	d.ids = test.IDs.(*array.Int64).Int64Values()
	logits, _ := ref.Column("logits")
	for i, id := range ref.IDs.(*array.Int64).Int64Values() {
		d.refByID[id] = floats(logits.Data[i*40 : (i+1)*40])
	}
	return d
}

func floats(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// request encodes rows [lo, hi) of the test split as a request body.
func (d *digits) request(t testing.TB, lo, hi int) []byte {
	t.Helper()
	b := array.NewInt64Builder(memory.DefaultAllocator)
	b.AppendValues(d.ids[lo:hi], nil)
	ids := b.NewArray()
	defer ids.Release()
	var buf bytes.Buffer
	err := codec.EncodeRequest(&buf, []trt.Tensor{{Name: "pixels", DType: trt.Float32,
		Shape: trt.Shape{int64(hi - lo), 8, 8}, Data: d.pixels[lo*d.pixelRow : hi*d.pixelRow]}}, ids)
	if err != nil {
		t.Fatalf("encoding request: %v", err)
	}
	return buf.Bytes()
}

// checkLogits compares a result body with the PyTorch references by id.
func (d *digits) checkLogits(t testing.TB, body []byte, wantRows int) {
	t.Helper()
	res, err := codec.DecodeResult(body, codec.DefaultLimits())
	if err != nil {
		t.Fatalf("decoding result: %v", err)
	}
	defer res.Release()
	logits, ok := res.Column("logits")
	if !ok || res.Rows != wantRows || res.IDs == nil {
		t.Fatalf("result has %d rows, logits=%v, ids=%v; want %d rows with ids", res.Rows, ok, res.IDs != nil, wantRows)
	}
	for i, id := range res.IDs.(*array.Int64).Int64Values() {
		got, want := floats(logits.Data[i*40:(i+1)*40]), d.refByID[id]
		for j := range want {
			if diff := math.Abs(float64(got[j] - want[j])); diff > 1e-4*math.Max(1, math.Abs(float64(want[j]))) {
				t.Fatalf("id %d logit %d = %v, PyTorch reference %v", id, j, got[j], want[j])
			}
		}
	}
}

// startWorker runs a worker until the test ends.
func startWorker(t testing.TB, nc *nats.Conn, eng worker.Engine, cfg worker.Config, opts ...worker.Option) *worker.Worker {
	t.Helper()
	w, err := worker.New(nc, eng, cfg, opts...)
	if err != nil {
		t.Fatalf("creating worker: %v", err)
	}
	// Create the streams before returning, so that the test's producers
	// never publish into nothing.
	if _, err := worker.EnsureStreams(context.Background(), mustJS(t, nc), cfg); err != nil {
		t.Fatalf("creating streams: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	// Return once warm-up (cost measurement) is over and requests are
	// being pulled.
	waitFor(t, func() bool {
		select {
		case err := <-done:
			done <- err
			return true
		default:
			return w.Ready()
		}
	}, "the worker to start pulling")
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker.Run: %v", err)
		}
	})
	return w
}

// collect reads the results of job until n arrived (or 60s passed, which
// fails the test) and returns them by request id, failing on duplicates.
func collect(t testing.TB, c *client.Client, job string, n int) map[string]client.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := map[string]client.Result{}
	err := c.Results(ctx, job, func(r client.Result) bool {
		if _, dup := got[r.RequestID]; dup {
			t.Errorf("duplicate result for request %s", r.RequestID)
		}
		got[r.RequestID] = r
		return len(got) < n
	})
	if err != nil {
		t.Fatalf("collecting results of %s: %d of %d arrived: %v", job, len(got), n, err)
	}
	return got
}

func TestManyProducersEveryRequestOneCorrectResult(t *testing.T) {
	eng := loadEngine(t, "digits.onnx")
	d := loadDigits(t)
	ns := startServer(t)
	startWorker(t, connect(t, ns), eng, worker.Config{Model: "digits", MaxDelay: 5 * time.Millisecond, Executors: 2})

	const producers, perProducer = 4, 40
	want := map[string]int{} // request id → rows
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			c, err := client.New(connect(t, ns), client.Config{Model: "digits", MaxPending: 64})
			if err != nil {
				t.Errorf("client: %v", err)
				return
			}
			rng := rand.New(rand.NewPCG(uint64(p), 7))
			for i := range perProducer {
				lo := rng.IntN(d.rows - 12)
				hi := lo + 1 + rng.IntN(12)
				id := fmt.Sprintf("p%d-r%d", p, i)
				mu.Lock()
				want[id] = hi - lo
				mu.Unlock()
				if _, err := c.PublishAsync(context.Background(), client.Request{ID: id, Job: "many", Body: d.request(t, lo, hi)}); err != nil {
					t.Errorf("publish: %v", err)
				}
			}
			<-c.PublishComplete()
		})
	}
	wg.Wait()
	c, err := client.New(connect(t, ns), client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, c, "many", producers*perProducer)
	for id, rows := range want {
		r, ok := got[id]
		if !ok {
			t.Fatalf("request %s has no result", id)
		}
		if r.Status != codec.CodeOK {
			t.Fatalf("request %s: %s: %s", id, r.Status, r.Error)
		}
		d.checkLogits(t, r.Body, rows)
	}
}

func TestMalformedRequestsGetErrorResultsAndOthersSucceed(t *testing.T) {
	eng := loadEngine(t, "digits.onnx")
	d := loadDigits(t)
	ns := startServer(t)
	nc := connect(t, ns)
	startWorker(t, nc, eng, worker.Config{Model: "digits", MaxRequestRows: 100})
	c, err := client.New(nc, client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	tensor := func(name string, dt trt.DType, shape trt.Shape) []byte {
		n, _ := trt.ByteSize(dt, shape)
		var buf bytes.Buffer
		if err := codec.EncodeRequest(&buf, []trt.Tensor{{Name: name, DType: dt, Shape: shape, Data: make([]byte, n)}}, nil); err != nil {
			t.Fatalf("encoding: %v", err)
		}
		return buf.Bytes()
	}
	valid := d.request(t, 0, 3)
	nan := d.request(t, 3, 4)
	cases := []struct {
		name     string
		body     []byte
		header   map[string]string
		wantCode codec.Code
		wantText []string // substrings of the error message
	}{
		{name: "ok-1", body: valid, wantCode: codec.CodeOK},
		{name: "random-bytes", body: []byte("this is not arrow at all, just some bytes"), wantCode: codec.CodeInvalidArgument},
		{name: "truncated", body: valid[:len(valid)/2], wantCode: codec.CodeInvalidArgument},
		{name: "empty", body: nil, wantCode: codec.CodeInvalidArgument},
		{name: "wrong-dtype", body: tensor("pixels", trt.Float64, trt.Shape{2, 8, 8}), wantCode: codec.CodeInvalidArgument,
			wantText: []string{"pixels", "float64", "float32"}},
		{name: "wrong-shape", body: tensor("pixels", trt.Float32, trt.Shape{2, 7, 8}), wantCode: codec.CodeInvalidArgument,
			wantText: []string{"pixels", "[7,8]", "[8,8]"}},
		{name: "missing-column", body: tensor("image", trt.Float32, trt.Shape{2, 8, 8}), wantCode: codec.CodeInvalidArgument,
			wantText: []string{"pixels"}},
		{name: "too-many-rows", body: tensor("pixels", trt.Float32, trt.Shape{101, 8, 8}), wantCode: codec.CodeResourceExhausted,
			wantText: []string{"101", "100"}},
		{name: "bad-deadline", body: valid, header: map[string]string{wire.HeaderDeadline: "tomorrow"},
			wantCode: codec.CodeInvalidArgument, wantText: []string{wire.HeaderDeadline}},
		{name: "past-deadline", body: valid, header: map[string]string{wire.HeaderDeadline: time.Now().Add(-time.Minute).Format(time.RFC3339Nano)},
			wantCode: codec.CodeDeadlineExceeded},
		{name: "version-pin", body: valid, header: map[string]string{wire.HeaderModelVersion: "7"},
			wantCode: codec.CodeNotFound, wantText: []string{`"7"`}},
		{name: "bad-reply-to", body: valid, header: map[string]string{wire.HeaderReplyTo: "elsewhere.>"},
			wantCode: codec.CodeInvalidArgument, wantText: []string{wire.HeaderReplyTo}},
		{name: "reply-to-empty-token", body: valid, header: map[string]string{wire.HeaderReplyTo: "jetinfer.res.digits..x"},
			wantCode: codec.CodeInvalidArgument, wantText: []string{wire.HeaderReplyTo, "empty token"}},
		{name: "reply-to-trailing-dot", body: valid, header: map[string]string{wire.HeaderReplyTo: "jetinfer.res.digits.x."},
			wantCode: codec.CodeInvalidArgument, wantText: []string{wire.HeaderReplyTo, "empty token"}},
		{name: "reply-to-wildcard", body: valid, header: map[string]string{wire.HeaderReplyTo: "jetinfer.res.digits.*"},
			wantCode: codec.CodeInvalidArgument, wantText: []string{wire.HeaderReplyTo, "wildcard"}},
		{name: "ok-2", body: valid, wantCode: codec.CodeOK},
		{name: "ok-nan-allowed", body: withNaN(t, nan), wantCode: codec.CodeOK},
	}
	js, _ := jetstream.New(nc)
	for _, tc := range cases {
		h := nats.Header{}
		h.Set(wire.HeaderMsgID, tc.name)
		h.Set(wire.HeaderJob, "bad")
		for k, v := range tc.header {
			h.Set(k, v)
		}
		if _, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: wire.RequestSubject("jetinfer", "digits"), Header: h, Data: tc.body}); err != nil {
			t.Fatalf("publishing %s: %v", tc.name, err)
		}
	}
	got := collect(t, c, "bad", len(cases))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := got[tc.name]
			if r.Status != tc.wantCode {
				t.Fatalf("status %s (%s), want %s", r.Status, r.Error, tc.wantCode)
			}
			if tc.wantCode != codec.CodeOK && r.Error == "" {
				t.Fatal("error result without a message")
			}
			for _, s := range tc.wantText {
				if !strings.Contains(r.Error, s) {
					t.Errorf("error %q does not mention %q", r.Error, s)
				}
			}
		})
	}
	// Error results terminate their requests: nothing is left behind.
	stream, err := js.Stream(context.Background(), wire.DefaultRequestStream)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return refresh(stream) == 0 }, "request stream to empty")
}

// withNaN returns a copy of a one-row request body whose first pixel is NaN.
func withNaN(t testing.TB, body []byte) []byte {
	t.Helper()
	r, err := codec.DecodeRequest(body, codec.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	px, _ := r.Column("pixels")
	data := bytes.Clone(px.Data)
	binary.LittleEndian.PutUint32(data, math.Float32bits(float32(math.NaN())))
	var buf bytes.Buffer
	if err := codec.EncodeRequest(&buf, []trt.Tensor{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{1, 8, 8}, Data: data}}, r.IDs); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func refresh(s jetstream.Stream) uint64 {
	info, err := s.Info(context.Background())
	if err != nil {
		return math.MaxUint64
	}
	return info.State.Msgs
}

// waitFor polls cond until it holds or 20s pass (a liveness bound, not a
// performance assertion).
func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
