package batcher_test

import (
	"fmt"
	"time"

	"github.com/jetinfer/jetinfer/batcher"
	"github.com/jetinfer/jetinfer/trt"
)

// A worker goroutine drives the batcher: Add on arrival, Next when the
// engine is free, NextWakeup for its timer, Expired for deadlines; it
// gathers each plan's inputs, runs the engine and scatters the outputs
// back to the items through an Assembler.
func Example() {
	spec := trt.Spec{
		Inputs: []trt.TensorDesc{
			{Name: "x", DType: trt.Float32, Shape: trt.Shape{-1, -1, 4}},
			{Name: "mask", DType: trt.Float32, Shape: trt.Shape{-1, -1}},
		},
		Outputs: []trt.TensorDesc{{Name: "y", DType: trt.Float32, Shape: trt.Shape{-1, 2}}},
		Profiles: []trt.Profile{{
			Min: map[string]trt.Shape{"x": {1, 1, 4}, "mask": {1, 1}},
			Max: map[string]trt.Shape{"x": {8, 64, 4}, "mask": {8, 64}},
		}},
	}
	// A worker gets its model from batcher.Measure at warm-up (timing the
	// real engine) or from batcher.ParseCostModel; this grid stands in.
	cost, err := batcher.NewCostModel([]batcher.ProfileCost{{
		Batches: []int{1, 8},
		Seqs:    []int{1, 64},
		Latency: [][]time.Duration{{20 * time.Microsecond, 40 * time.Microsecond}, {30 * time.Microsecond, 200 * time.Microsecond}},
	}}, nil)
	if err != nil {
		panic(err)
	}
	b, err := batcher.New(spec, cost, batcher.Config{MaxDelay: time.Millisecond, Masks: []string{"mask"}})
	if err != nil {
		panic(err)
	}
	asm, err := batcher.NewAssembler(spec)
	if err != nil {
		panic(err)
	}

	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	data := map[uint64]batcher.Rows{}
	for _, it := range []batcher.Item{
		{ID: 1, Rows: 3, SeqLens: []int{5, 60, 6}},
		{ID: 2, Rows: 2, SeqLens: []int{7, 58}},
	} {
		// Row r of item id holds x = id·10+r at every position.
		rows := batcher.Rows{Offsets: []int32{0}}
		for r, n := range it.SeqLens {
			for range n * 4 {
				rows.Data = append(rows.Data, f32bytes(float32(it.ID*10+uint64(r)))...)
			}
			rows.Offsets = append(rows.Offsets, rows.Offsets[r]+int32(n))
		}
		data[it.ID] = rows
		if err := b.Add(now, it); err != nil {
			panic(err)
		}
		if err := asm.Add(it); err != nil {
			panic(err)
		}
	}
	for {
		plan, ok := b.Next(now)
		if !ok {
			wake, ok := b.NextWakeup()
			if !ok {
				break // queue empty
			}
			now = wake // a worker resets its timer to wake
			continue
		}
		fmt.Printf("batch %d×%d, padding %.0f%%:", plan.Batch, plan.Seq, 100*plan.Padding())
		for _, s := range plan.Slots {
			fmt.Printf(" item %d rows [%d,%d)", s.Item, s.ItemRow, s.ItemRow+s.Rows)
		}
		fmt.Println()
		inputs := make([]trt.Tensor, 0, 2)
		for _, in := range b.Inputs() {
			buf := make([]byte, in.Size(plan))
			if err := in.Gather(buf, plan, func(id uint64) (batcher.Rows, bool) { r, ok := data[id]; return r, ok }); err != nil {
				panic(err)
			}
			inputs = append(inputs, trt.Tensor{Name: in.Name, DType: in.DType, Shape: in.Shape(plan), Data: buf})
		}
		y := standInRun(inputs[0], plan) // engine.Run in a worker
		done, err := asm.Scatter(plan, []trt.Tensor{y})
		if err != nil {
			panic(err)
		}
		for _, id := range done {
			res, _ := asm.Take(id)
			fmt.Printf("item %d complete, y[:,0] =", id)
			for r := range res[0].Shape[0] {
				fmt.Printf(" %g", f32at(res[0].Data, int(r)*2))
			}
			fmt.Println()
		}
		now = now.Add(plan.Cost)
	}
	// Output:
	// batch 2×63, padding 6%: item 1 rows [1,2) item 2 rows [1,2)
	// batch 2×7, padding 7%: item 1 rows [2,3) item 2 rows [0,1)
	// item 2 complete, y[:,0] = 20 21
	// batch 1×5, padding 0%: item 1 rows [0,1)
	// item 1 complete, y[:,0] = 10 11 12
}

// standInRun plays the engine: y[b] = (x[b,0,0], 0).
func standInRun(x trt.Tensor, p batcher.Plan) trt.Tensor {
	y := make([]byte, p.Batch*2*4)
	for b := range p.Batch {
		copy(y[b*8:], x.Data[b*p.Seq*4*4:b*p.Seq*4*4+4])
	}
	return trt.Tensor{Name: "y", DType: trt.Float32, Shape: trt.Shape{int64(p.Batch), 2}, Data: y}
}
