// Package client is the Go producer side of jetinfer's wire contract
// (docs/protocol.md): it publishes requests, collects results and decodes
// them into tensors, without pulling in the worker or the NATS server.
//
// A Client publishes for one model. Publish waits for the PubAck and
// retries with exponential backoff under the same Nats-Msg-Id, so a retry
// is stored once; PublishAsync does not wait. Results reads a job's
// results from the result stream; Result.Decode turns a body into
// tensors.
//
// Run is the job runner that `jetinfer score` is built on: it publishes a
// Source's requests, each with its own result subject
// (<prefix>.res.<model>.<job>.<seq>), and hands every result to a Sink
// exactly once, in request order, with at most Job.Window requests
// between publication and the Sink. A job record (JobRecord) in a KV
// bucket keeps the job's name, fingerprint, arguments and progress;
// running a job again publishes only the requests without a stored
// result and reads the stored ones back, whether or not the duplicate
// window has passed. A Source may say where it can start again after a
// part (Part.Resume): the record keeps the last such point handed on, so
// that a later run can skip what came before it (parts without a Body,
// for requests whose results are stored). The record also keeps the
// point after the last request stored in the request stream (Sent), and
// a Source that implements BodyFilter is told which requests need no body
// (a stored result, still queued), so that it can skip reading them.
// Requests are published without waiting for each PubAck; the PubAcks are awaited in order on another goroutine, and a
// request whose publish failed or was not acknowledged in Config.Timeout
// is published again (Publish: same Nats-Msg-Id, backoff); request bodies
// awaiting their PubAck are bounded by Job.UnackedBytes. Results, those
// stored before the run and those stored during it, arrive through one
// ordered consumer on the job's subjects (at most 16 MiB buffered ahead),
// which runs no further ahead than the window (plus one result held
// back); results kept ahead of their turn are bounded by Job.ReadyBytes,
// and one that arrives too far ahead (results stored out of order, or
// past ReadyBytes) is read again by subject at its turn. Each request's
// result is handed on once, also when a request redelivered after the
// duplicate window is answered twice.
//
// # Concurrency
//
// A Client is safe for concurrent use. Run starts four goroutines (read
// and publish; await PubAcks; receive results; call the Sink in order)
// and waits for them before it returns; the Sink and Job.Progress are
// called from one goroutine, a Source's Recycle (Recycler) from another
// than its Next.
package client
