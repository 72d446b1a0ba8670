package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
)

// TestTraceContextFlowsFromProducerToResult checks that the producer's
// trace reaches the worker through lowercase NATS headers, that the batch
// span links the request spans, and that the result carries the context.
func TestTraceContextFlowsFromProducerToResult(t *testing.T) {
	eng := newTestEngine(t)
	ns := startServer(t)
	nc := connect(t, ns)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	startWorker(t, nc, eng, worker.Config{Model: "digits"}, worker.WithTracerProvider(tp))

	c, _ := client.New(nc, client.Config{Model: "digits"})
	ctx, producer := tp.Tracer("producer").Start(context.Background(), "produce")
	if _, err := c.PublishAsync(ctx, client.Request{ID: "traced", Job: "trace", Body: body(0, 2)}); err != nil {
		t.Fatal(err)
	}
	producer.End()
	traceID := producer.SpanContext().TraceID().String()

	r := collect(t, c, "trace", 1)["traced"]
	if _, ok := r.Header["traceparent"]; !ok {
		t.Fatalf("result headers %v have no lowercase traceparent", r.Header)
	}
	if tp := r.Header.Get("traceparent"); !strings.Contains(tp, traceID) {
		t.Errorf("result traceparent %q is not in the producer's trace %s", tp, traceID)
	}
	var linked, received bool
	check := func() bool {
		linked, received = false, false
		for _, s := range rec.Ended() {
			switch {
			case strings.HasPrefix(s.Name(), "batch "):
				for _, l := range s.Links() {
					if l.SpanContext.TraceID().String() == traceID {
						linked = true
					}
				}
				if s.Parent().IsValid() {
					t.Errorf("batch span has parent %v; want a new root", s.Parent())
				}
			case strings.HasPrefix(s.Name(), "receive "):
				if s.SpanContext().TraceID().String() == traceID && s.Parent().SpanID() == producer.SpanContext().SpanID() {
					received = true
				}
			}
		}
		return linked && received
	}
	// The worker ends the request span after acking, just after the result
	// became visible; give it a moment.
	deadline := time.Now().Add(10 * time.Second)
	for !check() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !received {
		t.Error("no receive span is a child of the producer span")
	}
	if !linked {
		t.Error("no batch span links the producer's trace")
	}
}
