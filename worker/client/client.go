package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// Config configures a Client. Zero values take the defaults named on each
// field; only Model is required.
type Config struct {
	Model         string        // model to send requests to (required)
	Prefix        string        // subject prefix (default wire.DefaultPrefix)
	RequestStream string        // request stream (default wire.DefaultRequestStream)
	ResultStream  string        // result stream (default wire.DefaultResultStream)
	JobBucket     string        // KV bucket of job records (default DefaultJobBucket)
	MaxPending    int           // unacknowledged asynchronous publishes (default 256)
	Retries       int           // publish attempts after the first, same Nats-Msg-Id (default 10)
	Backoff       time.Duration // first retry delay, doubled up to MaxBackoff (default 100ms)
	MaxBackoff    time.Duration // longest retry delay (default 5s)
	Timeout       time.Duration // wait for one PubAck (default 5s)
	Logger        *slog.Logger  // default: discard
}

// DefaultJobBucket is the KV bucket that holds job records.
const DefaultJobBucket = wire.DefaultJobBucket

func (c Config) withDefaults() Config {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Prefix, wire.DefaultPrefix)
	def(&c.RequestStream, wire.DefaultRequestStream)
	def(&c.ResultStream, wire.DefaultResultStream)
	def(&c.JobBucket, DefaultJobBucket)
	if c.MaxPending <= 0 {
		c.MaxPending = 256
	}
	if c.Retries == 0 {
		c.Retries = 10
	}
	if c.Backoff <= 0 {
		c.Backoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	switch {
	case !wire.ValidToken(c.Model):
		return fmt.Errorf("model %q: want a subject token (letters, digits, '-', '_')", c.Model)
	case !wire.ValidToken(c.Prefix) && wire.CheckSubject(c.Prefix) != nil:
		return fmt.Errorf("prefix %q is not a subject", c.Prefix)
	case c.Retries < 0:
		return fmt.Errorf("retries %d: want ≥ 0", c.Retries)
	}
	return nil
}

// Client is the producer side of the contract: it publishes requests for
// one model and collects their results. It is safe for concurrent use.
type Client struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	cfg  Config
	prop propagation.TextMapPropagator
	log  *slog.Logger
}

// New returns a Client for cfg.Model on nc.
func New(nc *nats.Conn, cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validating client config: %w", err)
	}
	// The asynchronous publish timeout fails a PubAck that never comes
	// (a server restarted before storing the message), so that Run
	// publishes again instead of waiting forever, and frees its slot.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(cfg.MaxPending),
		jetstream.WithPublishAsyncTimeout(cfg.Timeout))
	if err != nil {
		return nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	return &Client{nc: nc, js: js, cfg: cfg, prop: propagation.TraceContext{}, log: cfg.Logger}, nil
}

// Config returns the client's configuration with defaults applied.
func (c *Client) Config() Config { return c.cfg }

// Request is one request to publish.
type Request struct {
	ID       string    // Nats-Msg-Id; must be unique per request (required)
	Job      string    // groups requests; results go to <prefix>.res.<model>.<job>
	ReplyTo  string    // result subject under <prefix>.res.<model>. (default: from Job)
	Body     []byte    // Arrow IPC stream
	Deadline time.Time // optional: answered DEADLINE_EXCEEDED after it
	Priority int       // optional: higher runs first among requests without a deadline
	Version  string    // optional model version pin
}

// msg builds the NATS message of r, carrying the trace context of ctx.
func (c *Client) msg(ctx context.Context, r Request) (*nats.Msg, error) {
	if r.ID == "" {
		return nil, errors.New("publishing request: empty request id")
	}
	h := nats.Header{}
	if r.Job != "" {
		h.Set(wire.HeaderJob, r.Job)
	}
	if r.ReplyTo != "" {
		if err := wire.CheckReplyTo(c.cfg.Prefix, c.cfg.Model, r.ReplyTo); err != nil {
			return nil, fmt.Errorf("publishing request %s: %w", r.ID, err)
		}
		h.Set(wire.HeaderReplyTo, r.ReplyTo)
	}
	if !r.Deadline.IsZero() {
		h.Set(wire.HeaderDeadline, r.Deadline.UTC().Format(time.RFC3339Nano))
	}
	if r.Priority != 0 {
		h.Set(wire.HeaderPriority, strconv.Itoa(r.Priority))
	}
	if r.Version != "" {
		h.Set(wire.HeaderModelVersion, r.Version)
	}
	c.prop.Inject(ctx, wire.HeaderCarrier(h))
	return &nats.Msg{Subject: wire.RequestSubject(c.cfg.Prefix, c.cfg.Model), Header: h, Data: r.Body}, nil
}

// PublishAsync publishes r without waiting for the server, carrying the
// trace context of ctx. The returned future reports the PubAck; it does
// not retry (Publish does).
func (c *Client) PublishAsync(ctx context.Context, r Request) (jetstream.PubAckFuture, error) {
	m, err := c.msg(ctx, r)
	if err != nil {
		return nil, err
	}
	fut, err := c.js.PublishMsgAsync(m, jetstream.WithMsgID(r.ID))
	if err != nil {
		return nil, fmt.Errorf("publishing request %s: %w", r.ID, err)
	}
	return fut, nil
}

// PublishComplete is closed when every asynchronous publish has been
// acknowledged or has failed.
func (c *Client) PublishComplete() <-chan struct{} { return c.js.PublishAsyncComplete() }

