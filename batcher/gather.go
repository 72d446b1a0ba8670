package batcher

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/jetinfer/jetinfer/trt"
)

// Rows is one item's data for one data input, as the worker decoded it.
type Rows struct {
	// Data holds the item's values for this input, rows back to back,
	// little-endian, in the input's dtype.
	Data []byte
	// Offsets, for ragged inputs only, holds len(rows)+1 cumulative
	// offsets counted in sequence positions: row i has Offsets[i+1] -
	// Offsets[i] positions and starts at element Offsets[i]·(elements per
	// position), where elements per position is the product of the
	// input's other non-batch dimensions. Offsets[0] need not be 0 (a
	// slice of a larger Arrow list array). This is the offsets buffer of
	// an Arrow List<FixedSizeList<T>> column. nil for fixed-shape inputs.
	Offsets []int32
}

// Source returns an item's Rows for the input being gathered; ok is false
// when the caller knows no such item.
type Source func(item uint64) (r Rows, ok bool)

// Gather writes input in of plan p into dst, which must be exactly
// in.Size(p) bytes (a buffer the caller owns and may reuse).
//
// Data inputs copy each slot's rows from src into their batch rows;
// ragged rows are copied to the start of their padded row and the rest of
// the row is filled with the input's pad value, as are padding rows. Mask
// and length inputs are generated from p.Lens and need no src (it may be
// nil). Gather fails, naming the input and item, when a row's length in
// src disagrees with the length given to Add or src lacks rows.
func (in Input) Gather(dst []byte, p Plan, src Source) error {
	if want := in.Size(p); len(dst) != want {
		return fmt.Errorf("gathering input %q: destination has %d bytes, plan needs %d", in.Name, len(dst), want)
	}
	if in.axis > 0 && len(p.Lens) != p.Batch {
		return fmt.Errorf("gathering input %q: plan has %d lengths for %d batch rows", in.Name, len(p.Lens), p.Batch)
	}
	switch in.Kind {
	case KindMask:
		in.fillMask(dst, p)
		return nil
	case KindLength:
		in.fillLength(dst, p)
		return nil
	}
	es := in.DType.Size()
	if in.axis == 0 {
		rowBytes := in.inner * es
		for _, s := range p.Slots {
			r, ok := src(s.Item)
			if !ok {
				return fmt.Errorf("gathering input %q: no rows for item %d", in.Name, s.Item)
			}
			lo, hi := s.ItemRow*rowBytes, (s.ItemRow+s.Rows)*rowBytes
			if hi > len(r.Data) || r.Offsets != nil {
				return fmt.Errorf("gathering input %q: item %d has %d bytes, rows [%d,%d) of %d bytes need %d", in.Name, s.Item, len(r.Data), s.ItemRow, s.ItemRow+s.Rows, rowBytes, hi)
			}
			copy(dst[s.BatchRow*rowBytes:], r.Data[lo:hi])
		}
		fill(dst[p.Rows*rowBytes:], in.pad)
		return nil
	}
	step := in.inner * es // bytes of one position in one outer block
	seqBytes := p.Seq * step
	rowBytes := in.outer * seqBytes
	for _, s := range p.Slots {
		r, ok := src(s.Item)
		if !ok {
			return fmt.Errorf("gathering input %q: no rows for item %d", in.Name, s.Item)
		}
		if len(r.Offsets) < s.ItemRow+s.Rows+1 {
			return fmt.Errorf("gathering input %q: item %d has %d offsets, rows [%d,%d) need %d", in.Name, s.Item, len(r.Offsets), s.ItemRow, s.ItemRow+s.Rows, s.ItemRow+s.Rows+1)
		}
		for j := range s.Rows {
			ir, br := s.ItemRow+j, s.BatchRow+j
			o0, o1 := int(r.Offsets[ir]), int(r.Offsets[ir+1])
			n := o1 - o0
			if n != p.Lens[br] {
				return fmt.Errorf("gathering input %q: item %d row %d has %d positions, the item declared %d", in.Name, s.Item, ir, n, p.Lens[br])
			}
			lo, hi := o0*in.outer*step, o1*in.outer*step
			if o0 < 0 || hi > len(r.Data) {
				return fmt.Errorf("gathering input %q: item %d row %d spans bytes [%d,%d) of %d", in.Name, s.Item, ir, lo, hi, len(r.Data))
			}
			srcRow := r.Data[lo:hi]
			dstRow := dst[br*rowBytes : (br+1)*rowBytes]
			nb := n * step
			for o := range in.outer {
				d := dstRow[o*seqBytes : (o+1)*seqBytes]
				copy(d, srcRow[o*nb:(o+1)*nb])
				fill(d[nb:], in.pad)
			}
		}
	}
	fill(dst[p.Rows*rowBytes:], in.pad)
	return nil
}

// fill writes the element pattern pad over all of dst.
func fill(dst []byte, pad []byte) {
	if len(dst) == 0 {
		return
	}
	zero := true
	for _, c := range pad {
		if c != 0 {
			zero = false
			break
		}
	}
	if zero {
		clear(dst)
		return
	}
	n := copy(dst, pad)
	for n < len(dst) {
		n += copy(dst[n:], dst[:n])
	}
}

func (in Input) fillMask(dst []byte, p Plan) {
	one, _ := oneBytes(in.DType)
	step := in.inner * len(one)
	seqBytes := p.Seq * step
	clear(dst)
	for br := range p.Rows {
		n := p.Lens[br]
		for o := range in.outer {
			d := dst[(br*in.outer+o)*seqBytes:]
			fill(d[:n*step], one)
		}
	}
}

func (in Input) fillLength(dst []byte, p Plan) {
	es := in.DType.Size()
	for br := range p.Batch {
		n := 0
		if br < p.Rows && p.Lens != nil {
			n = p.Lens[br]
		}
		d := dst[br*es : (br+1)*es]
		switch in.DType {
		case trt.Int32:
			binary.LittleEndian.PutUint32(d, uint32(int32(n)))
		case trt.Int64:
			binary.LittleEndian.PutUint64(d, uint64(int64(n)))
		case trt.Float32:
			binary.LittleEndian.PutUint32(d, math.Float32bits(float32(n)))
		case trt.Float64:
			binary.LittleEndian.PutUint64(d, math.Float64bits(float64(n)))
		}
	}
}

// oneBytes returns the little-endian encoding of 1 in dtype d.
func oneBytes(d trt.DType) ([]byte, bool) {
	switch d {
	case trt.Float32:
		return binary.LittleEndian.AppendUint32(nil, math.Float32bits(1)), true
	case trt.Float64:
		return binary.LittleEndian.AppendUint64(nil, math.Float64bits(1)), true
	case trt.Float16:
		return []byte{0x00, 0x3c}, true
	case trt.BFloat16:
		return []byte{0x80, 0x3f}, true
	case trt.Int8, trt.Uint8, trt.Bool:
		return []byte{1}, true
	case trt.Int32:
		return []byte{1, 0, 0, 0}, true
	case trt.Int64:
		return []byte{1, 0, 0, 0, 0, 0, 0, 0}, true
	}
	return nil, false
}
