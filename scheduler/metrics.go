package scheduler

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// meterName is the instrumentation scope of the scheduler's instruments.
const meterName = "github.com/jetinfer/jetinfer/scheduler"

// metrics holds the scheduler's instruments. Exported on a Prometheus
// endpoint they read as jetinfer_scheduler_desired_replicas{model=...},
// jetinfer_scheduler_backlog_messages, and so on (see docs/scaling.md).
type metrics struct {
	desired     metric.Int64Gauge
	backlog     metric.Int64Gauge
	inFlight    metric.Int64Gauge
	arrival     metric.Float64Gauge
	service     metric.Float64Gauge
	ready       metric.Int64Gauge
	staleTotal  metric.Int64Counter
	decisions   metric.Int64Counter
	errorsTotal metric.Int64Counter
}

func newMetrics(mp metric.MeterProvider) (*metrics, error) {
	m := mp.Meter(meterName)
	var mm metrics
	var errs [9]error
	mm.desired, errs[0] = m.Int64Gauge("jetinfer.scheduler.desired_replicas",
		metric.WithDescription("Replicas the scheduler asks for."), metric.WithUnit("{replica}"))
	mm.backlog, errs[1] = m.Int64Gauge("jetinfer.scheduler.backlog",
		metric.WithDescription("Pending plus ack-pending messages minus those workers hold."), metric.WithUnit("{message}"))
	mm.inFlight, errs[2] = m.Int64Gauge("jetinfer.scheduler.in_flight",
		metric.WithDescription("Messages workers hold while batching or executing."), metric.WithUnit("{message}"))
	mm.arrival, errs[3] = m.Float64Gauge("jetinfer.scheduler.arrival_rate",
		metric.WithDescription("Estimated arrival rate (EWMA)."), metric.WithUnit("{message}/s"))
	mm.service, errs[4] = m.Float64Gauge("jetinfer.scheduler.service_rate",
		metric.WithDescription("Per-replica service rate used for sizing."), metric.WithUnit("{message}/s"))
	mm.ready, errs[5] = m.Int64Gauge("jetinfer.scheduler.ready_workers",
		metric.WithDescription("Workers with a fresh report."), metric.WithUnit("{worker}"))
	mm.staleTotal, errs[6] = m.Int64Counter("jetinfer.scheduler.stale_reports",
		metric.WithDescription("Worker reports ignored because they were too old."), metric.WithUnit("{report}"))
	mm.decisions, errs[7] = m.Int64Counter("jetinfer.scheduler.decisions",
		metric.WithDescription("Policy decisions by reason."), metric.WithUnit("{decision}"))
	mm.errorsTotal, errs[8] = m.Int64Counter("jetinfer.scheduler.errors",
		metric.WithDescription("Errors by stage (consumer_info, reports, publish)."), metric.WithUnit("{error}"))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return &mm, nil
}

func (m *metrics) recordDecision(ctx context.Context, model string, d Decision) {
	attrs := metric.WithAttributes(attribute.String("model", model))
	m.desired.Record(ctx, int64(d.Desired), attrs)
	m.backlog.Record(ctx, d.Backlog, attrs)
	m.inFlight.Record(ctx, int64(d.InFlight), attrs)
	m.arrival.Record(ctx, d.ArrivalRate, attrs)
	m.service.Record(ctx, d.ServiceRate, attrs)
	m.ready.Record(ctx, int64(d.Ready), attrs)
	m.decisions.Add(ctx, 1, metric.WithAttributes(attribute.String("model", model), attribute.String("reason", string(d.Reason))))
}

func (m *metrics) stale(ctx context.Context, model string) {
	m.staleTotal.Add(ctx, 1, metric.WithAttributes(attribute.String("model", model)))
}

func (m *metrics) err(ctx context.Context, stage string) {
	m.errorsTotal.Add(ctx, 1, metric.WithAttributes(attribute.String("stage", stage)))
}
