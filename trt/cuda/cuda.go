//go:build (cuda || tensorrt) && cgo

package cuda

/*
#cgo CFLAGS: -I/usr/local/cuda/include
#cgo LDFLAGS: -L/usr/local/cuda/lib64 -lcudart
#cgo noescape jc_batch
#cgo nocallback jc_batch
#cgo noescape jc_batch_spin
#cgo nocallback jc_batch_spin
#cgo noescape jc_event_wait
#cgo nocallback jc_event_wait
#cgo noescape jc_event_query
#cgo nocallback jc_event_query
#include "jcuda.h"
*/
import "C"

import (
	"fmt"
	"time"
	"unsafe"
)

// Available reports whether this binary was built with the CUDA staging
// layer (cgo and the "cuda" or "tensorrt" tag).
const Available = true

func statusError(op string, st *C.jc_status) error {
	return &Error{
		Op:     op,
		Code:   Code(st.code),
		CUDA:   int(st.cuda_error),
		Msg:    cString(st.message[:]),
		Sticky: st.sticky != 0,
	}
}

// cString copies a NUL-terminated C string out of a fixed array without
// C.GoString, so that status structs on the Go stack do not escape to the
// heap on every call.
func cString(b []C.char) string {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b))), n))
}

// RuntimeVersion reports the linked CUDA runtime's version and the CUDA
// version the installed driver supports (1000*major + 10*minor).
func RuntimeVersion() (runtime, driver int, err error) {
	var st C.jc_status
	var r, d C.int32_t
	if C.jc_runtime_version(&r, &d, &st) != C.JC_OK {
		return 0, 0, statusError("reading CUDA versions", &st)
	}
	return int(r), int(d), nil
}

// DeviceCount returns the number of CUDA devices. With no device or no
// driver the error matches ErrNoDevice.
func DeviceCount() (int, error) {
	var st C.jc_status
	var n C.int32_t
	if C.jc_device_count(&n, &st) != C.JC_OK {
		return 0, statusError("counting CUDA devices", &st)
	}
	return int(n), nil
}

// Open selects device ordinal, initializes its primary context and reads
// its properties.
func Open(ordinal int) (*Device, error) {
	var st C.jc_status
	var info C.jc_device_info
	if C.jc_device_open(C.int32_t(ordinal), &info, &st) != C.JC_OK {
		return nil, statusError(fmt.Sprintf("opening CUDA device %d", ordinal), &st)
	}
	rt, drv, err := RuntimeVersion()
	if err != nil {
		return nil, err
	}
	return &Device{info: DeviceInfo{
		Ordinal:         ordinal,
		Name:            C.GoString(&info.name[0]),
		ComputeMajor:    int(info.major),
		ComputeMinor:    int(info.minor),
		Multiprocessors: int(info.multiprocessors),
		TotalMemory:     uint64(info.total_memory),
		CopyEngines:     int(info.async_engines),
		PCIBus:          int(info.pci_bus),
		UUID:            formatUUID(info.uuid[:], "GPU-"),
		RuntimeVersion:  rt,
		DriverVersion:   drv,
	}}, nil
}

// AllocPinned allocates n bytes of page-locked host memory.
func (d *Device) AllocPinned(n int) (*HostBuffer, error) { return d.allocPinned(n) }

func (d *Device) allocPinned(n int) (*HostBuffer, error) {
	if err := d.Lost(); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, fmt.Errorf("allocating %d bytes of pinned memory: size must be positive", n)
	}
	var st C.jc_status
	var p unsafe.Pointer
	if C.jc_host_alloc(C.int32_t(d.info.Ordinal), C.uint64_t(n), &p, &st) != C.JC_OK {
		return nil, d.observe(statusError(fmt.Sprintf("allocating %d bytes of pinned memory", n), &st))
	}
	return &HostBuffer{ptr: p, size: n, pinned: true, device: d.info.Ordinal}, nil
}

func (d *Device) freeHost(h *HostBuffer) error { return h.Free() }

// AllocPageable allocates n bytes of ordinary (pageable) host memory with
// malloc. It exists as the baseline that pinned memory is measured against.
func AllocPageable(n int) (*HostBuffer, error) {
	if n <= 0 {
		return nil, fmt.Errorf("allocating %d bytes of pageable memory: size must be positive", n)
	}
	p := C.malloc(C.size_t(n))
	if p == nil {
		return nil, fmt.Errorf("allocating %d bytes of pageable memory: out of memory", n)
	}
	return &HostBuffer{ptr: p, size: n}, nil
}

