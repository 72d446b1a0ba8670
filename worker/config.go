package worker

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jetinfer/jetinfer/worker/models"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// Config configures a Worker. The env tags are relative: binaries parse
// them with the JETINFER_ prefix (JETINFER_MODEL, JETINFER_MAX_DELAY, ...).
// Zero values are replaced by the defaults documented on each field.
type Config struct {
	// Prefix is the first token of every subject (default "jetinfer").
	Prefix string `env:"SUBJECT_PREFIX"`
	// Model is the model name served; requests arrive on <prefix>.req.<model>.
	Model string `env:"MODEL"`
	// ModelVersion is reported in result headers and matched against a
	// request's Jetinfer-Model-Version pin (default "1"). A worker serving
	// from the model repository (WithSource) reports the version it loaded
	// instead.
	ModelVersion string `env:"MODEL_VERSION"`
	// ModelAlias makes a worker serving from the model repository follow
	// an alias of the model ("canary", "stable") instead of its active
	// version: it serves the version the alias names and swaps when the
	// alias moves, ignoring promotions. Empty or "active" (the default)
	// follows the active version. Needs a repository source (WithSource).
	ModelAlias string `env:"MODEL_ALIAS"`
	// PinnedWait bounds how long a request pinned to a version this
	// worker does not serve keeps being handed back for a worker that
	// serves it, counted from its deliveries (default 2m); then it is
	// answered FAILED_PRECONDITION (docs/models.md, "Pinned versions").
	PinnedWait time.Duration `env:"PINNED_WAIT"`
	// GateRTol and GateATol are the accuracy gate's tolerance: before a
	// worker switches to a version with reference data, every reference
	// output element must satisfy |got − ref| ≤ GateATol + GateRTol·|ref|
	// (defaults 1e-2 and 1e-3, models.DefaultTolerance; 0 means the
	// default).
	GateRTol float64 `env:"GATE_RTOL"`
	GateATol float64 `env:"GATE_ATOL"`

	// RequestStream and ResultStream name the two streams
	// (defaults wire.DefaultRequestStream and wire.DefaultResultStream).
	RequestStream string `env:"REQUEST_STREAM"`
	ResultStream  string `env:"RESULT_STREAM"`
	// Replicas is the stream replication factor (default 1).
	Replicas int `env:"STREAM_REPLICAS"`
	// UseExistingStreams binds to the consumer that `jetinfer streams` (or
	// an administrator) created instead of creating or updating streams
	// and consumer at start-up, so that workers need no stream-management
	// permissions.
	UseExistingStreams bool `env:"USE_EXISTING_STREAMS"`
	// MemoryStorage stores streams in memory instead of files (tests).
	MemoryStorage bool `env:"MEMORY_STORAGE"`
	// DuplicateWindow is both streams' Nats-Msg-Id window (default 2m).
	DuplicateWindow time.Duration `env:"DUPLICATE_WINDOW"`
	// ResultMaxAge is how long results are kept (default 24h).
	ResultMaxAge time.Duration `env:"RESULT_MAX_AGE"`
	// MaxMsgSize bounds a request body plus headers (default 8 MiB). It
	// must not exceed the server's max_payload.
	MaxMsgSize ByteSize `env:"MAX_MSG_SIZE"`

	// AckWait is the consumer's ack wait (default 30s).
	AckWait time.Duration `env:"ACK_WAIT"`
	// MaxAttempts is the number of failed engine attempts after which a
	// request gets an INTERNAL error result (default 5). Only failures of
	// the engine on that request count: hand-backs on shutdown,
	// redeliveries after a crash and result-side outages do not.
	MaxAttempts int `env:"MAX_ATTEMPTS"`
	// MaxDeliveries guards against a request that kills every worker that
	// runs it (a crash inside native code leaves no failure to count): a
	// request delivered this many times without being settled is answered
	// INTERNAL without running it (default 100).
	MaxDeliveries int `env:"MAX_DELIVERIES"`
	// RetryBackoff is the first redelivery delay after a transient failure;
	// it doubles per attempt up to 30s (default 500ms).
	RetryBackoff time.Duration `env:"RETRY_BACKOFF"`
	// MaxAckPending bounds requests delivered but not yet acked across all
	// workers of the model (default 4096).
	MaxAckPending int `env:"MAX_ACK_PENDING"`

	// MaxPullBytes bounds the bytes of requests the worker holds, from
	// the client's pull buffer to settle (default 64 MiB). A quarter of it,
	// at most 16 MiB and at least twice the largest request, is the pull
	// buffer; the rest is the pipeline. Pulling pauses while it is spent.
	// Keep it well below the server's per-connection max_pending (64 MiB
	// by default), which the pull buffer alone can never reach.
	MaxPullBytes ByteSize `env:"MAX_PULL_BYTES"`
	// MaxInflightRows bounds the rows of requests held in the pipeline
	// (default 65536, at least MaxRequestRows); it is also the batcher's
	// queue limit, so a request is never refused for want of room.
	MaxInflightRows int `env:"MAX_INFLIGHT_ROWS"`
	// MaxBatchRows is the most rows coalesced into one engine batch
	// (default: the engine profile's max batch, at most 64).
	MaxBatchRows int `env:"MAX_BATCH_ROWS"`
	// MaxDelay is the longest a row waits for company before its batch
	// is released (default 2ms); deadlines may release it sooner.
	MaxDelay time.Duration `env:"MAX_DELAY"`
	// MaxPadding caps the fraction of padded positions in a batch of
	// ragged rows (default 0.1).
	MaxPadding float64 `env:"MAX_PADDING"`
	// MaskInputs and LengthInputs name engine inputs the worker fills
	// itself for padded sequence batches (1/0 masks; row lengths).
	// Default: inputs named "mask" or "attention_mask" of shape
	// [batch, seq] are masks.
	MaskInputs   []string `env:"MASK_INPUTS" envSeparator:","`
	LengthInputs []string `env:"LENGTH_INPUTS" envSeparator:","`
	// CostModelPath keeps the engine latency model measured at warm-up,
	// so that a restart does not measure again ("" measures every start).
	CostModelPath string `env:"COST_MODEL_PATH"`
	// MaxRequestRows bounds the rows of one request (default 65536).
	MaxRequestRows int `env:"MAX_REQUEST_ROWS"`
	// RejectNonFinite answers requests holding NaN or Inf with an
	// INVALID_ARGUMENT error result.
	RejectNonFinite bool `env:"REJECT_NON_FINITE"`
	// Executors is the number of batches run concurrently (default 2:
	// one runs while the next is gathered; match the TensorRT contexts).
	// `jetinfer worker` defaults it per backend (backend.Executors).
	Executors int `env:"EXECUTORS"`
	// PublishInflight bounds results published but not yet acknowledged
	// by the server (default 32).
	PublishInflight int `env:"PUBLISH_INFLIGHT"`
	// PublishTimeout bounds the wait for one result's PubAck (default 10s).
	PublishTimeout time.Duration `env:"PUBLISH_TIMEOUT"`
	// DrainTimeout bounds shutdown after the context is cancelled
	// (default 25s; keep it below the pod's termination grace period).
	DrainTimeout time.Duration `env:"DRAIN_TIMEOUT"`

	// WorkerID names this worker in scaling reports (default
	// "<hostname>-<pid>", e.g. the pod name).
	WorkerID string `env:"WORKER_ID"`
	// ReportInterval is how often the worker publishes its measurements
	// for the scheduler (default 5s; negative disables reports).
	ReportInterval time.Duration `env:"REPORT_INTERVAL"`
	// ReportBucket is the KV bucket of worker reports (default
	// wire.DefaultReportBucket; must match the scheduler's).
	ReportBucket string `env:"REPORT_BUCKET"`
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	set := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setD := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setB := func(p *ByteSize, v ByteSize) {
		if *p == 0 {
			*p = v
		}
	}
	setS := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setS(&c.Prefix, wire.DefaultPrefix)
	setS(&c.ModelVersion, "1")
	setD(&c.PinnedWait, 2*time.Minute)
	setS(&c.RequestStream, wire.DefaultRequestStream)
	setS(&c.ResultStream, wire.DefaultResultStream)
	set(&c.Replicas, 1)
	setD(&c.DuplicateWindow, 2*time.Minute)
	setD(&c.ResultMaxAge, 24*time.Hour)
	setB(&c.MaxMsgSize, 8*MiB)
	setD(&c.AckWait, 30*time.Second)
	set(&c.MaxAttempts, 5)
	set(&c.MaxDeliveries, 100)
	setD(&c.RetryBackoff, 500*time.Millisecond)
	set(&c.MaxAckPending, 4096)
	setB(&c.MaxPullBytes, 64*MiB)
	setD(&c.MaxDelay, 2*time.Millisecond)
	set(&c.MaxRequestRows, 65536)
	set(&c.MaxInflightRows, 65536)
	c.MaxInflightRows = max(c.MaxInflightRows, c.MaxRequestRows)
	set(&c.Executors, 2)
	set(&c.PublishInflight, 32)
	setD(&c.PublishTimeout, 10*time.Second)
	setD(&c.DrainTimeout, 25*time.Second)
	setD(&c.ReportInterval, 5*time.Second)
	setS(&c.ReportBucket, wire.DefaultReportBucket)
	if c.WorkerID == "" {
		host, _ := os.Hostname()
		c.WorkerID = wire.Tokenize(fmt.Sprintf("%s-%d", host, os.Getpid()))
	}
	return c
}

