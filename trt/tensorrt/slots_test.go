package tensorrt

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unsafe"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/cuda"
)

// testBuf is a test stand-in for a pinned or device buffer: Go memory
// with a freed flag, so that a test can see which buffers were released.
type testBuf struct {
	data  []byte
	freed bool
}

func (b *testBuf) Len() int                { return len(b.data) }
func (b *testBuf) Bytes() []byte           { return b.data }
func (b *testBuf) Pointer() unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b.data)) }
func (b *testBuf) Ptr() uint64             { return uint64(uintptr(b.Pointer())) }
func (b *testBuf) Free() error             { b.freed = true; return nil }

// testAlloc is a test allocator that fails host or device allocations
// above a limit, as pinned or device memory running out does.
type testAlloc struct {
	hostLimit, devLimit int
	hostErr, devErr     error
	hosts               []*testBuf
}

func (a *testAlloc) allocHost(n int) (hostBuffer, error) {
	if n > a.hostLimit {
		return nil, a.hostErr
	}
	b := &testBuf{data: make([]byte, n)}
	a.hosts = append(a.hosts, b)
	return b, nil
}

func (a *testAlloc) allocDevice(n int) (deviceBuffer, error) {
	if n > a.devLimit {
		return nil, a.devErr
	}
	return &testBuf{data: make([]byte, n)}, nil
}

// TestStagingGrowFailureKeepsBuffers: when growing a slot's staging fails
// (pinned or device memory exhausted), the slot keeps its old buffers,
// still allocated and addressable, instead of being left with none.
func TestStagingGrowFailureKeepsBuffers(t *testing.T) {
	oom := &cuda.Error{Op: "allocating", Code: cuda.CodeCUDA, CUDA: 2, Msg: "cudaMalloc: out of memory"}
	for _, tc := range []struct {
		name  string
		alloc *testAlloc
	}{
		{"pinned allocation fails", &testAlloc{hostLimit: 1024, devLimit: 1 << 20, hostErr: oom}},
		{"device allocation fails", &testAlloc{hostLimit: 1 << 20, devLimit: 1024, devErr: oom}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st staging
			if err := st.grow(tc.alloc, 1000); err != nil {
				t.Fatal(err)
			}
			oldHost, oldDev := st.host.(*testBuf), st.dev.(*testBuf)
			err := st.grow(tc.alloc, 4096)
			if !errors.Is(err, oom) {
				t.Fatalf("grow past the limit: %v, want the allocation error", err)
			}
			if st.host != oldHost || st.dev != oldDev || oldHost.freed || oldDev.freed {
				t.Fatalf("a failed grow lost the slot's buffers: host %v (freed %v), dev %v (freed %v)",
					st.host, oldHost.freed, st.dev, oldDev.freed)
			}
			if st.host.Len() != 1000 || st.dev.Len() != 1000 || st.host.Pointer() == nil || st.dev.Ptr() == 0 {
				t.Fatalf("slot buffers unusable after a failed grow: %d/%d bytes", st.host.Len(), st.dev.Len())
			}
			for _, h := range tc.alloc.hosts[1:] {
				if !h.freed {
					t.Error("the new pinned buffer of a failed grow was leaked")
				}
			}
			// A batch that fits still runs on the slot, and a later grow
			// that succeeds replaces and frees the old buffers.
			if err := st.grow(tc.alloc, 512); err != nil || st.host != oldHost {
				t.Fatalf("grow within capacity: %v", err)
			}
			tc.alloc.hostLimit, tc.alloc.devLimit = 1<<20, 1<<20
			if err := st.grow(tc.alloc, 4096); err != nil {
				t.Fatal(err)
			}
			if st.host.Len() != 4096 || !oldHost.freed || !oldDev.freed {
				t.Fatalf("successful grow: %d bytes, old freed %v/%v", st.host.Len(), oldHost.freed, oldDev.freed)
			}
		})
	}
}

func TestStagingMinimum(t *testing.T) {
	var st staging
	a := &testAlloc{hostLimit: 1 << 20, devLimit: 1 << 20}
	if err := st.grow(a, 0); err != nil || st.host.Len() != minStaging || st.dev.Len() != minStaging {
		t.Fatalf("empty tensor staging: %v, %d bytes", err, st.host.Len())
	}
	if err := st.free(); err != nil || st.host != nil || st.dev != nil {
		t.Fatalf("free: %v", err)
	}
}

