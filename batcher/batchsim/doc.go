// Package batchsim replays one request trace against batching policies on
// a simulated engine whose latencies come from a measured
// batcher.CostModel, and reports throughput, latency percentiles, padding
// waste and deadline misses for each policy.
//
// It holds the trace generator (Poisson arrivals with bursts, request
// sizes, lognormal sequence lengths clipped to a range, optional
// deadlines and priorities), the policies compared (jetinfer's batcher, a
// Triton-style dynamic batcher, no batching) and a discrete-event
// simulation of one engine executing one batch at a time. Everything is
// deterministic given the trace seed and the cost model: simulated time
// never reads a clock, and engine jitter comes from a seeded generator.
//
// The package is used by cmd/batchsim; nothing in it is safe for
// concurrent use.
package batchsim
