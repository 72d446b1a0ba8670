package batcher

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/trt"
)

// chanSpec has a channels-first ragged input c [b, 2, s, 3] (int16 bits
// carried as float16), a fixed input f [b, 4] int32, a float16 mask
// [b, s], an int64 length [b, 1] and a ragged output o [b, s, 2].
func chanSpec() trt.Spec {
	return trt.Spec{
		Inputs: []trt.TensorDesc{
			{Name: "c", DType: trt.Float16, Shape: trt.Shape{-1, 2, -1, 3}},
			{Name: "f", DType: trt.Int32, Shape: trt.Shape{-1, 4}},
			{Name: "m", DType: trt.Float16, Shape: trt.Shape{-1, -1}},
			{Name: "len", DType: trt.Int64, Shape: trt.Shape{-1, 1}},
		},
		Outputs: []trt.TensorDesc{{Name: "o", DType: trt.Float32, Shape: trt.Shape{-1, -1, 2}}},
		Profiles: []trt.Profile{{
			Min: map[string]trt.Shape{"c": {1, 2, 1, 3}, "f": {1, 4}, "m": {1, 1}, "len": {1, 1}},
			Max: map[string]trt.Shape{"c": {8, 2, 64, 3}, "f": {8, 4}, "m": {8, 64}, "len": {8, 1}},
		}},
	}
}

