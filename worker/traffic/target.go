package traffic

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/worker/wire"
)

// Target names the model whose pool the traffic is for and the streams
// it lives in. Zero fields take the contract's defaults (package wire).
type Target struct {
	// Prefix is the subject prefix (default wire.DefaultPrefix).
	Prefix string
	// Model is the model name: requests go to <prefix>.req.<model>, and
	// the model's consumer carries its name.
	Model string
	// RequestStream and ResultStream name the streams (defaults
	// wire.DefaultRequestStream and wire.DefaultResultStream).
	RequestStream, ResultStream string
}

func (t Target) withDefaults() Target {
	if t.Prefix == "" {
		t.Prefix = wire.DefaultPrefix
	}
	if t.RequestStream == "" {
		t.RequestStream = wire.DefaultRequestStream
	}
	if t.ResultStream == "" {
		t.ResultStream = wire.DefaultResultStream
	}
	return t
}

// RequestSubject is the subject requests for the model are published to.
func (t Target) RequestSubject() string {
	t = t.withDefaults()
	return wire.RequestSubject(t.Prefix, t.Model)
}

// QueueState is what is left of the work: messages in the request
// stream, and the model consumer's pending and ack-pending counts.
type QueueState struct {
	Stored, Pending, AckPending uint64
	// NoConsumer is set when the model's consumer does not exist.
	NoConsumer bool
}

// Empty reports whether nothing is stored, pending or unacknowledged.
func (q QueueState) Empty() bool { return q.Stored == 0 && q.Pending == 0 && q.AckPending == 0 }

// Left is the number of requests stored, pending or unacknowledged.
func (q QueueState) Left() uint64 { return q.Stored + q.Pending + q.AckPending }

// Queue reads the request stream and the model's consumer.
func (t Target) Queue(ctx context.Context, js jetstream.JetStream) (QueueState, error) {
	t = t.withDefaults()
	var q QueueState
	s, err := js.Stream(ctx, t.RequestStream)
	if err != nil {
		return q, fmt.Errorf("looking up stream %s: %w", t.RequestStream, err)
	}
	si, err := s.Info(ctx)
	if err != nil {
		return q, fmt.Errorf("reading stream %s: %w", t.RequestStream, err)
	}
	c, err := s.Consumer(ctx, t.Model)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return QueueState{Stored: si.State.Msgs, NoConsumer: true}, nil
	}
	if err != nil {
		return q, fmt.Errorf("looking up consumer %s: %w", t.Model, err)
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return q, fmt.Errorf("reading consumer %s: %w", t.Model, err)
	}
	return QueueState{Stored: si.State.Msgs, Pending: ci.NumPending, AckPending: uint64(ci.NumAckPending)}, nil
}

// CountResults returns the number of messages in the result stream.
func (t Target) CountResults(ctx context.Context, js jetstream.JetStream) (uint64, error) {
	t = t.withDefaults()
	s, err := js.Stream(ctx, t.ResultStream)
	if err != nil {
		return 0, fmt.Errorf("looking up stream %s: %w", t.ResultStream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading stream %s: %w", t.ResultStream, err)
	}
	return info.State.Msgs, nil
}

// Settle waits until the work queue is empty and the result stream holds
// at least want messages; or the queue is empty (or its consumer gone)
// and no result arrived for 3 s, when nothing more can come; or timeout
// passes (a liveness bound). It returns the last queue state, and an
// error saying what was left unless the first condition was met.
func (t Target) Settle(ctx context.Context, js jetstream.JetStream, want int, timeout time.Duration) (QueueState, error) {
	deadline := time.Now().Add(timeout)
	var q QueueState
	var err error
	var last uint64
	lastChange := time.Now()
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		q, err = t.Queue(cctx, js)
		var n uint64
		if err == nil {
			n, err = t.CountResults(cctx, js)
		}
		cancel()
		if n != last {
			last, lastChange = n, time.Now()
		}
		if err == nil && q.Empty() && n >= uint64(want) {
			return q, nil
		}
		quiet := err == nil && (q.Empty() || q.NoConsumer) && time.Since(lastChange) > 3*time.Second
		if quiet || time.Now().After(deadline) || ctx.Err() != nil {
			if err == nil {
				err = fmt.Errorf("work settled with %d stored, %d pending, %d ack-pending and %d of %d results",
					q.Stored, q.Pending, q.AckPending, n, want)
				if q.NoConsumer {
					err = fmt.Errorf("%w; the consumer %s does not exist", err, t.Model)
				}
			}
			return q, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Deliveries compares the model consumer's deliveries with the requests
// stored in the request stream.
type Deliveries struct {
	// Delivered is the consumer's delivered sequence: every delivery,
	// redeliveries included.
	Delivered uint64
	// Stored is the request stream's last sequence: every request stored.
	Stored uint64
}

// Redelivered returns the deliveries beyond one per stored request (after
// kills, engine failures, hand-backs). ok is false where the two do not
// compare: the consumer was recreated and counts only its own life.
func (d Deliveries) Redelivered() (n int64, ok bool) {
	if d.Delivered < d.Stored {
		return 0, false
	}
	return int64(d.Delivered - d.Stored), true
}

// Deliveries reads the model consumer's and the request stream's counts.
func (t Target) Deliveries(ctx context.Context, js jetstream.JetStream) (Deliveries, error) {
	t = t.withDefaults()
	c, err := js.Consumer(ctx, t.RequestStream, t.Model)
	if err != nil {
		return Deliveries{}, fmt.Errorf("looking up consumer %s: %w", t.Model, err)
	}
	s, err := js.Stream(ctx, t.RequestStream)
	if err != nil {
		return Deliveries{}, fmt.Errorf("looking up stream %s: %w", t.RequestStream, err)
	}
	return Deliveries{Delivered: c.CachedInfo().Delivered.Consumer, Stored: s.CachedInfo().State.LastSeq}, nil
}
