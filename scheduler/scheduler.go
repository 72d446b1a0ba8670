package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jetinfer/jetinfer/worker/wire"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// DefaultRequestStream is the request stream whose consumers the
// scheduler reads (the contract's default).
const DefaultRequestStream = wire.DefaultRequestStream

// Config configures a Scheduler. Start from DefaultConfig.
type Config struct {
	// Stream is the request stream; each model has a durable pull consumer
	// on it named after the model.
	Stream string
	// Models lists the models to schedule. Empty: every consumer found on
	// Stream, rediscovered each tick. A listed model whose consumer is
	// missing gets MinReplicas and a logged reason.
	Models []string
	// Interval is the time between ticks.
	Interval time.Duration
	// RequestTimeout bounds each JetStream API call of a tick.
	RequestTimeout time.Duration
	// ReportBucket and HintBucket name the KV buckets.
	ReportBucket string
	HintBucket   string
	// ReportTTL is the report bucket's TTL when the scheduler creates it.
	ReportTTL time.Duration
	// ReportMaxAge is the age (now − WorkerReport.At) beyond which a report
	// is stale: ignored, counted and logged.
	ReportMaxAge time.Duration
	// Policy applies to every model, except for the replica bounds set in
	// Limits.
	Policy PolicyConfig
	// Limits overrides MinReplicas/MaxReplicas per model.
	Limits map[string]Limits
}

// Limits are per-model replica bounds.
type Limits struct {
	Min, Max int
}

// DefaultConfig returns the defaults documented in docs/scaling.md.
func DefaultConfig() Config {
	return Config{
		Stream:         DefaultRequestStream,
		Interval:       5 * time.Second,
		RequestTimeout: 5 * time.Second,
		ReportBucket:   DefaultReportBucket,
		HintBucket:     DefaultHintBucket,
		ReportTTL:      DefaultReportTTL,
		ReportMaxAge:   20 * time.Second,
		Policy:         DefaultPolicyConfig(),
	}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	switch {
	case c.Stream == "":
		return errors.New("stream name is empty")
	case c.Interval <= 0 || c.RequestTimeout <= 0:
		return errors.New("interval and request timeout must be positive")
	case c.ReportBucket == "" || c.HintBucket == "":
		return errors.New("bucket names must not be empty")
	case c.ReportMaxAge <= 0:
		return fmt.Errorf("report max age %v: must be positive", c.ReportMaxAge)
	}
	for _, m := range c.Models {
		if err := validToken("model", m); err != nil {
			return err
		}
	}
	for m := range c.Limits {
		if _, err := c.policyFor(m); err != nil {
			return err
		}
	}
	return c.Policy.Validate()
}

func (c Config) policyFor(model string) (PolicyConfig, error) {
	p := c.Policy
	if l, ok := c.Limits[model]; ok {
		p.MinReplicas, p.MaxReplicas = l.Min, l.Max
		p.FallbackReplicas = min(p.FallbackReplicas, max(l.Max, 1))
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("validating policy of model %q: %w", model, err)
	}
	return p, nil
}

// Option configures a Scheduler beyond its Config.
type Option interface{ apply(*options) }

type options struct {
	log   *slog.Logger
	mp    metric.MeterProvider
	clock func() time.Time
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.log = l }) }

// WithMeterProvider sets where metrics go (default: no-op).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(o *options) { o.mp = mp })
}

// WithClock sets the clock used to time observations and judge report age
// (default time.Now). Tests pass a controlled clock.
func WithClock(now func() time.Time) Option { return optionFunc(func(o *options) { o.clock = now }) }

// Scheduler runs the policy for every model against JetStream. Create it
// with New; run it with Run, or drive it with Tick.
type Scheduler struct {
	cfg     Config
	js      jetstream.JetStream
	reports jetstream.KeyValue
	hintKV  jetstream.KeyValue
	log     *slog.Logger
	now     func() time.Time
	m       *metrics

	tickMu     sync.Mutex // held for a whole Tick; guards the fields below
	policies   map[string]*Policy
	status     map[string]ConsumerStatus // last consumer status per model, for logging transitions
	staleSeen  map[string]time.Time      // report key → At of the stale report already logged
	discovered map[string]bool

	snap atomic.Pointer[snapshot]
}

// snapshot is an immutable view of the latest hints, read by the handler.
type snapshot struct {
	at    time.Time
	hints map[string]Hint
}

// New opens (creating if needed) the report and hint buckets and returns a
// Scheduler. It does not start anything.
func New(ctx context.Context, js jetstream.JetStream, cfg Config, opts ...Option) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validating scheduler config: %w", err)
	}
	o := options{clock: time.Now}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.mp == nil {
		o.mp = noop.NewMeterProvider()
	}
	m, err := newMetrics(o.mp)
	if err != nil {
		return nil, fmt.Errorf("creating scheduler metrics: %w", err)
	}
	reports, err := OpenReportBucket(ctx, js, cfg.ReportBucket, cfg.ReportTTL)
	if err != nil {
		return nil, err
	}
	hints, err := OpenHintBucket(ctx, js, cfg.HintBucket)
	if err != nil {
		return nil, err
	}
	s := &Scheduler{
		cfg:        cfg,
		js:         js,
		reports:    reports,
		hintKV:     hints,
		log:        o.log,
		now:        o.clock,
		m:          m,
		policies:   map[string]*Policy{},
		status:     map[string]ConsumerStatus{},
		staleSeen:  map[string]time.Time{},
		discovered: map[string]bool{},
	}
	s.snap.Store(&snapshot{hints: map[string]Hint{}})
	return s, nil
}