func TestGatherLayouts(t *testing.T) {
	spec := chanSpec()
	pad := []byte{0xff, 0x7f}
	b, err := New(spec, syntheticCost(t, spec, 10*time.Microsecond, time.Microsecond, time.Nanosecond, 0),
		Config{Masks: []string{"m"}, Lengths: []string{"len"}, PadValues: map[string][]byte{"c": pad}, MaxPadding: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Item 1: rows of lengths 2 and 3; item 2: one row of length 1. The
	// value of element (row r, channel k, position s, j) is 1000·id +
	// 100·r + 10·k + s*3 + j, little-endian uint16.
	type src struct {
		c, f []byte
		off  []int32
		lens []int
	}
	mk := func(id int, ls []int) src {
		var s src
		s.lens = ls
		s.off = []int32{5} // not starting at 0: a slice of a larger array
		s.c = make([]byte, 5*2*3*2)
		for r, n := range ls {
			s.off = append(s.off, s.off[r]+int32(n))
			for k := range 2 {
				for p := range n {
					for j := range 3 {
						s.c = binary.LittleEndian.AppendUint16(s.c, uint16(1000*id+100*r+10*k+p*3+j))
					}
				}
			}
			for j := range 4 {
				s.f = binary.LittleEndian.AppendUint32(s.f, uint32(1000*id+100*r+j))
			}
		}
		return s
	}
	srcs := map[uint64]src{1: mk(1, []int{2, 3}), 2: mk(2, []int{1})}
	for id, s := range srcs {
		if err := b.Add(t0, Item{ID: id, Rows: len(s.lens), SeqLens: s.lens}); err != nil {
			t.Fatal(err)
		}
	}
	p, ok := b.Flush(t0)
	if !ok || p.Rows != 3 {
		t.Fatalf("want one plan of all 3 rows, got %+v", p)
	}
	src2 := func(name string) Source {
		return func(id uint64) (Rows, bool) {
			s, ok := srcs[id]
			if name == "c" {
				return Rows{Data: s.c, Offsets: s.off}, ok
			}
			return Rows{Data: s.f}, ok
		}
	}
	bufs := map[string][]byte{}
	for _, in := range b.Inputs() {
		buf := make([]byte, in.Size(p))
		if err := in.Gather(buf, p, src2(in.Name)); err != nil {
			t.Fatal(err)
		}
		B, S := int64(p.Batch), int64(p.Seq)
		want := map[string]trt.Shape{"c": {B, 2, S, 3}, "f": {B, 4}, "m": {B, S}, "len": {B, 1}}[in.Name]
		if sh := in.Shape(p); !sh.Equal(want) {
			t.Fatalf("input %q shape %v, want %v", in.Name, sh, want)
		}
		bufs[in.Name] = buf
	}
	u16 := func(b []byte, i int) uint16 { return binary.LittleEndian.Uint16(b[2*i:]) }
	S := p.Seq
	for _, sl := range p.Slots {
		for j := range sl.Rows {
			r, br := sl.ItemRow+j, sl.BatchRow+j
			n := srcs[sl.Item].lens[r]
			for k := range 2 {
				for pos := range S {
					for e := range 3 {
						got := u16(bufs["c"], ((br*2+k)*S+pos)*3+e)
						want := uint16(1000*int(sl.Item) + 100*r + 10*k + pos*3 + e)
						if pos >= n {
							want = 0x7fff
						}
						if got != want {
							t.Fatalf("c[%d,%d,%d,%d] = %d, want %d", br, k, pos, e, got, want)
						}
					}
				}
			}
			for pos := range S {
				want := uint16(0)
				if pos < n {
					want = 0x3c00 // float16 1.0
				}
				if got := u16(bufs["m"], br*S+pos); got != want {
					t.Fatalf("mask[%d,%d] = %#x, want %#x", br, pos, got, want)
				}
			}
			if got := binary.LittleEndian.Uint64(bufs["len"][8*br:]); got != uint64(n) {
				t.Fatalf("len[%d] = %d, want %d", br, got, n)
			}
			for e := range 4 {
				if got := binary.LittleEndian.Uint32(bufs["f"][4*(br*4+e):]); got != uint32(1000*int(sl.Item)+100*r+e) {
					t.Fatalf("f[%d,%d] = %d", br, e, got)
				}
			}
		}
	}

	// The Assembler crops the ragged output back to each row's length.
	asm, err := NewAssembler(spec)
	if err != nil {
		t.Fatal(err)
	}
	for id, s := range srcs {
		if err := asm.Add(Item{ID: id, Rows: len(s.lens), SeqLens: s.lens}); err != nil {
			t.Fatal(err)
		}
	}
	out := make([]byte, p.Batch*S*2*4)
	for br := range p.Batch {
		for pos := range S {
			for e := range 2 {
				v := float32(-1) // padding: must never surface
				if br < p.Rows && pos < p.Lens[br] {
					v = float32(br*1000 + pos*10 + e)
				}
				binary.LittleEndian.PutUint32(out[4*((br*S+pos)*2+e):], math.Float32bits(v))
			}
		}
	}
	done, err := asm.Scatter(p, []trt.Tensor{{Name: "o", DType: trt.Float32, Shape: trt.Shape{int64(p.Batch), int64(S), 2}, Data: out}})
	if err != nil || len(done) != 2 {
		t.Fatalf("Scatter = %v, %v", done, err)
	}
	batchRow := map[[2]int]int{}
	for _, sl := range p.Slots {
		for j := range sl.Rows {
			batchRow[[2]int{int(sl.Item), sl.ItemRow + j}] = sl.BatchRow + j
		}
	}
	for id, s := range srcs {
		res, ok := asm.Take(id)
		if !ok {
			t.Fatalf("item %d not complete", id)
		}
		o := res[0]
		if o.Shape[0] != int64(len(s.lens)) || o.Shape[1] != trt.Dynamic || len(o.Offsets) != len(s.lens)+1 {
			t.Fatalf("result %+v", o)
		}
		for r, n := range s.lens {
			if int(o.Offsets[r+1]-o.Offsets[r]) != n {
				t.Fatalf("item %d row %d has %d positions, want %d", id, r, o.Offsets[r+1]-o.Offsets[r], n)
			}
			for pos := range n {
				for e := range 2 {
					got := math.Float32frombits(binary.LittleEndian.Uint32(o.Data[4*((int(o.Offsets[r])+pos)*2+e):]))
					if want := float32(batchRow[[2]int{int(id), r}]*1000 + pos*10 + e); got != want {
						t.Fatalf("item %d row %d pos %d: %v, want %v", id, r, pos, got, want)
					}
				}
			}
		}
	}
}

func TestGatherErrors(t *testing.T) {
	b := newTestBatcher(t, Config{Masks: []string{"mask"}})
	if err := b.Add(t0, Item{ID: 1, Rows: 2, SeqLens: []int{3, 4}}); err != nil {
		t.Fatal(err)
	}
	p, _ := b.Flush(t0)
	x := b.Inputs()[0]
	good := Rows{Data: make([]byte, 7*16*4), Offsets: []int32{0, 3, 7}}
	cases := map[string]struct {
		dst []byte
		src Source
		msg string
	}{
		"short destination": {make([]byte, 3), func(uint64) (Rows, bool) { return good, true }, "destination"},
		"unknown item":      {make([]byte, x.Size(p)), func(uint64) (Rows, bool) { return Rows{}, false }, "no rows"},
		"length mismatch": {make([]byte, x.Size(p)), func(uint64) (Rows, bool) {
			return Rows{Data: good.Data, Offsets: []int32{0, 2, 7}}, true
		}, "declared"},
		"short data": {make([]byte, x.Size(p)), func(uint64) (Rows, bool) {
			return Rows{Data: good.Data[:10], Offsets: good.Offsets}, true
		}, "spans"},
	}
	for name, c := range cases {
		err := x.Gather(c.dst, p, c.src)
		if err == nil || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), `"x"`) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := x.Gather(make([]byte, x.Size(p)), p, func(uint64) (Rows, bool) { return good, true }); err != nil {
		t.Fatal(err)
	}
}

func TestAssemblerRejectsDuplicatesAndSkipsDropped(t *testing.T) {
	spec := seqSpec([4]int64{1, 64, 1, 512})
	asm, err := NewAssembler(spec)
	if err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 2; id++ {
		if err := asm.Add(Item{ID: id, Rows: 2, SeqLens: []int{5, 5}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := asm.Add(Item{ID: 1, Rows: 1, SeqLens: []int{5}}); err == nil {
		t.Fatal("duplicate Add accepted")
	}
	p := Plan{Batch: 2, Seq: 8, Rows: 2, Lens: []int{5, 5}, Slots: []Slot{{Item: 1, ItemRow: 0, Rows: 1, BatchRow: 0}, {Item: 2, ItemRow: 1, Rows: 1, BatchRow: 1}}}
	y := trt.Tensor{Name: "y", DType: trt.Float32, Shape: trt.Shape{2, 8}, Data: make([]byte, 2*8*4)}
	if _, err := asm.Scatter(p, []trt.Tensor{y}); err != nil {
		t.Fatal(err)
	}
	if _, ok := asm.Take(1); ok {
		t.Fatal("Take of an incomplete item")
	}
	if _, err := asm.Scatter(p, []trt.Tensor{y}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("second delivery of the same rows: %v", err)
	}
	if !asm.Drop(1) || asm.Drop(1) {
		t.Fatal("Drop should report the item once")
	}
	p2 := Plan{Batch: 2, Seq: 8, Rows: 2, Lens: []int{5, 5}, Slots: []Slot{{Item: 1, ItemRow: 1, Rows: 1, BatchRow: 0}, {Item: 2, ItemRow: 0, Rows: 1, BatchRow: 1}}}
	done, err := asm.Scatter(p2, []trt.Tensor{y})
	if err != nil || len(done) != 1 || done[0] != 2 {
		t.Fatalf("Scatter after Drop = %v, %v; want [2]", done, err)
	}
	bad := y
	bad.Shape = trt.Shape{3, 8}
	if _, err := asm.Scatter(p2, []trt.Tensor{bad}); err == nil {
		t.Fatal("output of the wrong shape accepted")
	}
	if asm.Len() != 1 {
		t.Fatalf("Len = %d, want 1 (item 2 untaken)", asm.Len())
	}
}
