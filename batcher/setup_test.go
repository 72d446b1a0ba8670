package batcher

import (
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/trt"
)

// seqSpec is the shape of testdata's sequence encoder: x [b, s, 16],
// mask [b, s] → y [b, 8], with the given profiles as [bmin, bmax, smin, smax].
func seqSpec(profiles ...[4]int64) trt.Spec {
	s := trt.Spec{
		Inputs: []trt.TensorDesc{
			{Name: "x", DType: trt.Float32, Shape: trt.Shape{-1, -1, 16}},
			{Name: "mask", DType: trt.Float32, Shape: trt.Shape{-1, -1}},
		},
		Outputs: []trt.TensorDesc{{Name: "y", DType: trt.Float32, Shape: trt.Shape{-1, 8}}},
	}
	for _, p := range profiles {
		s.Profiles = append(s.Profiles, trt.Profile{
			Min: map[string]trt.Shape{"x": {p[0], p[2], 16}, "mask": {p[0], p[2]}},
			Opt: map[string]trt.Shape{"x": {p[1], p[3], 16}, "mask": {p[1], p[3]}},
			Max: map[string]trt.Shape{"x": {p[1], p[3], 16}, "mask": {p[1], p[3]}},
		})
	}
	return s
}

// syntheticCost is a test stand-in for a measured model: latency from a
// formula with a fixed part, a per-row part and a per-token part, on the
// grid DefaultGrid picks. Product code only builds models with Measure.
func syntheticCost(t testing.TB, spec trt.Spec, base, perRow, perToken time.Duration, switchCost time.Duration) *CostModel {
	t.Helper()
	g, err := DefaultGrid(spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	run := func(p, b, s int) time.Duration {
		return base + time.Duration(b)*perRow + time.Duration(b*max(s, 1))*perToken + time.Duration(p)*base/4
	}
	var ps []ProfileCost
	for p, pg := range g.Profiles {
		c := ProfileCost{Batches: pg.Batches, Seqs: pg.Seqs}
		for _, b := range pg.Batches {
			var row []time.Duration
			for _, s := range pg.Seqs {
				row = append(row, run(p, b, s))
			}
			c.Latency = append(c.Latency, row)
		}
		ps = append(ps, c)
	}
	var sw [][]time.Duration
	if len(ps) > 1 {
		sw = make([][]time.Duration, len(ps))
		for i := range sw {
			sw[i] = make([]time.Duration, len(ps))
			for j := range sw[i] {
				if i != j {
					sw[i][j] = switchCost
				}
			}
		}
	}
	m, err := NewCostModel(ps, sw)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func f32(b []byte, i int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])) }

func putF32(b []byte, i int, v float32) { binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v)) }