// Run ticks every Config.Interval until ctx is cancelled, then returns nil.
// A failing tick is logged and counted, never fatal: the next tick retries.
func (s *Scheduler) Run(ctx context.Context) error {
	s.log.Info("scheduler started", "stream", s.cfg.Stream, "interval", s.cfg.Interval, "models", s.cfg.Models)
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("scheduler tick incomplete", "err", err)
		}
		select {
		case <-ctx.Done():
			s.log.Info("scheduler stopped")
			return nil
		case <-t.C:
		}
	}
}

// Tick observes every model once, decides, publishes the hints to the KV
// bucket and makes them visible to the HTTP handler. Errors of single
// models or of publishing are joined into the result; models that could
// be decided are published regardless. Safe to call concurrently with
// itself (calls are serialized), but not meant to overlap Run.
func (s *Scheduler) Tick(ctx context.Context) error {
	s.tickMu.Lock()
	defer s.tickMu.Unlock()
	now := s.now()
	var errs []error

	models, err := s.models(ctx)
	if err != nil {
		s.m.err(ctx, "discover")
		errs = append(errs, err)
	}
	reports, stale, err := s.readReports(ctx, now)
	if err != nil {
		// Without reports the policy falls back to remembered rates; the
		// consumer state is still worth acting on.
		s.m.err(ctx, "reports")
		s.log.Warn("reading worker reports; sizing without them", "err", err)
		errs = append(errs, err)
	}

	prev := s.snap.Load()
	next := &snapshot{at: now, hints: make(map[string]Hint, len(models))}
	for m, h := range prev.hints {
		next.hints[m] = h
	}
	for _, model := range models {
		p, err := s.policy(model)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		obs := s.observe(ctx, model, now)
		obs.Reports = reports[model]
		old, hadPrev := prev.hints[model]
		d := p.Decide(obs)
		s.logDecision(model, obs, d, old.DesiredReplicas, hadPrev)
		s.m.recordDecision(ctx, model, d)
		h := newHint(model, obs, d, stale[model])
		next.hints[model] = h
		if err := s.publish(ctx, h); err != nil {
			s.m.err(ctx, "publish")
			errs = append(errs, err)
		}
	}
	s.snap.Store(next)
	return errors.Join(errs...)
}

// Hints returns the latest hints, sorted by model.
func (s *Scheduler) Hints() []Hint {
	snap := s.snap.Load()
	out := make([]Hint, 0, len(snap.hints))
	for _, h := range snap.hints {
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b Hint) int {
		switch {
		case a.Model < b.Model:
			return -1
		case a.Model > b.Model:
			return 1
		}
		return 0
	})
	return out
}

// Hint returns the latest hint for model, if one was computed.
func (s *Scheduler) Hint(model string) (Hint, bool) {
	h, ok := s.snap.Load().hints[model]
	return h, ok
}

// models returns the models to decide this tick: the configured ones, or
// every consumer seen on the stream so far (a model once seen keeps being
// decided, so its hint falls to the minimum when its consumer goes away
// instead of disappearing from KEDA's view).
func (s *Scheduler) models(ctx context.Context) ([]string, error) {
	if len(s.cfg.Models) > 0 {
		return s.cfg.Models, nil
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	var listErr error
	stream, err := s.js.Stream(cctx, s.cfg.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		// Nothing to discover yet; known models go to "missing".
	case err != nil:
		listErr = fmt.Errorf("looking up stream %s: %w", s.cfg.Stream, err)
	default:
		names := stream.ConsumerNames(cctx)
		for n := range names.Name() {
			if validToken("model", n) != nil {
				continue
			}
			if !s.discovered[n] {
				s.log.Info("model discovered", "model", n, "stream", s.cfg.Stream)
				s.discovered[n] = true
			}
		}
		if err := names.Err(); err != nil {
			listErr = fmt.Errorf("listing consumers of %s: %w", s.cfg.Stream, err)
		}
	}
	out := make([]string, 0, len(s.discovered))
	for n := range s.discovered {
		out = append(out, n)
	}
	slices.Sort(out)
	return out, listErr
}

func (s *Scheduler) policy(model string) (*Policy, error) {
	if p, ok := s.policies[model]; ok {
		return p, nil
	}
	pc, err := s.cfg.policyFor(model)
	if err != nil {
		return nil, err
	}
	p, err := NewPolicy(pc)
	if err != nil {
		return nil, err
	}
	s.policies[model] = p
	return p, nil
}

// observe reads the model's consumer info through the JetStream API, which
// the consumer's leader answers.
func (s *Scheduler) observe(ctx context.Context, model string, now time.Time) Observation {
	obs := Observation{At: now}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	c, err := s.js.Consumer(cctx, s.cfg.Stream, model)
	var info *jetstream.ConsumerInfo
	if err == nil {
		info = c.CachedInfo()
	}
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound):
		obs.Consumer = ConsumerMissing
		s.transition(model, ConsumerMissing, "consumer missing: no worker can receive work; asking for the minimum", "err", err)
	case err != nil:
		obs.Consumer = ConsumerUnreadable
		s.m.err(ctx, "consumer_info")
		s.transition(model, ConsumerUnreadable, "consumer info unavailable: holding the previous hint", "err", err)
	default:
		obs.Consumer = ConsumerOK
		obs.NumPending = info.NumPending
		obs.NumAckPending = info.NumAckPending
		obs.Delivered = info.Delivered.Consumer
		obs.WaitingPulls = info.NumWaiting
		s.transition(model, ConsumerOK, "consumer readable")
	}
	return obs
}

