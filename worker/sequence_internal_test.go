package worker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/batcher"
	"github.com/jetinfer/jetinfer/trt"
)

// seqWorker is a generation with just what seqProblem reads, for an engine
// with a ragged input x [b, s, 4] (and a mask when masks is set). The
// cost model comes from a stand-in run function: nothing runs here.
func seqWorker(t *testing.T, masks []string) *generation {
	t.Helper()
	spec := trt.Spec{
		Inputs:  []trt.TensorDesc{{Name: "x", DType: trt.Float32, Shape: trt.Shape{-1, -1, 4}}},
		Outputs: []trt.TensorDesc{{Name: "y", DType: trt.Float32, Shape: trt.Shape{-1, -1, 2}}},
		Profiles: []trt.Profile{{
			Min: map[string]trt.Shape{"x": {1, 1, 4}}, Opt: map[string]trt.Shape{"x": {8, 64, 4}}, Max: map[string]trt.Shape{"x": {8, 64, 4}},
		}},
	}
	if len(masks) > 0 {
		spec.Inputs = append(spec.Inputs, trt.TensorDesc{Name: "mask", DType: trt.Float32, Shape: trt.Shape{-1, -1}})
		for _, m := range []map[string]trt.Shape{spec.Profiles[0].Min, spec.Profiles[0].Opt, spec.Profiles[0].Max} {
			m["mask"] = m["x"][:2]
		}
	}
	grid, err := batcher.DefaultGrid(spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	cost, err := batcher.Measure(context.Background(), func(_ context.Context, _, b, s int) (time.Duration, error) {
		return time.Duration(b*s) * time.Microsecond, nil
	}, grid)
	if err != nil {
		t.Fatal(err)
	}
	b, err := batcher.New(spec, cost, batcher.Config{Masks: masks})
	if err != nil {
		t.Fatal(err)
	}
	w := &generation{batcher: b, reqSpec: requestSpec(spec, masks), inputs: map[string]batcher.Input{}}
	for _, in := range b.Inputs() {
		w.inputs[in.Name] = in
	}
	return w
}

func seqRequest(cols map[string][]int32) *request {
	r := &request{columns: map[string]batcher.Rows{}}
	for name, offs := range cols {
		r.columns[name] = batcher.Rows{Offsets: offs}
		if r.seqLens == nil {
			for i := 1; i < len(offs); i++ {
				r.seqLens = append(r.seqLens, int(offs[i]-offs[i-1]))
			}
			r.rows = len(offs) - 1
		}
	}
	return r
}

func TestSeqProblemNamesColumnRowAndLimit(t *testing.T) {
	plain := seqWorker(t, nil)
	masked := seqWorker(t, []string{"mask"})
	for _, tc := range []struct {
		name  string
		w     *generation
		offs  []int32
		frags []string // empty: accepted
	}{
		{"empty row without a mask", plain, []int32{0, 3, 3, 5}, []string{`column "x" row 1 has 0 positions`, "no generated mask or length input", "at least 1 position"}},
		{"empty row with a mask", masked, []int32{0, 3, 3, 5}, nil},
		{"all rows empty with a mask", masked, []int32{0, 0, 0}, nil},
		{"row at the max", plain, []int32{0, 64}, nil},
		{"row past the max", masked, []int32{0, 2, 67}, []string{`column "x" row 1 has 65 positions`, "(64)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := tc.w.seqProblem(seqRequest(map[string][]int32{"x": tc.offs}))
			if len(tc.frags) == 0 {
				if msg != "" {
					t.Fatalf("rejected: %s", msg)
				}
				return
			}
			for _, f := range tc.frags {
				if !strings.Contains(msg, f) {
					t.Fatalf("message %q does not mention %q", msg, f)
				}
			}
			if strings.Contains(msg, "item") {
				t.Fatalf("message %q names a batcher item", msg)
			}
		})
	}
	if got := masked.filledInputs(); got["mask"] != "mask" || len(got) != 1 {
		t.Fatalf("filledInputs = %v", got)
	}
	if got := plain.filledInputs(); got != nil {
		t.Fatalf("filledInputs without a mask = %v", got)
	}
}

func TestResultTensorRagged(t *testing.T) {
	part := batcher.Result{Name: "y", DType: trt.Float32, Shape: trt.Shape{2, trt.Dynamic, 2}, Data: make([]byte, 3*2*4), Offsets: []int32{0, 0, 3}}
	got, err := resultTensor(part)
	if err != nil || got.Offsets == nil || !got.Shape.Equal(part.Shape) {
		t.Fatalf("resultTensor = %+v, %v", got, err)
	}
	part.Shape = trt.Shape{2, 3, trt.Dynamic}
	if _, err := resultTensor(part); err == nil || !strings.Contains(err.Error(), "right after the batch dimension") {
		t.Fatalf("sequence axis 2: %v", err)
	}
}
