// Package gpuinfo identifies the NVIDIA GPUs of this node through NVML
// (github.com/NVIDIA/go-nvml, which dlopens libnvidia-ml.so.1 at run time):
// name, UUID, compute capability, memory and the driver version, for plan
// manifests and compatibility checks, and utilization for scaling hints.
//
// It needs cgo (go-nvml's loader is cgo) but no CUDA toolkit and no build
// tag: on a node without the NVIDIA driver, or in a CGO_ENABLED=0 build,
// Open returns an error matching ErrNoGPU, and callers fall back to the CPU.
//
// Library-global state: go-nvml resolves NVML's C symbols into one
// process-wide table, and NVML counts nvmlInit/nvmlShutdown pairs itself.
// Each NVML value here holds one such pair between Open and Close.
//
// Concurrency: an *NVML is safe for concurrent use (NVML is thread-safe);
// Close must not race with other calls.
package gpuinfo
