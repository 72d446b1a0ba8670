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
// window has passed. Results stored before a run are found by listing the
// job's result subjects and read one by one (last message per subject);
// results stored during the run arrive through an ordered consumer that
// starts right after the listing (at most 16 MiB buffered ahead). Each
// request's result is handed on once, also when a request redelivered
// after the duplicate window is answered twice.
//
// # Concurrency
//
// A Client is safe for concurrent use. Run starts three goroutines (read
// and publish; receive results; call the Sink in order) and waits for them before it returns; the Sink and
// Job.Progress are called from one goroutine.
package client
