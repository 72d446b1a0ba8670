package batcher

import (
	"fmt"

	"github.com/jetinfer/jetinfer/trt"
)

// Result is one item's assembled rows of one engine output, in item row
// order, with every padded position and padding row removed.
type Result struct {
	Name  string
	DType trt.DType
	// Shape is [rows, dims...]; for a ragged output (one with the
	// sequence dimension) that dimension is trt.Dynamic and Offsets gives
	// each row's extent.
	Shape trt.Shape
	Data  []byte
	// Offsets, for ragged outputs only, holds rows+1 cumulative offsets in
	// sequence positions (starting at 0), like Rows.Offsets.
	Offsets []int32
}

// Assembler collects the output rows of items whose rows were spread over
// several plans and tells when an item is complete. It copies each plan's
// output rows into per-item buffers at the item rows named by the plan's
// slots, so results come back in request order whatever the batching.
//
// An Assembler is not safe for concurrent use: one goroutine owns it
// (typically the one that runs or completes plans).
type Assembler struct {
	outs  []outDesc
	items map[uint64]*assembly
}

type outDesc struct {
	name    string
	dtype   trt.DType
	pattern trt.Shape
	axis    int // sequence axis, 0 when none
	outer   int
	inner   int
}

type assembly struct {
	rows int
	lens []int
	pos  []int // cumulative positions, rows+1 (ragged outputs)
	done []bool
	left int
	data [][]byte
}

// NewAssembler returns an Assembler for the outputs of an engine with the
// given spec. An output dimension other than the batch that is dynamic is
// taken to be the sequence dimension and cropped to each row's length.
func NewAssembler(spec trt.Spec) (*Assembler, error) {
	a := &Assembler{items: make(map[uint64]*assembly)}
	for _, t := range spec.Outputs {
		in, err := describeInput(t, Config{})
		if err != nil {
			return nil, fmt.Errorf("describing output %q: %w", t.Name, err)
		}
		a.outs = append(a.outs, outDesc{name: t.Name, dtype: t.DType, pattern: in.pattern, axis: in.axis, outer: in.outer, inner: in.inner})
	}
	if len(a.outs) == 0 {
		return nil, fmt.Errorf("engine has no outputs")
	}
	return a, nil
}

// Add registers an item whose rows will arrive through Scatter. Call it
// with the same Item given to Batcher.Add.
func (a *Assembler) Add(it Item) error {
	if it.Rows < 1 {
		return fmt.Errorf("%w: item %d has %d rows", ErrInvalidItem, it.ID, it.Rows)
	}
	if _, dup := a.items[it.ID]; dup {
		return fmt.Errorf("%w: item %d is already being assembled", ErrInvalidItem, it.ID)
	}
	x := &assembly{rows: it.Rows, done: make([]bool, it.Rows), left: it.Rows, data: make([][]byte, len(a.outs))}
	if it.SeqLens != nil {
		if len(it.SeqLens) != it.Rows {
			return fmt.Errorf("%w: item %d has %d sequence lengths for %d rows", ErrInvalidItem, it.ID, len(it.SeqLens), it.Rows)
		}
		x.lens = append([]int(nil), it.SeqLens...)
		x.pos = make([]int, it.Rows+1)
		for i, n := range x.lens {
			x.pos[i+1] = x.pos[i] + n
		}
	}
	for i, o := range a.outs {
		es := o.dtype.Size()
		if o.axis > 0 {
			if x.pos == nil {
				return fmt.Errorf("%w: output %q is ragged but item %d has no sequence lengths", ErrInvalidItem, o.name, it.ID)
			}
			x.data[i] = make([]byte, x.pos[it.Rows]*o.outer*o.inner*es)
		} else {
			x.data[i] = make([]byte, it.Rows*o.inner*es)
		}
	}
	a.items[it.ID] = x
	return nil
}

