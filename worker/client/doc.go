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
// window has passed. Stored results are found by listing the job's
// result subjects and read one by one (last message per subject), so a
// result stored twice — a request redelivered after the duplicate window
// — is handed on once.
//
// # Concurrency
//
// A Client is safe for concurrent use. Run starts three goroutines (read
// and publish; watch result arrivals, headers only; fetch results and call
// the Sink in order) and waits for them before it returns; the Sink and
// Job.Progress are called from one goroutine.
package client
