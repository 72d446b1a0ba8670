package models

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
)

// The accuracy gate: before a version is promoted (`jetinfer model
// promote`) and before a worker switches to it, the version's reference
// inputs are run on the engine that would serve it and its outputs are
// compared with the stored reference outputs (FP32, typically from the
// training framework). This is how an FP16 or INT8 plan, or a wrong
// model, is caught before it answers requests.
//
// A reference artifact (KindReference, `model push --reference`) is one
// Arrow IPC stream, as a request body is: one column per engine input
// named as the input (fixed_shape_tensor or ragged List columns) and one
// column per checked engine output named as the output, row by row. An
// `id` column and other columns (labels) are ignored. Inputs the worker
// generates itself (attention masks, lengths; Gate.Masks and
// Gate.Lengths) may be left out: they are filled for unpadded rows.
// testdata/digits_gate.arrow is one.

// Tolerance bounds the accuracy gate: an output element passes when
// |got − want| ≤ ATol + RTol·|want|, want being the reference (the rule of
// numpy.allclose).
type Tolerance struct {
	RTol float64 `json:"rtol"`
	ATol float64 `json:"atol"`
}

// DefaultTolerance is the gate's default: loose enough for an FP16 plan
// of an FP32 model (float16 keeps about 3 significant digits), far too
// tight for a wrong model.
var DefaultTolerance = Tolerance{RTol: 1e-2, ATol: 1e-3}

// ErrAccuracy: the engine's outputs on the reference inputs differ from
// the reference outputs beyond the tolerance.
var ErrAccuracy = errors.New("accuracy gate refused the engine")

// Runner is what the accuracy gate needs of an engine; trt.Engine
// implementations satisfy it.
type Runner interface {
	Spec() trt.Spec
	Run(ctx context.Context, b *trt.Batch) error
}

// Gate configures one accuracy check.
type Gate struct {
	Tolerance Tolerance
	// Masks and Lengths name engine inputs the reference may leave out:
	// masks are filled with ones and lengths with the row's positions
	// (rows run unpadded). When both are empty, inputs called "mask" or
	// "attention_mask" of shape [batch, seq] are masks, as in the worker.
	Masks, Lengths []string
}

// Accuracy is what the gate measured.
type Accuracy struct {
	// Reference names the reference artifact; "" when the version has
	// none and the gate did not run.
	Reference string    `json:"reference,omitempty"`
	Tolerance Tolerance `json:"tolerance"`
	// Rows run, output elements compared, and how many were beyond the
	// tolerance.
	Rows     int `json:"rows"`
	Compared int `json:"compared"`
	Beyond   int `json:"beyond"`
	// MaxAbsErr is the largest |got − want|; MaxRelErr the largest
	// |got − want| / |want| over elements whose reference is not 0.
	MaxAbsErr float64 `json:"max_abs_err"`
	MaxRelErr float64 `json:"max_rel_err"`
	// Worst describes the element furthest beyond (or nearest to) its
	// bound: output, row, element, got and want.
	Worst string `json:"worst,omitempty"`
}

// Passed reports whether every compared element was within tolerance.
func (a Accuracy) Passed() bool { return a.Beyond == 0 }

// String summarizes the measurement for logs and the command line.
func (a Accuracy) String() string {
	if a.Reference == "" {
		return "no reference data: accuracy gate not run"
	}
	verdict := "passed"
	if !a.Passed() {
		verdict = fmt.Sprintf("FAILED: %d of %d elements", a.Beyond, a.Compared)
	} else {
		verdict += fmt.Sprintf(": %d elements", a.Compared)
	}
	worst := ""
	if a.Worst != "" {
		worst = " (" + a.Worst + ")"
	}
	return fmt.Sprintf("%s on %s (%d rows) within |err| ≤ %g + %g·|ref|; max abs error %.4g, max rel error %.4g%s",
		verdict, a.Reference, a.Rows, a.Tolerance.ATol, a.Tolerance.RTol, a.MaxAbsErr, a.MaxRelErr, worst)
}

