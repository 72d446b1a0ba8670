package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/trt/testengine"
	"github.com/jetinfer/jetinfer/worker/traffic"
)

// Tests about the pipeline itself (batching, faults, drain and shutdown
// order, admission, leaks, reliability, reports, tracing, security) run
// the worker on trt/testengine: a pure-Go engine with the digits model's
// IO whose output rows are a known function of their input rows, so they
// need no native library and still catch a row answered in another's
// place. Tests about real model results (PyTorch references, ragged
// sequences, fp16) load ONNX Runtime with loadEngine and skip without it.

// synth is the dataset pipeline tests draw rows from: the test engine's
// expected output is known for each of its rows.
var synth = traffic.NewSynthetic(5000)

// model is where pipeline tests send traffic: the worker's default
// streams, model "digits" (the test engine copies its IO).
var model = traffic.Target{Model: "digits"}

// newTestEngine returns a test engine with the digits model's IO.
func newTestEngine(t testing.TB) *testengine.Engine {
	t.Helper()
	eng, err := testengine.New(testengine.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	return eng
}

// body returns a request body of synthetic rows [lo, hi).
func body(lo, hi int) []byte { return synth.Body(lo, hi-lo) }

// checkRows fails the test unless an OK result body holds, in order, the
// test engine's output for synthetic rows [lo, hi).
func checkRows(t testing.TB, res []byte, lo, hi int) {
	t.Helper()
	if err := synth.Check(res, lo, hi-lo); err != nil {
		t.Fatal(err)
	}
}

// okRequests returns n valid requests of 1 to 8 synthetic rows, ids
// <prefix>-<i>, in job.
func okRequests(prefix, job string, n int) []*traffic.Request {
	reqs := make([]*traffic.Request, n)
	for i := range reqs {
		reqs[i] = traffic.NewRequest(synth, fmt.Sprintf("%s-%d", prefix, i), job, (i*7)%synth.Rows(), 1+i%8)
	}
	return reqs
}

// publishAll stores reqs with traffic.Send (4 publishers, each retrying
// with the same Nats-Msg-Id) and returns how many publishes the server
// acknowledged as duplicates.
func publishAll(t testing.TB, js jetstream.JetStream, reqs []*traffic.Request) (duplicates int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var st traffic.SendStats
	if err := model.Send(ctx, js, reqs, traffic.SendOptions{Concurrency: 4}, &st); err != nil {
		t.Fatalf("publishing %d requests: %v", len(reqs), err)
	}
	return int(st.Duplicates.Load())
}

// assertExactlyOnce waits until the work settles (the queue is empty and
// the result stream holds a result per request, or 60 s pass) and checks
// the contract with traffic.Audit: exactly one result per request, with
// an accepted status and the right rows, no result for anything else,
// nothing left in the queue. It returns the audit.
func assertExactlyOnce(t *testing.T, js jetstream.JetStream, reqs []*traffic.Request) *traffic.Audit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	q, err := model.Settle(ctx, js, len(reqs), 60*time.Second)
	if err != nil {
		t.Errorf("work did not settle: %v", err)
	}
	a, err := model.Audit(ctx, js, reqs)
	if err != nil {
		t.Fatalf("auditing results: %v", err)
	}
	if err := a.Err(); err != nil {
		t.Error(err)
	}
	if !q.Empty() {
		t.Errorf("%d requests left in the work queue", q.Left())
	}
	return a
}

// redeliveries is the consumer's deliveries beyond one per stored request.
func redeliveries(t testing.TB, js jetstream.JetStream) int64 {
	t.Helper()
	d, err := model.Deliveries(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	n, ok := d.Redelivered()
	if !ok {
		t.Fatalf("deliveries %+v do not compare with the requests stored", d)
	}
	return n
}
