package trttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
)

// OpenFunc opens the backend's engine for the test model named model (one
// of Digits, DigitsFP16, SeqEncoder, Tagger, TaggerFP16). It may call t.Skip when the backend
// or the model's artifact is unavailable. The suite closes the engine.
type OpenFunc func(t *testing.T, model string) trt.Engine

// Run runs the conformance suite against every model, each as a subtest
// named after the model, with one engine per model.
func Run(t *testing.T, open OpenFunc, models ...Model) {
	t.Helper()
	if len(models) == 0 {
		t.Fatal("trttest.Run: no models")
	}
	for _, m := range models {
		t.Run(m.Name, func(t *testing.T) {
			if len(m.Samples) == 0 {
				t.Fatalf("model %s has no reference samples", m.Name)
			}
			e := open(t, m.Name)
			t.Cleanup(func() {
				if err := e.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			s := &suite{e: e, m: m}
			t.Run("Spec", s.testSpec)
			if t.Failed() {
				return // the rest relies on a sane Spec
			}
			t.Run("Device", s.testDevice)
			t.Run("Reference", s.testReference)
			t.Run("BatchOfOne", s.testBatchOfOne)
			t.Run("MaxBatch", s.testMaxBatch)
			t.Run("ZeroPaddingRows", s.testZeroPaddingRows)
			t.Run("CallerOutputs", s.testCallerOutputs)
			t.Run("InvalidInput", s.testInvalidInput)
			t.Run("Concurrent", s.testConcurrent)
			t.Run("Canceled", s.testCanceled)
		})
	}
}

type suite struct {
	e trt.Engine
	m Model
}

func (s *suite) testSpec(t *testing.T) {
	spec := s.e.Spec()
	if len(spec.Inputs) == 0 || len(spec.Outputs) == 0 {
		t.Fatalf("spec has %d inputs and %d outputs", len(spec.Inputs), len(spec.Outputs))
	}
	for _, list := range [][]trt.TensorDesc{spec.Inputs, spec.Outputs} {
		seen := map[string]bool{}
		for _, d := range list {
			if d.Name == "" || seen[d.Name] {
				t.Errorf("tensor name %q empty or repeated", d.Name)
			}
			seen[d.Name] = true
			if !d.DType.Valid() {
				t.Errorf("%q: invalid dtype %v", d.Name, d.DType)
			}
			if len(d.Shape) == 0 {
				t.Errorf("%q: no batch dimension", d.Name)
			}
			for i, n := range d.Shape {
				if n != trt.Dynamic && n < 1 {
					t.Errorf("%q: dimension %d is %d", d.Name, i, n)
				}
			}
		}
	}
	if len(spec.Profiles) == 0 {
		t.Fatal("spec has no optimization profile")
	}
	for pi, p := range spec.Profiles {
		for _, in := range spec.Inputs {
			lo, opt, hi := p.Min[in.Name], p.Opt[in.Name], p.Max[in.Name]
			if len(lo) != len(in.Shape) || len(opt) != len(in.Shape) || len(hi) != len(in.Shape) {
				t.Errorf("profile %d, input %q: min %v opt %v max %v do not all have rank %d",
					pi, in.Name, lo, opt, hi, len(in.Shape))
				continue
			}
			if !p.Contains(in.Name, opt) {
				t.Errorf("profile %d, input %q: opt %v outside [%v, %v]", pi, in.Name, opt, lo, hi)
			}
			for d, n := range in.Shape {
				if lo[d] < 1 || lo[d] > hi[d] {
					t.Errorf("profile %d, input %q, dimension %d: min %d max %d", pi, in.Name, d, lo[d], hi[d])
				}
				if n != trt.Dynamic && (lo[d] != n || hi[d] != n) {
					t.Errorf("profile %d, input %q, fixed dimension %d = %d has range [%d, %d]", pi, in.Name, d, n, lo[d], hi[d])
				}
			}
			first := spec.Inputs[0].Name
			if lo[0] != p.Min[first][0] || hi[0] != p.Max[first][0] {
				t.Errorf("profile %d: batch range of %q [%d, %d] differs from %q's [%d, %d]",
					pi, in.Name, lo[0], hi[0], first, p.Min[first][0], p.Max[first][0])
			}
		}
	}
	// The model's reference rows must fit the spec.
	smp := s.m.Samples[0]
	for _, want := range smp.Inputs {
		d, ok := spec.Input(want.Name)
		if !ok {
			t.Errorf("spec has no input %q", want.Name)
			continue
		}
		if d.DType != want.DType || !d.RowShape().Matches(want.Shape) {
			t.Errorf("input %q is %v %v; reference rows are %v %v", d.Name, d.DType, d.Shape, want.DType, want.Shape)
		}
	}
	for _, want := range smp.Want {
		var d *trt.TensorDesc
		for i := range spec.Outputs {
			if spec.Outputs[i].Name == want.Name {
				d = &spec.Outputs[i]
			}
		}
		if d == nil {
			t.Errorf("spec has no output %q", want.Name)
			continue
		}
		if d.DType != want.DType || !d.RowShape().Matches(want.Shape) {
			t.Errorf("output %q is %v %v; reference rows are %v %v", d.Name, d.DType, d.Shape, want.DType, want.Shape)
		}
	}
	// Spec must be a value: changing the copy must not change the engine.
	spec.Inputs[0].Name = "changed by caller"
	if s.e.Spec().Inputs[0].Name == "changed by caller" {
		t.Error("Spec shares its Inputs slice with the engine")
	}
}

func (s *suite) testDevice(t *testing.T) {
	d := s.e.Device()
	if d.Kind != "cpu" && d.Kind != "cuda" {
		t.Errorf("Device().Kind = %q, want cpu or cuda", d.Kind)
	}
	if d.Name == "" {
		t.Error("Device().Name is empty")
	}
}

// maxBatch is the largest batch of the profile that accepts samples[0].
func (s *suite) maxBatch(t *testing.T) int {
	t.Helper()
	b, err := NewBatch(s.e.Spec(), s.m.Samples[:1])
	if err != nil {
		t.Fatal(err)
	}
	spec := s.e.Spec()
	return int(spec.Profiles[b.Profile].Max[spec.Inputs[0].Name][0])
}

// run stacks samples, runs them and checks every row against its
// reference; it returns the batch.
func (s *suite) run(t *testing.T, samples []Sample) *trt.Batch {
	t.Helper()
	b, err := NewBatch(s.e.Spec(), samples)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.e.Run(t.Context(), b); err != nil {
		t.Fatalf("Run(batch of %d, shapes %v): %v", len(samples), inputShapes(b), err)
	}
	s.checkRows(t, b, samples)
	return b
}

// checkRows compares the first len(samples) rows of b's outputs with the
// samples' references.
func (s *suite) checkRows(t *testing.T, b *trt.Batch, samples []Sample) {
	t.Helper()
	spec := s.e.Spec()
	if len(b.Outputs) != len(spec.Outputs) {
		t.Fatalf("Run left %d outputs, want %d", len(b.Outputs), len(spec.Outputs))
	}
	for oi, desc := range spec.Outputs {
		out := b.Outputs[oi]
		if out.Name != desc.Name || out.DType != desc.DType || !desc.Shape.Matches(out.Shape) {
			t.Fatalf("output %d is %q %v %v, spec says %q %v %v", oi, out.Name, out.DType, out.Shape, desc.Name, desc.DType, desc.Shape)
		}
		if out.Shape[0] != b.Inputs[0].Shape[0] {
			t.Fatalf("output %q has batch %d, input has %d", out.Name, out.Shape[0], b.Inputs[0].Shape[0])
		}
		fails := 0
		for i, smp := range samples {
			want, ok := findTensor(smp.Want, desc.Name)
			if !ok {
				continue
			}
			got, err := Row(out, i)
			if err != nil {
				t.Fatal(err)
			}
			got = cropPositions(got, want, desc)
			if err := Compare(got, want, s.m.RTol, s.m.ATol); err != nil {
				if fails++; fails <= 5 {
					t.Errorf("sample %d (row %d of %d): %v", smp.ID, i, out.Shape[0], err)
				}
			}
		}
		if fails > 5 {
			t.Errorf("%d of %d rows of %q differ from the references", fails, len(samples), desc.Name)
		}
	}
}

// cropPositions keeps the first want.Shape[0] positions of an output row
// whose first row dimension is the dynamic sequence dimension: a row padded
// to the batch's longest sequence is compared at its real positions only.
func cropPositions(got, want trt.Tensor, desc trt.TensorDesc) trt.Tensor {
	if len(desc.Shape) < 2 || desc.Shape[1] != trt.Dynamic || len(got.Shape) == 0 ||
		len(want.Shape) != len(got.Shape) || want.Shape[0] >= got.Shape[0] {
		return got
	}
	per, err := trt.ByteSize(got.DType, got.Shape[1:])
	if err != nil {
		return got
	}
	got.Shape = append(trt.Shape{want.Shape[0]}, got.Shape[1:]...)
	got.Data = got.Data[:int(want.Shape[0])*per]
	return got
}

// testReference runs every sample in batches of varying sizes.
func (s *suite) testReference(t *testing.T) {
	maxB := s.maxBatch(t)
	sizes := []int{3, 17, maxB, 1}
	for i, k := 0, 0; i < len(s.m.Samples); k++ {
		n := min(sizes[k%len(sizes)], maxB, len(s.m.Samples)-i)
		s.run(t, s.m.Samples[i:i+n])
		i += n
	}
}

func (s *suite) testBatchOfOne(t *testing.T) {
	for i := range s.m.Samples {
		s.run(t, s.m.Samples[i:i+1])
		if t.Failed() {
			return
		}
	}
}

// testMaxBatch fills a batch of the profile's largest size, cycling
// through the samples.
func (s *suite) testMaxBatch(t *testing.T) {
	maxB := s.maxBatch(t)
	samples := make([]Sample, maxB)
	for i := range samples {
		samples[i] = s.m.Samples[i%len(s.m.Samples)]
	}
	s.run(t, samples)
}

// testZeroPaddingRows appends all-zero rows, as a batcher does to reach a
// preferred batch size: the real rows must not change.
func (s *suite) testZeroPaddingRows(t *testing.T) {
	maxB := s.maxBatch(t)
	if maxB < 2 {
		t.Skip("profile's largest batch is 1")
	}
	n := min(len(s.m.Samples), maxB/2)
	b, err := NewBatch(s.e.Spec(), s.m.Samples[:n])
	if err != nil {
		t.Fatal(err)
	}
	pad := min(n+5, maxB) - n
	for i, in := range b.Inputs {
		rowBytes := len(in.Data) / int(in.Shape[0])
		b.Inputs[i].Data = append(in.Data, make([]byte, pad*rowBytes)...)
		b.Inputs[i].Shape = append(trt.Shape{in.Shape[0] + int64(pad)}, in.Shape[1:]...)
	}
	if err := s.e.Run(t.Context(), b); err != nil {
		t.Fatalf("Run with %d zero rows after %d real ones: %v", pad, n, err)
	}
	s.checkRows(t, b, s.m.Samples[:n])
}

// testCallerOutputs runs one batch with engine-allocated outputs, then with
// caller buffers of the exact size (which must be filled in place), then
// with buffers of the wrong size (which the engine must replace).
func (s *suite) testCallerOutputs(t *testing.T) {
	samples := s.m.Samples[:min(8, len(s.m.Samples))]
	ctx := t.Context()
	alloc, err := NewBatch(s.e.Spec(), samples)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.e.Run(ctx, alloc); err != nil {
		t.Fatal(err)
	}
	s.checkRows(t, alloc, samples)

	caller := &trt.Batch{Profile: alloc.Profile, Inputs: alloc.Inputs, Outputs: make([]trt.Tensor, len(alloc.Outputs))}
	for i, o := range alloc.Outputs {
		caller.Outputs[i] = trt.Tensor{Data: bytes.Repeat([]byte{0xA5}, len(o.Data))}
	}
	bufs := make([]*byte, len(caller.Outputs))
	for i := range caller.Outputs {
		bufs[i] = &caller.Outputs[i].Data[0]
	}
	if err := s.e.Run(ctx, caller); err != nil {
		t.Fatal(err)
	}
	for i, o := range caller.Outputs {
		if len(o.Data) == 0 || &o.Data[0] != bufs[i] {
			t.Errorf("output %q: caller's buffer of the exact size was not used", o.Name)
		}
		if !bytes.Equal(o.Data, alloc.Outputs[i].Data) || !o.Shape.Equal(alloc.Outputs[i].Shape) ||
			o.Name != alloc.Outputs[i].Name || o.DType != alloc.Outputs[i].DType {
			t.Errorf("output %q: caller-provided result differs from engine-allocated one", o.Name)
		}
	}

	wrong := &trt.Batch{Profile: alloc.Profile, Inputs: alloc.Inputs, Outputs: make([]trt.Tensor, len(alloc.Outputs))}
	for i, o := range alloc.Outputs {
		wrong.Outputs[i] = trt.Tensor{Data: make([]byte, len(o.Data)-1)}
	}
	if err := s.e.Run(ctx, wrong); err != nil {
		t.Fatalf("Run with short output buffers: %v", err)
	}
	for i, o := range wrong.Outputs {
		if !bytes.Equal(o.Data, alloc.Outputs[i].Data) {
			t.Errorf("output %q: result with a short caller buffer differs", o.Name)
		}
	}
}

// testInvalidInput checks that malformed batches fail with
// trt.ErrInvalidInput and leave the engine usable.
func (s *suite) testInvalidInput(t *testing.T) {
	spec := s.e.Spec()
	ctx := t.Context()
	valid := func(t *testing.T) *trt.Batch {
		b, err := NewBatch(spec, s.m.Samples[:min(2, len(s.m.Samples))])
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name   string
		mutate func(t *testing.T, b *trt.Batch) *trt.Batch
	}{
		{"nil batch", func(*testing.T, *trt.Batch) *trt.Batch { return nil }},
		{"no inputs", func(_ *testing.T, b *trt.Batch) *trt.Batch { b.Inputs = nil; return b }},
		{"extra input", func(_ *testing.T, b *trt.Batch) *trt.Batch { b.Inputs = append(b.Inputs, b.Inputs[0]); return b }},
		{"short data", func(_ *testing.T, b *trt.Batch) *trt.Batch {
			b.Inputs[0].Data = b.Inputs[0].Data[:len(b.Inputs[0].Data)-b.Inputs[0].DType.Size()]
			return b
		}},
		{"long data", func(_ *testing.T, b *trt.Batch) *trt.Batch {
			b.Inputs[0].Data = append(b.Inputs[0].Data, make([]byte, b.Inputs[0].DType.Size())...)
			return b
		}},
		{"wrong dtype", func(_ *testing.T, b *trt.Batch) *trt.Batch {
			b.Inputs[0].DType = sameSizeOther(b.Inputs[0].DType)
			return b
		}},
		{"wrong rank", func(_ *testing.T, b *trt.Batch) *trt.Batch {
			b.Inputs[0].Shape = append(b.Inputs[0].Shape.Clone(), 1)
			return b
		}},
		{"wrong fixed dimension", func(t *testing.T, b *trt.Batch) *trt.Batch {
			d := fixedDim(spec.Inputs[0])
			if d < 0 {
				t.Skip("first input has no fixed dimension")
			}
			return reshapeFirst(b, d, b.Inputs[0].Shape[d]+1)
		}},
		{"batch above profile", func(_ *testing.T, b *trt.Batch) *trt.Batch {
			return repeatRows(b, int(spec.Profiles[b.Profile].Max[spec.Inputs[0].Name][0])+1)
		}},
		{"dimension above profile", func(t *testing.T, b *trt.Batch) *trt.Batch {
			d := dynamicDim(spec.Inputs[0])
			if d < 0 {
				t.Skip("first input has no dynamic non-batch dimension")
			}
			nb := &trt.Batch{Profile: b.Profile}
			for _, in := range spec.Inputs {
				shape := spec.Profiles[b.Profile].Max[in.Name].Clone()
				shape[0] = 1
				if dd := dynamicDim(in); dd >= 0 {
					shape[dd]++
				}
				n, err := trt.ByteSize(in.DType, shape)
				if err != nil {
					t.Fatal(err)
				}
				nb.Inputs = append(nb.Inputs, trt.Tensor{Name: in.Name, DType: in.DType, Shape: shape, Data: make([]byte, n)})
			}
			return nb
		}},
		{"profile out of range", func(_ *testing.T, b *trt.Batch) *trt.Batch { b.Profile = len(spec.Profiles); return b }},
		{"wrong output count", func(_ *testing.T, b *trt.Batch) *trt.Batch {
			b.Outputs = make([]trt.Tensor, len(spec.Outputs)+1)
			return b
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.mutate(t, valid(t))
			err := s.e.Run(ctx, b)
			if !errors.Is(err, trt.ErrInvalidInput) {
				t.Errorf("Run = %v, want an error wrapping trt.ErrInvalidInput", err)
			}
		})
	}
	// The engine still works.
	s.run(t, s.m.Samples[:min(2, len(s.m.Samples))])
}

// testConcurrent runs the same batch from several goroutines; every result
// must equal the serial one bit for bit.
func (s *suite) testConcurrent(t *testing.T) {
	const goroutines, runs = 8, 5
	samples := s.m.Samples[:min(16, len(s.m.Samples))]
	want := s.run(t, samples)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*runs)
	for g := range goroutines {
		wg.Go(func() {
			for r := range runs {
				b, err := NewBatch(s.e.Spec(), samples)
				if err != nil {
					errs <- err
					return
				}
				if err := s.e.Run(ctx, b); err != nil {
					errs <- fmt.Errorf("goroutine %d run %d: %w", g, r, err)
					return
				}
				for i, o := range b.Outputs {
					if !bytes.Equal(o.Data, want.Outputs[i].Data) {
						errs <- fmt.Errorf("goroutine %d run %d: output %q differs from the serial result", g, r, o.Name)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func (s *suite) testCanceled(t *testing.T) {
	b, err := NewBatch(s.e.Spec(), s.m.Samples[:1])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.e.Run(ctx, b); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a cancelled context = %v, want context.Canceled", err)
	}
}

// sameSizeOther returns a different dtype of the same width, so that only
// the dtype check can catch it.
func sameSizeOther(d trt.DType) trt.DType {
	switch d {
	case trt.Float32:
		return trt.Int32
	case trt.Int32:
		return trt.Float32
	case trt.Float16:
		return trt.BFloat16
	case trt.BFloat16:
		return trt.Float16
	case trt.Int64:
		return trt.Float64
	case trt.Float64:
		return trt.Int64
	case trt.Uint8:
		return trt.Int8
	default:
		return trt.Uint8
	}
}

func fixedDim(d trt.TensorDesc) int {
	for i, n := range d.Shape[1:] {
		if n != trt.Dynamic {
			return i + 1
		}
	}
	return -1
}

func dynamicDim(d trt.TensorDesc) int {
	for i, n := range d.Shape[1:] {
		if n == trt.Dynamic {
			return i + 1
		}
	}
	return -1
}

// reshapeFirst sets dimension d of the first input to n, resizing its data
// to match so that only the shape check can catch it.
func reshapeFirst(b *trt.Batch, d int, n int64) *trt.Batch {
	in := &b.Inputs[0]
	in.Shape = in.Shape.Clone()
	in.Shape[d] = n
	size, _ := trt.ByteSize(in.DType, in.Shape)
	in.Data = make([]byte, size)
	return b
}

// repeatRows returns b with every input grown to n rows (row 0 repeated).
func repeatRows(b *trt.Batch, n int) *trt.Batch {
	for i, in := range b.Inputs {
		row := len(in.Data) / int(in.Shape[0])
		data := make([]byte, 0, row*n)
		for range n {
			data = append(data, in.Data[:row]...)
		}
		b.Inputs[i].Data = data
		b.Inputs[i].Shape = append(trt.Shape{int64(n)}, in.Shape[1:]...)
	}
	return b
}

func inputShapes(b *trt.Batch) []trt.Shape {
	out := make([]trt.Shape, len(b.Inputs))
	for i, in := range b.Inputs {
		out[i] = in.Shape
	}
	return out
}
