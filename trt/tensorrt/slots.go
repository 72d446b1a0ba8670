package tensorrt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/cuda"
)

// hostBuffer and deviceBuffer are what a slot needs of cuda's buffers.
type hostBuffer interface {
	Len() int
	Bytes() []byte
	Pointer() unsafe.Pointer
	Free() error
}

type deviceBuffer interface {
	Len() int
	Ptr() uint64
	Free() error
}

// allocator hands out staging memory: a cudaAllocator in the engine.
type allocator interface {
	allocHost(n int) (hostBuffer, error)
	allocDevice(n int) (deviceBuffer, error)
}

// cudaAllocator allocates pinned host and device memory on a CUDA device.
type cudaAllocator struct{ dev *cuda.Device }

func (a cudaAllocator) allocHost(n int) (hostBuffer, error) {
	h, err := a.dev.AllocPinned(n)
	if err != nil {
		return nil, err
	}
	return h, nil
}

func (a cudaAllocator) allocDevice(n int) (deviceBuffer, error) {
	d, err := a.dev.AllocDevice(n)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// staging is one tensor's pinned host and device buffers in a slot.
type staging struct {
	host hostBuffer
	dev  deviceBuffer
}

// minStaging is the smallest staging buffer, so that every binding has an
// address even for empty tensors.
const minStaging = 256

// grow makes sure st holds at least n bytes in both buffers. It allocates
// the new buffers before it frees the old ones: when an allocation fails
// (pinned or device memory exhausted) st keeps its old, still valid
// buffers and the slot stays usable for batches that fit them.
func (st *staging) grow(a allocator, n int) error {
	n = max(n, minStaging)
	if st.host != nil && st.dev != nil && st.host.Len() >= n && st.dev.Len() >= n {
		return nil
	}
	h, err := a.allocHost(n)
	if err != nil {
		return fmt.Errorf("growing a staging buffer to %d bytes: %w", n, err)
	}
	d, err := a.allocDevice(n)
	if err != nil {
		return errors.Join(fmt.Errorf("growing a staging buffer to %d bytes: %w", n, err), h.Free())
	}
	old := *st
	st.host, st.dev = h, d
	return old.free()
}

// free releases both buffers.
func (st *staging) free() error {
	var errs []error
	if st.host != nil {
		errs = append(errs, st.host.Free())
	}
	if st.dev != nil {
		errs = append(errs, st.dev.Free())
	}
	st.host, st.dev = nil, nil
	return errors.Join(errs...)
}

// slotPool hands out execution slots, preferring one whose execution
// context already has the batch's optimization profile selected: a
// profile switch costs a setOptimizationProfileAsync on the stream.
type slotPool[S any] struct {
	tokens chan struct{} // one per free slot
	mu     sync.Mutex
	free   []pooled[S]
}

type pooled[S any] struct {
	slot    S
	profile int
}

func newSlotPool[S any](n int) *slotPool[S] {
	return &slotPool[S]{tokens: make(chan struct{}, n)}
}

// put returns slot, whose context has profile selected, to the pool.
func (p *slotPool[S]) put(slot S, profile int) {
	p.mu.Lock()
	p.free = append(p.free, pooled[S]{slot, profile})
	p.mu.Unlock()
	p.tokens <- struct{}{}
}

// get waits for a free slot, cancellable by ctx, and returns one on
// profile if one is free, else the slot that has been free longest, with
// the profile its context has selected.
func (p *slotPool[S]) get(ctx context.Context, profile int) (S, int, error) {
	var zero S
	if err := ctx.Err(); err != nil {
		return zero, 0, err
	}
	select {
	case <-p.tokens:
	case <-ctx.Done():
		return zero, 0, ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pick := 0
	for i, e := range p.free {
		if e.profile == profile {
			pick = i
			break
		}
	}
	e := p.free[pick]
	p.free = append(p.free[:pick], p.free[pick+1:]...)
	return e.slot, e.profile, nil
}

// health remembers that the engine's device was lost: after the first
// error matching trt.ErrDeviceLost every call fails at once with an error
// matching it too, without touching the device again.
type health struct {
	mu   sync.Mutex
	lost error
}

// check returns nil while the engine is usable.
func (h *health) check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost != nil {
		return fmt.Errorf("running a batch: the engine's GPU was lost earlier (%v); restart the process: %w", h.lost, trt.ErrDeviceLost)
	}
	return nil
}

// observe records err if it says the device is lost, and returns err.
func (h *health) observe(err error) error {
	if err != nil && errors.Is(err, trt.ErrDeviceLost) {
		h.mu.Lock()
		if h.lost == nil {
			h.lost = err
		}
		h.mu.Unlock()
	}
	return err
}