// transition logs a consumer status change once, not every tick.
func (s *Scheduler) transition(model string, st ConsumerStatus, msg string, args ...any) {
	old, seen := s.status[model]
	s.status[model] = st
	if seen && old == st || !seen && st == ConsumerOK {
		return
	}
	args = append([]any{"model", model, "stream", s.cfg.Stream, "status", st.String()}, args...)
	if st == ConsumerOK {
		s.log.Info(msg, args...)
		return
	}
	s.log.Warn(msg, args...)
}

// readReports takes a snapshot of the report bucket and splits it into
// fresh reports per model and counts of stale ones. Each stale report is
// logged once (per report time) with its age.
func (s *Scheduler) readReports(ctx context.Context, now time.Time) (map[string][]WorkerReport, map[string]int, error) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	w, err := s.reports.WatchAll(cctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, nil, fmt.Errorf("watching report bucket %s: %w", s.cfg.ReportBucket, err)
	}
	defer func() { _ = w.Stop() }()
	fresh := map[string][]WorkerReport{}
	stale := map[string]int{}
	seen := map[string]bool{}
	for {
		var e jetstream.KeyValueEntry
		select {
		case e = <-w.Updates():
		case <-cctx.Done():
			return fresh, stale, fmt.Errorf("reading report bucket %s: %w", s.cfg.ReportBucket, cctx.Err())
		}
		if e == nil {
			break // initial values done
		}
		r, err := decodeReport(e.Key(), e.Value())
		if err != nil {
			s.log.Warn("ignoring malformed worker report", "key", e.Key(), "err", err)
			continue
		}
		seen[e.Key()] = true
		if age := now.Sub(r.At); age > s.cfg.ReportMaxAge {
			stale[r.Model]++
			s.m.stale(ctx, r.Model)
			if !s.staleSeen[e.Key()].Equal(r.At) {
				s.staleSeen[e.Key()] = r.At
				s.log.Warn("ignoring stale worker report",
					"model", r.Model, "worker", r.WorkerID, "age", age.Round(time.Millisecond),
					"max_age", s.cfg.ReportMaxAge, "reason", "report older than max age: worker stopped, hung or lost its connection")
			}
			continue
		}
		delete(s.staleSeen, e.Key())
		fresh[r.Model] = append(fresh[r.Model], r)
	}
	for k := range s.staleSeen {
		if !seen[k] {
			delete(s.staleSeen, k)
		}
	}
	return fresh, stale, nil
}

func (s *Scheduler) publish(ctx context.Context, h Hint) error {
	b, err := encodeHint(h)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if _, err := s.hintKV.Put(cctx, h.Model, b); err != nil {
		return fmt.Errorf("publishing hint for %s: %w", h.Model, err)
	}
	return nil
}

// logDecision logs a change of the desired count at Info (a fallback at
// Warn, with its reason), and every other decision at Debug.
func (s *Scheduler) logDecision(model string, o Observation, d Decision, prevDesired int, hadPrev bool) {
	args := []any{
		"model", model, "desired", d.Desired, "previous", prevDesired, "reason", string(d.Reason),
		"backlog", d.Backlog, "pending", o.NumPending, "ack_pending", o.NumAckPending, "in_flight", d.InFlight,
		"arrival_rate", d.ArrivalRate, "service_rate", d.ServiceRate, "service_rate_source", d.ServiceRateSource,
		"ready", d.Ready, "raw", d.Raw,
	}
	changed := !hadPrev || d.Desired != prevDesired
	switch {
	case d.Reason == ReasonNoServiceRate && changed:
		args = append(args, "why", "no fresh report carries a service rate and none is remembered or configured: asking for at most the fallback")
		s.log.Warn("sizing without a service rate", args...)
	case changed:
		s.log.Info("scaling decision", args...)
	default:
		s.log.Debug("scaling decision", args...)
	}
}
