package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// Client is the producer side of the contract: it publishes requests for
// one model and collects their results. It is safe for concurrent use.
type Client struct {
	js           jetstream.JetStream
	prefix       string
	model        string
	resultStream string
	prop         propagation.TextMapPropagator
}

// NewClient returns a Client for model. prefix and resultStream default to
// wire.DefaultPrefix and wire.DefaultResultStream when empty. maxPending bounds unacknowledged
// asynchronous publishes (default 256).
func NewClient(nc *nats.Conn, prefix, resultStream, model string, maxPending int) (*Client, error) {
	if prefix == "" {
		prefix = wire.DefaultPrefix
	}
	if resultStream == "" {
		resultStream = wire.DefaultResultStream
	}
	if maxPending <= 0 {
		maxPending = 256
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxPending))
	if err != nil {
		return nil, fmt.Errorf("creating JetStream context: %w", err)
	}
	return &Client{js: js, prefix: prefix, model: model, resultStream: resultStream, prop: propagation.TraceContext{}}, nil
}

// Request is one request to publish.
type Request struct {
	ID       string    // Nats-Msg-Id; must be unique per request (required)
	Job      string    // groups requests; results go to <prefix>.res.<model>.<job>
	Body     []byte    // Arrow IPC stream
	Deadline time.Time // optional
	Priority int       // optional
	Version  string    // optional model version pin
}

// PublishAsync publishes r without waiting for the server, carrying the
// trace context of ctx. The returned future reports the PubAck.
func (c *Client) PublishAsync(ctx context.Context, r Request) (jetstream.PubAckFuture, error) {
	if r.ID == "" {
		return nil, errors.New("publishing request: empty request id")
	}
	h := nats.Header{}
	if r.Job != "" {
		h.Set(wire.HeaderJob, r.Job)
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
	msg := &nats.Msg{Subject: wire.RequestSubject(c.prefix, c.model), Header: h, Data: r.Body}
	fut, err := c.js.PublishMsgAsync(msg, jetstream.WithMsgID(r.ID))
	if err != nil {
		return nil, fmt.Errorf("publishing request %s: %w", r.ID, err)
	}
	return fut, nil
}

// PublishComplete is closed when every asynchronous publish has been
// acknowledged or has failed.
func (c *Client) PublishComplete() <-chan struct{} { return c.js.PublishAsyncComplete() }

// Result is one result message.
type Result struct {
	RequestID string
	Status    codec.Code
	Error     string // human-readable message of an error result
	Body      []byte // Arrow IPC stream (empty for error results)
	Header    nats.Header
	Received  time.Time
}

// Results delivers the results of job, from the first stored one on, to
// fn until fn returns false, ctx ends, or an error occurs. It reads through
// an ephemeral ordered consumer, so it may be called again to re-read.
func (c *Client) Results(ctx context.Context, job string, fn func(Result) bool) error {
	cons, err := c.js.OrderedConsumer(ctx, c.resultStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{wire.ResultSubject(c.prefix, c.model, job)},
	})
	if err != nil {
		return fmt.Errorf("reading results of job %s: %w", job, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("reading results of job %s: %w", job, err)
	}
	defer it.Stop()
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("reading results of job %s: %w", job, err)
		}
		h := msg.Headers()
		r := Result{
			RequestID: h.Get(wire.HeaderRequestID),
			Status:    codec.Code(h.Get(wire.HeaderStatus)),
			Error:     h.Get(wire.HeaderError),
			Body:      msg.Data(),
			Header:    h,
			Received:  time.Now(),
		}
		if !fn(r) {
			return nil
		}
	}
}
