//go:build (cuda || tensorrt) && cgo

package cuda

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// openOrSkip opens device 0, or skips the test on a machine without a
// CUDA device or driver.
func openOrSkip(tb testing.TB) *Device {
	tb.Helper()
	n, err := DeviceCount()
	if err != nil {
		if errors.Is(err, ErrNoDevice) {
			tb.Skipf("no CUDA device: %v", err)
		}
		tb.Fatal(err)
	}
	if n == 0 {
		tb.Skip("no CUDA device")
	}
	d, err := Open(0)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func newRand(tb testing.TB) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	tb.Logf("random seed %d", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

func fillRandom(r *rand.Rand, b []byte) {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	for ; i < len(b); i++ {
		b[i] = byte(r.Uint32())
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func TestOpen(t *testing.T) {
	d := openOrSkip(t)
	info := d.Info()
	t.Logf("device %d: %s, compute %s, %d SMs, %d MiB, %d copy engines, runtime %d, driver %d",
		info.Ordinal, info.Name, info.Compute(), info.Multiprocessors, info.TotalMemory>>20,
		info.CopyEngines, info.RuntimeVersion, info.DriverVersion)
	if info.Name == "" || info.ComputeMajor == 0 || info.TotalMemory == 0 {
		t.Fatalf("implausible device info %+v", info)
	}
}

func TestOpenBadOrdinal(t *testing.T) {
	openOrSkip(t)
	_, err := Open(4096)
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != CodeCUDA || !errors.Is(err, ErrNoDevice) {
		t.Fatalf("Open(4096) = %v, want a CUDA error matching ErrNoDevice", err)
	}
}

// TestRoundTripThroughPool moves batches of many sizes from the pinned pool
// to the device and back and checks every byte.
func TestRoundTripThroughPool(t *testing.T) {
	d := openOrSkip(t)
	r := newRand(t)
	pool := NewPinnedPool(d, 256<<20)
	defer pool.Close()
	s, err := d.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, n := range []int{1, 3, 4095, 64 << 10, 1<<20 + 7, 4 << 20, 16<<20 - 1, 64 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			in, err := pool.Get(n)
			if err != nil {
				t.Fatal(err)
			}
			out, err := pool.Get(n)
			if err != nil {
				t.Fatal(err)
			}
			dev, err := d.AllocDevice(n)
			if err != nil {
				t.Fatal(err)
			}
			defer dev.Free()
			fillRandom(r, in.Bytes())
			for i := range out.Bytes() {
				out.Bytes()[i] = 0xA5
			}
			if err := s.Submit([]Copy{{Host: in, Device: dev, Bytes: n}}, nil,
				[]Copy{{Host: out, Device: dev, Bytes: n}}); err != nil {
				t.Fatal(err)
			}
			if err := s.Wait(); err != nil {
				t.Fatal(err)
			}
			if i := firstDiff(in.Bytes(), out.Bytes()); i >= 0 {
				t.Fatalf("byte %d of %d differs after the round trip: sent %#x, got %#x",
					i, n, in.Bytes()[i], out.Bytes()[i])
			}
			if err := pool.Put(in); err != nil {
				t.Fatal(err)
			}
			if err := pool.Put(out); err != nil {
				t.Fatal(err)
			}
		})
	}
	if st := pool.Stats(); st.Gets != 16 {
		t.Fatalf("pool stats %+v, want 16 gets", st)
	}
}

// TestConcurrentStreams runs several goroutines, each with its own stream,
// pushing batches with several tensors at offsets, and checks every byte.
func TestConcurrentStreams(t *testing.T) {
	d := openOrSkip(t)
	pool := NewPinnedPool(d, 512<<20)
	defer pool.Close()
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(g)))
			s, err := d.NewStream()
			if err != nil {
				t.Error(err)
				return
			}
			defer s.Close()
			for batch := range 8 {
				// Two input tensors packed into one pinned buffer, as the
				// engine stages them.
				a, b := 1+r.IntN(3<<20), 1+r.IntN(1<<20)
				in, err := pool.Get(a + b)
				if err != nil {
					t.Error(err)
					return
				}
				out, err := pool.Get(a + b)
				if err != nil {
					t.Error(err)
					return
				}
				dev, err := d.AllocDevice(a + b + 512)
				if err != nil {
					t.Error(err)
					return
				}
				fillRandom(r, in.Bytes())
				clear(out.Bytes())
				err = s.Submit(
					[]Copy{{Host: in, Device: dev, Bytes: a}, {Host: in, HostOffset: a, Device: dev, DeviceOffset: a + 256, Bytes: b}},
					nil,
					[]Copy{{Host: out, Device: dev, Bytes: a}, {Host: out, HostOffset: a, Device: dev, DeviceOffset: a + 256, Bytes: b}})
				if err == nil {
					err = s.Wait()
				}
				if err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(in.Bytes(), out.Bytes()) {
					t.Errorf("goroutine %d batch %d: byte %d differs", g, batch, firstDiff(in.Bytes(), out.Bytes()))
				}
				dev.Free()
				pool.Put(in)
				pool.Put(out)
			}
		})
	}
	wg.Wait()
}

// TestSpinKernelRunsBetweenCopies checks that the work slot runs after the
// host-to-device copies and before the device-to-host copies: every word
// comes back incremented by one.
func TestSpinKernelRunsBetweenCopies(t *testing.T) {
	d := openOrSkip(t)
	k, err := d.LoadSpinKernel()
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	r := newRand(t)
	const words = 3<<20 + 5
	in, err := d.AllocPinned(words * 4)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Free()
	out, err := d.AllocPinned(words * 4)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Free()
	dev, err := d.AllocDevice(words * 4)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Free()
	s, err := d.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fillRandom(r, in.Bytes())
	clear(out.Bytes())
	spin := &Spin{Kernel: k, Data: dev, Words: words, Cycles: 10000, Blocks: 2 * d.Info().Multiprocessors}
	if err := s.Submit([]Copy{{Host: in, Device: dev, Bytes: words * 4}}, spin,
		[]Copy{{Host: out, Device: dev, Bytes: words * 4}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	ib, ob := in.Bytes(), out.Bytes()
	for i := range words {
		want := binary.LittleEndian.Uint32(ib[4*i:]) + 1
		if got := binary.LittleEndian.Uint32(ob[4*i:]); got != want {
			t.Fatalf("word %d: got %#x, want %#x", i, got, want)
		}
	}
}

func TestPageableRoundTrip(t *testing.T) {
	d := openOrSkip(t)
	r := newRand(t)
	const n = 5<<20 + 3
	in, err := AllocPageable(n)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Free()
	out, err := AllocPageable(n)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Free()
	dev, err := d.AllocDevice(n)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Free()
	s, err := d.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fillRandom(r, in.Bytes())
	if err := s.Submit([]Copy{{Host: in, Device: dev, Bytes: n}}, nil, []Copy{{Host: out, Device: dev, Bytes: n}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	if i := firstDiff(in.Bytes(), out.Bytes()); i >= 0 {
		t.Fatalf("byte %d differs", i)
	}
}

func TestSubmitRejectsOverrun(t *testing.T) {
	d := openOrSkip(t)
	h, err := d.AllocPinned(100)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Free()
	dev, err := d.AllocDevice(50)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Free()
	s, err := d.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Submit([]Copy{{Host: h, Device: dev, Bytes: 100}}, nil, nil); err == nil {
		t.Fatal("a 100-byte copy into a 50-byte device buffer was accepted")
	}
}
