//go:build (cuda || tensorrt) && cgo

package cuda

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

const gb = 1e9

var (
	peakOnce         sync.Once
	peakH2D, peakD2H float64 // GB/s
	peakErr          error
)

// copyPeak measures, once per process, the card's pinned copy rate in each
// direction: 8 back-to-back 256 MiB cudaMemcpyAsync calls from pinned memory
// timed with CUDA events, best of three. It is the "100%" that the batch
// benchmarks are compared with, measured in the same run.
func copyPeak(b *testing.B, d *Device) (h2d, d2h float64) {
	peakOnce.Do(func() {
		const n, reps = 256 << 20, 8
		host, err := d.AllocPinned(n)
		if err != nil {
			peakErr = err
			return
		}
		defer host.Free()
		fillRandom(newRand(b), host.Bytes())
		dev, err := d.AllocDevice(n)
		if err != nil {
			peakErr = err
			return
		}
		defer dev.Free()
		s, err := d.NewStream()
		if err != nil {
			peakErr = err
			return
		}
		defer s.Close()
		best := func(toDevice bool) float64 {
			var top float64
			for range 3 {
				dt, err := s.TimeCopies(host, dev, n, toDevice, reps)
				if err != nil {
					peakErr = err
					return 0
				}
				top = max(top, float64(n)*reps/dt.Seconds()/gb)
			}
			return top
		}
		peakH2D, peakD2H = best(true), best(false)
		b.Logf("pinned copy peak (256 MiB x 8, CUDA events, best of 3): H2D %.2f GB/s, D2H %.2f GB/s", peakH2D, peakD2H)
	})
	if peakErr != nil {
		b.Fatal(peakErr)
	}
	return peakH2D, peakD2H
}

type copySlot struct {
	host *HostBuffer
	dev  *DeviceBuffer
	s    *Stream
}

func newCopySlot(b *testing.B, d *Device, n int, pinned bool) copySlot {
	var host *HostBuffer
	var err error
	if pinned {
		host, err = d.AllocPinned(n)
	} else {
		host, err = AllocPageable(n)
	}
	if err != nil {
		b.Fatal(err)
	}
	fillRandom(newRand(b), host.Bytes())
	dev, err := d.AllocDevice(n)
	if err != nil {
		b.Fatal(err)
	}
	s, err := d.NewStream()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close(); dev.Free(); host.Free() })
	return copySlot{host, dev, s}
}

// BenchmarkCopy reports the rate of one batch copy in each direction for
// 1-64 MiB batches, through the same Submit/Wait path the engine uses:
//
//	pinned/sync:      Submit then Wait for every batch (one stream)
//	pinned/pipelined: two streams, the next batch is queued before waiting
//	                  for the previous one (what several engine contexts do)
//	pageable/sync:    the same copy from malloc'd memory (the baseline)
//
// Metrics: GB/s (1e9 bytes/s) and %peak, the percentage of the pinned copy
// peak measured in the same run by copyPeak.
func BenchmarkCopy(b *testing.B) {
	d := openOrSkip(b)
	h2dPeak, d2hPeak := copyPeak(b, d)
	for _, dir := range []string{"H2D", "D2H"} {
		peak := h2dPeak
		if dir == "D2H" {
			peak = d2hPeak
		}
		for _, mode := range []string{"pinned/sync", "pinned/pipelined", "pageable/sync"} {
			for _, mib := range []int{1, 2, 4, 8, 16, 64} {
				b.Run(fmt.Sprintf("%s/%s/%dMiB", dir, mode, mib), func(b *testing.B) {
					n := mib << 20
					k := 1
					if mode == "pinned/pipelined" {
						k = 2
					}
					slots := make([]copySlot, k)
					for i := range slots {
						slots[i] = newCopySlot(b, d, n, mode != "pageable/sync")
					}
					submit := func(sl copySlot) error {
						c := []Copy{{Host: sl.host, Device: sl.dev, Bytes: n}}
						if dir == "H2D" {
							return sl.s.Submit(c, nil, nil)
						}
						return sl.s.Submit(nil, nil, c)
					}
					// Warm up every slot once.
					for _, sl := range slots {
						if err := submit(sl); err != nil {
							b.Fatal(err)
						}
						if err := sl.s.Wait(); err != nil {
							b.Fatal(err)
						}
					}
					b.SetBytes(int64(n))
					b.ReportAllocs()
					iters := 0
					start := time.Now()
					for b.Loop() {
						sl := slots[iters%k]
						if k > 1 && iters >= k {
							if err := sl.s.Wait(); err != nil {
								b.Fatal(err)
							}
						}
						if err := submit(sl); err != nil {
							b.Fatal(err)
						}
						if k == 1 {
							if err := sl.s.Wait(); err != nil {
								b.Fatal(err)
							}
						}
						iters++
					}
					for _, sl := range slots {
						if err := sl.s.Wait(); err != nil {
							b.Fatal(err)
						}
					}
					rate := float64(n) * float64(iters) / time.Since(start).Seconds() / gb
					b.ReportMetric(rate, "GB/s")
					b.ReportMetric(100*rate/peak, "%peak")
					b.ReportMetric(peak, "peak_GB/s")
				})
			}
		}
	}
}

