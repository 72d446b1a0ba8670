package table

import (
	"math/bits"
	"sync"
	"unsafe"
)

// poolAllocator is the memory.Allocator Readers and Writers use by
// default. arrow-go's Parquet reader and writer build each batch's
// buffers from scratch, growing them by doubling; with Go's allocator
// every one of them is fresh memory for the garbage collector. This one
// keeps freed buffers of 4 KiB and more in power-of-two size classes and
// hands them out again (zeroed, 64-byte aligned, like memory.GoAllocator).
// A class's pool is emptied by the garbage collector as any sync.Pool,
// so what it holds is bounded by what was live between two collections.
// It is safe for concurrent use.
type poolAllocator struct {
	classes [bits.UintSize]sync.Pool // of *[]byte with cap 1<<class
}

const (
	poolMinShift = 12 // smallest pooled buffer: 4 KiB
	poolAlign    = 64
)

// Allocate returns size zeroed bytes.
func (p *poolAllocator) Allocate(size int) []byte {
	if size < 1<<poolMinShift {
		return alignedAlloc(size, size)
	}
	c := bits.Len(uint(size - 1))
	if v := p.classes[c].Get(); v != nil {
		b := (*v.(*[]byte))[:size]
		clear(b)
		return b
	}
	return alignedAlloc(size, 1<<c)
}

// alignedAlloc returns a 64-byte aligned slice of size bytes and capacity
// capacity.
func alignedAlloc(size, capacity int) []byte {
	buf := make([]byte, capacity+poolAlign)
	shift := (poolAlign - int(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))%poolAlign) % poolAlign
	return buf[shift : shift+size : shift+capacity]
}

// Reallocate grows or shrinks b to size bytes, keeping its contents; b is
// freed when it moves. A buffer shrunk to half its capacity or less moves
// to a smaller one: pqarrow reserves room for twice a batch's rows and
// shrinks the values to the rows when it hands them out, and arrow-go
// then sees only the shrunk length (memory.Buffer's Len and Cap), so the
// memory kept behind it was counted nowhere: decoded batches held about
// twice the budget meant to bound them (parquetAheadBytes).
func (p *poolAllocator) Reallocate(size int, b []byte) []byte {
	if cap(b) >= size && (size > cap(b)/2 || cap(b) < 2<<poolMinShift) {
		return b[:size]
	}
	nb := p.Allocate(size)
	copy(nb, b)
	p.Free(b)
	return nb
}

// Free takes back a buffer of Allocate's that no one uses any more;
// others (smaller, or not of a class's capacity) are left to the garbage
// collector.
func (p *poolAllocator) Free(b []byte) {
	c := cap(b)
	if c < 1<<poolMinShift || c&(c-1) != 0 {
		return
	}
	b = b[:c]
	p.classes[bits.Len(uint(c-1))].Put(&b)
}
