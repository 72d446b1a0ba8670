// Package worker runs jetinfer's request pipeline for one model:
//
//	pull → decode/validate → coalesce → execute → publish result → ack
//
// over NATS JetStream. It owns stream and consumer setup, the coalescing of
// requests into engine batches, retries and error results, and drain on
// shutdown. The wire contract it implements is docs/protocol.md.
//
// # Goroutines
//
// Worker.Run starts and waits for every goroutine it uses:
//
//   - the collector pulls messages, holds each one's bytes against the
//     in-flight budget (Config.MaxPullBytes; pulling pauses while the
//     pipeline is full), decodes and validates it, and passes it to the
//     scheduler, or answers it with an error outcome;
//   - the scheduler owns the shape-aware batcher (package batcher) and its
//     assembler: it admits requests, releases a batch plan whenever an
//     executor is free (rows from many requests, ragged rows padded to a
//     length bucket, mask inputs filled, deadlines first), answers requests
//     whose deadline can no longer be met, and reassembles each request's
//     result rows in order;
//   - Config.Executors executors gather a plan's input tensors, run the
//     engine, and report back; when a batch of several requests fails they
//     run each request's rows alone, so that one bad request cannot fail
//     the others;
//   - the publisher encodes each outcome as a result message and publishes
//     it asynchronously with a Nats-Msg-Id derived from the request id;
//   - the acker waits for each result's PubAck, in order, and only then acks
//     (or terminates) the request; a failed publish naks the request with a
//     delay so that it is redelivered;
//   - the reporter publishes the worker's measurements for the scheduler.
//
// Stages talk over bounded channels; the batcher, assembler and request
// table belong to the scheduler goroutine alone. At start-up Run measures
// the engine's latency per batch shape (or loads it from
// Config.CostModelPath) for the batcher's cost model.
//
// # Shutdown order
//
// When Run's context is cancelled: the collector stops pulling (the pull
// subscription is drained, so messages already buffered are still
// processed) and closes its output; the scheduler flushes every queued row
// into batches without waiting for fuller ones; the executors finish
// in-flight batches; the publisher publishes every
// outcome; the acker waits for their PubAcks (at most Config.DrainTimeout)
// and acks or naks each request. Run then returns nil. A request whose
// outcome could not be settled is left unacked and is redelivered after
// the consumer's AckWait, to this or another worker.
//
// # Delivery semantics
//
// A request is acked only after its result's PubAck. Results are published
// with Nats-Msg-Id "<request id>/result", so a redelivered request whose
// first result was already stored yields no second visible result within
// the results stream's duplicate window.
package worker
