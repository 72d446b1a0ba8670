// Package cuda is jetinfer's CUDA staging layer: pinned host buffers and a
// pool of them, device buffers, streams with blocking-sync events, and one
// call per batch that queues the host-to-device copies, a work slot (a
// kernel launch or a TensorRT enqueue) and the device-to-host copies, then
// records the stream's event.
//
// The real implementation is compiled with cgo and the "cuda" or
// "tensorrt" build tag and links the CUDA runtime (libcudart). Without
// them every constructor returns an error wrapping trt.ErrUnavailable, so
// the default and CGO_ENABLED=0 builds work on machines with no CUDA.
//
// The C side lives in jcuda.h, a header of static inline functions that
// trt/tensorrt's C++ shim includes too, so the two packages share one copy
// of the staging code without exporting a C symbol twice.
//
// Lifetimes: a HostBuffer or DeviceBuffer lives until its Free; a Stream
// until its Close. Memory is outside the Go heap, so HostBuffer.Bytes may
// be handed to C and to asynchronous copies; it must not be used after
// Free. No C code keeps a pointer past the call that received it.
//
// A lost device: jcuda.h's jc_sticky classifies sticky CUDA errors (an
// illegal address, a launch failure, an uncorrectable ECC error, ...),
// after which the process's CUDA context is unusable. Such an Error
// matches trt.ErrDeviceLost, and once a Device or one of its Streams has
// seen one, every later allocation, stream, Submit, Wait and Done on it
// fails at once with an error matching it too (Device.Lost).
//
// Concurrency: Device is safe for concurrent use. PinnedPool
// is safe for concurrent use. A Stream, and the buffers in flight on it,
// belong to one goroutine at a time. Every C entry point selects its device
// first (the CUDA current device is per OS thread and goroutines move
// between threads), so no goroutine needs runtime.LockOSThread.
package cuda
