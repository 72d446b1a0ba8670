package worker

import (
	"context"
	"fmt"

	"github.com/jetinfer/jetinfer/worker/wire"
	"github.com/nats-io/nats.go/jetstream"
)

// EnsureStreams creates or updates the request and result streams and the
// model's durable pull consumer from c. It is idempotent: every worker of a
// model calls it at start-up, and `jetinfer streams` calls it on its own.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.Consumer, error) {
	c = c.withDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("validating config: %w", err)
	}
	storage := jetstream.FileStorage
	if c.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        c.RequestStream,
		Description: "jetinfer inference requests",
		Subjects:    []string{wire.RequestSubjects(c.Prefix)},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     storage,
		Replicas:    c.Replicas,
		Duplicates:  c.DuplicateWindow,
		MaxMsgSize:  int32(c.MaxMsgSize),
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("creating request stream %s: %w", c.RequestStream, err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        c.ResultStream,
		Description: "jetinfer inference results",
		Subjects:    []string{wire.ResultSubjects(c.Prefix)},
		Retention:   jetstream.LimitsPolicy,
		Storage:     storage,
		Replicas:    c.Replicas,
		Duplicates:  c.DuplicateWindow,
		MaxAge:      c.ResultMaxAge,
	})
	if err != nil {
		return nil, fmt.Errorf("creating result stream %s: %w", c.ResultStream, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, c.RequestStream, jetstream.ConsumerConfig{
		Durable:       c.Model,
		Description:   "jetinfer workers of model " + c.Model,
		FilterSubject: wire.RequestSubject(c.Prefix, c.Model),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		// Unlimited on the server: the worker counts attempts itself and
		// answers the last one with an error result, so that no request is
		// ever left undeliverable in the work queue.
		MaxDeliver:    -1,
		MaxAckPending: c.MaxAckPending,
	})
	if err != nil {
		return nil, fmt.Errorf("creating consumer %s on %s: %w", c.Model, c.RequestStream, err)
	}
	return cons, nil
}
