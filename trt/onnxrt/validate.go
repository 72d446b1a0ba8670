//go:build cgo

package onnxrt

import (
	"errors"
	"fmt"
	"maps"

	"github.com/jetinfer/jetinfer/trt"
)

// checkBatch reports why b does not fit spec; the caller wraps the result
// with trt.ErrInvalidInput. sameDims lists groups of {input, dimension}
// that share a symbolic name in the model and so must agree in size.
func checkBatch(spec *trt.Spec, sameDims [][][2]int, b *trt.Batch) error {
	if b == nil {
		return errors.New("nil batch")
	}
	if b.Profile < 0 || b.Profile >= len(spec.Profiles) {
		return fmt.Errorf("profile %d out of range: the engine has %d", b.Profile, len(spec.Profiles))
	}
	if len(b.Inputs) != len(spec.Inputs) {
		return fmt.Errorf("got %d inputs, want %d", len(b.Inputs), len(spec.Inputs))
	}
	if len(b.Outputs) != 0 && len(b.Outputs) != len(spec.Outputs) {
		return fmt.Errorf("got %d outputs, want 0 (engine allocates) or %d", len(b.Outputs), len(spec.Outputs))
	}
	prof := spec.Profiles[b.Profile]
	for i, in := range b.Inputs {
		d := spec.Inputs[i]
		if in.Name != "" && in.Name != d.Name {
			return fmt.Errorf("input %d is named %q, want %q", i, in.Name, d.Name)
		}
		if in.DType != d.DType {
			return fmt.Errorf("input %q has dtype %v, want %v", d.Name, in.DType, d.DType)
		}
		if !d.Shape.Matches(in.Shape) {
			return fmt.Errorf("input %q has shape %v, want %v", d.Name, in.Shape, d.Shape)
		}
		if !prof.Contains(d.Name, in.Shape) {
			return fmt.Errorf("input %q has shape %v, outside profile %d [%v, %v]",
				d.Name, in.Shape, b.Profile, prof.Min[d.Name], prof.Max[d.Name])
		}
		if in.Shape[0] != b.Inputs[0].Shape[0] {
			return fmt.Errorf("input %q has batch %d, input %q has %d",
				d.Name, in.Shape[0], spec.Inputs[0].Name, b.Inputs[0].Shape[0])
		}
		size, err := trt.ByteSize(in.DType, in.Shape)
		if err != nil {
			return fmt.Errorf("input %q: %w", d.Name, err)
		}
		if size == 0 {
			return fmt.Errorf("input %q has shape %v: empty tensors are not supported", d.Name, in.Shape)
		}
		if len(in.Data) != size {
			return fmt.Errorf("input %q has %d bytes, want %d for %v %v", d.Name, len(in.Data), size, in.DType, in.Shape)
		}
	}
	for _, group := range sameDims {
		first := group[0]
		want := b.Inputs[first[0]].Shape[first[1]]
		for _, g := range group[1:] {
			if got := b.Inputs[g[0]].Shape[g[1]]; got != want {
				return fmt.Errorf("dimension %d of input %q is %d but dimension %d of input %q is %d; the model names both the same",
					g[1], spec.Inputs[g[0]].Name, got, first[1], spec.Inputs[first[0]].Name, want)
			}
		}
	}
	return nil
}

// cloneSpec returns a deep copy of s.
func cloneSpec(s trt.Spec) trt.Spec {
	c := trt.Spec{
		Inputs:   cloneDescs(s.Inputs),
		Outputs:  cloneDescs(s.Outputs),
		Profiles: make([]trt.Profile, len(s.Profiles)),
	}
	for i, p := range s.Profiles {
		c.Profiles[i] = trt.Profile{Min: cloneShapes(p.Min), Opt: cloneShapes(p.Opt), Max: cloneShapes(p.Max)}
	}
	return c
}

func cloneDescs(ds []trt.TensorDesc) []trt.TensorDesc {
	out := make([]trt.TensorDesc, len(ds))
	for i, d := range ds {
		out[i] = trt.TensorDesc{Name: d.Name, DType: d.DType, Shape: d.Shape.Clone()}
	}
	return out
}

func cloneShapes(m map[string]trt.Shape) map[string]trt.Shape {
	out := maps.Clone(m)
	for k, v := range out {
		out[k] = v.Clone()
	}
	return out
}