// CheckAccuracy runs the gate over every reference artifact of v on eng.
// The artifacts are fetched and verified like any other. A version
// without reference data returns an Accuracy with an empty Reference and
// no error. A reference the engine does not reproduce within g.Tolerance
// returns the measurement and an error matching ErrAccuracy that states
// the measured error.
func (r *Repository) CheckAccuracy(ctx context.Context, v Version, eng Runner, g Gate) (Accuracy, error) {
	var acc Accuracy
	for _, a := range v.Artifacts {
		if a.Kind != KindReference {
			continue
		}
		path, _, err := r.Fetch(ctx, a)
		if err != nil {
			return Accuracy{Reference: a.Name, Tolerance: g.Tolerance}, fmt.Errorf("accuracy gate of %s %s: %w", v.Model, v.Version, err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return Accuracy{Reference: a.Name, Tolerance: g.Tolerance}, fmt.Errorf("accuracy gate of %s %s: reading %s: %w", v.Model, v.Version, a.Name, err)
		}
		acc, err = CheckAccuracy(ctx, eng, b, g)
		acc.Reference = a.Name
		if err != nil {
			return acc, fmt.Errorf("accuracy gate of %s %s on %s: %w", v.Model, v.Version, a.Name, err)
		}
	}
	return acc, nil
}

// CheckAccuracy runs the reference inputs in ref (an Arrow IPC stream;
// see the top of this file) on eng and compares the outputs with the
// reference outputs. Rows of fixed shape run in batches of up to the
// profile's largest batch (at most 256); ragged rows run one at a time,
// unpadded. Inputs are converted to the engine's dtype where the two are
// both floating point or both integer (FP32 references for an FP16
// engine); outputs are compared as float64. It returns an error for
// reference data that does not fit the engine, an engine failure, or
// (matching ErrAccuracy) outputs beyond the tolerance.
func CheckAccuracy(ctx context.Context, eng Runner, ref []byte, g Gate) (Accuracy, error) {
	acc := Accuracy{Tolerance: g.Tolerance, Reference: "reference data"}
	req, err := codec.DecodeRequest(ref, codec.Limits{MaxBodyBytes: len(ref) + 1, MaxRows: 1 << 24})
	if err != nil {
		return acc, fmt.Errorf("decoding reference data: %w", err)
	}
	defer req.Release()
	if req.Rows == 0 {
		return acc, errors.New("reference data has no rows")
	}
	spec := eng.Spec()
	masks, lengths := g.Masks, g.Lengths
	if len(masks) == 0 && len(lengths) == 0 {
		for _, in := range spec.Inputs {
			if (in.Name == "mask" || in.Name == "attention_mask") && len(in.Shape) == 2 && in.Shape[1] == trt.Dynamic {
				masks = append(masks, in.Name)
			}
		}
	}
	names := make([]string, len(req.Columns))
	for i, c := range req.Columns {
		names[i] = c.Name
	}
	type input struct {
		desc trt.TensorDesc
		col  *codec.Column // nil: filled (mask or length)
		fill string
	}
	var ins []input
	ragged := false
	var seqSource *codec.Column // a column whose rows give the sequence length
	for _, d := range spec.Inputs {
		c, ok := req.Column(d.Name)
		switch {
		case ok:
			if !convertible(c.DType, d.DType) {
				return acc, fmt.Errorf("reference column %q is %s; engine input is %s", c.Name, c.DType, d.DType)
			}
			ragged = ragged || c.Ragged
			if c.Ragged || (len(d.Shape) > 1 && d.Shape[1] == trt.Dynamic) {
				seqSource = c
			}
			ins = append(ins, input{desc: d, col: c})
		case slices.Contains(masks, d.Name):
			ins = append(ins, input{desc: d, fill: "mask"})
		case slices.Contains(lengths, d.Name):
			ins = append(ins, input{desc: d, fill: "length"})
		default:
			return acc, fmt.Errorf("reference data has no column for engine input %q (it has %s)", d.Name, strings.Join(names, ", "))
		}
	}
	type output struct {
		idx int
		col *codec.Column
	}
	var outs []output
	for i, d := range spec.Outputs {
		if c, ok := req.Column(d.Name); ok {
			outs = append(outs, output{idx: i, col: c})
		}
	}
	if len(outs) == 0 {
		var want []string
		for _, d := range spec.Outputs {
			want = append(want, d.Name)
		}
		return acc, fmt.Errorf("reference data has no column for any engine output (%s); it has %s", strings.Join(want, ", "), strings.Join(names, ", "))
	}
	if (len(masks) > 0 || len(lengths) > 0) && seqSource == nil {
		for _, in := range ins {
			if in.fill != "" {
				return acc, fmt.Errorf("engine input %q is filled per sequence, but no reference input has a sequence dimension", in.desc.Name)
			}
		}
	}

	step := 1
	if !ragged {
		step = maxBatch(spec)
	}
	acc.Rows = req.Rows
	cmp := comparison{tol: g.Tolerance}
	for lo := 0; lo < req.Rows; lo += step {
		hi := min(lo+step, req.Rows)
		n := hi - lo
		seq := -1
		if seqSource != nil {
			if seqSource.Ragged {
				seq = seqSource.Positions(lo) // ragged: one row per run
			} else {
				seq = int(seqSource.RowShape[0])
			}
		}
		b := &trt.Batch{Inputs: make([]trt.Tensor, len(ins)), Outputs: make([]trt.Tensor, len(spec.Outputs))}
		shapes := map[string]trt.Shape{}
		for i, in := range ins {
			t, err := batchInput(in.desc, in.col, in.fill, lo, hi, seq)
			if err != nil {
				return acc, err
			}
			b.Inputs[i] = t
			shapes[in.desc.Name] = t.Shape
		}
		if b.Profile, err = spec.ProfileFor(shapes); err != nil {
			return acc, fmt.Errorf("reference rows %d to %d: %w", lo, hi-1, err)
		}
		for i, d := range spec.Outputs {
			b.Outputs[i] = trt.Tensor{Name: d.Name, DType: d.DType}
		}
		if err := eng.Run(ctx, b); err != nil {
			return acc, fmt.Errorf("running reference rows %d to %d: %w", lo, hi-1, err)
		}
		for _, o := range outs {
			got := b.Outputs[o.idx]
			var want []float64
			for row := lo; row < hi; row++ {
				want = appendFloats(want, o.col.DType, o.col.Row(row))
			}
			have := appendFloats(nil, got.DType, got.Data)
			if len(have) != len(want) {
				return acc, fmt.Errorf("output %q of reference rows %d to %d has %d elements (shape %v); the reference has %d",
					got.Name, lo, hi-1, len(have), got.Shape, len(want))
			}
			cmp.add(got.Name, lo, n, have, want)
		}
	}
	acc.Compared, acc.Beyond, acc.MaxAbsErr, acc.MaxRelErr, acc.Worst = cmp.n, cmp.beyond, cmp.maxAbs, cmp.maxRel, cmp.worst
	if !acc.Passed() {
		return acc, fmt.Errorf("%w: %d of %d output elements beyond |err| ≤ %g + %g·|ref|, max abs error %.4g (%s)",
			ErrAccuracy, acc.Beyond, acc.Compared, g.Tolerance.ATol, g.Tolerance.RTol, acc.MaxAbsErr, acc.Worst)
	}
	return acc, nil
}

// maxBatch is the largest batch every input of profile 0 accepts, at most
// 256 and at least 1.
func maxBatch(s trt.Spec) int {
	m := int64(256)
	if len(s.Profiles) > 0 {
		for _, in := range s.Inputs {
			if sh := s.Profiles[0].Max[in.Name]; len(sh) > 0 && sh[0] > 0 {
				m = min(m, sh[0])
			}
		}
	}
	return int(max(m, 1))
}

// batchInput builds the engine input d for reference rows [lo, hi):
// the column's rows converted to d's dtype, or a filled mask or length.
// seq is the rows' sequence length (-1 without one).
func batchInput(d trt.TensorDesc, c *codec.Column, fill string, lo, hi, seq int) (trt.Tensor, error) {
	n := hi - lo
	t := trt.Tensor{Name: d.Name, DType: d.DType}
	switch fill {
	case "mask":
		t.Shape = trt.Shape{int64(n), int64(seq)}
		one := scalarBytes(d.DType, 1)
		for range n * seq {
			t.Data = append(t.Data, one...)
		}
		return t, nil
	case "length":
		t.Shape = trt.Shape{int64(n)}
		if len(d.Shape) == 2 {
			t.Shape = append(t.Shape, 1)
		}
		for range n {
			t.Data = append(t.Data, scalarBytes(d.DType, float64(seq))...)
		}
		return t, nil
	}
	if c.Ragged {
		t.Shape = append(trt.Shape{int64(n), int64(c.Positions(lo))}, c.RowShape...)
	} else {
		t.Shape = append(trt.Shape{int64(n)}, c.RowShape...)
	}
	if len(t.Shape) != len(d.Shape) {
		return t, fmt.Errorf("reference column %q has rows of shape %v; engine input %q is %v", c.Name, t.Shape[1:], d.Name, d.Shape)
	}
	for i := 1; i < len(d.Shape); i++ {
		if d.Shape[i] != trt.Dynamic && d.Shape[i] != t.Shape[i] {
			return t, fmt.Errorf("reference column %q has rows of shape %v; engine input %q is %v", c.Name, t.Shape[1:], d.Name, d.Shape)
		}
	}
	for row := lo; row < hi; row++ {
		t.Data = convert(t.Data, d.DType, c.DType, c.Row(row))
	}
	return t, nil
}

// convertible reports whether reference elements of dtype from can be
// fed to an engine input of dtype to.
func convertible(from, to trt.DType) bool {
	return from == to || (isFloat(from) && isFloat(to)) || (isInt(from) && isInt(to))
}

func isFloat(d trt.DType) bool {
	return d == trt.Float32 || d == trt.Float64 || d == trt.Float16 || d == trt.BFloat16
}

func isInt(d trt.DType) bool {
	return d == trt.Int8 || d == trt.Uint8 || d == trt.Int32 || d == trt.Int64
}

// convert appends the elements src (of dtype from) to dst as dtype to.
func convert(dst []byte, to, from trt.DType, src []byte) []byte {
	if to == from {
		return append(dst, src...)
	}
	for _, v := range appendFloats(nil, from, src) {
		dst = append(dst, scalarBytes(to, v)...)
	}
	return dst
}

// appendFloats appends the elements of b (dtype d, little-endian) as
// float64.
func appendFloats(dst []float64, d trt.DType, b []byte) []float64 {
	size := d.Size()
	if size == 0 {
		return dst
	}
	for i := 0; i+size <= len(b); i += size {
		e := b[i : i+size]
		var v float64
		switch d {
		case trt.Float32:
			v = float64(math.Float32frombits(binary.LittleEndian.Uint32(e)))
		case trt.Float64:
			v = math.Float64frombits(binary.LittleEndian.Uint64(e))
		case trt.Float16:
			v = float64(halfToFloat(binary.LittleEndian.Uint16(e)))
		case trt.BFloat16:
			v = float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(e)) << 16))
		case trt.Int8:
			v = float64(int8(e[0]))
		case trt.Uint8, trt.Bool:
			v = float64(e[0])
		case trt.Int32:
			v = float64(int32(binary.LittleEndian.Uint32(e)))
		case trt.Int64:
			v = float64(int64(binary.LittleEndian.Uint64(e)))
		}
		dst = append(dst, v)
	}
	return dst
}