type pipeSlot struct {
	in, out *HostBuffer
	dev     *DeviceBuffer
	s       *Stream
}

// BenchmarkOverlap shows copies overlapping with compute across streams.
// Each iteration pushes 24 batches of 16 MiB through host-to-device copy,
// the timing kernel (sized to take about as long as one copy and to fill
// every SM, so two kernels cannot run side by side) and device-to-host
// copy, spread round-robin over 1-4 streams.
//
// Metrics: speedup, the one-stream time (measured in the same benchmark)
// over this one; ideal, the one-stream time over the bound
// N*max(stage) + (sum of the other stages), reached with perfect overlap;
// overlap_%, the share of the achievable saving actually realized,
// (T1 - T) / (T1 - bound).
func BenchmarkOverlap(b *testing.B) {
	d := openOrSkip(b)
	k, err := d.LoadSpinKernel()
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	const n, batches, maxStreams = 16 << 20, 24, 4
	const words = n / 4
	r := newRand(b)
	slots := make([]pipeSlot, maxStreams)
	for i := range slots {
		var sl pipeSlot
		if sl.in, err = d.AllocPinned(n); err != nil {
			b.Fatal(err)
		}
		if sl.out, err = d.AllocPinned(n); err != nil {
			b.Fatal(err)
		}
		if sl.dev, err = d.AllocDevice(n); err != nil {
			b.Fatal(err)
		}
		if sl.s, err = d.NewStream(); err != nil {
			b.Fatal(err)
		}
		fillRandom(r, sl.in.Bytes())
		slots[i] = sl
		defer func() { sl.s.Close(); sl.dev.Free(); sl.out.Free(); sl.in.Free() }()
	}
	// Threads per SM at full occupancy on recent GPUs is 2048: 8 blocks
	// of 256 per SM keep a second kernel from running alongside.
	blocks := 8 * d.Info().Multiprocessors

	spin := func(sl pipeSlot, cycles uint64) *Spin {
		return &Spin{Kernel: k, Data: sl.dev, Words: words, Cycles: cycles, Blocks: blocks}
	}
	var cycles uint64
	run := func(streams int) time.Duration {
		t0 := time.Now()
		for i := range batches {
			sl := slots[i%streams]
			if i >= streams {
				if err := sl.s.Wait(); err != nil {
					b.Fatal(err)
				}
			}
			err := sl.s.Submit([]Copy{{Host: sl.in, Device: sl.dev, Bytes: n}}, spin(sl, cycles),
				[]Copy{{Host: sl.out, Device: sl.dev, Bytes: n}})
			if err != nil {
				b.Fatal(err)
			}
		}
		for i := range streams {
			if err := slots[i].s.Wait(); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0)
	}
	// stage times one stage alone: batches submissions back to back on one
	// stream (serialized on the GPU), one wait, best of three.
	stage := func(h2d []Copy, work *Spin, d2h []Copy) time.Duration {
		best := time.Duration(1 << 62)
		for range 3 {
			t0 := time.Now()
			for range batches {
				if err := slots[0].s.Submit(h2d, work, d2h); err != nil {
					b.Fatal(err)
				}
			}
			if err := slots[0].s.Wait(); err != nil {
				b.Fatal(err)
			}
			best = min(best, time.Since(t0)/batches)
		}
		return best
	}
	// Warm every buffer and stream once, then size the kernel to take as
	// long as one host-to-device copy.
	cycles = 1000
	run(maxStreams)
	sl0 := slots[0]
	tH2D := stage([]Copy{{Host: sl0.in, Device: sl0.dev, Bytes: n}}, nil, nil)
	tD2H := stage(nil, nil, []Copy{{Host: sl0.out, Device: sl0.dev, Bytes: n}})
	const probe = 2_000_000
	perCycle := float64(stage(nil, spin(sl0, probe), nil)) / probe
	cycles = uint64(float64(tH2D) / perCycle)
	tK := stage(nil, spin(sl0, cycles), nil)

	// Correctness: poison, run with every stream, check every word.
	for i := range slots {
		fillRandom(r, slots[i].in.Bytes())
		for j := range slots[i].out.Bytes() {
			slots[i].out.Bytes()[j] = 0xA5
		}
	}
	run(maxStreams)
	for i, sl := range slots {
		ib, ob := sl.in.Bytes(), sl.out.Bytes()
		for w := range words {
			if binary.LittleEndian.Uint32(ob[4*w:]) != binary.LittleEndian.Uint32(ib[4*w:])+1 {
				b.Fatalf("stream %d word %d: kernel result wrong", i, w)
			}
		}
	}
	var ones []time.Duration
	for range 5 {
		ones = append(ones, run(1))
	}
	slices.Sort(ones)
	t1 := ones[len(ones)/2]
	stages := []time.Duration{tH2D, tK, tD2H}
	longest := slices.Max(stages)
	bound := time.Duration(batches)*longest + (tH2D + tK + tD2H - longest)
	b.Logf("stages per 16 MiB batch: H2D %v, kernel %v (%d cycles), D2H %v; 1 stream %v for %d batches; bound %v",
		tH2D, tK, cycles, tD2H, t1, batches, bound)

	for streams := 1; streams <= maxStreams; streams++ {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			b.SetBytes(2 * n * batches)
			iters := 0
			var total time.Duration
			for b.Loop() {
				total += run(streams)
				iters++
			}
			t := total / time.Duration(iters)
			b.ReportMetric(float64(tH2D.Microseconds()), "h2d_us/batch")
			b.ReportMetric(float64(tK.Microseconds()), "kernel_us/batch")
			b.ReportMetric(float64(tD2H.Microseconds()), "d2h_us/batch")
			b.ReportMetric(float64(t1.Microseconds()), "1stream_us")
			b.ReportMetric(float64(t1)/float64(t), "speedup")
			b.ReportMetric(float64(t1)/float64(bound), "ideal")
			b.ReportMetric(100*float64(t1-t)/float64(t1-bound), "overlap_%")
		})
	}
}

// BenchmarkSubmitWaitEmpty measures the fixed cost of one batch round trip
// with no copies: one cgo call that records the event, one that sleeps on
// it (cudaEventBlockingSync) until the GPU has passed it.
func BenchmarkSubmitWaitEmpty(b *testing.B) {
	d := openOrSkip(b)
	s, err := d.NewStream()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Submit(nil, nil, nil); err != nil {
			b.Fatal(err)
		}
		if err := s.Wait(); err != nil {
			b.Fatal(err)
		}
	}
}
