package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/worker/models"
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
	cfg     Config
	nc      *nats.Conn
	js      jetstream.JetStream
	initial Engine  // the engine given to New; nil with a repository Source
	source  *Source // serve from the model repository (swap.go); nil: initial
	log     *slog.Logger
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator
	metrics *Metrics
	limits  codec.Limits
	stats   stats
	started time.Time
	ready   atomic.Bool
	// resultDown is the unix ns since which results could not be stored,
	// 0 while the result side works.
	resultDown atomic.Int64
	// pullBytes bounds one pull; admission bounds everything held.
	pullBytes int
	admission *admission
	holding   *holding
	attempts  *attempts
	// stop ends Run early with a cause (a lost engine device); set by Run.
	stopOnce sync.Once
	stopErr  error
	cancel   context.CancelFunc
	done     chan struct{}

	// genMu guards cur and every generation's refs, retired and closed
	// (generation.go); it is never held with another lock.
	genMu sync.Mutex
	cur   *generation // set up at the start of Run
	// closing tracks engines of retired generations being closed.
	closing                      sync.WaitGroup
	enginesOpened, enginesClosed atomic.Int64
	// active is the record of the version the worker follows: the
	// repository's active version, or its alias's (swap.go);
	// versions caches which versions the repository has; peers tracks
	// the versions other live workers serve (pinned.go).
	active   atomic.Pointer[models.Active]
	versions *versionCache
	peers    *peers
	// reportNow asks the reporter for a report at once (after a switch).
	reportNow chan struct{}
	// bg tracks background goroutines that end with Run's context.
	bg sync.WaitGroup
}

// Ready reports whether the worker can take work: it is pulling requests
// (from the moment its subscription exists until shutdown begins), its
// results can be stored, and its engine is alive.
func (w *Worker) Ready() bool { return w.ready.Load() && w.resultDown.Load() == 0 }

// Done is closed when Run has returned.
func (w *Worker) Done() <-chan struct{} { return w.done }

// stop ends Run as if its context were cancelled, and makes Run return
// err: used when the engine can no longer run anything.
func (w *Worker) stop(err error) {
	w.stopOnce.Do(func() {
		w.log.Error("stopping the worker", "model", w.cfg.Model, "err", err)
		w.stopErr = err
		w.ready.Store(false)
		w.cancel()
	})
}

// New returns a Worker serving eng under cfg over nc, as model version
// cfg.ModelVersion. With WithSource, eng must be nil: the worker resolves,
// opens and swaps its engines from the model repository (swap.go).
func New(nc *nats.Conn, eng Engine, cfg Config, opts ...Option) (*Worker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validating worker config: %w", err)
	}
	w := &Worker{
		cfg:       cfg,
		nc:        nc,
		initial:   eng,
		log:       slog.New(slog.DiscardHandler),
		tracer:    noop.NewTracerProvider().Tracer(""),
		prop:      propagation.TraceContext{},
		started:   time.Now(),
		reportNow: make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(w)
	}
	switch {
	case w.source != nil && eng != nil:
		return nil, errors.New("creating worker: give an engine or a repository source, not both")
	case w.source != nil:
		if err := w.source.validate(); err != nil {
			return nil, err
		}
	case eng == nil:
		return nil, errors.New("creating worker: no engine")
	case cfg.ModelAlias != "" && cfg.ModelAlias != models.ActiveAlias:
		return nil, fmt.Errorf("creating worker: model alias %q needs a repository source (JETINFER_MODEL_SOURCE=repository)", cfg.ModelAlias)
	default:
		if _, err := profileMaxBatch(eng.Spec()); err != nil {
			return nil, err
		}
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.PublishInflight),
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout))
	if err != nil {
		return nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	w.js = js
	// One pull asks for at most a quarter of the budget and 16 MiB (well
	// under the server's default 64 MiB max_pending per connection, which
	// cuts slow consumers), and at least two of the largest requests (a
	// pull smaller than the next message returns nothing).
	maxMsg := nc.MaxPayload() // no message, request or not, is larger
	if maxMsg <= 0 {
		maxMsg = int64(w.cfg.MaxMsgSize)
	}
	w.pullBytes = int(max(min(int64(w.cfg.MaxPullBytes)/4, 16<<20), 2*maxMsg))
	w.admission = newAdmission(max(int64(w.cfg.MaxPullBytes), 2*maxMsg), int64(w.cfg.MaxInflightRows))
	w.holding = newHolding()
	w.attempts = newAttempts(15*time.Minute, 1<<17)
	w.done = make(chan struct{})
	w.limits = codec.DefaultLimits()
	w.limits.MaxBodyBytes = int(cfg.MaxMsgSize)
	w.limits.MaxRows = cfg.MaxRequestRows
	return w, nil
}

