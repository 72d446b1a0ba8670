package traffic

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// Request is one request to send and what its result must be.
type Request struct {
	// ID is the request's Nats-Msg-Id.
	ID string
	// Header holds the other request headers (Jetinfer-Job, deadline...).
	Header nats.Header
	// Body is the Arrow IPC request body.
	Body []byte
	// Want lists the acceptable result statuses.
	Want []codec.Code
	// Mention lists substrings an error result's message must contain.
	Mention []string
	// Kind names the request's category in reports (a malformed kind).
	Kind string
	// Check verifies the body of an OK result; nil accepts any OK body
	// (a body with flipped bits that still decodes).
	Check func(body []byte) error
	// ResultID is the Jetinfer-Request-Id its result carries, where it
	// differs from ID (see ResultIDFor).
	ResultID string
	// Version, when set, is the Jetinfer-Model-Version an OK result must
	// name (a request pinned to a version, or one sent after a rollout).
	Version string
	// Known marks a request pinned to a version the model repository
	// has: a NOT_FOUND answer to it is counted in Audit.NotFound.
	Known bool
}

// NewRequest returns a valid request of n rows of ds starting at row lo
// (wrapping around) in job, which must be answered OK with the right rows.
func NewRequest(ds Dataset, id, job string, lo, n int) *Request {
	h := nats.Header{}
	h.Set(wire.HeaderJob, job)
	return &Request{ID: id, Header: h, Body: ds.Body(lo, n), Want: []codec.Code{codec.CodeOK},
		Check: func(body []byte) error { return ds.Check(body, lo, n) }}
}

// ResultIDFor is the request id a result carries for a request published
// with Nats-Msg-Id id (wire.RequestIDFor).
func ResultIDFor(id string) string { return wire.RequestIDFor(id) }

func (q *Request) resultID() string {
	if q.ResultID != "" {
		return q.ResultID
	}
	return ResultIDFor(q.ID)
}

// Msg returns the request as a message to subject, with its Nats-Msg-Id.
func (q *Request) Msg(subject string) *nats.Msg {
	h := nats.Header{}
	for k, v := range q.Header {
		h[k] = slices.Clone(v)
	}
	h.Set(jetstream.MsgIDHeader, q.ID)
	return &nats.Msg{Subject: subject, Header: h, Data: q.Body}
}

// SendStats counts what publishing cost. The zero value is ready.
type SendStats struct {
	// Published counts publishes acknowledged (stored or duplicate).
	Published atomic.Int64
	// Duplicates counts publishes acknowledged as duplicates.
	Duplicates atomic.Int64
	// Failures counts publish attempts that failed and were retried.
	Failures atomic.Int64
}

// SendOptions tune Send.
type SendOptions struct {
	// Concurrency is the number of publishing goroutines (default 4).
	Concurrency int
	// Rate spreads the requests over time at about Rate per second
	// (0: as fast as the server acknowledges).
	Rate float64
}

// Send publishes every request to the target's request subject with its
// Nats-Msg-Id, retrying each until the server acknowledges it (Publish),
// and returns when all are stored or ctx ends. st may be nil.
func (t Target) Send(ctx context.Context, js jetstream.JetStream, reqs []*Request, o SendOptions, st *SendStats) error {
	if st == nil {
		st = &SendStats{}
	}
	subject := t.RequestSubject()
	next := make(chan *Request)
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for range max(o.Concurrency, 1) {
		wg.Go(func() {
			for q := range next {
				if err := Publish(ctx, js, q.Msg(subject), st); err != nil {
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	start := time.Now()
feed:
	for i, q := range reqs {
		if o.Rate > 0 {
			if wait := time.Until(start.Add(time.Duration(float64(i) / o.Rate * float64(time.Second)))); wait > 0 {
				time.Sleep(wait)
			}
		}
		select {
		case next <- q:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return *p
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sending %d requests: %w", len(reqs), err)
	}
	return nil
}

// SendAsync runs Send in the background; wait returns its error.
func (t Target) SendAsync(ctx context.Context, js jetstream.JetStream, reqs []*Request, o SendOptions, st *SendStats) (wait func() error) {
	done := make(chan error, 1)
	go func() { done <- t.Send(ctx, js, reqs, o, st) }()
	return func() error { return <-done }
}

// Publish publishes msg until the server acknowledges it, as a producer
// that wants its request stored exactly once does: every attempt carries
// the same Nats-Msg-Id (msg's header). Each attempt has 2 s; Publish gives
// up when ctx ends. st may be nil.
func Publish(ctx context.Context, js jetstream.JetStream, msg *nats.Msg, st *SendStats) error {
	if st == nil {
		st = &SendStats{}
	}
	id := msg.Header.Get(jetstream.MsgIDHeader)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ack, err := js.PublishMsg(pctx, msg, jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			st.Published.Add(1)
			if ack.Duplicate {
				st.Duplicates.Add(1)
			}
			return nil
		}
		st.Failures.Add(1)
		if ctx.Err() != nil {
			return fmt.Errorf("publishing request %s: %w", truncate(id, 80), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kinds counts requests per Kind, leaving out those without one.
func Kinds(reqs []*Request) map[string]int {
	m := map[string]int{}
	for _, q := range reqs {
		if q.Kind != "" {
			m[q.Kind]++
		}
	}
	return m
}

// sortedCodes returns the codes of m in order.
func sortedCodes(m map[codec.Code]int) []codec.Code { return slices.Sorted(maps.Keys(m)) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
