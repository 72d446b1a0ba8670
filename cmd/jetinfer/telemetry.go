package main

import (
	"context"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// newResource describes this process to OpenTelemetry: service.name is
// service ("jetinfer-worker", "jetinfer-scheduler") and service.version
// the binary's version, unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES say otherwise.
func newResource(service string, b build) (*resource.Resource, error) {
	own := resource.NewSchemaless(
		attribute.String("service.name", service),
		attribute.String("service.version", or(b.Version, "unknown")),
	)
	res, err := resource.Merge(resource.Default(), own)
	if err != nil {
		return nil, fmt.Errorf("building telemetry resource: %w", err)
	}
	if res, err = resource.Merge(res, resource.Environment()); err != nil {
		return nil, fmt.Errorf("building telemetry resource from OTEL_* environment: %w", err)
	}
	return res, nil
}

// newTracerProvider returns an OTLP/gRPC tracer provider configured by the
// standard OTEL_* variables when OTEL_EXPORTER_OTLP_ENDPOINT (or the
// traces-specific endpoint) is set and OTEL_TRACES_EXPORTER is not "none";
// otherwise a no-op provider. maxLinks raises the span link limit so that a
// batch span keeps a link to every request it carries.
func newTracerProvider(ctx context.Context, res *resource.Resource, maxLinks int) (trace.TracerProvider, func(context.Context) error, error) {
	endpoint := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") + os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if endpoint == "" || os.Getenv("OTEL_TRACES_EXPORTER") == "none" {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("creating OTLP trace exporter: %w", err)
	}
	limits := sdktrace.NewSpanLimits()
	limits.LinkCountLimit = max(limits.LinkCountLimit, maxLinks)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithRawSpanLimits(limits),
	)
	return tp, tp.Shutdown, nil
}

// buildInfoGauge is jetinfer_build_info{version,commit,go_version}, always
// 1, the usual way to put a binary's version on dashboards.
func buildInfoGauge(b build) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "jetinfer_build_info",
		Help: "Always 1; the labels identify the running jetinfer binary.",
		ConstLabels: prometheus.Labels{
			"version":    or(b.Version, "unknown"),
			"commit":     or(b.Commit, "unknown"),
			"go_version": b.GoVersion,
		},
	}, func() float64 { return 1 })
}

// natsConnectedGauge is jetinfer_nats_connected: 1 while nc is connected
// to a NATS server, 0 while it is disconnected or reconnecting.
func natsConnectedGauge(nc *nats.Conn) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "jetinfer_nats_connected",
		Help: "1 while the NATS connection is up, 0 while it is down or reconnecting.",
	}, func() float64 {
		if nc.IsConnected() {
			return 1
		}
		return 0
	})
}
