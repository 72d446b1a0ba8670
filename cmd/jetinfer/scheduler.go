package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/jetinfer/jetinfer/scheduler"
)

// schedulerConfig is the configuration of `jetinfer scheduler`, read from
// JETINFER_* environment variables (the tags below, prefixed); flags
// override a few of them. Unset variables keep the defaults of
// scheduler.DefaultConfig.
type schedulerConfig struct {
	NATSURL        string        `env:"NATS_URL"`
	Stream         string        `env:"REQUEST_STREAM"`
	ReportBucket   string        `env:"REPORT_BUCKET"`
	HintBucket     string        `env:"HINT_BUCKET"`
	Listen         string        `env:"SCHEDULER_LISTEN"`
	Models         []string      `env:"SCHEDULER_MODELS" envSeparator:","`
	ModelLimits    string        `env:"SCHEDULER_MODEL_LIMITS"`
	Interval       time.Duration `env:"SCHEDULER_INTERVAL"`
	RequestTimeout time.Duration `env:"SCHEDULER_REQUEST_TIMEOUT"`
	ReportMaxAge   time.Duration `env:"SCHEDULER_REPORT_MAX_AGE"`

	MinReplicas        int           `env:"SCHEDULER_MIN_REPLICAS"`
	MaxReplicas        int           `env:"SCHEDULER_MAX_REPLICAS"`
	TargetDrain        time.Duration `env:"SCHEDULER_TARGET_DRAIN"`
	TargetUtilization  float64       `env:"SCHEDULER_TARGET_UTILIZATION"`
	Hysteresis         float64       `env:"SCHEDULER_HYSTERESIS"`
	ScaleDownWindow    time.Duration `env:"SCHEDULER_SCALE_DOWN_WINDOW"`
	IdleAfter          time.Duration `env:"SCHEDULER_IDLE_AFTER"`
	ArrivalTau         time.Duration `env:"SCHEDULER_ARRIVAL_TAU"`
	DefaultColdStart   time.Duration `env:"SCHEDULER_DEFAULT_COLD_START"`
	DefaultServiceRate float64       `env:"SCHEDULER_DEFAULT_SERVICE_RATE"`
	ServiceRateMemory  time.Duration `env:"SCHEDULER_SERVICE_RATE_MEMORY"`
	FallbackReplicas   int           `env:"SCHEDULER_FALLBACK_REPLICAS"`

	// NATS holds credentials and TLS settings (JETINFER_NATS_CREDS, ...),
	// shared with the worker's configuration.
	NATS natsConfig
}

func defaultSchedulerConfig() schedulerConfig {
	d := scheduler.DefaultConfig()
	p := d.Policy
	return schedulerConfig{
		NATSURL:            nats.DefaultURL,
		Stream:             d.Stream,
		ReportBucket:       d.ReportBucket,
		HintBucket:         d.HintBucket,
		Listen:             ":8080",
		Interval:           d.Interval,
		RequestTimeout:     d.RequestTimeout,
		ReportMaxAge:       d.ReportMaxAge,
		MinReplicas:        p.MinReplicas,
		MaxReplicas:        p.MaxReplicas,
		TargetDrain:        p.TargetDrain,
		TargetUtilization:  p.TargetUtilization,
		Hysteresis:         p.Hysteresis,
		ScaleDownWindow:    p.ScaleDownWindow,
		IdleAfter:          p.IdleAfter,
		ArrivalTau:         p.ArrivalTau,
		DefaultColdStart:   p.DefaultColdStart,
		DefaultServiceRate: p.DefaultServiceRate,
		ServiceRateMemory:  p.ServiceRateMemory,
		FallbackReplicas:   p.FallbackReplicas,
	}
}

// schedulerSettings turns the flat configuration into the package's Config.
func (c schedulerConfig) schedulerSettings() (scheduler.Config, error) {
	cfg := scheduler.DefaultConfig()
	cfg.Stream = c.Stream
	cfg.ReportBucket, cfg.HintBucket = c.ReportBucket, c.HintBucket
	cfg.Interval, cfg.RequestTimeout, cfg.ReportMaxAge = c.Interval, c.RequestTimeout, c.ReportMaxAge
	for _, m := range c.Models {
		if m = strings.TrimSpace(m); m != "" {
			cfg.Models = append(cfg.Models, m)
		}
	}
	cfg.Policy = scheduler.PolicyConfig{
		MinReplicas:        c.MinReplicas,
		MaxReplicas:        c.MaxReplicas,
		TargetDrain:        c.TargetDrain,
		TargetUtilization:  c.TargetUtilization,
		Hysteresis:         c.Hysteresis,
		ScaleDownWindow:    c.ScaleDownWindow,
		IdleAfter:          c.IdleAfter,
		ArrivalTau:         c.ArrivalTau,
		DefaultColdStart:   c.DefaultColdStart,
		DefaultServiceRate: c.DefaultServiceRate,
		ServiceRateMemory:  c.ServiceRateMemory,
		FallbackReplicas:   c.FallbackReplicas,
	}
	limits, err := parseModelLimits(c.ModelLimits)
	if err != nil {
		return cfg, err
	}
	cfg.Limits = limits
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("validating scheduler configuration: %w", err)
	}
	return cfg, nil
}

