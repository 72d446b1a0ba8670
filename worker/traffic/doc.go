// Package traffic generates request traffic for a jetinfer worker pool and
// checks what came back against the delivery contract of
// docs/protocol.md: every request ends in exactly one visible result in
// the result stream (none lost, none duplicated), with an accepted status,
// an error message that names what was wrong, OK rows that are right for
// the rows sent, and nothing left in the work queue.
//
// It is the shared harness of the worker's tests (in-process workers, the
// pure-Go test engine) and of cmd/reliability (worker processes, ONNX
// Runtime): both build []*Request from a [Dataset] ([Digits] for the real
// digits model, [Synthetic] for trt/testengine), publish them with [Send]
// (retrying with the same Nats-Msg-Id, as a producer that must store each
// request once does), wait with [Target.Settle] and read the verdict with
// [Target.Audit]. [Malformed] generates bad requests of many kinds.
//
// The package reads whole streams and keeps per-request state in memory:
// it is for tests and load runs, not for production consumers (those use
// worker/client). Its functions are safe for concurrent use; a Request
// must not be modified while Send publishes it.
package traffic