// scalarBytes encodes v as one element of dtype d (floats rounded to
// nearest even; integers truncated).
func scalarBytes(d trt.DType, v float64) []byte {
	switch d {
	case trt.Float32:
		return binary.LittleEndian.AppendUint32(nil, math.Float32bits(float32(v)))
	case trt.Float64:
		return binary.LittleEndian.AppendUint64(nil, math.Float64bits(v))
	case trt.Float16:
		return binary.LittleEndian.AppendUint16(nil, floatToHalf(float32(v)))
	case trt.BFloat16:
		return binary.LittleEndian.AppendUint16(nil, floatToBFloat16(float32(v)))
	case trt.Int8, trt.Uint8, trt.Bool:
		return []byte{byte(int64(v))}
	case trt.Int32:
		return binary.LittleEndian.AppendUint32(nil, uint32(int32(v)))
	case trt.Int64:
		return binary.LittleEndian.AppendUint64(nil, uint64(int64(v)))
	}
	return make([]byte, d.Size())
}

// halfToFloat converts IEEE 754 binary16 bits to float32 (exact).
func halfToFloat(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // Inf, NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal: mant × 2^-24.
	v := float32(mant) * (1.0 / (1 << 24))
	if sign != 0 {
		v = -v
	}
	return v
}

// floatToHalf converts f to binary16 bits, rounding to nearest even;
// overflow becomes Inf, NaN stays NaN.
func floatToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal or zero in binary16: m = full × 2^(exp−126).
		shift := uint(126 - exp)
		if shift > 24 {
			return sign
		}
		full := mant | 0x800000
		m := full >> shift
		rem, half := full&(1<<shift-1), uint32(1)<<(shift-1)
		if rem > half || (rem == half && m&1 == 1) {
			m++
		}
		return sign | uint16(m) // m == 0x400 is the smallest normal
	}
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // a carry into the exponent is right, up to Inf
	}
	return sign | uint16(h)
}

