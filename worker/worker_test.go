package worker_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
	"github.com/jetinfer/jetinfer/worker/traffic"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// loadDigits loads the digits test split and its PyTorch references, for
// tests of real model results.
func loadDigits(t testing.TB) *traffic.Digits {
	t.Helper()
	d, err := traffic.LoadDigits(repoFile())
	if err != nil {
		t.Fatal(err)
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

// TestManyProducersEveryRequestOneCorrectResult has four producers
// publish requests of random sizes at once: every request must come back
// once, with its own rows in order (the test engine's output is checked
// row by row, so rows coalesced into shared batches and split back out
// must land in the right request). TestQueuedRowsAreCoalesced checks
// that they are coalesced.
func TestManyProducersEveryRequestOneCorrectResult(t *testing.T) {
	eng := newTestEngine(t)
	ns := startServer(t)
	startWorker(t, connect(t, ns), eng, worker.Config{Model: "digits", MaxDelay: 5 * time.Millisecond, Executors: 2})
	eng.ResetStats()

	const producers, perProducer = 4, 40
	type span struct{ lo, hi int }
	want := map[string]span{} // request id → rows
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
				lo := rng.IntN(synth.Rows() - 12)
				hi := lo + 1 + rng.IntN(12)
				id := fmt.Sprintf("p%d-r%d", p, i)
				mu.Lock()
				want[id] = span{lo, hi}
				mu.Unlock()
				if _, err := c.PublishAsync(context.Background(), client.Request{ID: id, Job: "many", Body: body(lo, hi)}); err != nil {
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
	rows := 0
	for id, sp := range want {
		r, ok := got[id]
		if !ok {
			t.Fatalf("request %s has no result", id)
		}
		if r.Status != codec.CodeOK {
			t.Fatalf("request %s: %s: %s", id, r.Status, r.Error)
		}
		checkRows(t, r.Body, sp.lo, sp.hi)
		rows += sp.hi - sp.lo
	}
	if st := eng.Stats(); st.Rows < int64(rows) {
		t.Errorf("engine stats %+v: fewer rows run than the %d requested", st, rows)
	}
}

// TestDigitsResultsMatchPyTorchReferences serves the real digits model on
// ONNX Runtime: every request's logits, coalesced with others' rows,
// match the PyTorch references of its ids.
func TestDigitsResultsMatchPyTorchReferences(t *testing.T) {
	eng := loadEngine(t, "digits.onnx")
	d := loadDigits(t)
	ns := startServer(t)
	nc := connect(t, ns)
	startWorker(t, nc, eng, worker.Config{Model: "digits", MaxDelay: 5 * time.Millisecond})
	var reqs []*traffic.Request
	for i := range 60 {
		reqs = append(reqs, traffic.NewRequest(d, fmt.Sprintf("d-%d", i), "digits", (i*37)%d.Rows(), 1+i%12))
	}
	publishAll(t, mustJS(t, nc), reqs)
	a := assertExactlyOnce(t, mustJS(t, nc), reqs)
	if a.ByCode[codec.CodeOK] != len(reqs) {
		t.Errorf("statuses %v: every request should be answered OK", a.ByCode)
	}
}

func TestMalformedRequestsGetErrorResultsAndOthersSucceed(t *testing.T) {
	eng := newTestEngine(t)
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
	valid := body(0, 3)
	nan, err := traffic.SetValue(body(3, 4), 0, float32(math.NaN()))
	if err != nil {
		t.Fatal(err)
	}
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
		{name: "reply-to-leading-dot", body: valid, header: map[string]string{wire.HeaderReplyTo: ".jetinfer.res.digits.x"},
			wantCode: codec.CodeInvalidArgument, wantText: []string{wire.HeaderReplyTo, "empty token"}},
		{name: "reply-to-full-wildcard", body: valid, header: map[string]string{wire.HeaderReplyTo: "jetinfer.res.digits.>"},
			wantCode: codec.CodeInvalidArgument, wantText: []string{wire.HeaderReplyTo, "wildcard"}},
		{name: "reply-to-whitespace", body: valid, header: map[string]string{wire.HeaderReplyTo: "jetinfer.res.digits.a b"},
			wantCode: codec.CodeInvalidArgument, wantText: []string{wire.HeaderReplyTo, "whitespace"}},
		{name: "reply-to-other-model", body: valid, header: map[string]string{wire.HeaderReplyTo: "jetinfer.res.other.x"},
			wantCode: codec.CodeInvalidArgument, wantText: []string{wire.HeaderReplyTo, "not under"}},
		{name: "ok-2", body: valid, wantCode: codec.CodeOK},
		{name: "ok-nan-allowed", body: nan, wantCode: codec.CodeOK},
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
