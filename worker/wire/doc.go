// Package wire holds the names of jetinfer's wire contract, jetinfer.v1
// (docs/protocol.md): subjects and their grammar, header names, the result
// message id, default stream and bucket names, and the trace-context
// carrier over NATS headers. Producers, workers, the scheduler and the
// tools all take these names from here, so that there is exactly one
// definition of each.
//
// The package imports nothing of jetinfer's and only nats.go of the
// outside world; everything in it is safe for concurrent use.
package wire
