// Package testengine is a pure-Go trt.Engine for tests of the pipeline
// around an engine: batching, faults, drain and shutdown order,
// admission, leaks, reliability. It is not a backend and never serves
// models; it needs neither cgo nor a native library, so `go test ./worker`
// runs with CGO_ENABLED=0 and no ONNX Runtime.
//
// The engine has one float32 input and one float32 output (by default
// "pixels" [batch,8,8] → "logits" [batch,10], the digits model's IO, so
// that the same request bodies fit both) and one optimization profile of
// batch 1 to Config.MaxBatch. Each output row is a deterministic function
// of its input row alone ([Compute]): a test that knows what it sent can
// verify every result row, so a row routed to the wrong request, moved
// within a request, duplicated or replaced by padding is caught.
//
// Faults and latency are injected at run time: [Engine.SetLatency] delays
// every call, [Engine.SetFault] decides the outcome of each call before
// the engine computes ([FailFirst], [FailCall], [FailRows], [Block], or
// any function). [Engine.Stats] counts calls, failures and rows.
//
// Concurrency: Run may be called from any number of goroutines at once,
// as the real backends allow; SetFault, SetLatency, Stats and ResetStats
// are safe at any time.
package testengine
