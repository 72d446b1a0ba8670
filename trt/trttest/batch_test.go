package trttest

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
)

func TestHalfToFloat64(t *testing.T) {
	for _, c := range []struct {
		bits uint16
		want float64
	}{
		{0x0000, 0},
		{0x3c00, 1},
		{0xc000, -2},
		{0x3555, 0.333251953125},
		{0x7bff, 65504},
		{0x0001, math.Ldexp(1, -24)}, // smallest subnormal
		{0x03ff, math.Ldexp(1023, -24)},
		{0x0400, math.Ldexp(1, -14)}, // smallest normal
		{0x7c00, math.Inf(1)},
		{0xfc00, math.Inf(-1)},
	} {
		if got := HalfToFloat64(c.bits); got != c.want {
			t.Errorf("HalfToFloat64(%#04x) = %g, want %g", c.bits, got, c.want)
		}
	}
	if got := HalfToFloat64(0x7e00); !math.IsNaN(got) {
		t.Errorf("HalfToFloat64(NaN) = %g", got)
	}
	if got := HalfToFloat64(0x8000); got != 0 || !math.Signbit(got) {
		t.Errorf("HalfToFloat64(-0) = %g", got)
	}
}

func f32s(vs ...float32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func TestNewBatchPads(t *testing.T) {
	spec := trt.Spec{
		Inputs: []trt.TensorDesc{
			{Name: "mask", DType: trt.Float32, Shape: trt.Shape{-1, -1}},
			{Name: "x", DType: trt.Float32, Shape: trt.Shape{-1, -1, 2}},
		},
		Outputs: []trt.TensorDesc{{Name: "y", DType: trt.Float32, Shape: trt.Shape{-1, 1}}},
		Profiles: []trt.Profile{
			{ // too small for length 3
				Min: map[string]trt.Shape{"x": {1, 1, 2}, "mask": {1, 1}},
				Opt: map[string]trt.Shape{"x": {2, 2, 2}, "mask": {2, 2}},
				Max: map[string]trt.Shape{"x": {2, 2, 2}, "mask": {2, 2}},
			},
			{
				Min: map[string]trt.Shape{"x": {1, 1, 2}, "mask": {1, 1}},
				Opt: map[string]trt.Shape{"x": {4, 8, 2}, "mask": {4, 8}},
				Max: map[string]trt.Shape{"x": {4, 8, 2}, "mask": {4, 8}},
			},
		},
	}
	samples := []Sample{
		{ID: 1, Inputs: []trt.Tensor{ // inputs in a different order than the spec's
			{Name: "x", DType: trt.Float32, Shape: trt.Shape{1, 2}, Data: f32s(1, 2)},
			{Name: "mask", DType: trt.Float32, Shape: trt.Shape{1}, Data: f32s(1)},
		}},
		{ID: 2, Inputs: []trt.Tensor{
			{Name: "x", DType: trt.Float32, Shape: trt.Shape{3, 2}, Data: f32s(3, 4, 5, 6, 7, 8)},
			{Name: "mask", DType: trt.Float32, Shape: trt.Shape{3}, Data: f32s(1, 1, 1)},
		}},
	}
	b, err := NewBatch(spec, samples)
	if err != nil {
		t.Fatal(err)
	}
	if b.Profile != 1 {
		t.Errorf("Profile = %d, want 1 (profile 0 is too small)", b.Profile)
	}
	want := []trt.Tensor{
		{Name: "mask", DType: trt.Float32, Shape: trt.Shape{2, 3}, Data: f32s(1, 0, 0, 1, 1, 1)},
		{Name: "x", DType: trt.Float32, Shape: trt.Shape{2, 3, 2}, Data: f32s(1, 2, 0, 0, 0, 0, 3, 4, 5, 6, 7, 8)},
	}
	for i, w := range want {
		got := b.Inputs[i]
		if got.Name != w.Name || !got.Shape.Equal(w.Shape) || string(got.Data) != string(w.Data) {
			t.Errorf("input %d = %q %v %v, want %q %v %v", i, got.Name, got.Shape, got.Data, w.Name, w.Shape, w.Data)
		}
	}

	samples[1].Inputs[0].Data = samples[1].Inputs[0].Data[:20]
	if _, err := NewBatch(spec, samples); err == nil || !strings.Contains(err.Error(), "bytes") {
		t.Errorf("NewBatch with a short row = %v, want an error", err)
	}
	if _, err := NewBatch(spec, []Sample{{ID: 3, Inputs: samples[0].Inputs[:1]}}); err == nil {
		t.Error("NewBatch with a missing input succeeded")
	}
}

func TestCompare(t *testing.T) {
	want := trt.Tensor{Name: "y", DType: trt.Float32, Shape: trt.Shape{3}, Data: f32s(1, -100, 0)}
	for _, c := range []struct {
		name string
		got  []byte
		ok   bool
	}{
		{"equal", f32s(1, -100, 0), true},
		{"within rtol", f32s(1.00005, -100.005, 0), true},
		{"within atol near zero", f32s(1, -100, 9e-6), true},
		{"outside rtol", f32s(1.0002, -100, 0), false},
		{"outside atol near zero", f32s(1, -100, 2e-5), false},
		{"NaN", f32s(1, float32(math.NaN()), 0), false},
	} {
		err := Compare(trt.Tensor{Name: "y", DType: trt.Float32, Shape: trt.Shape{3}, Data: c.got}, want, 1e-4, 1e-5)
		if (err == nil) != c.ok {
			t.Errorf("%s: Compare = %v, want ok=%v", c.name, err, c.ok)
		}
	}
	if err := Compare(trt.Tensor{Name: "y", DType: trt.Float32, Shape: trt.Shape{1, 3}, Data: want.Data}, want, 1, 1); err == nil {
		t.Error("Compare ignored a shape difference")
	}
	ints := trt.Tensor{Name: "i", DType: trt.Int32, Shape: trt.Shape{1}, Data: []byte{5, 0, 0, 0}}
	if err := Compare(trt.Tensor{Name: "i", DType: trt.Int32, Shape: trt.Shape{1}, Data: []byte{6, 0, 0, 0}}, ints, 1, 1); err == nil {
		t.Error("Compare applied a tolerance to integers")
	}
}

func TestRow(t *testing.T) {
	out := trt.Tensor{Name: "y", DType: trt.Float32, Shape: trt.Shape{2, 2}, Data: f32s(1, 2, 3, 4)}
	r, err := Row(out, 1)
	if err != nil || !r.Shape.Equal(trt.Shape{2}) || string(r.Data) != string(f32s(3, 4)) {
		t.Errorf("Row(out, 1) = %v %v, %v", r.Shape, r.Data, err)
	}
	if _, err := Row(out, 2); err == nil {
		t.Error("Row past the end succeeded")
	}
}