// gateTolerance is the accuracy gate's tolerance with defaults applied.
func (c Config) gateTolerance() models.Tolerance {
	t := models.DefaultTolerance
	if c.GateRTol > 0 {
		t.RTol = c.GateRTol
	}
	if c.GateATol > 0 {
		t.ATol = c.GateATol
	}
	return t
}

// MemoryBound is the resident memory a worker process running with c
// stays under, in bytes: 128 MiB for the Go runtime, the engine (ONNX
// Runtime and the model, batch buffers), results awaiting their PubAck and
// the client's own buffers, plus twice MaxPullBytes: the request bytes the
// worker holds (pull buffer and pipeline) and as much again for their
// outputs and for garbage the collector has not yet reclaimed. Binaries
// set the Go runtime's soft memory limit from it (GOMEMLIMIT wins), so
// that collection tightens as the bound nears. docs/reliability.md checks
// it under a flood of 4 MiB requests.
func MemoryBound(c Config) int64 {
	c = c.withDefaults()
	return 128<<20 + 2*int64(c.MaxPullBytes)
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Model == "" {
		errs = append(errs, errors.New("model name is empty"))
	}
	for _, tok := range []struct{ name, v string }{{"subject prefix", c.Prefix}, {"model", c.Model}, {"worker id", c.WorkerID}} {
		if !wire.ValidToken(tok.v) {
			errs = append(errs, fmt.Errorf("%s %q must be one subject token: letters, digits, '-' or '_'", tok.name, tok.v))
		}
	}
	if c.MaxBatchRows < 0 || c.MaxRequestRows < 0 || c.Executors < 0 || c.PublishInflight < 0 {
		errs = append(errs, errors.New("row, executor and in-flight limits must not be negative"))
	}
	if c.MaxAttempts < 1 || c.MaxDeliveries < c.MaxAttempts {
		errs = append(errs, fmt.Errorf("max attempts %d must be at least 1 and max deliveries %d at least max attempts", c.MaxAttempts, c.MaxDeliveries))
	}
	if c.ModelAlias != "" {
		if err := models.CheckAlias(c.ModelAlias); err != nil {
			errs = append(errs, fmt.Errorf("model alias: %w", err))
		}
	}
	if c.GateRTol < 0 || c.GateATol < 0 {
		errs = append(errs, fmt.Errorf("accuracy gate tolerance rtol %v, atol %v: must not be negative", c.GateRTol, c.GateATol))
	}
	if n := pinDeliveries(c.PinnedWait); n+uint64(c.MaxAttempts) >= uint64(c.MaxDeliveries) {
		errs = append(errs, fmt.Errorf("pinned wait %v takes about %d deliveries of hand-backs; with max attempts %d that reaches max deliveries %d",
			c.PinnedWait, n, c.MaxAttempts, c.MaxDeliveries))
	}
	if c.MaxDelay < 0 || c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("max delay %v must be ≥ 0 and ack wait %v ≥ 1s", c.MaxDelay, c.AckWait))
	}
	return errors.Join(errs...)
}
