// Package tensorrt runs serialized TensorRT plans as a trt.Engine and
// builds plans from ONNX models, through a small C++ shim with a plain C
// ABI (shim.h) compiled by cgo.
//
// Build tag: the real implementation needs cgo and the "tensorrt" tag and
// links libnvinfer, libnvinfer_plugin, libnvonnxparser and libcudart (TensorRT
// 10.0+ or 11.x).
// Without them, Load, Inspect and Build return errors wrapping
// trt.ErrUnavailable, so default and CGO_ENABLED=0 builds work everywhere.
// The CUDA staging code (pinned buffers, streams, one C call per batch) is
// trt/cuda's; the shim includes its header, trt/cuda's Go side allocates
// the buffers.
//
// Lifetimes: an Engine owns one TensorRT runtime, one deserialized engine
// and Config.Contexts execution slots (an IExecutionContext with its own
// CUDA stream and event, plus pinned host and device buffers sized for
// the largest shapes of every profile). Close releases everything; no Run
// may be in flight.
//
// Concurrency: Run is safe for concurrent use; each call takes a free slot
// (waiting, cancellable by ctx, while all are busy), preferring one whose
// context already has the batch's optimization profile selected, so up to
// Contexts batches overlap on the GPU. Once a batch is queued on the GPU, ctx no
// longer interrupts it: Run waits for it, since its buffers are in use.
// Build is serialized by TensorRT's builder and may be called from one
// goroutine at a time.
//
// Logging: TensorRT keeps one logger per process. The shim queues its
// lines (warnings and worse by default) and each Engine or Build drains
// the queue into its own *slog.Logger after its calls; a line may so be
// logged by another engine than the one that caused it. Errors always
// carry the lines TensorRT emitted during the failing call.
//
// Compatibility: a plan is tied to the TensorRT version and GPU it was
// built for. Load checks the plan's trt.Manifest against this node
// (ThisNode: the linked TensorRT's full version, the CUDA device, its MIG
// profile, the platform, the loader's settings) before deserializing, and
// refuses a mismatch with an error naming every refused rule.
//
// A lost device: when a call fails with a sticky CUDA error (the shim
// classifies them; see trt/cuda), the error matches trt.ErrDeviceLost,
// and so does every later Run or RunStaged of the engine, without touching
// the GPU again: only a new process recovers.
//
// Plugins: TensorRT's plugin registry is process-wide. LoadPlugins (and
// Load, Build) register each library once per process; libraries are never
// deregistered. TensorRT's standard plugins are registered by the first
// runtime or build.
package tensorrt
