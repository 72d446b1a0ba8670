package trttest

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/jetinfer/jetinfer/trt"
)

// NewBatch stacks samples into one batch for an engine with spec: inputs in
// spec order, each dynamic non-batch dimension zero-padded to the largest
// size among the samples (so a mask input pads with 0 = padding), and
// Profile set to the first profile that accepts the shapes. Outputs is nil.
func NewBatch(spec trt.Spec, samples []Sample) (*trt.Batch, error) {
	if len(samples) == 0 {
		return nil, fmt.Errorf("building batch: no samples")
	}
	b := &trt.Batch{Inputs: make([]trt.Tensor, len(spec.Inputs))}
	shapes := make(map[string]trt.Shape, len(spec.Inputs))
	for i, desc := range spec.Inputs {
		rows := make([]trt.Tensor, len(samples))
		for j, s := range samples {
			t, ok := findTensor(s.Inputs, desc.Name)
			if !ok {
				return nil, fmt.Errorf("building batch: sample %d has no input %q", s.ID, desc.Name)
			}
			if t.DType != desc.DType || len(t.Shape) != len(desc.Shape)-1 {
				return nil, fmt.Errorf("building batch: sample %d input %q is %v %v, engine wants %v %v",
					s.ID, desc.Name, t.DType, t.Shape, desc.DType, desc.Shape)
			}
			rows[j] = t
		}
		rowShape := make(trt.Shape, len(desc.Shape)-1)
		for _, r := range rows {
			for d, n := range r.Shape {
				rowShape[d] = max(rowShape[d], n)
			}
		}
		if !desc.RowShape().Matches(rowShape) {
			return nil, fmt.Errorf("building batch: input %q rows have shape %v, engine wants %v", desc.Name, rowShape, desc.RowShape())
		}
		rowBytes, err := trt.ByteSize(desc.DType, rowShape)
		if err != nil {
			return nil, fmt.Errorf("building batch: input %q: %w", desc.Name, err)
		}
		data := make([]byte, rowBytes*len(rows))
		for j, r := range rows {
			if err := copyPadded(data[j*rowBytes:(j+1)*rowBytes], rowShape, r.Data, r.Shape, desc.DType.Size()); err != nil {
				return nil, fmt.Errorf("building batch: sample %d input %q: %w", samples[j].ID, desc.Name, err)
			}
		}
		shape := append(trt.Shape{int64(len(rows))}, rowShape...)
		b.Inputs[i] = trt.Tensor{Name: desc.Name, DType: desc.DType, Shape: shape, Data: data}
		shapes[desc.Name] = shape
	}
	p, err := spec.ProfileFor(shapes)
	if err != nil {
		return nil, fmt.Errorf("building batch: %w", err)
	}
	b.Profile = p
	return b, nil
}

// copyPadded copies a row-major tensor of shape src into dst, a zeroed
// buffer of shape dstShape with every dimension at least as large.
func copyPadded(dst []byte, dstShape trt.Shape, src []byte, srcShape trt.Shape, elem int) error {
	want, err := trt.ByteSize(trt.Uint8, srcShape)
	if err != nil {
		return err
	}
	if len(src) != want*elem {
		return fmt.Errorf("has %d bytes, want %d for shape %v", len(src), want*elem, srcShape)
	}
	if len(srcShape) == 0 {
		copy(dst, src)
		return nil
	}
	// Bytes of one step along each dimension.
	dstStride, srcStride := int(elem), int(elem)
	for d := len(srcShape) - 1; d > 0; d-- {
		dstStride *= int(dstShape[d])
		srcStride *= int(srcShape[d])
	}
	for i := range int(srcShape[0]) {
		if err := copyPadded(dst[i*dstStride:(i+1)*dstStride], dstShape[1:], src[i*srcStride:(i+1)*srcStride], srcShape[1:], elem); err != nil {
			return err
		}
	}
	return nil
}

func findTensor(ts []trt.Tensor, name string) (trt.Tensor, bool) {
	for _, t := range ts {
		if t.Name == name {
			return t, true
		}
	}
	return trt.Tensor{}, false
}

