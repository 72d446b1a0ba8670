package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
)

// scrape returns the text exposition h serves on GET /metrics.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	return rec.Body.String()
}

func TestMetricsExposition(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")
	b := build{Version: "v1.2.3", Commit: "abc123", GoVersion: "go1.26.8"}
	res, err := newResource("jetinfer-worker", b)
	if err != nil {
		t.Fatal(err)
	}
	mp, reg, h, err := newPrometheus(res, b)
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Shutdown(context.Background())

	ns, err := startEmbedded(-1, t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	disconnected := make(chan struct{})
	var once sync.Once
	nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { once.Do(func() { close(disconnected) }) }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	reg.MustRegister(natsConnectedGauge(nc))

	c, err := mp.Meter("test").Int64Counter("jetinfer.test.things")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 3)

	out := scrape(t, h)
	for _, want := range []string{
		`jetinfer_build_info{commit="abc123",go_version="go1.26.8",version="v1.2.3"} 1`,
		"jetinfer_nats_connected 1",
		`service_name="jetinfer-worker"`,
		`service_version="v1.2.3"`,
		"jetinfer_test_things_total 3",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, unwanted := range []string{"otel_scope_", "unknown_service"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("/metrics contains %q", unwanted)
		}
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	<-disconnected
	if out := scrape(t, h); !strings.Contains(out, "jetinfer_nats_connected 0") {
		t.Errorf("after the server stopped, /metrics lacks jetinfer_nats_connected 0")
	}
}

func TestServiceNameFromEnvironmentWins(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "scoring-pool-a")
	res, err := newResource("jetinfer-worker", build{})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range res.Attributes() {
		if kv.Key == "service.name" && kv.Value.AsString() != "scoring-pool-a" {
			t.Errorf("service.name = %q, want OTEL_SERVICE_NAME's", kv.Value.AsString())
		}
	}
}

func TestWorkerHandlerDrainIsPostOnly(t *testing.T) {
	var drains atomic.Int32
	drained := make(chan struct{})
	h := workerHandler(http.NotFoundHandler(), func() bool { return true }, func() { drains.Add(1); close(drained) }, drained, false)
	srv := httptest.NewServer(h)
	defer srv.Close()

	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPut} {
		req, _ := http.NewRequest(method, srv.URL+"/drain", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s /drain = %d, want 405", method, resp.StatusCode)
		}
	}
	if drains.Load() != 0 {
		t.Fatalf("a non-POST request drained the worker")
	}
	// `jetinfer drain`, as the preStop hook runs it.
	var out strings.Builder
	if err := run(context.Background(), []string{"drain", "-addr", strings.TrimPrefix(srv.URL, "http://")}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out.String()) != "drained" || drains.Load() != 1 {
		t.Errorf("jetinfer drain printed %q after %d drains, want drained after 1", out.String(), drains.Load())
	}
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /readyz = %d, want 200", resp.StatusCode)
	}
}

func TestLocalAddr(t *testing.T) {
	for in, want := range map[string]string{
		"": "127.0.0.1:9464", ":9464": "127.0.0.1:9464", "0.0.0.0:8000": "127.0.0.1:8000",
		"[::]:9": "127.0.0.1:9", "10.0.0.7:9464": "10.0.0.7:9464",
	} {
		if got := localAddr(in); got != want {
			t.Errorf("localAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTakenPortsAreNamed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	_, err = startEmbedded(port, t.TempDir(), 1<<20)
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "JETINFER_EMBEDDED_PORT") {
		t.Errorf("embedded server on a taken port: %v; want an error naming the port's setting", err)
	}
	_, err = listen("127.0.0.1:"+strconv.Itoa(port), "JETINFER_HTTP_LISTEN")
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "JETINFER_HTTP_LISTEN") {
		t.Errorf("HTTP listener on a taken port: %v; want an error naming JETINFER_HTTP_LISTEN", err)
	}
}

func TestWorkerHandlerProfilerOnlyWhenEnabled(t *testing.T) {
	for _, profiling := range []bool{false, true} {
		drained := make(chan struct{})
		srv := httptest.NewServer(workerHandler(http.NotFoundHandler(), func() bool { return true }, func() {}, drained, profiling))
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1"} {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := http.StatusNotFound
			if profiling {
				want = http.StatusOK
			}
			if resp.StatusCode != want {
				t.Errorf("JETINFER_PPROF=%v: GET %s = %d, want %d", profiling, path, resp.StatusCode, want)
			}
			if profiling && len(body) == 0 {
				t.Errorf("GET %s: empty profile", path)
			}
		}
		srv.Close()
	}
}
