package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// newPrometheus returns a meter provider whose instruments, together with
// the Go runtime and process collectors and jetinfer_build_info, are
// served by the returned /metrics handler. Series carry no otel_scope_*
// labels; the resource (service name and version) is on target_info.
// Callers register their own collectors on the returned registry.
func newPrometheus(res *resource.Resource, b build) (*sdkmetric.MeterProvider, *prometheus.Registry, http.Handler, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfoGauge(b))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("creating Prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	return mp, reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}

// listen opens a TCP listener on addr. setting names the variable that
// chooses addr, so that a port in use is reported with the way out.
func listen(addr, setting string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, portError(addr, setting, "another jetinfer process", err)
	}
	return ln, nil
}

// serveHTTP serves h on ln until ctx ends, then shuts the server down.
// The returned channel yields the server's final error (nil on a clean
// stop).
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) <-chan error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("shutting down HTTP server", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return done
}

// workerHandler serves the worker's HTTP endpoints: GET /metrics, GET
// /healthz, GET /readyz (200 while ready() is true) and POST /drain, which
// calls drain and answers once drained is closed. Other methods on these
// paths get 405. With profiling, Go's profiler is served under
// /debug/pprof/ as well.
func workerHandler(metrics http.Handler, ready func() bool, drain func(), drained <-chan struct{}, profiling bool) http.Handler {
	mux := http.NewServeMux()
	if profiling {
		addProfiler(mux)
	}
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) { fmt.Fprintln(rw, "ok") })
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(rw, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(rw, "ready")
	})
	mux.HandleFunc("POST /drain", func(rw http.ResponseWriter, r *http.Request) {
		drain()
		select {
		case <-drained:
			fmt.Fprintln(rw, "drained")
		case <-r.Context().Done():
		}
	})
	return mux
}

// addProfiler serves net/http/pprof's handlers on mux under /debug/pprof/
// (the index lists the profiles: profile?seconds=N for CPU, heap, allocs,
// goroutine, mutex, block, trace).
func addProfiler(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
