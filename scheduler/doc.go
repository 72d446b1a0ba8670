// Package scheduler computes how many workers each model needs and tells the
// orchestrator.
//
// It owns three things:
//
//   - The worker report contract: [WorkerReport] is what a worker measures
//     about itself (service rate at saturation, utilization, queue delay,
//     cold start, messages held while forming a batch). Workers publish it
//     with [PublishReport] into a KV bucket opened by [OpenReportBucket].
//   - The policy: [Policy] turns one [Observation] of a model (consumer
//     backlog read from JetStream, fresh worker reports, an explicit time)
//     into a [Decision]. It is pure and deterministic given the
//     observations: no I/O, no clock of its own, so it is tested with
//     explicit times and reused unchanged by the simulation bench
//     (cmd/scalersim).
//   - The loop: [Scheduler] reads consumer state through the JetStream API
//     (answered by the consumer's leader, never a follower's monitoring
//     endpoint), reads worker reports, runs one Policy per model, publishes
//     each [Hint] to the hints KV bucket, serves hints over HTTP in the JSON
//     form KEDA's metrics-api scaler reads ([Scheduler.Handler]) and records
//     OpenTelemetry metrics.
//
// Subpackage schedsim simulates pools under this policy and under KEDA's
// lag scaler (cmd/scalersim).
//
// Lifetimes and concurrency: a Policy is not safe for concurrent use; the
// Scheduler owns one per model and uses it only inside Tick, which Run calls
// every Interval and which serializes itself with a mutex (tests call Tick
// directly with a controlled clock). Each Tick reads a fresh snapshot of the
// report bucket, so no goroutine outlives it. Hints are published as an
// immutable snapshot through an atomic pointer: the HTTP handler may be
// called from any goroutine at any time, before, during and after Run. Run
// returns nil when its context is cancelled.
//
// The package never reads environment variables: cmd/jetinfer fills [Config]
// from JETINFER_SCHEDULER_* variables.
package scheduler