// Row returns row i of a batch-major tensor t, as a tensor of the row shape
// sharing t's memory.
func Row(t trt.Tensor, i int) (trt.Tensor, error) {
	if len(t.Shape) == 0 || int64(i) >= t.Shape[0] || i < 0 {
		return trt.Tensor{}, fmt.Errorf("row %d of %q with shape %v out of range", i, t.Name, t.Shape)
	}
	rowShape := t.Shape[1:]
	n, err := trt.ByteSize(t.DType, rowShape)
	if err != nil {
		return trt.Tensor{}, err
	}
	if len(t.Data) != n*int(t.Shape[0]) {
		return trt.Tensor{}, fmt.Errorf("%q has %d bytes, want %d for %v %v", t.Name, len(t.Data), n*int(t.Shape[0]), t.DType, t.Shape)
	}
	return trt.Tensor{Name: t.Name, DType: t.DType, Shape: rowShape.Clone(), Data: t.Data[i*n : (i+1)*n]}, nil
}

// Compare reports whether got matches want: same dtype and shape, and
// every element within |got-want| <= atol + rtol*|want| (floating types)
// or equal (integer and bool types). The error names the worst element.
func Compare(got, want trt.Tensor, rtol, atol float64) error {
	if got.DType != want.DType || !got.Shape.Equal(want.Shape) {
		return fmt.Errorf("%q is %v %v, want %v %v", got.Name, got.DType, got.Shape, want.DType, want.Shape)
	}
	if len(got.Data) != len(want.Data) {
		return fmt.Errorf("%q has %d bytes, want %d", got.Name, len(got.Data), len(want.Data))
	}
	g, err := Decode(got)
	if err != nil {
		return err
	}
	w, err := Decode(want)
	if err != nil {
		return err
	}
	exact := !isFloat(got.DType)
	worst, worstExcess := -1, 0.0
	for i := range g {
		diff := math.Abs(g[i] - w[i])
		limit := atol + rtol*math.Abs(w[i])
		if exact {
			limit = 0
		}
		if math.IsNaN(g[i]) != math.IsNaN(w[i]) || diff > limit {
			if excess := diff - limit; worst < 0 || excess > worstExcess || math.IsNaN(excess) {
				worst, worstExcess = i, excess
			}
		}
	}
	if worst >= 0 {
		return fmt.Errorf("%q element %d is %g, want %g (|diff| %.3g > %.3g + %.3g*|want|)",
			got.Name, worst, g[worst], w[worst], math.Abs(g[worst]-w[worst]), atol, rtol)
	}
	return nil
}

func isFloat(d trt.DType) bool {
	return d == trt.Float32 || d == trt.Float16 || d == trt.BFloat16 || d == trt.Float64
}

// Decode converts the elements of t to float64. float16 and bfloat16 are
// decoded from their raw bits exactly.
func Decode(t trt.Tensor) ([]float64, error) {
	size := t.DType.Size()
	if size == 0 || len(t.Data)%size != 0 {
		return nil, fmt.Errorf("decoding %q: %d bytes of %v", t.Name, len(t.Data), t.DType)
	}
	out := make([]float64, len(t.Data)/size)
	le := binary.LittleEndian
	for i := range out {
		b := t.Data[i*size:]
		switch t.DType {
		case trt.Float32:
			out[i] = float64(math.Float32frombits(le.Uint32(b)))
		case trt.Float64:
			out[i] = math.Float64frombits(le.Uint64(b))
		case trt.Float16:
			out[i] = HalfToFloat64(le.Uint16(b))
		case trt.BFloat16:
			out[i] = float64(math.Float32frombits(uint32(le.Uint16(b)) << 16))
		case trt.Int8:
			out[i] = float64(int8(b[0]))
		case trt.Uint8, trt.Bool:
			out[i] = float64(b[0])
		case trt.Int32:
			out[i] = float64(int32(le.Uint32(b)))
		case trt.Int64:
			out[i] = float64(int64(le.Uint64(b)))
		default:
			return nil, fmt.Errorf("decoding %q: unsupported dtype %v", t.Name, t.DType)
		}
	}
	return out, nil
}

// HalfToFloat64 decodes IEEE 754 binary16 bits exactly (subnormals, signed
// zeros, infinities and NaN included).
func HalfToFloat64(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24)
	case 0x1f:
		if frac != 0 {
			return math.NaN()
		}
		return math.Inf(int(sign))
	default:
		return sign * math.Ldexp(1024+frac, exp-25)
	}
}