// Free releases the buffer. It must not be in flight on a stream.
func (h *HostBuffer) Free() error {
	if h == nil || h.ptr == nil {
		return nil
	}
	p := h.ptr
	h.ptr, h.size = nil, 0
	if !h.pinned {
		C.free(p)
		return nil
	}
	var st C.jc_status
	if C.jc_host_free(C.int32_t(h.device), p, &st) != C.JC_OK {
		return statusError("freeing pinned memory", &st)
	}
	return nil
}

// AllocDevice allocates n bytes of device memory.
func (d *Device) AllocDevice(n int) (*DeviceBuffer, error) {
	if err := d.Lost(); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, fmt.Errorf("allocating %d bytes of device memory: size must be positive", n)
	}
	var st C.jc_status
	var p C.uint64_t
	if C.jc_dev_alloc(C.int32_t(d.info.Ordinal), C.uint64_t(n), &p, &st) != C.JC_OK {
		return nil, d.observe(statusError(fmt.Sprintf("allocating %d bytes of device memory", n), &st))
	}
	return &DeviceBuffer{device: d.info.Ordinal, ptr: uint64(p), size: n}, nil
}

// Free releases the buffer. No work using it may be in flight.
func (b *DeviceBuffer) Free() error {
	if b == nil || b.ptr == 0 {
		return nil
	}
	var st C.jc_status
	p := b.ptr
	b.ptr, b.size = 0, 0
	if C.jc_dev_free(C.int32_t(b.device), C.uint64_t(p), &st) != C.JC_OK {
		return statusError("freeing device memory", &st)
	}
	return nil
}

// Stream is a non-blocking CUDA stream with its own blocking-sync event.
// It belongs to one goroutine at a time.
type Stream struct {
	dev           *Device
	device        int
	stream, event uint64
	h2d, d2h      []C.jc_copy // scratch reused by Submit
}

// NewStream creates a stream and its completion event on d.
func (d *Device) NewStream() (*Stream, error) {
	if err := d.Lost(); err != nil {
		return nil, err
	}
	var st C.jc_status
	var s, e C.uint64_t
	if C.jc_stream_create(C.int32_t(d.info.Ordinal), &s, &e, &st) != C.JC_OK {
		return nil, d.observe(statusError("creating a CUDA stream", &st))
	}
	return &Stream{dev: d, device: d.info.Ordinal, stream: uint64(s), event: uint64(e)}, nil
}

// Handle is the cudaStream_t as an integer, for other C code (TensorRT).
func (s *Stream) Handle() uint64 { return s.stream }

func (s *Stream) fill(dst []C.jc_copy, cs []Copy) ([]C.jc_copy, error) {
	dst = dst[:0]
	for i, c := range cs {
		if err := c.check(); err != nil {
			return nil, fmt.Errorf("copy %d: %w", i, err)
		}
		dst = append(dst, C.jc_copy{
			device: C.uint64_t(c.Device.ptr + uint64(c.DeviceOffset)),
			host:   unsafe.Add(c.Host.ptr, c.HostOffset),
			bytes:  C.uint64_t(c.Bytes),
		})
	}
	return dst, nil
}

func firstOrNil(cs []C.jc_copy) *C.jc_copy {
	if len(cs) == 0 {
		return nil
	}
	return &cs[0]
}

// Submit queues one batch on the stream with a single C call: the h2d
// copies, the optional timing-kernel work, the d2h copies, then the
// stream's event. It returns once queued; call Wait before touching the
// host buffers. Host buffers should be pinned: pageable ones make the
// copies synchronous.
func (s *Stream) Submit(h2d []Copy, work *Spin, d2h []Copy) error {
	if err := s.dev.Lost(); err != nil {
		return err
	}
	var err error
	if s.h2d, err = s.fill(s.h2d, h2d); err != nil {
		return fmt.Errorf("submitting a batch: host to device %w", err)
	}
	if s.d2h, err = s.fill(s.d2h, d2h); err != nil {
		return fmt.Errorf("submitting a batch: device to host %w", err)
	}
	var st C.jc_status
	var rc C.int32_t
	if work == nil {
		rc = C.jc_batch(C.int32_t(s.device), C.uint64_t(s.stream),
			firstOrNil(s.h2d), C.int32_t(len(s.h2d)), nil, nil,
			firstOrNil(s.d2h), C.int32_t(len(s.d2h)), C.uint64_t(s.event), &st)
	} else {
		if err := work.check(); err != nil {
			return fmt.Errorf("submitting a batch: %w", err)
		}
		args := C.jc_spin_args{
			kernel:  C.uint64_t(work.Kernel.kernel),
			data:    C.uint64_t(work.Data.ptr),
			words:   C.uint64_t(work.Words),
			cycles:  C.uint64_t(work.Cycles),
			blocks:  C.uint32_t(work.Blocks),
			threads: C.uint32_t(work.Threads),
		}
		rc = C.jc_batch_spin(C.int32_t(s.device), C.uint64_t(s.stream),
			firstOrNil(s.h2d), C.int32_t(len(s.h2d)), &args,
			firstOrNil(s.d2h), C.int32_t(len(s.d2h)), C.uint64_t(s.event), &st)
	}
	if rc != C.JC_OK {
		return s.dev.observe(statusError("submitting a batch", &st))
	}
	return nil
}

