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
//   - the collector pulls messages (bytes in flight bounded by
//     Config.MaxPullBytes), decodes and validates them, and groups valid
//     requests with equal row shapes into batches of at most Config.MaxBatchRows
//     rows or Config.MaxDelay of waiting, whichever comes first;
//   - Config.Executors executors gather each batch into contiguous input
//     tensors, run the engine and slice the outputs back per request;
//   - the publisher encodes each outcome as a result message and publishes
//     it asynchronously with a Nats-Msg-Id derived from the request id;
//   - the acker waits for each result's PubAck, in order, and only then acks
//     (or terminates) the request; a failed publish naks the request with a
//     delay so that it is redelivered.
//
// Stages talk over bounded channels; no state is shared between them.
//
// # Shutdown order
//
// When Run's context is cancelled: the collector stops pulling (the pull
// subscription is drained, so messages already buffered are still
// processed), flushes the requests it holds, and closes its output; the
// executors finish in-flight batches; the publisher publishes every
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
