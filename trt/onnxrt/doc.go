// Package onnxrt is jetinfer's CPU engine backend: it runs ONNX models on
// ONNX Runtime through github.com/yalue/onnxruntime_go and implements
// trt.Engine, so the worker drives it exactly like the TensorRT backend.
//
// # Library and build
//
// The package needs cgo. It dlopens ONNX Runtime's shared library at run
// time, so building needs no ONNX Runtime install; running does.
// scripts/install-onnxruntime.sh (make ort) puts libonnxruntime.so.1
// (ONNX Runtime 1.30, CPU, linux x86-64) under .cache/onnxruntime/lib, and
// FindLibrary looks there, in paths the caller passes, and in the system
// library directories. A build with CGO_ENABLED=0 compiles a stub whose
// constructors return errors wrapping trt.ErrUnavailable.
//
// # Lifetimes
//
//   - Runtime: one per process. The binding keeps ONNX Runtime's
//     environment in package-level state, so a binary's main creates the
//     Runtime with NewRuntime, hands it to whatever loads models, and closes
//     it after every engine. Runtime.Close fails while engines are open.
//     ONNX Runtime logs errors (only) to stderr itself; that output does not
//     go through log/slog.
//   - Engine: one session per loaded model, from Runtime.Load (bytes, e.g.
//     from an object store) or Runtime.LoadFile. Close waits for Runs in
//     flight, then destroys the session; later Runs fail with ErrClosed.
//
// # Concurrency
//
// Engine.Run is safe from many goroutines at once: every call creates its
// own input and output tensors over the caller's buffers and runs the one
// shared session (ONNX Runtime sessions accept concurrent runs). With the
// default of one intra-op thread, each Run computes on its caller's OS
// thread, so a worker scales by running batches concurrently; raise
// Options.IntraOpThreads to parallelize inside one batch instead.
//
// # Data
//
// Inputs are passed to ONNX Runtime without copying (the Go buffers are
// pinned for the call). Outputs are written into caller-provided buffers
// when their size is exact, else into new ones. Output shapes follow from
// the input shapes when each dynamic output dimension is the batch
// dimension or carries the same symbolic name (dim_param) as an input
// dimension; otherwise ONNX Runtime allocates the output and its shape is
// read back, which the binding cannot do for float16 and bfloat16 outputs
// (such models are refused at load). float16 and bfloat16 travel as raw
// bits.
//
// # Profiles
//
// ONNX Runtime has no optimization profiles; the engine advertises one,
// built from Options: batch 1..MaxBatch (default 64) and, for other dynamic
// dimensions, Options.DimRanges (default 1..4096). Run rejects shapes
// outside it with trt.ErrInvalidInput, as a TensorRT engine would.
package onnxrt
