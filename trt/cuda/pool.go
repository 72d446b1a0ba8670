package cuda

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
)

// hostAllocator is what a PinnedPool draws from: a *Device in production.
type hostAllocator interface {
	allocPinned(n int) (*HostBuffer, error)
	freeHost(h *HostBuffer) error
}

// MinPoolClass is the smallest size class of a PinnedPool.
const MinPoolClass = 64 << 10

// PinnedPool recycles pinned host buffers. cudaHostAlloc and cudaFreeHost
// are slow (they map and unmap pages and may synchronize the device), so
// staging memory is allocated once per size class and reused. Sizes are
// rounded up to a power of two of at least MinPoolClass; at most maxIdle
// bytes are kept idle, the rest is freed on Put.
//
// A PinnedPool is safe for concurrent use.
type PinnedPool struct {
	alloc   hostAllocator
	maxIdle int

	mu        sync.Mutex
	idle      map[int][]*HostBuffer // by class size
	idleBytes int
	closed    bool
	stats     PoolStats
}

// PoolStats counts a pool's traffic.
type PoolStats struct {
	Gets      int // buffers handed out
	Allocs    int // of those, freshly allocated
	Frees     int // buffers freed (over the idle bound, or at Close)
	IdleBytes int
}

// NewPinnedPool returns a pool that allocates pinned memory on d and keeps
// at most maxIdleBytes of it idle.
func NewPinnedPool(d *Device, maxIdleBytes int) *PinnedPool {
	return newPool(d, maxIdleBytes)
}

func newPool(a hostAllocator, maxIdle int) *PinnedPool {
	return &PinnedPool{alloc: a, maxIdle: maxIdle, idle: make(map[int][]*HostBuffer)}
}

// ErrPoolClosed is returned by Get after Close.
var ErrPoolClosed = errors.New("pinned pool closed")

func poolClass(n int) int {
	if n <= MinPoolClass {
		return MinPoolClass
	}
	return 1 << bits.Len(uint(n-1))
}

// Get returns a pinned buffer of exactly n bytes (Len() == n). Its contents
// are undefined. Return it with Put.
func (p *PinnedPool) Get(n int) (*HostBuffer, error) {
	if n <= 0 || n > 1<<40 {
		return nil, fmt.Errorf("getting a pinned buffer of %d bytes: size out of range", n)
	}
	class := poolClass(n)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrPoolClosed
	}
	p.stats.Gets++
	if l := p.idle[class]; len(l) > 0 {
		h := l[len(l)-1]
		p.idle[class] = l[:len(l)-1]
		p.idleBytes -= class
		p.mu.Unlock()
		h.size = n
		return h, nil
	}
	p.stats.Allocs++
	p.mu.Unlock()
	h, err := p.alloc.allocPinned(class)
	if err != nil {
		return nil, fmt.Errorf("growing the pinned pool by %d bytes: %w", class, err)
	}
	h.class = class
	h.size = n
	return h, nil
}

// Put returns a buffer obtained from Get. The caller must not use it
// afterwards.
func (p *PinnedPool) Put(h *HostBuffer) error {
	if h == nil {
		return nil
	}
	if h.class == 0 {
		return fmt.Errorf("returning a buffer that did not come from a pool")
	}
	h.size = h.class
	p.mu.Lock()
	if p.closed || p.idleBytes+h.class > p.maxIdle {
		p.stats.Frees++
		p.mu.Unlock()
		return p.alloc.freeHost(h)
	}
	p.idle[h.class] = append(p.idle[h.class], h)
	p.idleBytes += h.class
	p.mu.Unlock()
	return nil
}

// Stats returns a snapshot of the pool's counters.
func (p *PinnedPool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.IdleBytes = p.idleBytes
	return s
}

// Close frees every idle buffer. Buffers still out are freed when they
// are Put back.
func (p *PinnedPool) Close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle = make(map[int][]*HostBuffer)
	p.idleBytes = 0
	p.closed = true
	p.mu.Unlock()
	var errs []error
	for _, l := range idle {
		for _, h := range l {
			p.mu.Lock()
			p.stats.Frees++
			p.mu.Unlock()
			if err := p.alloc.freeHost(h); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
