package gpuinfo

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestProbe runs on any machine: with a GPU it checks what NVML reports,
// without one it checks that the failure is a clean ErrNoGPU.
func TestProbe(t *testing.T) {
	in, err := Probe()
	if err != nil {
		if !errors.Is(err, ErrNoGPU) {
			t.Fatalf("Probe failed without matching ErrNoGPU: %v", err)
		}
		t.Logf("no GPU here (the error a node without one gets): %v", err)
		return
	}
	t.Logf("driver %s, CUDA %d, NVML %s", in.DriverVersion, in.CUDADriverVersion, in.NVMLVersion)
	if in.DriverVersion == "" || in.CUDADriverVersion < 1000 || len(in.GPUs) == 0 {
		t.Fatalf("implausible info %+v", in)
	}
	for _, g := range in.GPUs {
		t.Logf("GPU %d: %s %s compute %s, %d MiB, bus %s", g.Index, g.Name, g.UUID, g.Compute(), g.MemoryTotal>>20, g.PCIBusID)
		if g.Name == "" || !strings.HasPrefix(g.UUID, "GPU-") || g.ComputeMajor < 3 || g.MemoryTotal == 0 {
			t.Errorf("implausible GPU %+v", g)
		}
		dev := g.Device()
		if dev.Kind != "cuda" || dev.Compute != g.Compute() || dev.UUID != g.UUID {
			t.Errorf("Device() = %+v for %+v", dev, g)
		}
	}
	n, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	u, err := n.Usage(in.GPUs[0].Index)
	if err != nil {
		t.Fatal(err)
	}
	if u.MemoryTotal != in.GPUs[0].MemoryTotal || u.GPUPercent > 100 {
		t.Errorf("implausible usage %+v", u)
	}
	if _, err := in.GPU(len(in.GPUs) + 5); !errors.Is(err, ErrNoGPU) {
		t.Errorf("GPU(out of range) = %v, want ErrNoGPU", err)
	}
}

// TestOpenMissingLibrary points NVML at a library that does not exist: the
// error must match ErrNoGPU on every machine.
func TestOpenMissingLibrary(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "libnvidia-ml.so.1"))
	if !errors.Is(err, ErrNoGPU) {
		t.Fatalf("Open(missing library) = %v, want ErrNoGPU", err)
	}
}
