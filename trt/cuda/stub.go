//go:build !((cuda || tensorrt) && cgo)

package cuda

import (
	"fmt"
	"time"

	"github.com/jetinfer/jetinfer/trt"
)

// Available reports whether this binary was built with the CUDA staging
// layer (cgo and the "cuda" or "tensorrt" tag).
const Available = false

var errUnavailable = fmt.Errorf("CUDA staging is not compiled in (rebuild with CGO_ENABLED=1 and -tags cuda or -tags tensorrt): %w", trt.ErrUnavailable)

// RuntimeVersion fails: this binary has no CUDA support.
func RuntimeVersion() (runtime, driver int, err error) { return 0, 0, errUnavailable }

// DeviceCount fails: this binary has no CUDA support.
func DeviceCount() (int, error) { return 0, errUnavailable }

// Open fails: this binary has no CUDA support.
func Open(ordinal int) (*Device, error) {
	return nil, fmt.Errorf("opening CUDA device %d: %w", ordinal, errUnavailable)
}

// AllocPinned fails: this binary has no CUDA support.
func (d *Device) AllocPinned(n int) (*HostBuffer, error) { return nil, errUnavailable }

func (d *Device) allocPinned(n int) (*HostBuffer, error) { return nil, errUnavailable }

func (d *Device) freeHost(h *HostBuffer) error { return errUnavailable }

// AllocPageable fails: this binary has no CUDA support.
func AllocPageable(n int) (*HostBuffer, error) { return nil, errUnavailable }

// Free does nothing: no buffer can exist in this build.
func (h *HostBuffer) Free() error { return nil }

// AllocDevice fails: this binary has no CUDA support.
func (d *Device) AllocDevice(n int) (*DeviceBuffer, error) { return nil, errUnavailable }

// Free does nothing: no buffer can exist in this build.
func (b *DeviceBuffer) Free() error { return nil }

// Stream is a CUDA stream; none can be created in this build.
type Stream struct{}

// NewStream fails: this binary has no CUDA support.
func (d *Device) NewStream() (*Stream, error) { return nil, errUnavailable }

// Handle returns 0.
func (s *Stream) Handle() uint64 { return 0 }

// Submit fails: this binary has no CUDA support.
func (s *Stream) Submit(h2d []Copy, work *Spin, d2h []Copy) error { return errUnavailable }

// Wait fails: this binary has no CUDA support.
func (s *Stream) Wait() error { return errUnavailable }

// Done fails: this binary has no CUDA support.
func (s *Stream) Done() (bool, error) { return false, errUnavailable }

// Close does nothing.
func (s *Stream) Close() error { return nil }

// TimeCopies fails: this binary has no CUDA support.
func (s *Stream) TimeCopies(host *HostBuffer, dev *DeviceBuffer, n int, toDevice bool, reps int) (time.Duration, error) {
	return 0, errUnavailable
}

// LoadSpinKernel fails: this binary has no CUDA support.
func (d *Device) LoadSpinKernel() (*SpinKernel, error) { return nil, errUnavailable }

// Close does nothing.
func (k *SpinKernel) Close() error { return nil }