// parseModelLimits parses "digits=0:4,resnet=1:16" (model=min:max).
func parseModelLimits(s string) (map[string]scheduler.Limits, error) {
	out := map[string]scheduler.Limits{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		model, bounds, ok := strings.Cut(item, "=")
		lo, hi, ok2 := strings.Cut(bounds, ":")
		if !ok || !ok2 {
			return nil, fmt.Errorf("JETINFER_SCHEDULER_MODEL_LIMITS: %q is not model=min:max", item)
		}
		minR, err1 := strconv.Atoi(lo)
		maxR, err2 := strconv.Atoi(hi)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("JETINFER_SCHEDULER_MODEL_LIMITS: %q is not model=min:max: %w", item, err)
		}
		out[strings.TrimSpace(model)] = scheduler.Limits{Min: minR, Max: maxR}
	}
	return out, nil
}

// schedulerCmd implements `jetinfer scheduler`: it watches every model's
// consumer and worker reports, publishes scaling hints to the hint bucket
// and serves them, with /metrics, /healthz and /readyz, on one HTTP
// listener until ctx is cancelled.
func schedulerCmd(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	c := defaultSchedulerConfig()
	if err := parseEnv(&c); err != nil {
		return err
	}
	fs := newFlagSet("scheduler", "[flags]", "Compute desired worker replicas per model from JetStream backlog and worker\n"+
		"reports; publish them to a KV bucket and serve them over HTTP for KEDA.\n"+
		"Settings come from JETINFER_* environment variables (docs/scaling.md); the\n"+
		"flags below override a few of them.", stderr)
	fs.StringVar(&c.NATSURL, "nats", c.NATSURL, "NATS server URL (JETINFER_NATS_URL)")
	fs.StringVar(&c.NATS.CredsFile, "nats-creds", c.NATS.CredsFile, "NATS credentials file (JETINFER_NATS_CREDS)")
	fs.StringVar(&c.Listen, "listen", c.Listen, "HTTP listen address for hints and /metrics (JETINFER_SCHEDULER_LISTEN)")
	models := fs.String("models", strings.Join(c.Models, ","), "comma-separated models; empty: discover consumers (JETINFER_SCHEDULER_MODELS)")
	fs.IntVar(&c.MinReplicas, "min-replicas", c.MinReplicas, "replica floor; 0 allows scale to zero (JETINFER_SCHEDULER_MIN_REPLICAS)")
	fs.IntVar(&c.MaxReplicas, "max-replicas", c.MaxReplicas, "replica cap (JETINFER_SCHEDULER_MAX_REPLICAS)")
	fs.DurationVar(&c.Interval, "interval", c.Interval, "time between decisions (JETINFER_SCHEDULER_INTERVAL)")
	fs.DurationVar(&c.TargetDrain, "target-drain", c.TargetDrain, "drain the backlog within (JETINFER_SCHEDULER_TARGET_DRAIN)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.Models = strings.Split(*models, ",")
	cfg, err := c.schedulerSettings()
	if err != nil {
		return err
	}

	b := readBuild()
	res, err := newResource("jetinfer-scheduler", b)
	if err != nil {
		return err
	}
	// Take the port first, so that a port in use is reported at once.
	ln, err := listen(c.Listen, "JETINFER_SCHEDULER_LISTEN")
	if err != nil {
		return err
	}
	defer ln.Close()

	nc, err := c.NATS.connect(c.NATSURL, "jetinfer scheduler", log)
	if err != nil {
		return err
	}
	defer func() { _ = nc.Drain() }()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("creating JetStream context: %w", err)
	}

	mp, reg, metricsHandler, err := newPrometheus(res, b)
	if err != nil {
		return err
	}
	defer func() { _ = mp.Shutdown(context.WithoutCancel(ctx)) }()
	reg.MustRegister(natsConnectedGauge(nc))

	s, err := scheduler.New(ctx, js, cfg, scheduler.WithLogger(log), scheduler.WithMeterProvider(mp))
	if err != nil {
		return fmt.Errorf("starting scheduler: %w", err)
	}

	mux := http.NewServeMux()
	mux.Handle("/", s.Handler())
	mux.Handle("GET /metrics", metricsHandler)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stdout, "jetinfer scheduler: hints on http://%s/v1/models/{model}/hint, metrics on /metrics\n", ln.Addr())
	log.Info("scheduler listening", "addr", ln.Addr().String(), "nats", c.NATSURL, "stream", cfg.Stream)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.Run(gctx) })
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving HTTP: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	return g.Wait()
}
