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
//   - two pullers fetch requests, each pull sized by the free admission
//     budget (Config.MaxPullBytes bytes, Config.MaxInflightRows rows, held
//     from pull to settle): a busy worker stops pulling and never hands a
//     request back for want of room;
//   - the collector decodes and validates each pulled request and passes
//     it to the scheduler, or answers it with an error outcome;
//   - the keeper tells the server every third of the ack wait that each
//     held request is still in progress, so that a deep pipeline or a
//     result-side outage never lets a request's ack wait expire;
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
//   - the settler waits for each result's PubAck, in order, and only then
//     acks (or terminates) the request; a result the server did not store
//     is published again until it is (a result-side outage holds requests,
//     it does not fail them); engine failures are handed back with a delay
//     and counted as attempts;
//   - the reporter publishes the worker's measurements for the scheduler,
//     and the version it serves (at once after a switch);
//   - a peers watcher follows the other workers' reports of the model, to
//     route requests pinned to a version this worker does not serve
//     (pinned.go);
//   - with a repository Source, the swapper watches the model's active
//     version (or the alias in Config.ModelAlias) and loads, gates and
//     switches to each new one (swap.go).
//
// # Engines and swaps
//
// Everything derived from an engine (its spec, what requests must carry,
// its batcher and assembler, the version it answers as) is a generation
// (generation.go). Each request takes a reference on the current
// generation when it is received and gives it back when it is settled; it
// is validated, batched and run on that generation's engine, and its
// result names that generation's version. A switch makes another
// generation current; the old one's engine is closed by whoever releases
// its last reference, so no batch can be running on it. The scheduler
// keeps one batcher per generation with queued rows; a batch never mixes
// generations.
//
// The admission budget, the set of held messages, the attempt counts, the
// current generation (with every generation's reference count) and the
// peers' reports are each guarded by their own mutex; no code holds two
// of them at once.
// Stages talk over bounded channels; the batcher, assembler and request
// table belong to the scheduler goroutine alone. At start-up Run measures
// the engine's latency per batch shape (or loads it from
// Config.CostModelPath) for the batcher's cost model.
//
// # Shutdown order
//
// When Run's context is cancelled (or the engine's device is lost): the
// pullers stop after their current pull, whose messages are still taken in;
// the collector closes its output; the scheduler flushes every queued row
// into batches without waiting for fuller ones; the executors finish
// in-flight batches; the publisher publishes every outcome; the settler
// waits for their PubAcks (at most Config.DrainTimeout) and acks or
// terminates each request. Run then returns nil (or the device error). A
// request whose outcome could not be settled by then is handed back,
// uncharged, and is redelivered to this or another worker.

// # Delivery semantics
//
// A request is acked only after its result's PubAck. Results are published
// with Nats-Msg-Id "<request id>/result", so a redelivered request whose
// first result was already stored yields no second visible result within
// the results stream's duplicate window.
package worker
