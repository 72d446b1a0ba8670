package gpuinfo

import (
	"errors"
	"fmt"

	"github.com/jetinfer/jetinfer/trt"
)

// ErrNoGPU matches errors caused by the absence of an NVIDIA GPU, driver or
// NVML library on this node.
var ErrNoGPU = errors.New("no NVIDIA GPU")

// GPU describes one NVIDIA GPU.
type GPU struct {
	Index        int    // NVML index (the same order as CUDA's with CUDA_DEVICE_ORDER=PCI_BUS_ID)
	Name         string // e.g. "NVIDIA H100 80GB HBM3"
	UUID         string // "GPU-…"
	ComputeMajor int
	ComputeMinor int
	MemoryTotal  uint64 // bytes
	PCIBusID     string
}

// Compute returns the compute capability as "major.minor".
func (g GPU) Compute() string { return fmt.Sprintf("%d.%d", g.ComputeMajor, g.ComputeMinor) }

// Device returns g as the trt.Device an engine reports.
func (g GPU) Device() trt.Device {
	return trt.Device{Kind: "cuda", Name: g.Name, UUID: g.UUID, Compute: g.Compute()}
}

// Info is what NVML reports about the node.
type Info struct {
	DriverVersion     string // e.g. "580.159.04"
	CUDADriverVersion int    // highest CUDA version the driver supports, 1000*major + 10*minor
	NVMLVersion       string
	GPUs              []GPU
}

// GPU returns the GPU with NVML index i.
func (in Info) GPU(i int) (GPU, error) {
	for _, g := range in.GPUs {
		if g.Index == i {
			return g, nil
		}
	}
	return GPU{}, fmt.Errorf("looking up GPU %d: %w (this node has %d)", i, ErrNoGPU, len(in.GPUs))
}

// Usage is a utilization sample of one GPU.
type Usage struct {
	GPUPercent    uint32 // share of the last sample period a kernel was running
	MemoryPercent uint32 // share of the period device memory was read or written
	MemoryUsed    uint64 // bytes
	MemoryTotal   uint64 // bytes
}
