package batcher

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/trt"
)

// BenchmarkGather copies the ragged x input ([64, seq, 16] float32) of a
// plan of 64 rows from 8 items, row lengths in (seq/2, seq], and reports its time per byte relative to a
// plain copy of the same number of bytes measured in the same run
// (x_memmove: 1 means as fast as memmove).
func BenchmarkGather(b *testing.B) {
	for _, seq := range []int{64, 256} {
		b.Run(fmt.Sprintf("seq=%d", seq), func(b *testing.B) {
			bt := newTestBatcher(b, Config{})
			rng := rand.New(rand.NewPCG(1, 2))
			srcs := map[uint64]Rows{}
			p := Plan{Batch: 64, Seq: seq, Rows: 64, Lens: make([]int, 64)}
			for id := uint64(1); id <= 8; id++ {
				r := Rows{Offsets: []int32{0}}
				p.Slots = append(p.Slots, Slot{Item: id, ItemRow: 0, Rows: 8, BatchRow: 8 * int(id-1)})
				for i := range 8 {
					n := seq/2 + rng.IntN(seq/2) + 1
					p.Lens[8*int(id-1)+i] = n
					r.Offsets = append(r.Offsets, r.Offsets[i]+int32(n))
				}
				r.Data = make([]byte, int(r.Offsets[8])*16*4)
				srcs[id] = r
			}
			x := bt.Inputs()[0]
			dst := make([]byte, x.Size(p))
			src := func(id uint64) (Rows, bool) { r, ok := srcs[id]; return r, ok }
			flat := make([]byte, len(dst))
			// Baseline: one memmove of the same size, timed here.
			const reps = 200
			start := time.Now()
			for range reps {
				copy(dst, flat)
			}
			baseNs := float64(time.Since(start).Nanoseconds()) / reps
			b.SetBytes(int64(len(dst)))
			b.ReportAllocs()
			for b.Loop() {
				if err := x.Gather(dst, p, src); err != nil {
					b.Fatal(err)
				}
			}
			if baseNs > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/baseNs, "x_memmove")
			}
		})
	}
}

// BenchmarkNext measures planning cost against queue depth: each op is
// one Next that returns a plan plus the Adds that refill the queue to a
// constant depth (1k to 1M rows of 4-row items, lengths exponential around
// 60 on the stand-in cost model 200µs + 5µs/row + 0.1µs/token). Planning
// takes rows from the fronts of per-bucket queues and indexes items in
// heaps, so ns/op should not grow with the depth. mix=fifo has no
// deadlines (10% of items at a higher priority); mix=deadlines gives 20%
// of items a deadline 1–2 s away, more than the engine can meet behind
// the queue, which the deadline-demand pass walks until the deadlines lie
// beyond the queue's total demand (see docs/benchmarks.md);
// mix=job-deadline gives them one shared deadline an hour after the
// start (the requests of a scoring job run with -deadline), which every
// item can meet. plan_share is ns/op over the plan's predicted
// engine time; cpu-ns/op the process's CPU time per op (steadier than
// ns/op on a shared machine).
func BenchmarkNext(b *testing.B) {
	for _, mix := range []string{"fifo", "deadlines", "job-deadline"} {
		for _, depth := range []int{1 << 10, 1 << 14, 1 << 18, 1 << 20} {
			b.Run(fmt.Sprintf("mix=%s/queued=%d", mix, depth), func(b *testing.B) {
				benchNext(b, mix, depth)
			})
		}
	}
}

func benchNext(b *testing.B, mix string, depth int) {
	bt := newTestBatcher(b, Config{MaxQueueRows: 2 * depth})
	rng := rand.New(rand.NewPCG(3, 4))
	id := uint64(0)
	now := t0
	ls := make([]int, 4)
	add := func() {
		for i := range ls {
			ls[i] = min(512, 8+int(rng.ExpFloat64()*60))
		}
		id++
		it := Item{ID: id, Rows: len(ls), SeqLens: ls}
		if rng.IntN(10) == 0 {
			it.Priority = 1
		}
		if mix != "fifo" && rng.IntN(5) == 0 {
			it.Deadline = t0.Add(time.Hour)
			if mix == "deadlines" {
				it.Deadline = now.Add(time.Second + time.Duration(rng.Int64N(int64(time.Second))))
			}
		}
		if err := bt.Add(now, it); err != nil {
			b.Fatal(err)
		}
	}
	for _, q := bt.Len(); q < depth; _, q = bt.Len() {
		add()
	}
	var predicted time.Duration
	b.ReportAllocs()
	var cpu0 time.Duration
	for b.Loop() {
		if cpu0 == 0 {
			cpu0 = processCPU()
		}
		now = now.Add(100 * time.Microsecond)
		bt.Expired(now)
		p, ok := bt.Next(now)
		if !ok {
			p, ok = bt.Flush(now)
		}
		if !ok {
			b.Fatal("no plan from a full queue")
		}
		predicted += p.Cost
		for _, q := bt.Len(); q < depth; _, q = bt.Len() {
			add()
		}
	}
	b.ReportMetric(float64(b.Elapsed())/float64(predicted), "plan_share")
	if cpu := processCPU() - cpu0; cpu0 > 0 && cpu > 0 {
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkNextLargeRequests plans 64-row batches out of large requests
// (rows=4096 is a 1 MiB request of the digits model, 65536 the worker's
// default MaxRequestRows), two requests queued at a time, on a model
// without a sequence dimension and on the sequence encoder (row lengths
// drawn per row). Taking a batch must not rescan the rows of its request
// already taken, so ns/op should not grow with rows.
func BenchmarkNextLargeRequests(b *testing.B) {
	flat := trt.Spec{
		Inputs:  []trt.TensorDesc{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{-1, 8, 8}}},
		Outputs: []trt.TensorDesc{{Name: "logits", DType: trt.Float32, Shape: trt.Shape{-1, 10}}},
		Profiles: []trt.Profile{{
			Min: map[string]trt.Shape{"pixels": {1, 8, 8}},
			Max: map[string]trt.Shape{"pixels": {64, 8, 8}},
		}},
	}
	for _, model := range []string{"flat", "seq"} {
		for _, rows := range []int{64, 4096, 65536} {
			b.Run(fmt.Sprintf("model=%s/rows=%d", model, rows), func(b *testing.B) {
				spec := flat
				if model == "seq" {
					spec = seqSpec([4]int64{1, 64, 1, 512})
				}
				bt, err := New(spec, syntheticCost(b, spec, 200*time.Microsecond, 5*time.Microsecond, 100*time.Nanosecond, 0),
					Config{MaxQueueRows: 2 * rows})
				if err != nil {
					b.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(5, 6))
				id, now := uint64(0), t0
				add := func() {
					id++
					it := Item{ID: id, Rows: rows}
					if model == "seq" {
						it.SeqLens = make([]int, rows)
						for i := range it.SeqLens {
							it.SeqLens[i] = min(512, 8+int(rng.ExpFloat64()*60))
						}
					}
					if err := bt.Add(now, it); err != nil {
						b.Fatal(err)
					}
				}
				add()
				add()
				for b.Loop() {
					now = now.Add(100 * time.Microsecond)
					p, ok := bt.Next(now)
					if !ok {
						p, ok = bt.Flush(now)
					}
					if !ok || len(p.Slots) == 0 {
						b.Fatal("no plan from a full queue")
					}
					if _, q := bt.Len(); q <= rows {
						add()
					}
				}
			})
		}
	}
}
