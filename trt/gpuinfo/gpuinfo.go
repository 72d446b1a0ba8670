package gpuinfo

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

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
	// MIG lists the GPU's MIG devices when MIG mode is enabled.
	MIG []MIGDevice
}

// MIGDevice is one MIG instance of a GPU.
type MIGDevice struct {
	UUID    string // "MIG-…"
	Profile string // e.g. "1g.10gb"
}

// MIGProfile extracts the profile from a MIG device name as NVML reports
// it ("NVIDIA A100-SXM4-40GB MIG 1g.5gb" -> "1g.5gb"); "" if none.
func MIGProfile(name string) string {
	_, p, ok := strings.Cut(name, " MIG ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(p)
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

// CUDADevice is the GPU (and MIG instance) behind one CUDA device ordinal.
type CUDADevice struct {
	GPU GPU
	MIG string // MIG profile when the ordinal is a MIG instance, else ""
	// Note warns when the mapping rests on an assumption (CUDA's default
	// device order), else "".
	Note string
}

// UUIDHex strips a "GPU-" or "MIG-" prefix, so that UUIDs from NVML and
// from the CUDA runtime (which prints no kind) compare.
func UUIDHex(uuid string) string {
	return strings.TrimPrefix(strings.TrimPrefix(uuid, "GPU-"), "MIG-")
}

// ByUUID finds the GPU or MIG instance with uuid ("GPU-…", "MIG-…" or the
// bare hex the CUDA runtime reports).
func (in Info) ByUUID(uuid string) (CUDADevice, error) {
	want := UUIDHex(uuid)
	for _, g := range in.GPUs {
		if UUIDHex(g.UUID) == want {
			return CUDADevice{GPU: g}, nil
		}
		for _, m := range g.MIG {
			if UUIDHex(m.UUID) == want {
				return CUDADevice{GPU: g, MIG: m.Profile}, nil
			}
		}
	}
	return CUDADevice{}, fmt.Errorf("looking up GPU %s: %w: NVML lists no such device", uuid, ErrNoGPU)
}

// ByCUDAOrdinal maps a CUDA device ordinal (what JETINFER_GPU_DEVICE and
// `engine build -device` take) to the NVML device behind it, the way the
// CUDA runtime numbers devices: visible is CUDA_VISIBLE_DEVICES (unset or
// "": every GPU), a comma-separated list of indices, GPU-/MIG- UUIDs or
// UUID prefixes, cut at the first entry that names no device; order is
// CUDA_DEVICE_ORDER. CUDA's default order (FASTEST_FIRST) may differ from
// NVML's PCI order on a node with different GPU models; the result then
// carries a Note, and CUDA_DEVICE_ORDER=PCI_BUS_ID makes it exact.
func (in Info) ByCUDAOrdinal(ordinal int, visible, order string) (CUDADevice, error) {
	var devs []CUDADevice
	if strings.TrimSpace(visible) == "" {
		for _, g := range in.GPUs {
			devs = append(devs, CUDADevice{GPU: g})
		}
	} else {
	entries:
		for _, e := range strings.Split(visible, ",") {
			e = strings.TrimSpace(e)
			if n, err := strconv.Atoi(e); err == nil {
				g, err := in.GPU(n)
				if err != nil || n < 0 {
					break
				}
				devs = append(devs, CUDADevice{GPU: g})
				continue
			}
			prefix := strings.TrimPrefix(strings.TrimPrefix(e, "GPU-"), "MIG-")
			if prefix == "" {
				break
			}
			for _, g := range in.GPUs {
				if strings.HasPrefix(UUIDHex(g.UUID), prefix) {
					devs = append(devs, CUDADevice{GPU: g})
					continue entries
				}
				for _, m := range g.MIG {
					if strings.HasPrefix(UUIDHex(m.UUID), prefix) {
						devs = append(devs, CUDADevice{GPU: g, MIG: m.Profile})
						continue entries
					}
				}
			}
			break // CUDA stops at the first entry that names no device
		}
	}
	if ordinal < 0 || ordinal >= len(devs) {
		return CUDADevice{}, fmt.Errorf("looking up CUDA device %d: %w (CUDA_VISIBLE_DEVICES=%q leaves %d visible)", ordinal, ErrNoGPU, visible, len(devs))
	}
	d := devs[ordinal]
	if order != "PCI_BUS_ID" {
		for _, o := range devs {
			if o.GPU.Name != devs[0].GPU.Name || o.MIG != devs[0].MIG {
				d.Note = "GPUs of different models are visible and CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA may number them fastest first, unlike NVML; set CUDA_DEVICE_ORDER=PCI_BUS_ID to be sure"
				break
			}
		}
	}
	return d, nil
}
