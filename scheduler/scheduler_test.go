package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// startJetStream runs an in-process JetStream server on a random port and
// returns a JetStream client connected to it.
func startJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	dir := t.TempDir() // before Cleanup(Shutdown): removed after the server stops
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatalf("creating server: %v", err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// setupModel creates the request stream (WorkQueue, as the worker does)
// and the model's durable pull consumer.
func setupModel(t *testing.T, js jetstream.JetStream, models ...string) jetstream.Stream {
	t.Helper()
	ctx := t.Context()
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: DefaultRequestStream, Subjects: []string{"jetinfer.req.>"}, Retention: jetstream.WorkQueuePolicy,
	})
	if err != nil {
		t.Fatalf("creating stream: %v", err)
	}
	for _, m := range models {
		if _, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable: m, FilterSubject: "jetinfer.req." + m, AckPolicy: jetstream.AckExplicitPolicy,
			MaxAckPending: 10000,
		}); err != nil {
			t.Fatalf("creating consumer %s: %v", m, err)
		}
	}
	return st
}

func publishN(t *testing.T, js jetstream.JetStream, model string, n int) {
	t.Helper()
	for i := range n {
		if _, err := js.Publish(t.Context(), "jetinfer.req."+model, fmt.Appendf(nil, "job %d", i)); err != nil {
			t.Fatalf("publishing: %v", err)
		}
	}
}

