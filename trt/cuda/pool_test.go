package cuda

import (
	"errors"
	"sync"
	"testing"
	"unsafe"
)

// goMemAllocator is a stand-in for a Device in pool tests: it hands out Go
// memory (never passed to C) and counts live buffers.
type goMemAllocator struct {
	mu    sync.Mutex
	live  map[unsafe.Pointer][]byte
	fails bool
}

func newGoMemAllocator() *goMemAllocator {
	return &goMemAllocator{live: make(map[unsafe.Pointer][]byte)}
}

func (a *goMemAllocator) allocPinned(n int) (*HostBuffer, error) {
	if a.fails {
		return nil, errors.New("stand-in allocator out of memory")
	}
	b := make([]byte, n)
	p := unsafe.Pointer(&b[0])
	a.mu.Lock()
	a.live[p] = b
	a.mu.Unlock()
	return &HostBuffer{ptr: p, size: n, pinned: true}, nil
}

func (a *goMemAllocator) freeHost(h *HostBuffer) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.live[h.ptr]; !ok {
		return errors.New("double free")
	}
	delete(a.live, h.ptr)
	return nil
}

func (a *goMemAllocator) liveCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.live)
}

func TestPoolClass(t *testing.T) {
	for _, tc := range []struct{ n, want int }{
		{1, MinPoolClass},
		{MinPoolClass, MinPoolClass},
		{MinPoolClass + 1, 2 * MinPoolClass},
		{1 << 20, 1 << 20},
		{1<<20 + 1, 2 << 20},
		{3 << 20, 4 << 20},
	} {
		if got := poolClass(tc.n); got != tc.want {
			t.Errorf("poolClass(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

func TestPoolReusesAndBoundsIdle(t *testing.T) {
	a := newGoMemAllocator()
	p := newPool(a, 2<<20) // room for two idle 1 MiB buffers
	var bufs []*HostBuffer
	for range 3 {
		h, err := p.Get(1000 << 10)
		if err != nil {
			t.Fatal(err)
		}
		if h.Len() != 1000<<10 || len(h.Bytes()) != 1000<<10 {
			t.Fatalf("Len() = %d, len(Bytes()) = %d, want %d", h.Len(), len(h.Bytes()), 1000<<10)
		}
		bufs = append(bufs, h)
	}
	for _, h := range bufs {
		if err := p.Put(h); err != nil {
			t.Fatal(err)
		}
	}
	s := p.Stats()
	if s.Allocs != 3 || s.Frees != 1 || s.IdleBytes != 2<<20 || a.liveCount() != 2 {
		t.Fatalf("after 3 gets and puts: stats %+v, live %d; want 3 allocs, 1 free, 2 MiB idle, 2 live", s, a.liveCount())
	}
	h, err := p.Get(700 << 10) // same 1 MiB class: reused
	if err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.Allocs != 3 || h.Len() != 700<<10 {
		t.Fatalf("reusing an idle buffer: stats %+v, Len %d", s, h.Len())
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if a.liveCount() != 1 {
		t.Fatalf("after Close %d buffers live, want 1 (the one still out)", a.liveCount())
	}
	if err := p.Put(h); err != nil {
		t.Fatal(err)
	}
	if a.liveCount() != 0 {
		t.Fatalf("a buffer put back after Close was not freed")
	}
	if _, err := p.Get(10); !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("Get after Close: %v, want ErrPoolClosed", err)
	}
}

func TestPoolRejects(t *testing.T) {
	a := newGoMemAllocator()
	p := newPool(a, 1<<20)
	if _, err := p.Get(0); err == nil {
		t.Error("Get(0) succeeded")
	}
	if err := p.Put(&HostBuffer{size: 10}); err == nil {
		t.Error("Put of a foreign buffer succeeded")
	}
	a.fails = true
	if _, err := p.Get(10); err == nil {
		t.Error("Get succeeded although the allocator failed")
	}
}

func TestPoolConcurrent(t *testing.T) {
	a := newGoMemAllocator()
	p := newPool(a, 8<<20)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				n := 1 + (g*7919+i*104729)%(3<<20)
				h, err := p.Get(n)
				if err != nil {
					t.Error(err)
					return
				}
				b := h.Bytes()
				b[0], b[n-1] = byte(g), byte(i)
				if err := p.Put(h); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if a.liveCount() != 0 {
		t.Fatalf("%d buffers leaked", a.liveCount())
	}
	if s := p.Stats(); s.Gets != 1600 || s.Allocs != s.Frees {
		t.Fatalf("stats %+v: want 1600 gets and allocs == frees", s)
	}
}

func TestCopyCheck(t *testing.T) {
	h := &HostBuffer{size: 100}
	d := &DeviceBuffer{size: 50}
	for _, tc := range []struct {
		c  Copy
		ok bool
	}{
		{Copy{Host: h, Device: d, Bytes: 50}, true},
		{Copy{Host: h, Device: d, Bytes: 51}, false},
		{Copy{Host: h, HostOffset: 60, Device: d, Bytes: 41}, false},
		{Copy{Host: h, HostOffset: 50, Device: d, Bytes: 50}, true},
		{Copy{Host: h, Device: d, DeviceOffset: 1, Bytes: 50}, false},
		{Copy{Host: h, Device: d, Bytes: -1}, false},
		{Copy{Device: d, Bytes: 1}, false},
	} {
		if err := tc.c.check(); (err == nil) != tc.ok {
			t.Errorf("check(%+v) = %v, want ok=%v", tc.c, err, tc.ok)
		}
	}
}
