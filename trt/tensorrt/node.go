package tensorrt

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/cuda"
	"github.com/jetinfer/jetinfer/trt/gpuinfo"
)

// describeDevice names the CUDA device info as a trt.Device and finds its
// MIG profile through probe (NVML), matching by UUID: the CUDA runtime
// reports the UUID of the GPU or MIG instance it opened. Without NVML the
// device is still described, with no MIG profile, and the error says why.
func describeDevice(info cuda.DeviceInfo, probe func() (gpuinfo.Info, error)) (trt.Device, string, error) {
	d := trt.Device{Kind: "cuda", Name: info.Name, Compute: info.Compute(), UUID: info.UUID}
	in, err := probe()
	if err != nil {
		return d, "", err
	}
	if info.UUID == "" {
		return d, "", fmt.Errorf("describing CUDA device %d: the CUDA runtime reported no UUID", info.Ordinal)
	}
	g, err := in.ByUUID(info.UUID)
	if err != nil {
		return d, "", err
	}
	if g.MIG != "" {
		for _, m := range g.GPU.MIG {
			if gpuinfo.UUIDHex(m.UUID) == gpuinfo.UUIDHex(info.UUID) {
				d.UUID = m.UUID
			}
		}
	}
	return d, g.MIG, nil
}

// Platform is this process's GOOS/GOARCH, as manifests record it.
func Platform() string { return runtime.GOOS + "/" + runtime.GOARCH }

// CUDAMajor turns a CUDA version number (1000*major + 10*minor, as
// cudaRuntimeGetVersion reports it) into its major.
func CUDAMajor(v int) int { return v / 1000 }

// newNode describes this process for the compatibility check: gpu and mig
// identify the device, linked is the linked TensorRT's full version,
// cudaRuntime the CUDA runtime version the binary links (the TensorRT
// package in use targets the same CUDA major, or the binary would not
// link), cfg the loader's settings.
func newNode(gpu trt.Device, mig, linked string, cudaRuntime int, cfg Config) trt.Node {
	return trt.Node{
		GPU:               gpu,
		MIG:               mig,
		TensorRT:          linked,
		TensorRTCUDAMajor: CUDAMajor(cudaRuntime),
		Platform:          Platform(),
		HostCodeAllowed:   cfg.AllowHostCode,
		Plugins:           cfg.Plugins,
	}
}

// checkLinked refuses a libnvinfer older than the TensorRT headers the
// shim was compiled against: the shim may call what the older library
// lacks, and TensorRT's own loader does not catch that before a crash.
// Both versions are "major.minor.patch[.build]".
func checkLinked(header, linked string) error {
	h, err1 := versionNumbers(header)
	l, err2 := versionNumbers(linked)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("comparing the linked TensorRT %q with the headers %q: unparsable version", linked, header)
	}
	for i := range min(len(h), len(l)) {
		if l[i] > h[i] {
			return nil
		}
		if l[i] < h[i] {
			return fmt.Errorf("the linked libnvinfer is TensorRT %s, older than the TensorRT %s headers this binary was built with: "+
				"install TensorRT %s or newer on this node, or rebuild jetinfer against the TensorRT installed here: %w",
				linked, header, header, trt.ErrUnavailable)
		}
	}
	return nil
}

func versionNumbers(s string) ([]int, error) {
	f := strings.Split(s, ".")
	if len(f) < 3 || len(f) > 4 {
		return nil, fmt.Errorf("version %q is not major.minor.patch[.build]", s)
	}
	out := make([]int, len(f))
	for i, p := range f {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("version %q is not major.minor.patch[.build]", s)
		}
		out[i] = n
	}
	return out, nil
}
