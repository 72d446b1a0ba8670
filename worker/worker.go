package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/semaphore"

	"github.com/jetinfer/jetinfer/batcher"
	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
)

// Engine is what the worker needs of an execution backend; trt.Engine
// implementations satisfy it.
type Engine interface {
	Spec() trt.Spec
	Run(ctx context.Context, b *trt.Batch) error
	Device() trt.Device
}

// Option configures optional collaborators of a Worker.
type Option func(*Worker)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(w *Worker) { w.log = l } }

// WithTracerProvider sets the tracer provider (default: no-op).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(w *Worker) { w.tracer = tp.Tracer("github.com/jetinfer/jetinfer/worker") }
}

// WithPropagator sets the propagator used to read and write trace context
// in NATS headers (default: W3C trace context).
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(w *Worker) { w.prop = p }
}

// WithStartTime sets the process start time from which the cold start
// reported to the scheduler is measured (default: when New was called).
func WithStartTime(t time.Time) Option { return func(w *Worker) { w.started = t } }

// WithMetrics sets the metrics sink (default: none).
func WithMetrics(m *Metrics) Option { return func(w *Worker) { w.metrics = m } }

// Worker serves one model from JetStream. Create it with New and start it
// with Run; a Worker runs once.
type Worker struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	engine   Engine
	spec     trt.Spec
	maxBatch int // rows per engine call, from the engine's profiles
	engineID string
	log      *slog.Logger
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	metrics  *Metrics
	limits   codec.Limits
	stats    stats
	started  time.Time
	ready    atomic.Bool
	// budget bounds the bytes of requests held between pull and settle.
	budget *semaphore.Weighted

	// Set up by warmUp at the start of Run.
	reqSpec   trt.Spec                 // what requests must carry
	batcher   *batcher.Batcher         // owned by the schedule goroutine
	assembler *batcher.Assembler       // owned by the schedule goroutine
	inputs    map[string]batcher.Input // read-only after warmUp
}

// Ready reports whether the worker is pulling requests: true from the
// moment its subscription exists until shutdown begins.
func (w *Worker) Ready() bool { return w.ready.Load() }

// New returns a Worker serving eng under cfg over nc.
func New(nc *nats.Conn, eng Engine, cfg Config, opts ...Option) (*Worker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validating worker config: %w", err)
	}
	w := &Worker{
		cfg:     cfg,
		nc:      nc,
		engine:  eng,
		spec:    eng.Spec(),
		log:     slog.New(slog.DiscardHandler),
		tracer:  noop.NewTracerProvider().Tracer(""),
		prop:    propagation.TraceContext{},
		started: time.Now(),
	}
	for _, o := range opts {
		o(w)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.PublishInflight),
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout))
	if err != nil {
		return nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	w.js = js
	w.maxBatch, err = profileMaxBatch(w.spec)
	if err != nil {
		return nil, err
	}
	if cfg.MaxBatchRows == 0 {
		w.cfg.MaxBatchRows = min(w.maxBatch, 64)
	}
	w.cfg.MaxBatchRows = min(w.cfg.MaxBatchRows, w.maxBatch)
	d := eng.Device()
	w.engineID = d.Kind + ":" + d.Name
	w.budget = semaphore.NewWeighted(int64(w.cfg.MaxPullBytes))
	w.limits = codec.DefaultLimits()
	w.limits.MaxBodyBytes = int(cfg.MaxMsgSize)
	w.limits.MaxRows = cfg.MaxRequestRows
	return w, nil
}

// warmUp prepares batching: which inputs the worker generates, what
// requests must carry, and the engine's cost model (loaded or measured).
func (w *Worker) warmUp(ctx context.Context) error {
	masks, lengths := generatedInputs(w.spec, w.cfg.MaskInputs, w.cfg.LengthInputs)
	w.reqSpec = requestSpec(w.spec, append(slices.Clone(masks), lengths...))
	bspec := batcherSpec(w.spec, w.cfg.MaxBatchRows)
	bcfg := batcher.Config{MaxDelay: w.cfg.MaxDelay, MaxPadding: w.cfg.MaxPadding, Masks: masks, Lengths: lengths}
	cost, err := w.loadCostModel(ctx, bspec, bcfg)
	if err != nil {
		return err
	}
	if w.batcher, err = batcher.New(bspec, cost, bcfg); err != nil {
		return fmt.Errorf("creating batcher: %w", err)
	}
	if w.assembler, err = batcher.NewAssembler(bspec); err != nil {
		return fmt.Errorf("creating assembler: %w", err)
	}
	w.inputs = map[string]batcher.Input{}
	for _, in := range w.batcher.Inputs() {
		w.inputs[in.Name] = in
	}
	return nil
}

