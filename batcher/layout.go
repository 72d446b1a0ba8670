package batcher

import (
	"fmt"
	"math"
	"slices"

	"github.com/jetinfer/jetinfer/trt"
)

// InputKind says where the bytes of one engine input come from.
type InputKind uint8

const (
	// KindData inputs are gathered from the items' rows.
	KindData InputKind = iota
	// KindMask inputs are generated: 1 at a row's real positions, 0 at
	// padded positions and in padding rows (Config.Masks).
	KindMask
	// KindLength inputs are generated: each row's sequence length, 0 for
	// padding rows (Config.Lengths).
	KindLength
)

// String names the kind for errors and logs.
func (k InputKind) String() string {
	switch k {
	case KindData:
		return "data"
	case KindMask:
		return "mask"
	case KindLength:
		return "length"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Input describes how one engine input of a planned batch is laid out.
// Obtain them from Batcher.Inputs; they are immutable and safe to share.
type Input struct {
	// Name and DType are the engine input's.
	Name  string
	DType trt.DType
	// Kind says whether Gather copies item rows or generates the values.
	Kind InputKind

	pattern trt.Shape // spec shape; dim 0 is the batch dimension
	axis    int       // index of the sequence dimension, 0 when the input has none
	outer   int       // elements of one row before the sequence axis (product of dims 1..axis-1)
	inner   int       // elements after the sequence axis; for inputs without one, elements per row
	pad     []byte    // one element written at padded positions
}

// Ragged reports whether the input has the sequence dimension, so that its
// rows have per-row lengths and are padded to Plan.Seq.
func (in Input) Ragged() bool { return in.axis > 0 }

// Shape returns the concrete shape of the input for plan p.
func (in Input) Shape(p Plan) trt.Shape {
	s := in.pattern.Clone()
	s[0] = int64(p.Batch)
	if in.axis > 0 {
		s[in.axis] = int64(p.Seq)
	}
	return s
}

// Size returns the byte size of the input tensor for plan p.
func (in Input) Size(p Plan) int {
	return p.Batch * in.rowElems(p.Seq) * in.DType.Size()
}

// rowElems is the number of elements in one padded batch row.
func (in Input) rowElems(seq int) int {
	if in.axis == 0 {
		return in.inner
	}
	return in.outer * seq * in.inner
}

// profileRange is what one optimization profile accepts in the two
// dimensions the batcher chooses.
type profileRange struct {
	usable     bool
	bmin, bmax int
	smin, smax int // 0 when the engine has no sequence dimension
}

func (r profileRange) fits(batch, seq int) bool {
	return r.usable && batch <= r.bmax && seq <= r.smax
}

// padded returns the shape the engine sees for a batch of n rows at
// padded length s under this profile (raised to the profile's minimums).
func (r profileRange) padded(n, s int) (int, int) {
	return max(n, r.bmin), max(s, r.smin)
}

// layout is what New derives from a Spec and Config.
type layout struct {
	inputs   []Input
	hasSeq   bool
	profiles []profileRange
	maxBatch int   // largest bmax over usable profiles
	maxBmin  int   // largest bmin over usable profiles
	smin     int   // smallest smin over usable profiles
	smax     int   // largest smax over usable profiles
	classes  []int // padded sequence lengths, ascending; {0} without a sequence dim
	// minLen is the shortest row Add accepts: 0 when a generated mask or
	// length input tells the engine which positions are real (an empty
	// row is then a batch row of padding only), 1 otherwise.
	minLen int
}

func analyze(spec trt.Spec, cfg Config) (layout, error) {
	var l layout
	if len(spec.Inputs) == 0 {
		return l, fmt.Errorf("engine has no inputs")
	}
	if len(spec.Profiles) == 0 {
		return l, fmt.Errorf("engine has no optimization profile")
	}
	for _, t := range spec.Inputs {
		in, err := describeInput(t, cfg)
		if err != nil {
			return l, err
		}
		if in.axis > 0 {
			l.hasSeq = true
		}
		l.inputs = append(l.inputs, in)
	}
	l.minLen = 1
	for _, in := range l.inputs {
		if in.Kind != KindData {
			l.minLen = 0
		}
	}
	l.profiles = make([]profileRange, len(spec.Profiles))
	for pi, p := range spec.Profiles {
		r := profileRange{usable: true, bmin: 1, bmax: 1 << 30, smax: 1 << 30}
		if !l.hasSeq {
			r.smax = 0
		}
		for _, in := range l.inputs {
			lo, ok1 := p.Min[in.Name]
			hi, ok2 := p.Max[in.Name]
			if !ok1 || !ok2 || len(lo) != len(in.pattern) || len(hi) != len(in.pattern) {
				return l, fmt.Errorf("profile %d: min/max of input %q missing or of the wrong rank", pi, in.Name)
			}
			r.bmin, r.bmax = max(r.bmin, int(lo[0])), min(r.bmax, int(hi[0]))
			if in.axis > 0 {
				r.smin, r.smax = max(r.smin, int(lo[in.axis])), min(r.smax, int(hi[in.axis]))
			}
		}
		r.smin = max(r.smin, min(1, r.smax))
		if r.bmin > r.bmax || r.smin > r.smax || r.bmax < 1 {
			r.usable = false
		}
		l.profiles[pi] = r
	}
	l.smin = -1
	for _, r := range l.profiles {
		if !r.usable {
			continue
		}
		l.maxBatch = max(l.maxBatch, r.bmax)
		l.maxBmin = max(l.maxBmin, r.bmin)
		l.smax = max(l.smax, r.smax)
		if l.smin < 0 || r.smin < l.smin {
			l.smin = r.smin
		}
	}
	if l.maxBatch == 0 {
		return l, fmt.Errorf("no optimization profile has a consistent batch and sequence range")
	}
	l.classes = buildClasses(l, cfg)
	if len(l.classes) == 0 {
		return l, fmt.Errorf("buckets %v hold no length in [1, %d]", cfg.Buckets, l.smax)
	}
	return l, nil
}

func describeInput(t trt.TensorDesc, cfg Config) (Input, error) {
	in := Input{Name: t.Name, DType: t.DType, pattern: t.Shape.Clone(), outer: 1, inner: 1}
	if !t.DType.Valid() {
		return in, fmt.Errorf("input %q has invalid dtype", t.Name)
	}
	if len(t.Shape) == 0 {
		return in, fmt.Errorf("input %q has no batch dimension", t.Name)
	}
	for i := 1; i < len(t.Shape); i++ {
		d := t.Shape[i]
		switch {
		case d == trt.Dynamic && in.axis == 0:
			in.axis = i
		case d == trt.Dynamic:
			return in, fmt.Errorf("input %q has more than one dynamic non-batch dimension %v; the batcher pads one", t.Name, t.Shape)
		case d < 0:
			return in, fmt.Errorf("input %q has negative dimension in %v", t.Name, t.Shape)
		case in.axis == 0:
			in.outer *= int(d)
		default:
			in.inner *= int(d)
		}
	}
	if in.axis == 0 { // no sequence axis: every element of the row is "inner"
		in.inner, in.outer = in.outer, 1
	}
	switch {
	case slices.Contains(cfg.Masks, t.Name):
		in.Kind = KindMask
		if in.axis == 0 {
			return in, fmt.Errorf("mask input %q has no dynamic sequence dimension in %v", t.Name, t.Shape)
		}
		if _, ok := oneBytes(t.DType); !ok {
			return in, fmt.Errorf("mask input %q has unsupported dtype %v", t.Name, t.DType)
		}
	case slices.Contains(cfg.Lengths, t.Name):
		in.Kind = KindLength
		if in.axis != 0 || in.inner != 1 {
			return in, fmt.Errorf("length input %q must have one value per row, shape is %v", t.Name, t.Shape)
		}
		switch t.DType {
		case trt.Int32, trt.Int64, trt.Float32, trt.Float64:
		default:
			return in, fmt.Errorf("length input %q has unsupported dtype %v", t.Name, t.DType)
		}
	}
	in.pad = make([]byte, t.DType.Size())
	if v, ok := cfg.PadValues[t.Name]; ok {
		copy(in.pad, v)
	}
	return in, nil
}

func buildClasses(l layout, cfg Config) []int {
	if !l.hasSeq {
		return []int{0}
	}
	var cs []int
	if len(cfg.Buckets) > 0 {
		for _, b := range cfg.Buckets {
			if b <= l.smax {
				cs = append(cs, b)
			}
		}
		return cs
	}
	m := cfg.PadMultiple
	c := (l.smin + m - 1) / m * m
	for c < l.smax {
		cs = append(cs, c)
		next := int(math.Ceil(float64(c) * (1 + cfg.BucketRatio)))
		c = max(c+m, (next+m-1)/m*m)
	}
	return append(cs, l.smax)
}
