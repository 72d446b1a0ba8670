// Package schedsim simulates a worker pool under an autoscaler, second by
// second, to compare jetinfer's scheduler.Policy with KEDA's NATS JetStream
// scaler and with a fixed pool on the same arrival trace.
//
// The model is deliberately simple and stated in full in docs/scaling.md: a
// fluid FIFO queue served at a fixed per-replica capacity, replicas that
// become ready after a cold start, ack-pending messages held by ready
// replicas, and the KEDA/HPA control loops (polling, sync period, tolerance,
// stabilization window, scale-up limits, activation and cooldown) as
// documented by KEDA and Kubernetes. jetinfer's controller runs the real
// scheduler.Policy, not a re-implementation, behind the same KEDA/HPA
// machinery that the Helm chart configures.
//
// Everything is deterministic given the trace seed. Nothing here is safe
// for concurrent use; each Run owns its controller.
package schedsim