// TestSlotPoolPrefersProfile: a slot whose context already has the
// batch's profile is chosen over one that would have to switch; without
// one, the slot free longest is taken.
func TestSlotPoolPrefersProfile(t *testing.T) {
	ctx := context.Background()
	p := newSlotPool[string](3)
	p.put("a", 0)
	p.put("b", 1)
	p.put("c", 0)
	s, prof, err := p.get(ctx, 1)
	if err != nil || s != "b" || prof != 1 {
		t.Fatalf("get(profile 1) = %q on %d, %v; want b, already on profile 1", s, prof, err)
	}
	s, prof, _ = p.get(ctx, 2)
	if s != "a" || prof != 0 {
		t.Fatalf("get(profile 2) with none on it = %q on %d; want the longest-free slot a", s, prof)
	}
	s, _, _ = p.get(ctx, 0)
	if s != "c" {
		t.Fatalf("get(profile 0) = %q, want c", s)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := p.get(cctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("get on an empty pool with a cancelled context: %v", err)
	}
	p.put("b", 2)
	if s, prof, _ := p.get(ctx, 0); s != "b" || prof != 2 {
		t.Fatalf("slot returned on profile 2 came back as %q on %d", s, prof)
	}
}

// TestHealthLatchesDeviceLost: after one error matching trt.ErrDeviceLost
// every call fails with it, while other errors (a bad batch, a transient
// failure) leave the engine usable.
func TestHealthLatchesDeviceLost(t *testing.T) {
	var h health
	transient := &Error{Op: "queueing a batch", Code: CodeTensorRT, Msg: "enqueueV3 failed"}
	if h.observe(transient) != transient || h.check() != nil {
		t.Fatal("a transient TensorRT error marked the engine lost")
	}
	if h.observe(&Error{Op: "binding", Code: CodeInvalid}); h.check() != nil {
		t.Fatal("an invalid-input error marked the engine lost")
	}
	lost := &Error{Op: "waiting for a batch", Code: CodeCUDA, CUDA: 700, DeviceLost: true,
		Msg: "cudaEventSynchronize: an illegal memory access was encountered (cudaErrorIllegalAddress)"}
	if !errors.Is(lost, trt.ErrDeviceLost) || errors.Is(lost, trt.ErrInvalidInput) {
		t.Fatal("shim error classification")
	}
	h.observe(lost)
	for range 3 {
		err := h.check()
		if !errors.Is(err, trt.ErrDeviceLost) || !strings.Contains(err.Error(), "cudaErrorIllegalAddress") {
			t.Fatalf("call after a lost device: %v", err)
		}
	}
	// The cuda layer's sticky errors count too.
	var h2 health
	h2.observe(&cuda.Error{Op: "allocating", Code: cuda.CodeCUDA, CUDA: 719, Sticky: true, Msg: "launch failure"})
	if !errors.Is(h2.check(), trt.ErrDeviceLost) {
		t.Fatal("a sticky CUDA error from the staging layer did not mark the engine lost")
	}
}

func TestCheckLinked(t *testing.T) {
	for _, tc := range []struct {
		header, linked string
		ok             bool
	}{
		{"10.8.0.43", "10.8.0.43", true},
		{"10.8.0.43", "10.9.0.34", true},
		{"10.8.0.43", "11.0.0.114", true},
		{"10.8.0.43", "10.8.0.40", false},
		{"10.8.0.43", "10.7.0.23", false},
		{"10.8.0", "10.8.0.43", true},
		{"11.1.0.106", "10.16.0.72", false},
	} {
		err := checkLinked(tc.header, tc.linked)
		if (err == nil) != tc.ok {
			t.Errorf("checkLinked(%s, %s) = %v, want ok=%v", tc.header, tc.linked, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, trt.ErrUnavailable) || !strings.Contains(err.Error(), "older than")) {
			t.Errorf("checkLinked error %q does not say why", err)
		}
	}
}
