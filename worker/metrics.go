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

	redeliveries  metric.Int64Counter
	handBacks     metric.Int64Counter
	inflightReqs  metric.Int64UpDownCounter
	inflightBytes metric.Int64UpDownCounter
	publishFails  metric.Int64Counter
	resultSideUp  metric.Int64Gauge
	unanswerables metric.Int64Counter
	engineInfo    metric.Int64Gauge
	swaps         metric.Int64Counter
	enginesOpen   metric.Int64UpDownCounter
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
	if x.redeliveries, err = m.Int64Counter("jetinfer.redeliveries", metric.WithDescription("requests received that the server had delivered before")); err != nil {
		return nil, fmt.Errorf("creating redeliveries counter: %w", err)
	}
	if x.handBacks, err = m.Int64Counter("jetinfer.handbacks", metric.WithDescription("requests handed back for redelivery, by reason")); err != nil {
		return nil, fmt.Errorf("creating hand-backs counter: %w", err)
	}
	if x.inflightReqs, err = m.Int64UpDownCounter("jetinfer.inflight.requests", metric.WithDescription("requests held between pull and settle")); err != nil {
		return nil, fmt.Errorf("creating in-flight gauge: %w", err)
	}
	if x.inflightBytes, err = m.Int64UpDownCounter("jetinfer.inflight.bytes", metric.WithUnit("By"), metric.WithDescription("request bytes held between pull and settle")); err != nil {
		return nil, fmt.Errorf("creating in-flight bytes gauge: %w", err)
	}
	if x.publishFails, err = m.Int64Counter("jetinfer.result.publish.failures", metric.WithDescription("result publishes the result side did not store (retried, never charged to the request)")); err != nil {
		return nil, fmt.Errorf("creating publish failures counter: %w", err)
	}
	if x.resultSideUp, err = m.Int64Gauge("jetinfer.result.side.up", metric.WithDescription("1 while results can be stored, 0 during a result-side outage")); err != nil {
		return nil, fmt.Errorf("creating result side gauge: %w", err)
	}
	if x.unanswerables, err = m.Int64Counter("jetinfer.unanswerable", metric.WithDescription("requests terminated because no result could be stored for them")); err != nil {
		return nil, fmt.Errorf("creating unanswerable counter: %w", err)
	}
	if x.engineInfo, err = m.Int64Gauge("jetinfer.engine.info", metric.WithDescription("1, labelled with the model version and engine served; 0 once that version is no longer served")); err != nil {
		return nil, fmt.Errorf("creating engine info gauge: %w", err)
	}
	if x.swaps, err = m.Int64Counter("jetinfer.model.swaps", metric.WithDescription(
		"model versions loaded from the repository, by result: switched, refused (accuracy gate), failed (not loadable), superseded")); err != nil {
		return nil, fmt.Errorf("creating swaps counter: %w", err)
	}
	if x.enginesOpen, err = m.Int64UpDownCounter("jetinfer.engines.open", metric.WithDescription(
		"engines opened from the model repository and not yet closed (2 while a retired version finishes its requests)")); err != nil {
		return nil, fmt.Errorf("creating open engines gauge: %w", err)
	}
	x.resultSideUp.Record(context.Background(), 1, metric.WithAttributes(x.model))
	return x, nil
}

// serving records which model version and engine the worker serves (on)
// or no longer serves.
func (m *Metrics) serving(version, engine string, on bool) {
	if m != nil {
		v := int64(0)
		if on {
			v = 1
		}
		m.engineInfo.Record(context.Background(), v, metric.WithAttributes(m.model,
			attribute.String("version", version), attribute.String("engine", engine)))
	}
}

func (m *Metrics) swapped(result string) {
	if m != nil {
		m.swaps.Add(context.Background(), 1, metric.WithAttributes(m.model, attribute.String("result", result)))
	}
}

func (m *Metrics) engineOpened() {
	if m != nil {
		m.enginesOpen.Add(context.Background(), 1, metric.WithAttributes(m.model))
	}
}

func (m *Metrics) engineClosed() {
	if m != nil {
		m.enginesOpen.Add(context.Background(), -1, metric.WithAttributes(m.model))
	}
}

func (m *Metrics) redelivered() {
	if m != nil {
		m.redeliveries.Add(context.Background(), 1, metric.WithAttributes(m.model))
	}
}

func (m *Metrics) handedBack(reason string) {
	if m != nil {
		m.handBacks.Add(context.Background(), 1, metric.WithAttributes(m.model, attribute.String("reason", reason)))
	}
}

func (m *Metrics) addInflight(reqs, bytes int64) {
	if m != nil {
		m.inflightReqs.Add(context.Background(), reqs, metric.WithAttributes(m.model))
		m.inflightBytes.Add(context.Background(), bytes, metric.WithAttributes(m.model))
	}
}

func (m *Metrics) publishFailed() {
	if m != nil {
		m.publishFails.Add(context.Background(), 1, metric.WithAttributes(m.model))
	}
}

func (m *Metrics) setResultSide(up bool) {
	if m != nil {
		v := int64(0)
		if up {
			v = 1
		}
		m.resultSideUp.Record(context.Background(), v, metric.WithAttributes(m.model))
	}
}

func (m *Metrics) unanswerable() {
	if m != nil {
		m.unanswerables.Add(context.Background(), 1, metric.WithAttributes(m.model))
	}
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
