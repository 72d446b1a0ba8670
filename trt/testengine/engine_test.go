package testengine_test

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/testengine"
	"github.com/jetinfer/jetinfer/trt/trttest"
)

// model returns conformance samples whose references are Compute of
// their inputs: the suite then checks the engine against its documented
// function, at every batch size, as it checks the real backends against
// PyTorch.
func model(n int) trttest.Model {
	m := trttest.Model{Name: "testengine", RTol: 0, ATol: 0}
	for s := range n {
		x := make([]float32, 64)
		for i := range x {
			x[i] = float32((s*64+i)%97)/8 - 6
		}
		y := make([]float32, testengine.DefaultOutputWidth)
		testengine.Compute(y, x)
		m.Samples = append(m.Samples, trttest.Sample{ID: int64(s),
			Inputs: []trt.Tensor{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{8, 8}, Data: f32(x)}},
			Want:   []trt.Tensor{{Name: "logits", DType: trt.Float32, Shape: trt.Shape{10}, Data: f32(y)}},
		})
	}
	return m
}

func f32(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

func TestConformance(t *testing.T) {
	trttest.Run(t, func(t *testing.T, name string) trt.Engine {
		e, err := testengine.New(testengine.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}, model(100))
}

func TestComputeSeparatesRows(t *testing.T) {
	// Rows differing in one value, or holding the same values in another
	// order, give different outputs.
	a := make([]float32, 64)
	for i := range a {
		a[i] = float32(i)
	}
	b := append([]float32(nil), a...)
	b[63]++
	c := append([]float32(nil), a...)
	c[0], c[1] = c[1], c[0]
	ya, yb, yc := make([]float32, 10), make([]float32, 10), make([]float32, 10)
	testengine.Compute(ya, a)
	testengine.Compute(yb, b)
	testengine.Compute(yc, c)
	if ya[0] == yb[0] && ya[1] == yb[1] {
		t.Errorf("a changed value leaves the output unchanged: %v", ya)
	}
	if ya[0] == yc[0] && ya[1] == yc[1] {
		t.Errorf("swapped values leave the output unchanged: %v", ya)
	}
}

func batch(t *testing.T, e *testengine.Engine, rows int) *trt.Batch {
	t.Helper()
	b, err := trttest.NewBatch(e.Spec(), model(rows).Samples)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFaults(t *testing.T) {
	errBoom := errors.New("boom")
	cases := []struct {
		name  string
		fault testengine.Fault
		want  []bool // per call: fails
	}{
		{"FailFirst", testengine.FailFirst(2, errBoom), []bool{true, true, false, false}},
		{"FailCall", testengine.FailCall(3, errBoom), []bool{false, false, true, false}},
		{"DeviceLost", testengine.FailCall(1, trt.ErrDeviceLost), []bool{true, false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, _ := testengine.New(testengine.Config{})
			e.SetFault(c.fault)
			for i, fails := range c.want {
				err := e.Run(t.Context(), batch(t, e, 2))
				if (err != nil) != fails {
					t.Fatalf("call %d: err %v, want failure %v", i+1, err, fails)
				}
				if err != nil && errors.Is(err, trt.ErrInvalidInput) {
					t.Fatalf("call %d: an injected failure must not look like invalid input: %v", i+1, err)
				}
			}
			if st := e.Stats(); st.Calls != int64(len(c.want)) {
				t.Fatalf("stats %+v after %d calls", st, len(c.want))
			}
		})
	}
	t.Run("DeviceLostIsVisible", func(t *testing.T) {
		e, _ := testengine.New(testengine.Config{})
		e.SetFault(testengine.FailFirst(1, trt.ErrDeviceLost))
		if err := e.Run(t.Context(), batch(t, e, 1)); !errors.Is(err, trt.ErrDeviceLost) {
			t.Fatalf("Run = %v, want trt.ErrDeviceLost", err)
		}
	})
	t.Run("FailRows", func(t *testing.T) {
		e, _ := testengine.New(testengine.Config{})
		b := batch(t, e, 4)
		binary.LittleEndian.PutUint32(b.Inputs[0].Data[2*256:], math.Float32bits(42))
		e.SetFault(testengine.FailRows(testengine.FirstValue(42), errBoom))
		err := e.Run(t.Context(), b)
		if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "row 2") {
			t.Fatalf("Run = %v, want boom naming row 2", err)
		}
		if err := e.Run(t.Context(), batch(t, e, 4)); err != nil {
			t.Fatalf("a batch without the poison row failed: %v", err)
		}
		if st := e.Stats(); st.Failed != 1 || st.Rows != 4 || st.MaxBatchRows != 4 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestBlockHoldsCallsUntilReleased(t *testing.T) {
	e, _ := testengine.New(testengine.Config{})
	release := make(chan struct{})
	e.SetFault(testengine.Block(release))
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() { errs <- e.Run(context.Background(), batch(t, e, 1)) })
	}
	for e.Stats().Running != 3 {
		runtime.Gosched() // the three goroutines reach the fault at once
	}
	if st := e.Stats(); st.Rows != 0 {
		t.Fatalf("a held call computed: %+v", st)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// A held call whose context ends returns the context's error.
	ctx, cancel := context.WithCancel(context.Background())
	e.SetFault(testengine.Block(make(chan struct{})))
	done := make(chan error)
	go func() { done <- e.Run(ctx, batch(t, e, 1)) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, c := range []testengine.Config{
		{MaxBatch: -1},
		{RowShape: trt.Shape{trt.Dynamic, 8}},
		{Input: "x", Output: "x"},
	} {
		if _, err := testengine.New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
