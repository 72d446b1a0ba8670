package trttest

import (
	"path/filepath"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
)

func TestLoadModels(t *testing.T) {
	ms, err := LoadModels(filepath.Join("..", "..", "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Model{}
	for _, m := range ms {
		byName[m.Name] = m
	}
	for _, c := range []struct {
		name    string
		rows    int
		in, out trt.DType
	}{
		{Digits, 360, trt.Float32, trt.Float32},
		{DigitsFP16, 360, trt.Float16, trt.Float16},
		{SeqEncoder, 24, trt.Float32, trt.Float32},
	} {
		m, ok := byName[c.name]
		if !ok {
			t.Errorf("no model %s", c.name)
			continue
		}
		if len(m.Samples) != c.rows {
			t.Errorf("%s: %d samples, want %d", c.name, len(m.Samples), c.rows)
		}
		for i, s := range m.Samples {
			if s.ID != int64(i) {
				t.Fatalf("%s: sample %d has id %d", c.name, i, s.ID)
			}
			for _, in := range s.Inputs {
				n, err := trt.ByteSize(in.DType, in.Shape)
				if err != nil || n != len(in.Data) || in.DType != c.in {
					t.Fatalf("%s sample %d input %q: %v %v with %d bytes", c.name, i, in.Name, in.DType, in.Shape, len(in.Data))
				}
			}
			for _, w := range s.Want {
				n, err := trt.ByteSize(w.DType, w.Shape)
				if err != nil || n != len(w.Data) || w.DType != c.out {
					t.Fatalf("%s sample %d output %q: %v %v with %d bytes", c.name, i, w.Name, w.DType, w.Shape, len(w.Data))
				}
			}
		}
	}

	// The sequences are ragged, from 1 to 200 positions.
	lo, hi := int64(1<<62), int64(0)
	for _, s := range byName[SeqEncoder].Samples {
		n := s.Inputs[0].Shape[0]
		lo, hi = min(lo, n), max(hi, n)
		if !s.Inputs[1].Shape.Equal(trt.Shape{n}) {
			t.Errorf("sample %d: mask shape %v for x %v", s.ID, s.Inputs[1].Shape, s.Inputs[0].Shape)
		}
	}
	if lo != 1 || hi != 200 {
		t.Errorf("sequence lengths span [%d, %d], want [1, 200]", lo, hi)
	}

	// float16 pixels are the float32 pixels, exactly.
	d, d16 := byName[Digits], byName[DigitsFP16]
	for i := range d.Samples {
		a, _ := Decode(d.Samples[i].Inputs[0])
		b, _ := Decode(d16.Samples[i].Inputs[0])
		for j := range a {
			if a[j] != b[j] {
				t.Fatalf("sample %d pixel %d: float32 %g, float16 %g", i, j, a[j], b[j])
			}
		}
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := LoadDigits(t.TempDir()); err == nil {
		t.Error("LoadDigits on an empty directory succeeded")
	}
}
