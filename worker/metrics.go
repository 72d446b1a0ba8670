package worker

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetinfer/jetinfer/batcher"
	"github.com/jetinfer/jetinfer/codec"
)

// Metrics records the worker's instruments. A nil *Metrics records nothing.
type Metrics struct {
	rows      metric.Int64Counter
	batchRows metric.Int64Histogram
	engine    metric.Float64Histogram
	queue     metric.Float64Histogram
	results   metric.Int64Counter
	padding   metric.Float64Histogram
	model     attribute.KeyValue
}

// NewMetrics creates the worker's instruments on mp for model.
func NewMetrics(mp metric.MeterProvider, model string) (*Metrics, error) {
	m := mp.Meter("github.com/jetinfer/jetinfer/worker")
	secs := metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)
	var err error
	x := &Metrics{model: attribute.String("model", model)}
	if x.rows, err = m.Int64Counter("jetinfer.rows", metric.WithDescription("rows executed")); err != nil {
		return nil, fmt.Errorf("creating rows counter: %w", err)
	}
	if x.batchRows, err = m.Int64Histogram("jetinfer.batch.rows", metric.WithDescription("rows per engine batch"),
		metric.WithExplicitBucketBoundaries(1, 2, 4, 8, 16, 32, 64, 128, 256, 512)); err != nil {
		return nil, fmt.Errorf("creating batch histogram: %w", err)
	}
	if x.engine, err = m.Float64Histogram("jetinfer.engine.duration", metric.WithUnit("s"),
		metric.WithDescription("engine time per batch"), secs); err != nil {
		return nil, fmt.Errorf("creating engine histogram: %w", err)
	}
	if x.queue, err = m.Float64Histogram("jetinfer.queue.duration", metric.WithUnit("s"),
		metric.WithDescription("time from receipt to execution"), secs); err != nil {
		return nil, fmt.Errorf("creating queue histogram: %w", err)
	}
	if x.padding, err = m.Float64Histogram("jetinfer.batch.padding", metric.WithDescription("fraction of a batch's positions that are padding"),
		metric.WithExplicitBucketBoundaries(0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1)); err != nil {
		return nil, fmt.Errorf("creating padding histogram: %w", err)
	}
	if x.results, err = m.Int64Counter("jetinfer.results", metric.WithDescription("results published, by status")); err != nil {
		return nil, fmt.Errorf("creating results counter: %w", err)
	}
	return x, nil
}

func (m *Metrics) observeBatch(ctx context.Context, p batcher.Plan, d time.Duration) {
	if m == nil {
		return
	}
	attrs := metric.WithAttributes(m.model)
	m.rows.Add(ctx, int64(p.Rows), attrs)
	m.batchRows.Record(ctx, int64(p.Rows), attrs)
	m.padding.Record(ctx, p.Padding(), attrs)
	m.engine.Record(ctx, d.Seconds(), attrs)
}

// observeQueue records a request's wait from receipt to its first batch,
// labelled padded_len: the sequence length that batch was padded to (0
// without a sequence). Not "bucket", which reads as a histogram bucket.
func (m *Metrics) observeQueue(ctx context.Context, d time.Duration, bucket int) {
	if m != nil {
		m.queue.Record(ctx, d.Seconds(), metric.WithAttributes(m.model, attribute.Int("padded_len", bucket)))
	}
}

func (m *Metrics) observeResult(ctx context.Context, c codec.Code) {
	if m != nil {
		m.results.Add(ctx, 1, metric.WithAttributes(m.model, attribute.String("status", string(c))))
	}
}

func attributeReason(why string) trace.EventOption {
	return trace.WithAttributes(attribute.String("reason", why))
}
