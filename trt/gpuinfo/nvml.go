//go:build cgo

package gpuinfo

import (
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// NVML is an initialized NVML session.
type NVML struct {
	lib nvml.Interface
}

// Open loads libnvidia-ml and initializes NVML. On a node without the
// NVIDIA driver the error matches ErrNoGPU. libraryPath may be empty for
// the default "libnvidia-ml.so.1".
func Open(libraryPath string) (*NVML, error) {
	var opts []nvml.LibraryOption
	if libraryPath != "" {
		opts = append(opts, nvml.WithLibraryPath(libraryPath))
	}
	lib := nvml.New(opts...)
	if ret := lib.Init(); ret != nvml.SUCCESS {
		switch ret {
		case nvml.ERROR_LIBRARY_NOT_FOUND:
			return nil, fmt.Errorf("initializing NVML: %w: the NVIDIA driver's libnvidia-ml.so.1 is not installed or not on the loader path", ErrNoGPU)
		case nvml.ERROR_DRIVER_NOT_LOADED, nvml.ERROR_NO_PERMISSION:
			return nil, fmt.Errorf("initializing NVML: %w: %s", ErrNoGPU, errorString(ret))
		}
		return nil, fmt.Errorf("initializing NVML: %s", errorString(ret))
	}
	return &NVML{lib: lib}, nil
}

func errorString(ret nvml.Return) string {
	// nvml.Return.Error calls into the library only once it is loaded.
	return fmt.Sprintf("%s (NVML return %d)", ret.Error(), int32(ret))
}

// Close shuts the NVML session down.
func (n *NVML) Close() error {
	if ret := n.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("shutting NVML down: %s", errorString(ret))
	}
	return nil
}

// Info reads the driver version and every GPU. With zero GPUs the error
// matches ErrNoGPU.
func (n *NVML) Info() (Info, error) {
	var in Info
	var ret nvml.Return
	if in.DriverVersion, ret = n.lib.SystemGetDriverVersion(); ret != nvml.SUCCESS {
		return Info{}, fmt.Errorf("reading the driver version: %s", errorString(ret))
	}
	if in.CUDADriverVersion, ret = n.lib.SystemGetCudaDriverVersion(); ret != nvml.SUCCESS {
		return Info{}, fmt.Errorf("reading the driver's CUDA version: %s", errorString(ret))
	}
	if in.NVMLVersion, ret = n.lib.SystemGetNVMLVersion(); ret != nvml.SUCCESS {
		return Info{}, fmt.Errorf("reading the NVML version: %s", errorString(ret))
	}
	count, ret := n.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return Info{}, fmt.Errorf("counting GPUs: %s", errorString(ret))
	}
	if count == 0 {
		return in, fmt.Errorf("listing GPUs: %w: NVML sees the driver %s but no device", ErrNoGPU, in.DriverVersion)
	}
	for i := range count {
		g, err := n.gpu(i)
		if err != nil {
			return Info{}, err
		}
		in.GPUs = append(in.GPUs, g)
	}
	return in, nil
}

func (n *NVML) gpu(i int) (GPU, error) {
	d, ret := n.lib.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		return GPU{}, fmt.Errorf("opening GPU %d: %s", i, errorString(ret))
	}
	g := GPU{Index: i}
	if g.Name, ret = d.GetName(); ret != nvml.SUCCESS {
		return GPU{}, fmt.Errorf("reading the name of GPU %d: %s", i, errorString(ret))
	}
	if g.UUID, ret = d.GetUUID(); ret != nvml.SUCCESS {
		return GPU{}, fmt.Errorf("reading the UUID of GPU %d: %s", i, errorString(ret))
	}
	if g.ComputeMajor, g.ComputeMinor, ret = d.GetCudaComputeCapability(); ret != nvml.SUCCESS {
		return GPU{}, fmt.Errorf("reading the compute capability of GPU %d: %s", i, errorString(ret))
	}
	mem, ret := d.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return GPU{}, fmt.Errorf("reading the memory of GPU %d: %s", i, errorString(ret))
	}
	g.MemoryTotal = mem.Total
	if pci, ret := d.GetPciInfo(); ret == nvml.SUCCESS {
		g.PCIBusID = cString(pci.BusId[:])
	}
	if cur, _, ret := d.GetMigMode(); ret == nvml.SUCCESS && cur == nvml.DEVICE_MIG_ENABLE {
		n, ret := d.GetMaxMigDeviceCount()
		if ret != nvml.SUCCESS {
			return GPU{}, fmt.Errorf("counting the MIG devices of GPU %d: %s", i, errorString(ret))
		}
		for k := range n {
			md, ret := d.GetMigDeviceHandleByIndex(k)
			if ret != nvml.SUCCESS {
				continue // an unused MIG slot
			}
			var m MIGDevice
			if m.UUID, ret = md.GetUUID(); ret != nvml.SUCCESS {
				return GPU{}, fmt.Errorf("reading the UUID of MIG device %d of GPU %d: %s", k, i, errorString(ret))
			}
			name, _ := md.GetName()
			m.Profile = MIGProfile(name)
			g.MIG = append(g.MIG, m)
		}
	}
	return g, nil
}

func cString(b []int8) string {
	s := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

// Usage samples the utilization and memory use of GPU i.
func (n *NVML) Usage(i int) (Usage, error) {
	d, ret := n.lib.DeviceGetHandleByIndex(i)
	if ret != nvml.SUCCESS {
		return Usage{}, fmt.Errorf("opening GPU %d: %s", i, errorString(ret))
	}
	u, ret := d.GetUtilizationRates()
	if ret != nvml.SUCCESS {
		return Usage{}, fmt.Errorf("reading the utilization of GPU %d: %s", i, errorString(ret))
	}
	mem, ret := d.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return Usage{}, fmt.Errorf("reading the memory of GPU %d: %s", i, errorString(ret))
	}
	return Usage{GPUPercent: u.Gpu, MemoryPercent: u.Memory, MemoryUsed: mem.Used, MemoryTotal: mem.Total}, nil
}

// Probe opens NVML, reads Info and closes it again.
func Probe() (Info, error) {
	n, err := Open("")
	if err != nil {
		return Info{}, err
	}
	in, err := n.Info()
	if cerr := n.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return in, err
}
