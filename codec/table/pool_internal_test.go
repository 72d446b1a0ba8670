package table

import (
	"testing"
	"unsafe"
)

// TestPoolAllocatorReusesZeroedAligned checks what arrow-go expects of an
// allocator (zeroed, 64-byte aligned memory of the asked length; contents
// kept by Reallocate) also for buffers that come back from the pool.
func TestPoolAllocatorReusesZeroedAligned(t *testing.T) {
	var p poolAllocator
	check := func(b []byte, size int) {
		t.Helper()
		if len(b) != size {
			t.Fatalf("len %d, want %d", len(b), size)
		}
		if addr := uintptr(unsafe.Pointer(unsafe.SliceData(b))); addr%poolAlign != 0 {
			t.Fatalf("address %#x not %d-byte aligned", addr, poolAlign)
		}
		for i, v := range b {
			if v != 0 {
				t.Fatalf("byte %d of a fresh buffer is %d", i, v)
			}
		}
	}
	for _, size := range []int{0, 1, 100, 4095, 4096, 5000, 1 << 20} {
		b := p.Allocate(size)
		check(b, size)
		for i := range b {
			b[i] = 0xff
		}
		p.Free(b)
		check(p.Allocate(size), size) // possibly the same memory, cleared
	}
	b := p.Allocate(5000)
	for i := range b {
		b[i] = byte(i)
	}
	g := p.Reallocate(20000, b)
	if len(g) != 20000 || g[4999] != byte(4999%256) || g[1] != 1 || g[5000] != 0 {
		t.Fatalf("Reallocate lost the contents: len %d, g[1] %d, g[4999] %d, g[5000] %d", len(g), g[1], g[4999], g[5000])
	}
	if addr := uintptr(unsafe.Pointer(unsafe.SliceData(g))); addr%poolAlign != 0 {
		t.Fatalf("reallocated address %#x not aligned", addr)
	}
}

// TestPoolAllocatorShrinkGivesMemoryBack shrinks a buffer to half its
// capacity and checks that it moves to a buffer of the smaller class with
// its contents, and that a smaller shrink stays in place.
func TestPoolAllocatorShrinkGivesMemoryBack(t *testing.T) {
	var p poolAllocator
	b := p.Allocate(64 << 10)
	for i := range b {
		b[i] = byte(i % 251)
	}
	small := p.Reallocate(40<<10, b)
	if unsafe.SliceData(small) != unsafe.SliceData(b) || cap(small) != 64<<10 {
		t.Fatalf("a shrink to more than half moved (cap %d)", cap(small))
	}
	g := p.Reallocate(32<<10, small) // exactly half: pqarrow's 2x reservation
	if len(g) != 32<<10 || cap(g) != 32<<10 {
		t.Fatalf("shrunk to 32 KiB: len %d cap %d, want a 32 KiB buffer", len(g), cap(g))
	}
	for i, v := range g {
		if v != byte(i%251) {
			t.Fatalf("byte %d is %d after the shrink, want %d", i, v, byte(i%251))
		}
	}
	if addr := uintptr(unsafe.Pointer(unsafe.SliceData(g))); addr%poolAlign != 0 {
		t.Fatalf("shrunk buffer's address %#x not aligned", addr)
	}
}