// profileMaxBatch is the largest batch every input accepts in profile 0.
func profileMaxBatch(s trt.Spec) (int, error) {
	if len(s.Profiles) == 0 || len(s.Inputs) == 0 {
		return 0, errors.New("engine reports no inputs or no optimization profile")
	}
	m := int64(1 << 30)
	for _, in := range s.Inputs {
		sh, ok := s.Profiles[0].Max[in.Name]
		if !ok || len(sh) == 0 || sh[0] < 1 {
			return 0, fmt.Errorf("engine profile 0 has no max batch for input %q", in.Name)
		}
		m = min(m, sh[0])
	}
	return int(m), nil
}

// Run serves requests until ctx is cancelled, then drains as the package
// documentation describes and returns nil. It returns an error if the
// streams cannot be set up or the pull subscription fails.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.warmUp(ctx); err != nil {
		return err
	}
	var cons jetstream.Consumer
	var err error
	if w.cfg.UseExistingStreams {
		if cons, err = w.js.Consumer(ctx, w.cfg.RequestStream, w.cfg.Model); err != nil {
			return fmt.Errorf("binding to consumer %s on %s (create it with `jetinfer streams`): %w", w.cfg.Model, w.cfg.RequestStream, err)
		}
	} else if cons, err = EnsureStreams(ctx, w.js, w.cfg); err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxBytes(int(w.cfg.MaxPullBytes)),
		jetstream.PullHeartbeat(5*time.Second), jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", RequestSubject(w.cfg.Prefix, w.cfg.Model), err)
	}
	w.ready.Store(true)
	w.log.Info("worker started", "model", w.cfg.Model, "version", w.cfg.ModelVersion,
		"engine", w.engineID, "max_batch_rows", w.cfg.MaxBatchRows, "max_delay", w.cfg.MaxDelay)

	// drainCtx outlives ctx by DrainTimeout: in-flight work finishes under it.
	drainCtx, cancelDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDrain()
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	go func() {
		select {
		case <-ctx.Done():
			w.ready.Store(false)
			w.log.Info("draining", "model", w.cfg.Model, "timeout", w.cfg.DrainTimeout)
			it.Drain()
			t := time.NewTimer(w.cfg.DrainTimeout)
			defer t.Stop()
			select {
			case <-t.C:
				w.log.Warn("drain timeout reached; unsettled requests are handed back", "model", w.cfg.Model)
				cancelDrain()
			case <-stopWatch:
			}
		case <-stopWatch:
		}
	}()

	arrivals := make(chan *request, 64)
	jobs := make(chan *job, w.cfg.Executors)
	done := make(chan *jobResult, w.cfg.Executors)
	outcomes := make(chan *outcome, w.cfg.PublishInflight)
	settles := make(chan *settlement, w.cfg.PublishInflight)

	// Reports stop with ctx, or when pulling stops for another reason.
	reportCtx, stopReports := context.WithCancel(ctx)
	defer stopReports()
	var producers sync.WaitGroup // collector and scheduler write outcomes
	var collectErr error
	producers.Go(func() {
		defer close(arrivals)
		collectErr = w.collect(cons, it, arrivals, outcomes)
	})
	producers.Go(func() { w.schedule(arrivals, jobs, done, outcomes) })
	for range w.cfg.Executors {
		go func() {
			for j := range jobs {
				done <- w.executeJob(drainCtx, j)
			}
		}()
	}
	go func() {
		producers.Wait()
		close(outcomes)
		stopReports()
	}()
	var tail sync.WaitGroup
	if w.cfg.ReportInterval > 0 {
		tail.Go(func() { w.runReporter(reportCtx) })
	}
	tail.Add(2)
	go func() {
		defer tail.Done()
		defer close(settles)
		w.publish(drainCtx, outcomes, settles)
	}()
	go func() {
		defer tail.Done()
		w.settle(drainCtx, settles)
	}()
	tail.Wait()
	w.log.Info("worker stopped", "model", w.cfg.Model)
	if collectErr != nil && ctx.Err() == nil {
		return collectErr
	}
	return nil
}