// warmUp prepares the first generation: the engine given to New, or the
// repository's active version (swap.go).
func (w *Worker) warmUp(ctx context.Context) error {
	if w.source != nil {
		return w.startFromRepository(ctx)
	}
	g, err := w.newGeneration(ctx, w.initial, nil, w.cfg.ModelVersion, "", w.cfg.CostModelPath)
	if err != nil {
		return err
	}
	w.cur = g
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
	defer close(w.done)
	ctx, w.cancel = context.WithCancel(ctx)
	defer w.cancel()
	if err := w.warmUp(ctx); err != nil {
		if ctx.Err() != nil {
			return w.stopErr // stopped while waiting for a model: a clean stop
		}
		return err
	}
	// Engines the worker opened are closed when it stops: the current
	// one here, retired ones by whoever released them last.
	defer w.closing.Wait()
	defer func() {
		w.genMu.Lock()
		g := w.cur
		g.retired = true
		idle := g.refs == 0 && !g.closed
		g.closed = g.closed || idle
		w.genMu.Unlock()
		if idle {
			w.closeGen(g)
		}
	}()
	defer func() { w.cancel(); w.bg.Wait() }()
	if err := w.watchPeers(ctx); err != nil {
		return err
	}
	var cons jetstream.Consumer
	var err error
	if w.cfg.UseExistingStreams {
		if cons, err = w.js.Consumer(ctx, w.cfg.RequestStream, w.cfg.Model); err != nil {
			return fmt.Errorf("binding to consumer %s on %s (create it with `jetinfer streams`): %w", w.cfg.Model, w.cfg.RequestStream, err)
		}
	} else {
		var drift []Drift
		if cons, drift, err = SetUpStreams(ctx, w.js, w.cfg); err != nil {
			return err
		}
		for _, d := range drift {
			level := slog.LevelInfo
			if d.Breaks != "" {
				level = slog.LevelWarn
			}
			w.log.Log(ctx, level, "stream setting differs from the config; left as set (`jetinfer streams --update` applies the config)",
				"object", d.Object, "setting", d.Setting, "have", d.Have, "config", d.Want, "breaks", d.Breaks)
		}
	}
	ackWait := w.cfg.AckWait
	if info := cons.CachedInfo(); info != nil && info.Config.AckWait > 0 {
		ackWait = info.Config.AckWait // an operator's setting wins
	}
	w.ready.Store(true)
	g := w.current()
	w.metrics.serving(g.version, g.engineID, true)
	w.log.Info("worker started", "model", w.cfg.Model, "version", g.version, "source", w.sourceName(),
		"engine", g.engineID, "max_batch_rows", g.maxBatchRows, "max_delay", w.cfg.MaxDelay, "executors", w.cfg.Executors)
	w.log.Info("admission budget", "model", w.cfg.Model,
		"held_bytes", w.admission.bytes.max, "held_rows", w.admission.rows.max, "pull_bytes", w.pullBytes,
		"server_max_payload", w.nc.MaxPayload(), "max_msg_size", w.cfg.MaxMsgSize,
		"why", "held bytes = JETINFER_MAX_PULL_BYTES (at least 2 largest requests); one pull = min(1/4 of it, 16 MiB), at least 2 largest requests, far below the server's 64 MiB max_pending; rows = batcher queue limit")

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
		collectErr = w.collect(ctx, cons, arrivals, outcomes)
	})
	producers.Go(func() { w.schedule(arrivals, jobs, done, outcomes) })
	var executors sync.WaitGroup
	for range w.cfg.Executors {
		executors.Go(func() {
			for j := range jobs {
				done <- w.executeJob(drainCtx, j)
			}
		})
	}
	defer executors.Wait()
	go func() {
		producers.Wait()
		close(outcomes)
		stopReports()
	}()
	var tail sync.WaitGroup
	if w.source != nil {
		// Swaps stop with ctx; a load in progress is abandoned.
		tail.Go(func() { w.runSwaps(reportCtx) })
	}
	if w.cfg.ReportInterval > 0 {
		tail.Go(func() { w.runReporter(reportCtx) })
	}
	keepCtx, stopKeeping := context.WithCancel(drainCtx)
	tail.Go(func() { w.keep(keepCtx, max(ackWait/3, 100*time.Millisecond)) })
	tail.Add(2)
	go func() {
		defer tail.Done()
		defer close(settles)
		w.publish(drainCtx, outcomes, settles)
	}()
	go func() {
		defer tail.Done()
		defer stopKeeping()
		w.settle(drainCtx, settles)
	}()
	tail.Wait()
	// Acks and naks are fire-and-forget publishes: flush them, so that a
	// process that exits right after Run returns has settled on the
	// server everything it answered.
	if err := w.nc.FlushTimeout(5 * time.Second); err != nil && w.nc.IsConnected() {
		w.log.Warn("flushing acks at shutdown", "model", w.cfg.Model, "err", err)
	}
	w.log.Info("worker stopped", "model", w.cfg.Model)
	if w.stopErr != nil {
		return w.stopErr
	}
	if collectErr != nil && ctx.Err() == nil {
		return collectErr
	}
	return nil
}
