package batcher

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
)

// TestEmptyRowsNeedAGeneratedInput: a row of zero positions is accepted
// only when a generated mask (or length) input tells the engine that the
// row is padding; it then runs as a row of padding and its token-level
// output comes back empty while its fixed output is kept.
func TestEmptyRowsNeedAGeneratedInput(t *testing.T) {
	spec := seqSpec([4]int64{1, 8, 1, 16})
	spec.Outputs = append(spec.Outputs, trt.TensorDesc{Name: "tok", DType: trt.Float32, Shape: trt.Shape{-1, -1, 3}})
	cost := syntheticCost(t, spec, 100, 10, 1, 0)

	plain, err := New(spec, cost, Config{})
	if err != nil {
		t.Fatal(err)
	}
	err = plain.Add(t0, Item{ID: 1, Rows: 2, SeqLens: []int{3, 0}})
	if !errors.Is(err, ErrInvalidItem) || !strings.Contains(err.Error(), "outside [1, 16]") {
		t.Fatalf("Add of an empty row without a mask input: %v", err)
	}

	b, err := New(spec, cost, Config{Masks: []string{"mask"}})
	if err != nil {
		t.Fatal(err)
	}
	it := Item{ID: 7, Rows: 3, SeqLens: []int{0, 3, 0}}
	if err := b.Add(t0, it); err != nil {
		t.Fatalf("Add with a mask input: %v", err)
	}
	a, err := NewAssembler(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Add(it); err != nil {
		t.Fatal(err)
	}
	// x: row 1 holds positions 0..2 with values 100+k.
	x := Rows{Data: make([]byte, 3*16*4), Offsets: []int32{0, 0, 3, 3}}
	for k := range 3 * 16 {
		putF32(x.Data, k, float32(100+k))
	}
	ins := b.Inputs()
	var done []uint64
	for _, p := range drain(t, b, t0) {
		bufs := make([][]byte, len(ins))
		for i, in := range ins {
			bufs[i] = make([]byte, in.Size(p))
			if err := in.Gather(bufs[i], p, func(uint64) (Rows, bool) { return x, true }); err != nil {
				t.Fatal(err)
			}
		}
		if p.Seq < 1 {
			t.Fatalf("plan of sequence length %d", p.Seq)
		}
		for br := range p.Batch {
			n := 0
			if br < p.Rows {
				n = p.Lens[br]
			}
			for s := range p.Seq {
				want := float32(0)
				if s < n {
					want = 1
				}
				if got := f32(bufs[1], br*p.Seq+s); got != want {
					t.Fatalf("plan %+v: mask[%d][%d] = %v, want %v", p, br, s, got, want)
				}
				if n == 0 && f32(bufs[0], (br*p.Seq+s)*16) != 0 {
					t.Fatalf("plan %+v: empty row %d has data", p, br)
				}
			}
		}
		// Engine stand-in: y[br] = Σ mask[br], tok[br][s] = x[br][s][0].
		y := make([]byte, p.Batch*8*4)
		tok := make([]byte, p.Batch*p.Seq*3*4)
		for br := range p.Batch {
			var sum float32
			for s := range p.Seq {
				sum += f32(bufs[1], br*p.Seq+s)
				for k := range 3 {
					putF32(tok, (br*p.Seq+s)*3+k, f32(bufs[0], (br*p.Seq+s)*16))
				}
			}
			for k := range 8 {
				putF32(y, br*8+k, sum)
			}
		}
		outs := []trt.Tensor{
			{Name: "y", DType: trt.Float32, Shape: trt.Shape{int64(p.Batch), 8}, Data: y},
			{Name: "tok", DType: trt.Float32, Shape: trt.Shape{int64(p.Batch), int64(p.Seq), 3}, Data: tok},
		}
		d, err := a.Scatter(p, outs)
		if err != nil {
			t.Fatal(err)
		}
		done = append(done, d...)
	}
	if !slices.Equal(done, []uint64{7}) {
		t.Fatalf("completed items %v, want [7]", done)
	}
	res, ok := a.Take(7)
	if !ok {
		t.Fatal("item not complete")
	}
	if res[0].Offsets != nil || len(res[0].Data) != 3*8*4 || f32(res[0].Data, 0) != 0 || f32(res[0].Data, 8) != 3 || f32(res[0].Data, 16) != 0 {
		t.Fatalf("fixed output of the item: %+v", res[0])
	}
	if !slices.Equal(res[1].Offsets, []int32{0, 0, 3, 3}) || len(res[1].Data) != 3*3*4 {
		t.Fatalf("token output offsets %v, %d bytes", res[1].Offsets, len(res[1].Data))
	}
	for s := range 3 {
		if got := f32(res[1].Data, s*3); got != float32(100+16*s) {
			t.Fatalf("token output position %d = %v, want %v", s, got, 100+16*s)
		}
	}
}