// fetchN pulls n messages of the model's consumer; it acks them when ack.
func fetchN(t *testing.T, js jetstream.JetStream, model string, n int, ack bool) {
	t.Helper()
	c, err := js.Consumer(t.Context(), DefaultRequestStream, model)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for got < n {
		batch, err := c.Fetch(min(n-got, 500), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			got++
			if ack {
				if err := m.DoubleAck(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
		}
		if batch.Error() != nil {
			t.Fatal(batch.Error())
		}
	}
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Set(sec float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = at(sec)
}

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func testConfig(models ...string) Config {
	cfg := DefaultConfig()
	cfg.Models = models
	cfg.ReportMaxAge = 20 * time.Second
	cfg.Policy.MaxReplicas = 20
	cfg.Policy.TargetDrain = 60 * time.Second
	cfg.Policy.TargetUtilization = 1
	cfg.Policy.ScaleDownWindow = 60 * time.Second
	cfg.Policy.IdleAfter = 120 * time.Second
	cfg.Policy.DefaultColdStart = 30 * time.Second
	return cfg
}

type harness struct {
	js     jetstream.JetStream
	s      *Scheduler
	clock  *fakeClock
	logs   *logBuffer
	reader *sdkmetric.ManualReader
	srv    *httptest.Server
	rep    jetstream.KeyValue
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{js: startJetStream(t), clock: &fakeClock{now: t0}, logs: &logBuffer{}, reader: sdkmetric.NewManualReader()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	log := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	h.s, err = New(t.Context(), h.js, cfg, WithLogger(log), WithClock(h.clock.Now), WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	h.rep, err = OpenReportBucket(t.Context(), h.js, cfg.ReportBucket, 0)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = httptest.NewServer(h.s.Handler())
	t.Cleanup(h.srv.Close)
	return h
}

// report publishes a worker report as a worker would, measured at second
// atSec of the test's timeline.
func (h *harness) report(t *testing.T, model, id string, msgsPerSec float64, inFlight int, atSec float64) {
	t.Helper()
	r := WorkerReport{
		Model: model, WorkerID: id, At: at(atSec),
		ServiceRate: msgsPerSec * 8, RowsPerMsg: 8, Utilization: 0.5, QueueDelay: 3 * time.Millisecond,
		ColdStart: 30 * time.Second, InFlightMsgs: inFlight,
	}
	if err := PublishReport(t.Context(), h.rep, r); err != nil {
		t.Fatal(err)
	}
}

// tick runs one scheduler tick at second sec and returns the model's hint
// as served over HTTP, checking that the KV bucket holds the same value.
func (h *harness) tick(t *testing.T, sec float64, model string) Hint {
	t.Helper()
	h.clock.Set(sec)
	if err := h.s.Tick(t.Context()); err != nil {
		t.Fatalf("tick at %vs: %v", sec, err)
	}
	hint := h.httpHint(t, model)
	kv, err := h.js.KeyValue(t.Context(), DefaultHintBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(t.Context(), model)
	if err != nil {
		t.Fatalf("reading hint from KV: %v", err)
	}
	stored, err := DecodeHint(e.Value())
	if err != nil {
		t.Fatal(err)
	}
	if stored.DesiredReplicas != hint.DesiredReplicas || !stored.At.Equal(hint.At) {
		t.Fatalf("KV hint %+v differs from HTTP hint %+v", stored, hint)
	}
	return hint
}

// httpHint reads the hint the way KEDA's metrics-api scaler does: GET the
// model's URL and take the number at valueLocation.
func (h *harness) httpHint(t *testing.T, model string) Hint {
	t.Helper()
	resp, err := http.Get(h.srv.URL + "/v1/models/" + model + "/hint")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET hint: %s: %s", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	var generic map[string]any
	if err := json.Unmarshal(body, &generic); err != nil {
		t.Fatal(err)
	}
	v, ok := generic[HintValueLocation].(float64)
	if !ok {
		t.Fatalf("no numeric %q in %s", HintValueLocation, body)
	}
	hint, err := DecodeHint(body)
	if err != nil {
		t.Fatal(err)
	}
	if int(v) != hint.DesiredReplicas {
		t.Fatalf("valueLocation gives %v, struct %d", v, hint.DesiredReplicas)
	}
	return hint
}

func TestSchedulerBacklogRisesDrainsFallsAndIdles(t *testing.T) {
	// No model list: "digits" is discovered from the stream's consumers.
	h := newHarness(t, testConfig())
	setupModel(t, h.js, "digits")

	if code := httpStatus(t, h.srv.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz before first tick: %d", code)
	}
	h.report(t, "digits", "w1", 10, 0, 0)
	idle := h.tick(t, 0, "digits")
	// The worker that runs is counted, not advised away.
	if idle.DesiredReplicas != 1 || idle.Backlog != 0 || idle.ReadyWorkers != 1 {
		t.Fatalf("idle start: %+v", idle)
	}
	if code := httpStatus(t, h.srv.URL+"/readyz"); code != http.StatusOK {
		t.Fatalf("readyz after first tick: %d", code)
	}

	// Backlog appears → the hint rises above the one running worker.
	publishN(t, h.js, "digits", 1200)
	h.report(t, "digits", "w1", 10, 0, 5)
	up := h.tick(t, 5, "digits")
	if up.Backlog != 1200 || up.NumPending != 1200 {
		t.Fatalf("backlog: %+v", up)
	}
	if up.DesiredReplicas <= 1 || up.DesiredReplicas >= 20 || up.Reason != ReasonScaleUp {
		t.Fatalf("hint did not rise within bounds: %+v", up)
	}
	if up.ArrivalRate <= 0 || up.ServiceRate != 10 || up.ServiceRateSource != "reports" {
		t.Fatalf("rates: %+v", up)
	}

	// Workers drain it → the hint holds through the stabilization window...
	fetchN(t, h.js, "digits", 1200, true)
	h.report(t, "digits", "w1", 10, 0, 10)
	h.report(t, "digits", "w2", 10, 0, 10)
	held := h.tick(t, 10, "digits")
	if held.Backlog != 0 || held.DesiredReplicas != up.DesiredReplicas || held.Reason != ReasonStabilizing {
		t.Fatalf("during cool-down: %+v (was %d)", held, up.DesiredReplicas)
	}
	// ...and falls after it, to one replica while not yet idle long enough.
	h.report(t, "digits", "w1", 10, 0, 71)
	h.report(t, "digits", "w2", 10, 0, 71)
	down := h.tick(t, 71, "digits")
	if down.DesiredReplicas != 1 || down.Reason != ReasonScaleDown {
		t.Fatalf("after cool-down: %+v", down)
	}

	// Idle for the idle period → zero.
	zero := h.tick(t, 131, "digits")
	if zero.DesiredReplicas != 0 || zero.Reason != ReasonIdle {
		t.Fatalf("after idle period: %+v", zero)
	}
	// Reports stopped 60 s ago: they are stale now and were logged.
	if zero.StaleReports != 2 || zero.ReadyWorkers != 0 {
		t.Fatalf("stale reports not ignored: %+v", zero)
	}

	// Work arrives at zero → activation from the remembered rate.
	publishN(t, h.js, "digits", 50)
	again := h.tick(t, 136, "digits")
	if again.DesiredReplicas < 1 || again.ServiceRateSource != "remembered" {
		t.Fatalf("activation from zero: %+v", again)
	}

	if v := gaugeValue(t, h.reader, "jetinfer.scheduler.desired_replicas", "digits"); v != int64(again.DesiredReplicas) {
		t.Fatalf("desired_replicas gauge %d; hint %d", v, again.DesiredReplicas)
	}
	if code := httpStatus(t, h.srv.URL+"/v1/models/nosuch/hint"); code != http.StatusNotFound {
		t.Fatalf("unknown model: %d", code)
	}
}

func TestSchedulerInFlightIsNotBacklog(t *testing.T) {
	h := newHarness(t, testConfig("digits"))
	setupModel(t, h.js, "digits")
	publishN(t, h.js, "digits", 48)
	fetchN(t, h.js, "digits", 32, false) // a worker holds 32 while forming a batch
	h.report(t, "digits", "w1", 10, 32, 0)
	hint := h.tick(t, 0, "digits")
	if hint.NumAckPending != 32 || hint.InFlight != 32 || hint.NumPending != 16 || hint.Backlog != 16 {
		t.Fatalf("in-flight accounting: %+v", hint)
	}
	if hint.DesiredReplicas != 1 {
		t.Fatalf("desired %d; want 1 for 16 messages of backlog", hint.DesiredReplicas)
	}
}

func TestSchedulerIgnoresStaleReports(t *testing.T) {
	h := newHarness(t, testConfig("digits"))
	setupModel(t, h.js, "digits")
	// One worker reports a huge service rate, but 5 minutes ago.
	h.report(t, "digits", "ghost-worker", 1e6, 0, -300)
	publishN(t, h.js, "digits", 2000)
	hint := h.tick(t, 0, "digits")
	if hint.ReadyWorkers != 0 || hint.StaleReports != 1 || hint.ServiceRateSource != "none" {
		t.Fatalf("stale report used: %+v", hint)
	}
	// Without a usable rate, the fallback (1) — not the maximum.
	if hint.DesiredReplicas != 1 || hint.Reason != ReasonNoServiceRate {
		t.Fatalf("fallback: %+v", hint)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "ignoring stale worker report") || !strings.Contains(logs, "worker=ghost-worker") ||
		!strings.Contains(logs, "reason=") {
		t.Fatalf("stale report not logged with a reason:\n%s", logs)
	}
	// Logged once per report, not every tick.
	h.tick(t, 5, "digits")
	if n := strings.Count(h.logs.String(), "ignoring stale worker report"); n != 1 {
		t.Fatalf("stale report logged %d times", n)
	}
	// A fresh report from a real worker is used.
	h.report(t, "digits", "w1", 10, 0, 10)
	fresh := h.tick(t, 10, "digits")
	if fresh.ReadyWorkers != 1 || fresh.ServiceRate != 10 || fresh.DesiredReplicas <= 1 {
		t.Fatalf("fresh report not used: %+v", fresh)
	}
	if v := counterValue(t, h.reader, "jetinfer.scheduler.stale_reports", "digits"); v != 3 {
		t.Fatalf("stale_reports counter %d; want 3 (one per tick)", v)
	}
}

func TestSchedulerMissingConsumerIsNotMax(t *testing.T) {
	cfg := testConfig("digits", "ghost")
	h := newHarness(t, cfg)
	// Neither stream nor consumers exist yet: both models at the minimum.
	h.report(t, "ghost", "w1", 1, 0, 0) // reports alone do not make work
	for _, m := range []string{"digits", "ghost"} {
		hint := h.tick(t, 0, m)
		if hint.DesiredReplicas != 0 || hint.Reason != ReasonConsumerMissing {
			t.Fatalf("%s without stream: %+v", m, hint)
		}
	}
	st := setupModel(t, h.js, "digits", "ghost")
	publishN(t, h.js, "ghost", 5000)
	h.report(t, "ghost", "w1", 1, 0, 5)
	busy := h.tick(t, 5, "ghost")
	if busy.DesiredReplicas != 20 {
		t.Fatalf("busy ghost should be at max for this test to mean anything: %+v", busy)
	}
	// The consumer disappears (deleted by an operator): not max, the minimum.
	if err := st.DeleteConsumer(t.Context(), "ghost"); err != nil {
		t.Fatal(err)
	}
	gone := h.tick(t, 10, "ghost")
	if gone.DesiredReplicas != 0 || gone.Reason != ReasonConsumerMissing {
		t.Fatalf("after consumer deletion: %+v", gone)
	}
	if !strings.Contains(h.logs.String(), "consumer missing") {
		t.Fatalf("missing consumer not logged:\n%s", h.logs.String())
	}
	// Recreated consumer with the old messages: no bogus arrival spike from
	// the sequence restart, sizing from the backlog resumes.
	setupModel(t, h.js, "ghost")
	back := h.tick(t, 15, "ghost")
	if back.Backlog != 5000 || back.ArrivalRate != 0 {
		t.Fatalf("after recreation: %+v", back)
	}
}

func TestPublishReportRejectsBadReports(t *testing.T) {
	js := startJetStream(t)
	kv, err := OpenReportBucket(t.Context(), js, DefaultReportBucket, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// Opening twice (worker and scheduler) uses the existing bucket.
	if _, err := OpenReportBucket(t.Context(), js, DefaultReportBucket, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	good := WorkerReport{Model: "digits", WorkerID: "pod-1", At: t0, ServiceRate: 100}
	bad := []WorkerReport{
		{Model: "", WorkerID: "w", At: t0},
		{Model: "a.b", WorkerID: "w", At: t0},
		{Model: "m", WorkerID: "w*", At: t0},
		{Model: "m", WorkerID: "w"},
		{Model: "m", WorkerID: "w", At: t0, Utilization: 1.5},
		{Model: "m", WorkerID: "w", At: t0, ServiceRate: -1},
	}
	for _, r := range bad {
		if err := PublishReport(t.Context(), kv, r); err == nil {
			t.Errorf("PublishReport(%+v) accepted", r)
		}
	}
	if err := PublishReport(t.Context(), kv, good); err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(t.Context(), "digits.pod-1")
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeReport(e.Key(), e.Value())
	if err != nil || r.ServiceRate != 100 || !r.At.Equal(t0) {
		t.Fatalf("round trip: %+v, %v", r, err)
	}
	if _, err := decodeReport("digits.other", e.Value()); err == nil {
		t.Fatal("key/content mismatch accepted")
	}
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func collect(t *testing.T, r *sdkmetric.ManualReader) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	return rm
}

func gaugeValue(t *testing.T, r *sdkmetric.ManualReader, name, model string) int64 {
	t.Helper()
	for _, sm := range collect(t, r).ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == name {
				for _, dp := range g.DataPoints {
					if v, _ := dp.Attributes.Value("model"); v.AsString() == model {
						return dp.Value
					}
				}
			}
		}
	}
	t.Fatalf("no gauge %s{model=%s}", name, model)
	return 0
}

func counterValue(t *testing.T, r *sdkmetric.ManualReader, name, model string) int64 {
	t.Helper()
	for _, sm := range collect(t, r).ScopeMetrics {
		for _, m := range sm.Metrics {
			if s, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == name {
				for _, dp := range s.DataPoints {
					if v, _ := dp.Attributes.Value("model"); v.AsString() == model {
						return dp.Value
					}
				}
			}
		}
	}
	t.Fatalf("no counter %s{model=%s}", name, model)
	return 0
}

func TestSchedulerRunPublishesAndStops(t *testing.T) {
	js := startJetStream(t)
	setupModel(t, js, "digits")
	cfg := testConfig("digits")
	cfg.Interval = 20 * time.Millisecond
	s, err := New(t.Context(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	if code := httpStatus(t, srv.URL+"/v1/models/digits/hint"); code != http.StatusServiceUnavailable {
		t.Fatalf("configured model before the first tick: %d; want 503", code)
	}
	publishN(t, js, "digits", 10)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// Wait (without a deadline of our own) until Run's first tick is visible
	// in the hint bucket; the test binary's timeout bounds it.
	kv, err := OpenHintBucket(t.Context(), js, DefaultHintBucket)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(t.Context(), "digits")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	for e := range w.Updates() {
		if e == nil {
			continue
		}
		h, err := DecodeHint(e.Value())
		if err != nil {
			t.Fatal(err)
		}
		if h.NumPending == 10 && h.DesiredReplicas == 1 && h.Reason == ReasonNoServiceRate {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v; want nil on cancellation", err)
	}
	if code := httpStatus(t, srv.URL+"/readyz"); code != http.StatusOK {
		t.Fatalf("readyz after Run: %d", code)
	}
}