// Publish publishes r and waits for its PubAck, retrying with exponential
// backoff (Config.Backoff doubling up to Config.MaxBackoff, Config.Retries
// times) under the same Nats-Msg-Id, so that a retry of a request the
// server already stored is answered as a duplicate and stored once. It
// gives up when ctx ends or the server rejects the message for good (too
// large, no stream for the subject).
func (c *Client) Publish(ctx context.Context, r Request) (*jetstream.PubAck, error) {
	m, err := c.msg(ctx, r)
	if err != nil {
		return nil, err
	}
	delay := c.cfg.Backoff
	for attempt := 0; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		ack, err := c.js.PublishMsg(pctx, m, jetstream.WithMsgID(r.ID))
		cancel()
		if err == nil {
			return ack, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("publishing request %s: %w", r.ID, ctx.Err())
		}
		if permanent(err) || attempt >= c.cfg.Retries {
			return nil, fmt.Errorf("publishing request %s (attempt %d): %w", r.ID, attempt+1, err)
		}
		c.log.Debug("publish retry", "request_id", r.ID, "attempt", attempt+1, "delay", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("publishing request %s: %w", r.ID, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, c.cfg.MaxBackoff)
	}
}

// permanent reports publish errors that a retry cannot fix: a message
// larger than the server or stream allows, or another request the server
// answered 400 (bad request).
func permanent(err error) bool {
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
		return true
	}
	var je jetstream.JetStreamError
	return errors.As(err, &je) && je.APIError() != nil && je.APIError().Code == 400
}

// Result is one result message.
type Result struct {
	RequestID string
	Status    codec.Code
	Error     string // human-readable message of an error result
	Body      []byte // Arrow IPC stream (empty for error results)
	Header    nats.Header
	Received  time.Time
	// StreamSeq is the result's sequence in the result stream (0 when it
	// was not read from the stream).
	StreamSeq uint64
}

// OK reports whether the result is a success.
func (r Result) OK() bool { return r.Status == codec.CodeOK }

// Err returns nil for a success, else a *codec.Error with the result's
// code and message.
func (r Result) Err() error {
	if r.OK() {
		return nil
	}
	return &codec.Error{Code: r.Status, Msg: r.Error}
}

// Decode decodes the body of a successful result into tensors, one column
// per engine output, aliasing r.Body (see codec.DecodeResult). Release the
// returned value when done.
func (r Result) Decode(lim codec.Limits) (*codec.Result, error) {
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("decoding result of %s: %w", r.RequestID, err)
	}
	res, err := codec.DecodeResult(r.Body, lim)
	if err != nil {
		return nil, fmt.Errorf("decoding result of %s: %w", r.RequestID, err)
	}
	return res, nil
}

func resultOf(h nats.Header, body []byte) Result {
	return Result{
		RequestID: h.Get(wire.HeaderRequestID),
		Status:    codec.Code(h.Get(wire.HeaderStatus)),
		Error:     h.Get(wire.HeaderError),
		Body:      body,
		Header:    h,
		Received:  time.Now(),
	}
}

// Results delivers the results of job stored on its default subject, from
// the first stored one on, to fn until fn returns false, ctx ends, or an
// error occurs. It reads through an ephemeral ordered consumer, so it may
// be called again to re-read.
func (c *Client) Results(ctx context.Context, job string, fn func(Result) bool) error {
	return c.results(ctx, wire.ResultSubject(c.cfg.Prefix, c.cfg.Model, job), 0, fn)
}

// resultBufferBytes bounds the result bytes the client buffers ahead of fn.
const resultBufferBytes = 16 << 20

// resultConsumerIdle is how long the server keeps a results reader's
// ordered consumer once nothing pulls from it (nats.go's default is five
// minutes, for a consumer no client will use again). A reader paused for
// longer loses nothing: the ordered consumer is recreated from the next
// stream sequence.
const resultConsumerIdle = 30 * time.Second

// results reads the result stream on filter from stream sequence
// startSeq (0: the first) on.
func (c *Client) results(ctx context.Context, filter string, startSeq uint64, fn func(Result) bool) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}}
	if startSeq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, startSeq
	}
	return c.consume(ctx, cfg, fn)
}

// consume reads the result stream through an ordered consumer of cfg,
// handing each message to fn until fn returns false, ctx ends or an error
// occurs.
func (c *Client) consume(ctx context.Context, cfg jetstream.OrderedConsumerConfig, fn func(Result) bool) error {
	filter := strings.Join(cfg.FilterSubjects, ",")
	if cfg.InactiveThreshold == 0 {
		cfg.InactiveThreshold = resultConsumerIdle
	}
	cons, err := c.js.OrderedConsumer(ctx, c.cfg.ResultStream, cfg)
	if err != nil {
		return fmt.Errorf("reading results on %s: %w", filter, err)
	}
	it, err := cons.Messages(jetstream.PullMaxBytes(resultBufferBytes))
	if err != nil {
		return fmt.Errorf("reading results on %s: %w", filter, err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("reading results on %s: %w", filter, err)
		}
		res := resultOf(msg.Headers(), msg.Data())
		if md, err := msg.Metadata(); err == nil {
			res.StreamSeq = md.Sequence.Stream
		}
		if !fn(res) {
			return nil
		}
	}
}