// Wait blocks until everything submitted so far has completed. The calling
// thread sleeps in the driver (blocking-sync event) rather than spinning.
func (s *Stream) Wait() error {
	if err := s.dev.Lost(); err != nil {
		return err
	}
	var st C.jc_status
	if C.jc_event_wait(C.int32_t(s.device), C.uint64_t(s.event), &st) != C.JC_OK {
		return s.dev.observe(statusError("waiting for a batch", &st))
	}
	return nil
}

// Done reports, without blocking, whether everything submitted so far has
// completed.
func (s *Stream) Done() (bool, error) {
	if err := s.dev.Lost(); err != nil {
		return false, err
	}
	var st C.jc_status
	var done C.int32_t
	if C.jc_event_query(C.int32_t(s.device), C.uint64_t(s.event), &done, &st) != C.JC_OK {
		return false, s.dev.observe(statusError("polling a batch", &st))
	}
	return done != 0, nil
}

// Close waits for the stream's work and destroys the stream and its event.
func (s *Stream) Close() error {
	if s == nil || s.stream == 0 {
		return nil
	}
	var st C.jc_status
	rc := C.jc_stream_destroy(C.int32_t(s.device), C.uint64_t(s.stream), C.uint64_t(s.event), &st)
	s.stream, s.event = 0, 0
	if rc != C.JC_OK {
		return statusError("closing a CUDA stream", &st)
	}
	return nil
}

// TimeCopies runs reps back-to-back copies of n bytes in one direction on
// the stream and returns the device time they took, measured with CUDA
// timing events (no host round trip between copies).
func (s *Stream) TimeCopies(host *HostBuffer, dev *DeviceBuffer, n int, toDevice bool, reps int) (time.Duration, error) {
	if err := (Copy{Host: host, Device: dev, Bytes: n}).check(); err != nil {
		return 0, fmt.Errorf("timing copies: %w", err)
	}
	if reps <= 0 {
		return 0, fmt.Errorf("timing copies: reps must be positive, got %d", reps)
	}
	var st C.jc_status
	var ms C.float
	dir := C.int32_t(0)
	if toDevice {
		dir = 1
	}
	if C.jc_time_copies(C.int32_t(s.device), C.uint64_t(s.stream), host.ptr, C.uint64_t(dev.ptr),
		C.uint64_t(n), dir, C.int32_t(reps), &ms, &st) != C.JC_OK {
		return 0, statusError("timing copies", &st)
	}
	return time.Duration(float64(ms) * float64(time.Millisecond)), nil
}

// LoadSpinKernel loads the timing kernel (PTX JIT-compiled by the driver).
// It needs CUDA runtime 12.0 or newer.
func (d *Device) LoadSpinKernel() (*SpinKernel, error) {
	var st C.jc_status
	var lib, k C.uint64_t
	if C.jc_spin_load(C.int32_t(d.info.Ordinal), &lib, &k, &st) != C.JC_OK {
		return nil, statusError("loading the timing kernel", &st)
	}
	return &SpinKernel{device: d.info.Ordinal, library: uint64(lib), kernel: uint64(k)}, nil
}

// Close unloads the kernel. No launch of it may be in flight.
func (k *SpinKernel) Close() error {
	if k == nil || k.library == 0 {
		return nil
	}
	var st C.jc_status
	lib := k.library
	k.library, k.kernel = 0, 0
	if C.jc_spin_unload(C.int32_t(k.device), C.uint64_t(lib), &st) != C.JC_OK {
		return statusError("unloading the timing kernel", &st)
	}
	return nil
}
