package cuda

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/jetinfer/jetinfer/trt"
)

// DeviceInfo describes a CUDA device.
type DeviceInfo struct {
	Ordinal         int
	Name            string
	ComputeMajor    int
	ComputeMinor    int
	Multiprocessors int
	TotalMemory     uint64
	CopyEngines     int // 2 or more: host-to-device and device-to-host copies overlap
	PCIBus          int
	// UUID is the device's UUID as NVML and nvidia-smi print it
	// ("GPU-…", or "MIG-…" for a MIG instance); empty if unknown.
	UUID           string
	RuntimeVersion int // CUDA runtime linked in, 1000*major + 10*minor
	DriverVersion  int // CUDA version the driver supports, same encoding
}

// Compute returns the compute capability as "major.minor".
func (i DeviceInfo) Compute() string { return fmt.Sprintf("%d.%d", i.ComputeMajor, i.ComputeMinor) }

// HostBuffer is host memory outside the Go heap: page-locked (pinned)
// memory from cudaHostAlloc, or ordinary pageable memory from malloc (only
// for baselines: a copy from pageable memory is staged by the driver and
// does not overlap with the caller).
type HostBuffer struct {
	ptr    unsafe.Pointer
	size   int
	pinned bool
	device int
	class  int // size class in a PinnedPool, 0 if not pooled
}

// Bytes returns the buffer as a byte slice aliasing the C memory. It is
// valid until Free (or until the buffer is returned to its pool).
func (h *HostBuffer) Bytes() []byte {
	if h == nil || h.ptr == nil {
		return nil
	}
	return unsafe.Slice((*byte)(h.ptr), h.size)
}

// Len is the size of the buffer in bytes.
func (h *HostBuffer) Len() int { return h.size }

// Pinned reports whether the buffer is page-locked.
func (h *HostBuffer) Pinned() bool { return h.pinned }

// Pointer returns the start of the buffer, for handing to C.
func (h *HostBuffer) Pointer() unsafe.Pointer { return h.ptr }

// DeviceBuffer is device memory from cudaMalloc.
type DeviceBuffer struct {
	device int
	ptr    uint64
	size   int
}

// Ptr is the device address.
func (d *DeviceBuffer) Ptr() uint64 { return d.ptr }

// Len is the size of the buffer in bytes.
func (d *DeviceBuffer) Len() int { return d.size }

// Copy is one contiguous copy of Bytes bytes between Host[HostOffset:] and
// Device[DeviceOffset:]. The direction is given by where it is passed to
// Stream.Submit.
type Copy struct {
	Host         *HostBuffer
	HostOffset   int
	Device       *DeviceBuffer
	DeviceOffset int
	Bytes        int
}

func (c Copy) check() error {
	switch {
	case c.Host == nil || c.Device == nil:
		return fmt.Errorf("copy needs both a host and a device buffer")
	case c.Bytes < 0 || c.HostOffset < 0 || c.DeviceOffset < 0:
		return fmt.Errorf("copy has a negative size or offset")
	case c.HostOffset > c.Host.size-c.Bytes:
		return fmt.Errorf("copy of %d bytes at host offset %d overruns a %d-byte host buffer",
			c.Bytes, c.HostOffset, c.Host.size)
	case c.DeviceOffset > c.Device.size-c.Bytes:
		return fmt.Errorf("copy of %d bytes at device offset %d overruns a %d-byte device buffer",
			c.Bytes, c.DeviceOffset, c.Device.size)
	}
	return nil
}

// Spin is the work slot of a batch that runs the timing kernel: every
// thread spins for Cycles SM clock cycles, then the grid adds 1 to each
// little-endian uint32 word of Data[:Words*4]. It exists to measure
// copy/compute overlap and to prove that work ran between a batch's copies.
type Spin struct {
	Kernel  *SpinKernel
	Data    *DeviceBuffer
	Words   int
	Cycles  uint64
	Blocks  int // default 1
	Threads int // default 256
}

func (s *Spin) check() error {
	if s.Kernel == nil || s.Data == nil {
		return fmt.Errorf("spin work needs a kernel and a device buffer")
	}
	if s.Words < 0 || s.Words > s.Data.size/4 {
		return fmt.Errorf("spin work over %d words overruns a %d-byte device buffer", s.Words, s.Data.size)
	}
	return nil
}

// Device is an opened CUDA device (its primary context is initialized).
// It is safe for concurrent use.
//
// Once a call on the device or one of its streams has failed with a sticky
// error (Error.Sticky: an illegal address, a launch failure, ...), every
// later call fails at once with an error matching trt.ErrDeviceLost: the
// context is gone for this process, and only a new process recovers.
type Device struct {
	info DeviceInfo
	lost atomic.Pointer[Error] // the first sticky error seen
}

// Lost returns nil while the device is usable, else an error matching
// trt.ErrDeviceLost that names the sticky error which lost it.
func (d *Device) Lost() error {
	if e := d.lost.Load(); e != nil {
		return fmt.Errorf("CUDA device %d is lost (%s: %s); restart the process: %w", d.info.Ordinal, e.Op, e.Msg, trt.ErrDeviceLost)
	}
	return nil
}

// observe records err's sticky CUDA error, if it has one, and returns err.
func (d *Device) observe(err error) error {
	var ce *Error
	if errors.As(err, &ce) && ce.Sticky {
		d.lost.CompareAndSwap(nil, ce)
	}
	return err
}

// Info describes the device.
func (d *Device) Info() DeviceInfo { return d.info }

// Ordinal is the CUDA device number.
func (d *Device) Ordinal() int { return d.info.Ordinal }

// SpinKernel is the loaded timing kernel (see Spin).
type SpinKernel struct {
	device  int
	library uint64
	kernel  uint64
}

// formatUUID renders 16 UUID bytes the way NVML prints them,
// "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"; "" for all zero bytes.
func formatUUID[B ~int8 | ~uint8](b []B, prefix string) string {
	if len(b) != 16 {
		return ""
	}
	var raw [16]byte
	zero := true
	for i, v := range b {
		raw[i] = byte(v)
		zero = zero && raw[i] == 0
	}
	if zero {
		return ""
	}
	return fmt.Sprintf("%s%x-%x-%x-%x-%x", prefix, raw[0:4], raw[4:6], raw[6:8], raw[8:10], raw[10:16])
}