// Scatter copies the output rows of plan p (outputs in engine output
// order, as the engine returned them for the padded batch) to their items
// and returns, in slot order, the items that are now complete. Slots of
// items the Assembler does not know (dropped after expiry or failure) are
// skipped. A row delivered twice is an error.
func (a *Assembler) Scatter(p Plan, outputs []trt.Tensor) ([]uint64, error) {
	if len(outputs) != len(a.outs) {
		return nil, fmt.Errorf("scattering plan: %d outputs, engine has %d", len(outputs), len(a.outs))
	}
	for i, o := range a.outs {
		t := outputs[i]
		want := o.pattern.Clone()
		want[0] = int64(p.Batch)
		if o.axis > 0 {
			want[o.axis] = int64(p.Seq)
		}
		n, err := trt.ByteSize(o.dtype, want)
		if err != nil || !t.Shape.Equal(want) || len(t.Data) != n {
			return nil, fmt.Errorf("scattering output %q: got shape %v with %d bytes, want %v", o.name, t.Shape, len(t.Data), want)
		}
	}
	var done []uint64
	for _, s := range p.Slots {
		x, ok := a.items[s.Item]
		if !ok {
			continue
		}
		if s.ItemRow < 0 || s.ItemRow+s.Rows > x.rows {
			return done, fmt.Errorf("scattering item %d: rows [%d,%d) outside its %d rows", s.Item, s.ItemRow, s.ItemRow+s.Rows, x.rows)
		}
		for j := range s.Rows {
			if x.done[s.ItemRow+j] {
				return done, fmt.Errorf("scattering item %d: row %d delivered twice", s.Item, s.ItemRow+j)
			}
		}
		for i, o := range a.outs {
			src := outputs[i].Data
			es := o.dtype.Size()
			if o.axis == 0 {
				rb := o.inner * es
				copy(x.data[i][s.ItemRow*rb:], src[s.BatchRow*rb:(s.BatchRow+s.Rows)*rb])
				continue
			}
			step := o.inner * es
			seqBytes := p.Seq * step
			for j := range s.Rows {
				ir, br := s.ItemRow+j, s.BatchRow+j
				n := x.lens[ir]
				if n > p.Seq {
					return done, fmt.Errorf("scattering output %q: item %d row %d has %d positions, batch has %d", o.name, s.Item, ir, n, p.Seq)
				}
				nb := n * step
				dst := x.data[i][x.pos[ir]*o.outer*step:]
				row := src[br*o.outer*seqBytes:]
				for k := range o.outer {
					copy(dst[k*nb:(k+1)*nb], row[k*seqBytes:k*seqBytes+nb])
				}
			}
		}
		for j := range s.Rows {
			x.done[s.ItemRow+j] = true
		}
		x.left -= s.Rows
		if x.left == 0 {
			done = append(done, s.Item)
		}
	}
	return done, nil
}

// Take returns a complete item's results, one per engine output, and
// forgets the item. ok is false when the item is unknown or incomplete.
func (a *Assembler) Take(id uint64) ([]Result, bool) {
	x, ok := a.items[id]
	if !ok || x.left > 0 {
		return nil, false
	}
	delete(a.items, id)
	out := make([]Result, len(a.outs))
	for i, o := range a.outs {
		sh := o.pattern.Clone()
		sh[0] = int64(x.rows)
		r := Result{Name: o.name, DType: o.dtype, Shape: sh, Data: x.data[i]}
		if o.axis > 0 {
			r.Offsets = make([]int32, len(x.pos))
			for k, v := range x.pos {
				r.Offsets[k] = int32(v)
			}
		}
		out[i] = r
	}
	return out, true
}

// Drop forgets an item (expired, failed or cancelled); later Scatter calls
// skip its rows. It reports whether the item was known.
func (a *Assembler) Drop(id uint64) bool {
	_, ok := a.items[id]
	delete(a.items, id)
	return ok
}

// Len returns the number of items being assembled.
func (a *Assembler) Len() int { return len(a.items) }
