package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/trt/backend"
	"github.com/jetinfer/jetinfer/worker"
)

// workerConfig is `jetinfer worker`'s configuration, from JETINFER_* env.
type workerConfig struct {
	NATSURL   string `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	Embedded  bool   `env:"EMBEDDED"`
	EmbedPort int    `env:"EMBEDDED_PORT" envDefault:"4222"`
	EmbedDir  string `env:"EMBEDDED_STORE_DIR"`
	// HTTPListen serves /metrics, /healthz, /readyz and /drain; empty
	// disables the server.
	HTTPListen string `env:"HTTP_LISTEN" envDefault:":9464"`
	// Profiling serves Go's profiler (net/http/pprof) under /debug/pprof/
	// on HTTPListen. Off by default: profiles reveal internals and a CPU
	// profile costs CPU while it runs.
	Profiling bool `env:"PPROF"`
	// Source says where the engine comes from: "file"
	// (JETINFER_MODEL_PATH or JETINFER_PLAN_PATH, for the life of the
	// process) or "repository" (the model repository's active version of
	// JETINFER_MODEL, resolved for this node and swapped when it changes).
	Source string `env:"MODEL_SOURCE" envDefault:"file"`
	Repo   repoConfig

	Engine backendConfig
	Worker worker.Config
	NATS   natsConfig
}

// workerAbout describes the commands that read workerConfig.
var workerAbout = map[string]string{
	"worker": "Serve a model from JetStream: pull requests, batch them on the engine, publish\n" +
		"results. Settings come from JETINFER_* environment variables (README,\n" +
		"Configuration); the flags below override a few of them.",
	"streams": "Create or update the request and result streams and the model's consumer with\n" +
		"the worker's settings (JETINFER_* environment variables), then exit.",
}

// parse reads c from the environment, then from the flags of command
// name ("worker" or "streams").
func (c *workerConfig) parse(name string, args []string, stderr io.Writer) error {
	return c.parseWith(name, args, stderr, nil)
}

// parseWith is parse with extra flags of the command's own.
func (c *workerConfig) parseWith(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) error {
	c.Worker.Model = "digits"
	if err := parseEnv(c); err != nil {
		return err
	}
	fs := newFlagSet(name, "[flags]", workerAbout[name], stderr)
	if extra != nil {
		extra(fs)
	}
	fs.BoolVar(&c.Embedded, "embedded", c.Embedded, "start an in-process JetStream server (JETINFER_EMBEDDED)")
	fs.StringVar(&c.NATSURL, "nats", c.NATSURL, "NATS server URL (JETINFER_NATS_URL)")
	fs.StringVar(&c.Worker.Model, "model", c.Worker.Model, "model name served (JETINFER_MODEL)")
	fs.StringVar(&c.Engine.ModelPath, "model-path", c.Engine.ModelPath, "ONNX model file (JETINFER_MODEL_PATH)")
	fs.StringVar(&c.Engine.Backend, "backend", c.Engine.Backend, "auto, tensorrt or onnxruntime (JETINFER_BACKEND)")
	fs.StringVar(&c.Engine.PlanPath, "plan", c.Engine.PlanPath, "TensorRT plan; manifest at <plan>.json (JETINFER_PLAN_PATH)")
	fs.StringVar(&c.Worker.ModelAlias, "model-alias", c.Worker.ModelAlias, "with -source repository: follow this alias of the model (canary, stable, ...) instead of its active version (JETINFER_MODEL_ALIAS)")
	fs.StringVar(&c.Source, "source", c.Source, "where the engine comes from: file (--model-path, --plan) or repository (the model repository's active version) (JETINFER_MODEL_SOURCE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.Source != sourceFile && c.Source != sourceRepository {
		return fmt.Errorf("JETINFER_MODEL_SOURCE=%q: want %s or %s", c.Source, sourceFile, sourceRepository)
	}
	if c.Worker.ModelAlias != "" && c.Source != sourceRepository {
		return fmt.Errorf("JETINFER_MODEL_ALIAS=%q needs JETINFER_MODEL_SOURCE=%s", c.Worker.ModelAlias, sourceRepository)
	}
	return c.Worker.Validate()
}

func workerCmd(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	started := time.Now()
	var cfg workerConfig
	if err := cfg.parse("worker", args, stderr); err != nil {
		return err
	}
	b := readBuild()
	res, err := newResource("jetinfer-worker", b)
	if err != nil {
		return err
	}
	// Take the HTTP port first, so that a port in use is reported before
	// anything slow starts.
	var ln net.Listener
	if cfg.HTTPListen != "" {
		if ln, err = listen(cfg.HTTPListen, "JETINFER_HTTP_LISTEN"); err != nil {
			return err
		}
		defer ln.Close()
	}
	url := cfg.NATSURL
	if cfg.Embedded {
		dir := cfg.EmbedDir
		if dir == "" {
			dir = filepath.Join(os.TempDir(), "jetinfer-embedded")
		}
		ns, err := startEmbedded(cfg.EmbedPort, dir, int32(max(cfg.Worker.MaxMsgSize, 8<<20)))
		if err != nil {
			return err
		}
		defer ns.Shutdown()
		url = ns.ClientURL()
		log.Info("embedded JetStream server started", "url", url, "store_dir", dir)
	}
	nc, err := cfg.NATS.connect(url, "jetinfer worker "+cfg.Worker.Model, log)
	if err != nil {
		return err
	}
	defer nc.Close()

	tp, shutdownTracing, err := newTracerProvider(ctx, res, 4096)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			log.Warn("flushing traces", "err", err)
		}
	}()
	mp, reg, metricsHandler, err := newPrometheus(res, b)
	if err != nil {
		return err
	}
	defer func() { _ = mp.Shutdown(context.WithoutCancel(ctx)) }()
	reg.MustRegister(natsConnectedGauge(nc))
	metrics, err := worker.NewMetrics(mp, cfg.Worker.Model)
	if err != nil {
		return err
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// Leave 64 MiB of the bound to memory the Go runtime does not
		// count (ONNX Runtime, TensorRT, CUDA).
		bound := worker.MemoryBound(cfg.Worker)
		debug.SetMemoryLimit(bound - 64<<20)
		log.Info("memory bound", "bytes", bound, "go_soft_limit", bound-64<<20)
	}
	opts := []worker.Option{worker.WithLogger(log), worker.WithTracerProvider(tp),
		worker.WithMetrics(metrics), worker.WithStartTime(started)}
	var eng worker.Engine
	if cfg.Source == sourceRepository {
		// The worker opens, swaps and closes its engines itself; the ONNX
		// Runtime environment they share is closed after it stops.
		js, err := jetstream.New(nc)
		if err != nil {
			return fmt.Errorf("creating JetStream context: %w", err)
		}
		repo, err := cfg.Repo.open(ctx, js, log)
		if err != nil {
			return err
		}
		engines := &repoEngines{cfg: cfg.Engine, log: log}
		defer func() {
			if err := engines.close(); err != nil {
				log.Warn("closing ONNX Runtime", "err", err)
			}
		}()
		node := engines.node()
		if cfg.Worker.Executors == 0 && (node.TensorRT == "" || cfg.Engine.Backend == backend.ONNXRuntime) {
			cfg.Worker.Executors = backend.Executors(backend.ONNXRuntime) // every version runs on ONNX Runtime here
		}
		log.Info("serving from the model repository", "model", cfg.Worker.Model, "alias", orDash(cfg.Worker.ModelAlias), "node_gpu", node.GPU.Name,
			"tensorrt", orDash(node.TensorRT), "cache_dir", repo.CacheDir(), "cache_max_bytes", repo.CacheMaxBytes())
		opts = append(opts, worker.WithSource(worker.Source{Repository: repo, Node: node, Open: engines.open}))
	} else {
		e, choice, closeEngine, err := openEngine(ctx, cfg.Engine, log)
		if err != nil {
			return err
		}
		defer closeEngine()
		eng = e
		if cfg.Worker.Executors == 0 {
			cfg.Worker.Executors = backend.Executors(choice.Backend)
		}
	}
	w, err := worker.New(nc, eng, cfg.Worker, opts...)
	if err != nil {
		return err
	}

	// The worker runs until a signal or POST /drain; the HTTP server
	// outlives it so that /drain can answer once the drain is complete.
	wctx, drain := context.WithCancel(ctx)
	defer drain()
	drained := make(chan struct{})
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	if ln != nil {
		ready := func() bool { return w.Ready() && nc.IsConnected() }
		serveHTTP(httpCtx, ln, workerHandler(metricsHandler, ready, drain, drained, cfg.Profiling), log)
		log.Info("worker HTTP listening", "addr", ln.Addr().String())
	}
	err = w.Run(wctx)
	close(drained)
	if err != nil {
		return err
	}
	if err := nc.Drain(); err != nil {
		log.Warn("draining NATS connection", "err", err)
	}
	return nil
}

// natsConfig holds connection settings and credentials, from JETINFER_NATS_*.
type natsConfig struct {
	CredsFile string `env:"NATS_CREDS"`
	NKeySeed  string `env:"NATS_NKEY_SEED_FILE"`
	User      string `env:"NATS_USER"`
	Password  string `env:"NATS_PASSWORD"`
	Token     string `env:"NATS_TOKEN"`
	CAFile    string `env:"NATS_TLS_CA"`
	CertFile  string `env:"NATS_TLS_CERT"`
	KeyFile   string `env:"NATS_TLS_KEY"`
	// InboxPrefix replaces "_INBOX" in reply subjects, so that permissions
	// can give each user a private inbox (docs/security.md).
	InboxPrefix string `env:"NATS_INBOX_PREFIX"`
}

// connect dials url with the configured credentials. The connection
// reconnects forever; name identifies it in the server's monitoring.
func (c natsConfig) connect(url, name string, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "url", nc.ConnectedUrl()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			// Permission violations and slow consumers arrive here.
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("NATS error", "err", err, "subject", subject)
		}),
	}
	if c.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(c.InboxPrefix))
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.NKeySeed != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("reading NKey seed %s: %w", c.NKeySeed, err)
		}
		opts = append(opts, o)
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.CAFile))
	}
	if c.CertFile != "" || c.KeyFile != "" {
		opts = append(opts, nats.ClientCert(c.CertFile, c.KeyFile))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", url, err)
	}
	return nc, nil
}