// floatToBFloat16 converts f to bfloat16 bits, rounding to nearest even.
func floatToBFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7f800000 == 0x7f800000 && b&0x7fffff != 0 {
		return uint16(b>>16) | 0x40 // quiet NaN
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// comparison accumulates the gate's measurements.
type comparison struct {
	tol            Tolerance
	n, beyond      int
	maxAbs, maxRel float64
	worstRatio     float64
	worst          string
}

// add compares the elements of rows [row0, row0+rows) of one output.
func (c *comparison) add(name string, row0, rows int, got, want []float64) {
	per := len(want) / max(rows, 1)
	for i, w := range want {
		g := got[i]
		c.n++
		var diff float64
		switch {
		case math.IsNaN(w) && math.IsNaN(g):
			continue
		case math.IsNaN(w) || math.IsNaN(g):
			diff = math.Inf(1)
		case w == g: // equal infinities too
			continue
		default:
			diff = math.Abs(g - w)
		}
		c.maxAbs = max(c.maxAbs, diff)
		if w != 0 {
			c.maxRel = max(c.maxRel, diff/math.Abs(w))
		}
		bound := c.tol.ATol + c.tol.RTol*math.Abs(w)
		if diff > bound {
			c.beyond++
		}
		ratio := diff / bound
		if bound == 0 {
			ratio = math.Inf(1)
		}
		if c.worst == "" || ratio > c.worstRatio {
			c.worstRatio = ratio
			c.worst = fmt.Sprintf("output %s row %d element %d: got %.6g, reference %.6g", name, row0+i/max(per, 1), i%max(per, 1), g, w)
		}
	}
}
