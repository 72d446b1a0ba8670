package cuda

import (
	"errors"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
)

// TestDeviceLostLatch checks that a sticky CUDA error marks the device
// lost for every later call, and that an ordinary error does not.
func TestDeviceLostLatch(t *testing.T) {
	d := &Device{info: DeviceInfo{Ordinal: 3}}
	oom := &Error{Op: "allocating 1 GiB of device memory", Code: CodeCUDA, CUDA: 2, Msg: "cudaMalloc: out of memory"}
	if err := d.observe(oom); err != oom {
		t.Fatalf("observe changed the error: %v", err)
	}
	if errors.Is(oom, trt.ErrDeviceLost) || d.Lost() != nil {
		t.Fatalf("an out-of-memory error lost the device: %v", d.Lost())
	}
	illegal := &Error{Op: "waiting for a batch", Code: CodeCUDA, CUDA: 700, Sticky: true,
		Msg: "cudaEventSynchronize: an illegal memory access was encountered (cudaErrorIllegalAddress)"}
	if !errors.Is(illegal, trt.ErrDeviceLost) {
		t.Fatal("a sticky error does not match trt.ErrDeviceLost")
	}
	d.observe(errors.Join(errors.New("context"), illegal))
	err := d.Lost()
	if !errors.Is(err, trt.ErrDeviceLost) {
		t.Fatalf("after a sticky error Lost() = %v, want trt.ErrDeviceLost", err)
	}
	for _, want := range []string{"device 3", "cudaErrorIllegalAddress"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Lost() = %q lacks %q", err, want)
		}
	}
	// The first sticky error stays the reported one.
	d.observe(&Error{Op: "later", Code: CodeCUDA, CUDA: 719, Sticky: true, Msg: "launch failure"})
	if !strings.Contains(d.Lost().Error(), "cudaErrorIllegalAddress") {
		t.Errorf("a later sticky error replaced the first: %v", d.Lost())
	}
	// Entry points refuse at once (the stub build refuses everything).
	if _, err := d.AllocDevice(16); !errors.Is(err, trt.ErrDeviceLost) && !errors.Is(err, trt.ErrUnavailable) {
		t.Errorf("AllocDevice on a lost device: %v", err)
	}
	if _, err := d.AllocPinned(16); !errors.Is(err, trt.ErrDeviceLost) && !errors.Is(err, trt.ErrUnavailable) {
		t.Errorf("AllocPinned on a lost device: %v", err)
	}
}

func TestFormatUUID(t *testing.T) {
	b := []int8{0x79, 0x68, -5, 0x72, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	if got, want := formatUUID(b, "GPU-"), "GPU-7968fb72-0102-0304-0506-0708090a0b0c"; got != want {
		t.Errorf("formatUUID = %q, want %q", got, want)
	}
	if got := formatUUID(make([]byte, 16), "GPU-"); got != "" {
		t.Errorf("zero UUID formatted as %q", got)
	}
}
