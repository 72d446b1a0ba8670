package traffic_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/testengine"
	"github.com/jetinfer/jetinfer/worker/traffic"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// answer runs a request body through the test engine, as a worker would,
// and returns the result body; reorder permutes the result rows (ids and
// outputs together) to stand for a pipeline that mixes rows up.
func answer(t *testing.T, body []byte, reorder func(rows int) []int) []byte {
	t.Helper()
	req, err := codec.DecodeRequest(body, codec.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	defer req.Release()
	px, _ := req.Column(traffic.Input)
	eng, err := testengine.New(testengine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	b := &trt.Batch{Inputs: []trt.Tensor{{Name: traffic.Input, DType: trt.Float32, Shape: trt.Shape{int64(req.Rows), 8, 8}, Data: px.Data}}}
	if err := eng.Run(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	out := b.Outputs[0]
	ids := req.IDs
	if reorder != nil {
		perm := reorder(req.Rows)
		data := make([]byte, 0, len(out.Data))
		idv := make([]int64, len(perm))
		for i, r := range perm {
			data = append(data, out.Data[r*40:(r+1)*40]...)
			idv[i] = int64(req.IDs.GetOneForMarshal(r).(int64))
		}
		out.Data = data
		return resultBody(t, out, idv)
	}
	var buf bytes.Buffer
	if err := codec.EncodeResult(&buf, []trt.Tensor{out}, ids); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func resultBody(t *testing.T, out trt.Tensor, ids []int64) []byte {
	t.Helper()
	b := array.NewInt64Builder(memory.DefaultAllocator)
	b.AppendValues(ids, nil)
	arr := b.NewArray()
	defer arr.Release()
	out.Shape = trt.Shape{int64(len(ids)), out.Shape[1]}
	var buf bytes.Buffer
	if err := codec.EncodeResult(&buf, []trt.Tensor{out}, arr); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSyntheticCheckCatchesMixedUpRows(t *testing.T) {
	ds := traffic.NewSynthetic(1000)
	body := ds.Body(995, 8) // wraps around
	if err := ds.Check(answer(t, body, nil), 995, 8); err != nil {
		t.Fatalf("the test engine's own answer fails the check: %v", err)
	}
	cases := map[string]func(int) []int{
		"swapped rows": func(n int) []int {
			p := identity(n)
			p[2], p[5] = p[5], p[2]
			return p
		},
		"duplicated row": func(n int) []int {
			p := identity(n)
			p[3] = p[4]
			return p
		},
		"missing row": func(n int) []int { return identity(n)[1:] },
	}
	for name, perm := range cases {
		if err := ds.Check(answer(t, body, perm), 995, 8); err == nil {
			t.Errorf("%s: check passed", name)
		}
	}
	// Another request's result in this one's place.
	if err := ds.Check(answer(t, ds.Body(10, 8), nil), 995, 8); err == nil {
		t.Error("another request's result passed the check")
	}
}

func identity(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	return p
}

func TestMalformedKindsAreDistinctAndNamed(t *testing.T) {
	reqs := traffic.MixMalformed(traffic.NewSynthetic(100), 2*len(traffic.Malformed), 1)
	ids := map[string]bool{}
	for _, q := range reqs {
		if ids[q.ID] {
			t.Fatalf("id %q repeated", q.ID)
		}
		ids[q.ID] = true
		if q.Kind != "" && len(q.Want) == 0 {
			t.Errorf("kind %s accepts no status", q.Kind)
		}
	}
	if got := traffic.Kinds(reqs); len(got) != len(traffic.Malformed) {
		t.Fatalf("%d kinds generated, want %d", len(got), len(traffic.Malformed))
	}
}

func startServer(t *testing.T) jetstream.JetStream {
	t.Helper()
	dir := t.TempDir()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestAuditCountsWhatTheResultStreamHolds stores results by hand (one
// right, one duplicated, one wrong, one error without the words it must
// have, one for an unknown id, one missing) and checks every count.
func TestAuditCountsWhatTheResultStreamHolds(t *testing.T) {
	js := startServer(t)
	ctx := t.Context()
	tg := traffic.Target{Model: "m"}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: wire.DefaultResultStream, Subjects: []string{"jetinfer.res.>"}}); err != nil {
		t.Fatal(err)
	}
	ds := traffic.NewSynthetic(100)
	reqs := []*traffic.Request{
		traffic.NewRequest(ds, "right", "j", 0, 3),
		traffic.NewRequest(ds, "twice", "j", 3, 3),
		traffic.NewRequest(ds, "wrong", "j", 6, 3),
		{ID: "bad", Want: []codec.Code{codec.CodeInvalidArgument}, Mention: []string{"pixels"}, Kind: "k"},
		traffic.NewRequest(ds, "lost", "j", 9, 3),
		{ID: strings.Repeat("x", 2000), Want: []codec.Code{codec.CodeInvalidArgument}},
	}
	store := func(id string, code codec.Code, msg string, body []byte) {
		h := nats.Header{}
		h.Set(wire.HeaderRequestID, id)
		h.Set(wire.HeaderStatus, string(code))
		if msg != "" {
			h.Set(wire.HeaderError, msg)
		}
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "jetinfer.res.m.j", Header: h, Data: body}); err != nil {
			t.Fatal(err)
		}
	}
	store("right", codec.CodeOK, "", answer(t, reqs[0].Body, nil))
	store("twice", codec.CodeOK, "", answer(t, reqs[1].Body, nil))
	store("twice", codec.CodeOK, "", answer(t, reqs[1].Body, nil))
	store("wrong", codec.CodeOK, "", answer(t, reqs[0].Body, nil))
	store("bad", codec.CodeInvalidArgument, "something else", nil)
	store("stranger", codec.CodeOK, "", nil)
	store(traffic.ResultIDFor(reqs[5].ID), codec.CodeInvalidArgument, "id too long", nil)

	a, err := tg.Audit(ctx, js, reqs)
	if err != nil {
		t.Fatal(err)
	}
	want := traffic.Audit{Requests: 6, Results: 6, Answered: 5, Lost: 1, Duplicated: 1, ErrorCoded: 2, Wrong: 2, Foreign: 1}
	got := *a
	got.ByCode, got.Examples, got.Sample = nil, nil, nil
	if !equalAudit(got, want) {
		t.Fatalf("audit %+v\nwant  %+v\nexamples %q", got, want, a.Examples)
	}
	if a.OK() || a.Err() == nil {
		t.Fatal("an audit with losses and duplicates reports OK")
	}
	if a.ByCode[codec.CodeOK] != 3 || a.ByCode[codec.CodeInvalidArgument] != 2 || a.Sample["k"] == "" {
		t.Fatalf("by code %v, sample %v", a.ByCode, a.Sample)
	}
	if got := a.Codes(); got != "2 (INVALID_ARGUMENT 2)" {
		t.Fatalf("Codes() = %q", got)
	}
}

func equalAudit(a, b traffic.Audit) bool {
	return a.Requests == b.Requests && a.Results == b.Results && a.Answered == b.Answered && a.Lost == b.Lost &&
		a.Duplicated == b.Duplicated && a.ErrorCoded == b.ErrorCoded && a.Wrong == b.Wrong && a.Foreign == b.Foreign &&
		a.Internal == b.Internal
}

// TestSendStoresOnceAndSettleSeesTheQueue publishes every request twice
// with the same Nats-Msg-Id and reads the work queue back.
func TestSendStoresOnceAndSettleSeesTheQueue(t *testing.T) {
	js := startServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tg := traffic.Target{Model: "m"}
	for _, c := range []jetstream.StreamConfig{
		{Name: wire.DefaultRequestStream, Subjects: []string{"jetinfer.req.>"}, Retention: jetstream.WorkQueuePolicy},
		{Name: wire.DefaultResultStream, Subjects: []string{"jetinfer.res.>"}},
	} {
		if _, err := js.CreateStream(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.CreateConsumer(ctx, wire.DefaultRequestStream, jetstream.ConsumerConfig{Durable: "m", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	ds := traffic.NewSynthetic(10)
	var reqs []*traffic.Request
	for i := range 20 {
		reqs = append(reqs, traffic.NewRequest(ds, string(rune('a'+i)), "j", i, 2))
	}
	var st traffic.SendStats
	if err := tg.Send(ctx, js, append(reqs, reqs...), traffic.SendOptions{Concurrency: 4}, &st); err != nil {
		t.Fatal(err)
	}
	if st.Published.Load() != 40 || st.Duplicates.Load() != 20 {
		t.Fatalf("published %d, duplicates %d; want 40 and 20", st.Published.Load(), st.Duplicates.Load())
	}
	q, err := tg.Queue(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if q.Stored != 20 || q.Pending != 20 || q.Empty() {
		t.Fatalf("queue %+v; want 20 stored and pending", q)
	}
	// Nobody serves the queue: Settle returns (after its quiet period is
	// not reached, at its timeout) with an error saying what is left.
	if _, err := tg.Settle(ctx, js, 20, 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), "20 stored") {
		t.Fatalf("Settle on an unserved queue: %v", err)
	}
	d, err := tg.Deliveries(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := d.Redelivered(); ok || n != 0 || d.Stored != 20 {
		t.Fatalf("deliveries %+v: nothing was delivered yet, so redeliveries do not compare", d)
	}
}
