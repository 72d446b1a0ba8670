//go:build cgo

package onnxrt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/trttest"
)

var (
	testdata = filepath.Join("..", "..", "testdata")
	// testRuntime is the process's one Runtime, made by TestMain; nil when
	// the library is missing (testRuntimeErr says why).
	testRuntime    *Runtime
	testRuntimeErr error
	testLibrary    string
)

func TestMain(m *testing.M) {
	// Tests may take the library from the environment; the package does not.
	testLibrary, testRuntimeErr = FindLibrary(os.Getenv("JETINFER_ORT_LIBRARY"))
	if testRuntimeErr == nil {
		testRuntime, testRuntimeErr = NewRuntime(testLibrary)
	}
	code := m.Run()
	if testRuntime != nil {
		if err := testRuntime.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing runtime:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runtimeFor returns the test Runtime or skips tb with the reason.
func runtimeFor(tb testing.TB) *Runtime {
	tb.Helper()
	if testRuntime == nil {
		tb.Skipf("ONNX Runtime library not available (%v); install it with `make ort` or scripts/install-onnxruntime.sh", testRuntimeErr)
	}
	return testRuntime
}

func loadModel(tb testing.TB, name string, opts Options) *Engine {
	tb.Helper()
	rt := runtimeFor(tb)
	e, err := rt.LoadFile(context.Background(), filepath.Join(testdata, "models", name+".onnx"), opts)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func TestConformance(t *testing.T) {
	runtimeFor(t)
	models, err := trttest.LoadModels(testdata)
	if err != nil {
		t.Fatal(err)
	}
	trttest.Run(t, func(t *testing.T, model string) trt.Engine {
		return loadModel(t, model, Options{})
	}, models...)
}

// TestConformanceFromBytes runs the suite on engines loaded from memory,
// with several intra-op threads.
func TestConformanceFromBytes(t *testing.T) {
	rt := runtimeFor(t)
	m, err := trttest.LoadSeqEncoder(testdata)
	if err != nil {
		t.Fatal(err)
	}
	trttest.Run(t, func(t *testing.T, model string) trt.Engine {
		b, err := os.ReadFile(filepath.Join(testdata, "models", model+".onnx"))
		if err != nil {
			t.Fatal(err)
		}
		e, err := rt.Load(t.Context(), b, Options{IntraOpThreads: 2, MaxBatch: 32, DimRanges: map[string]DimRange{"seq": {Min: 1, Max: 256}}})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}, m)
}

func TestSpec(t *testing.T) {
	digits := loadModel(t, "digits", Options{})
	defer digits.Close()
	seq := loadModel(t, "seq_encoder", Options{MaxBatch: 16, DimRanges: map[string]DimRange{
		"seq":    {Min: 2, Opt: 100, Max: 300},
		"mask:1": {Min: 2, Max: 400}, // "input:index" wins over the name
	}})
	defer seq.Close()

	for _, c := range []struct {
		name string
		got  trt.Spec
		want trt.Spec
	}{
		{"digits", digits.Spec(), trt.Spec{
			Inputs:  []trt.TensorDesc{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{-1, 8, 8}}},
			Outputs: []trt.TensorDesc{{Name: "logits", DType: trt.Float32, Shape: trt.Shape{-1, 10}}},
			Profiles: []trt.Profile{{
				Min: map[string]trt.Shape{"pixels": {1, 8, 8}},
				Opt: map[string]trt.Shape{"pixels": {64, 8, 8}},
				Max: map[string]trt.Shape{"pixels": {64, 8, 8}},
			}},
		}},
		{"seq_encoder", seq.Spec(), trt.Spec{
			Inputs: []trt.TensorDesc{
				{Name: "x", DType: trt.Float32, Shape: trt.Shape{-1, -1, 16}},
				{Name: "mask", DType: trt.Float32, Shape: trt.Shape{-1, -1}},
			},
			Outputs: []trt.TensorDesc{{Name: "y", DType: trt.Float32, Shape: trt.Shape{-1, 8}}},
			Profiles: []trt.Profile{{
				Min: map[string]trt.Shape{"x": {1, 2, 16}, "mask": {1, 2}},
				Opt: map[string]trt.Shape{"x": {16, 100, 16}, "mask": {16, 400}},
				Max: map[string]trt.Shape{"x": {16, 300, 16}, "mask": {16, 400}},
			}},
		}},
	} {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s: Spec() =\n%v\nwant\n%v", c.name, c.got, c.want)
		}
	}
	if d := digits.Device(); d.Kind != "cpu" || d.Name != "onnxruntime "+testRuntime.Version() || !strings.HasPrefix(d.Name, "onnxruntime 1.") {
		t.Errorf("Device() = %+v", d)
	}
}

// TestSharedDimensionMismatch: x and mask share the dimension name "seq",
// so a batch where they differ is the caller's error.
func TestSharedDimensionMismatch(t *testing.T) {
	e := loadModel(t, "seq_encoder", Options{})
	defer e.Close()
	b := &trt.Batch{Inputs: []trt.Tensor{
		{Name: "x", DType: trt.Float32, Shape: trt.Shape{1, 5, 16}, Data: make([]byte, 5*16*4)},
		{Name: "mask", DType: trt.Float32, Shape: trt.Shape{1, 6}, Data: make([]byte, 6*4)},
	}}
	err := e.Run(t.Context(), b)
	if !errors.Is(err, trt.ErrInvalidInput) || !strings.Contains(err.Error(), "mask") {
		t.Errorf("Run = %v, want ErrInvalidInput naming mask", err)
	}
	b.Inputs[0].Name = "y"
	b.Inputs[1] = trt.Tensor{Name: "mask", DType: trt.Float32, Shape: trt.Shape{1, 5}, Data: make([]byte, 5*4)}
	if err := e.Run(t.Context(), b); !errors.Is(err, trt.ErrInvalidInput) {
		t.Errorf("Run with a misnamed input = %v, want ErrInvalidInput", err)
	}
}

func TestRunAfterClose(t *testing.T) {
	rt := runtimeFor(t)
	e := loadModel(t, "digits", Options{})
	if err := rt.Close(); err == nil || !strings.Contains(err.Error(), "still open") {
		t.Fatalf("Runtime.Close with an open engine = %v, want an error", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	b := &trt.Batch{Inputs: []trt.Tensor{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{1, 8, 8}, Data: make([]byte, 256)}}}
	if err := e.Run(t.Context(), b); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
}

func TestNewRuntimeErrors(t *testing.T) {
	_, err := NewRuntime(filepath.Join(t.TempDir(), "libonnxruntime.so.1"))
	if !errors.Is(err, trt.ErrUnavailable) {
		t.Errorf("NewRuntime(missing file) = %v, want ErrUnavailable", err)
	}
	if _, err := NewRuntime(""); !errors.Is(err, trt.ErrUnavailable) {
		t.Errorf("NewRuntime(\"\") = %v, want ErrUnavailable", err)
	}
	runtimeFor(t)
	if _, err := NewRuntime(testLibrary); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second NewRuntime = %v, want an error", err)
	}
}

func TestLoadErrors(t *testing.T) {
	rt := runtimeFor(t)
	ctx := t.Context()
	if _, err := rt.Load(ctx, []byte("not a model"), Options{}); err == nil {
		t.Error("Load(garbage) succeeded")
	}
	if _, err := rt.LoadFile(ctx, filepath.Join(t.TempDir(), "missing.onnx"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadFile(missing) = %v, want os.ErrNotExist", err)
	}
	model, err := os.ReadFile(filepath.Join(testdata, "models", "digits.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Options{{IntraOpThreads: -1}, {MaxBatch: -2}, {DimRanges: map[string]DimRange{"seq": {Min: 5, Max: 4}}}} {
		if _, err := rt.Load(ctx, model, bad); err == nil {
			t.Errorf("Load with %+v succeeded", bad)
		}
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := rt.Load(canceled, model, Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Load with a cancelled context = %v", err)
	}
	// Engines that failed to load must not count as open.
	rt.mu.Lock()
	open := rt.engines
	rt.mu.Unlock()
	if open != 0 {
		t.Errorf("%d engines counted open after failed loads", open)
	}
}

// TestUnknownOutputShape uses an Identity model whose output dimension has
// its own name, so the engine cannot compute the output shape and lets ONNX
// Runtime allocate it.
func TestUnknownOutputShape(t *testing.T) {
	rt := runtimeFor(t)
	model := identityModel(tensorValueInfo("x", onnxFloat, "batch", "n"), tensorValueInfo("y", onnxFloat, "batch", "m"))
	e, err := rt.Load(t.Context(), model, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	in := make([]byte, 2*3*4)
	for i := range 6 {
		binary.LittleEndian.PutUint32(in[4*i:], math.Float32bits(float32(i)+0.5))
	}
	for _, outBuf := range [][]byte{nil, make([]byte, len(in))} {
		b := &trt.Batch{
			Inputs:  []trt.Tensor{{Name: "x", DType: trt.Float32, Shape: trt.Shape{2, 3}, Data: in}},
			Outputs: []trt.Tensor{{Data: outBuf}},
		}
		if err := e.Run(t.Context(), b); err != nil {
			t.Fatal(err)
		}
		out := b.Outputs[0]
		if out.Name != "y" || out.DType != trt.Float32 || !out.Shape.Equal(trt.Shape{2, 3}) || string(out.Data) != string(in) {
			t.Errorf("output = %q %v %v %v, want y float32 [2,3] equal to the input", out.Name, out.DType, out.Shape, out.Data)
		}
		if outBuf != nil && &out.Data[0] != &outBuf[0] {
			t.Error("caller's buffer of the exact size was not used")
		}
	}

	// float16 outputs of unknown shape cannot be allocated by the binding:
	// refused at load.
	model16 := identityModel(tensorValueInfo("x", onnxFloat16, "batch", "n"), tensorValueInfo("y", onnxFloat16, "batch", "m"))
	if _, err := rt.Load(t.Context(), model16, Options{}); err == nil || !strings.Contains(err.Error(), "float16") {
		t.Errorf("Load(float16 model with unknown output shape) = %v, want an error", err)
	}
	// With the output dimension named like the input's, it loads and runs.
	model16 = identityModel(tensorValueInfo("x", onnxFloat16, "batch", "n"), tensorValueInfo("y", onnxFloat16, "batch", "n"))
	e16, err := rt.Load(t.Context(), model16, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e16.Close()
	in16 := []byte{0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00} // 1, -2, smallest subnormal
	b := &trt.Batch{Inputs: []trt.Tensor{{Name: "x", DType: trt.Float16, Shape: trt.Shape{1, 3}, Data: in16}}}
	if err := e16.Run(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if got := b.Outputs[0]; string(got.Data) != string(in16) || !got.Shape.Equal(trt.Shape{1, 3}) {
		t.Errorf("float16 identity = %v %v, want the input bits", got.Shape, got.Data)
	}
}

// TestRunCancelledInFlight cancels a context while a large batch runs; the
// Run must return (with or without finishing) and the engine stay usable.
func TestRunCancelledInFlight(t *testing.T) {
	e := loadModel(t, "seq_encoder", Options{DimRanges: map[string]DimRange{"seq": {Min: 1, Max: 4096}}})
	defer e.Close()
	const batch, seq = 64, 4096
	b := &trt.Batch{Inputs: []trt.Tensor{
		{Name: "x", DType: trt.Float32, Shape: trt.Shape{batch, seq, 16}, Data: make([]byte, batch*seq*16*4)},
		{Name: "mask", DType: trt.Float32, Shape: trt.Shape{batch, seq}, Data: make([]byte, batch*seq*4)},
	}}
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(time.Millisecond, cancel)
	err := e.Run(ctx, b)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Run cancelled in flight = %v, want nil or context.Canceled", err)
	}
	b.Outputs = nil
	if err := e.Run(t.Context(), b); err != nil {
		t.Errorf("Run after a cancelled one: %v", err)
	}
}

// BenchmarkEngineDigits measures the engine on digits.onnx at batch 1, 8
// and 64, reusing output buffers as a worker does, against a baseline of
// the same session driven through onnxruntime_go directly with tensors
// created once ("ort-direct"): the ratio is the engine's own overhead
// (validation, per-call tensor wrapping, pinning).
func BenchmarkEngineDigits(b *testing.B) {
	rt := runtimeFor(b)
	path := filepath.Join(testdata, "models", "digits.onnx")
	e, err := rt.LoadFile(context.Background(), path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	m, err := trttest.LoadDigits(testdata)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 8, 64} {
		batch, err := trttest.NewBatch(e.Spec(), m.Samples[:n])
		if err != nil {
			b.Fatal(err)
		}
		inBytes := int64(len(batch.Inputs[0].Data))
		b.Run(fmt.Sprintf("batch=%d/engine", n), func(b *testing.B) {
			ctx := context.Background()
			b.SetBytes(inBytes)
			b.ReportAllocs()
			for b.Loop() {
				if err := e.Run(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
		b.Run(fmt.Sprintf("batch=%d/ort-direct", n), func(b *testing.B) {
			so, err := ort.NewSessionOptions()
			if err != nil {
				b.Fatal(err)
			}
			defer so.Destroy()
			if err := so.SetIntraOpNumThreads(1); err != nil {
				b.Fatal(err)
			}
			if err := so.SetInterOpNumThreads(1); err != nil {
				b.Fatal(err)
			}
			sess, err := ort.NewDynamicAdvancedSession(path, []string{"pixels"}, []string{"logits"}, so)
			if err != nil {
				b.Fatal(err)
			}
			defer sess.Destroy()
			in, err := ort.NewTensor(ort.NewShape(int64(n), 8, 8), make([]float32, n*64))
			if err != nil {
				b.Fatal(err)
			}
			defer in.Destroy()
			copy(sliceBytes(in.GetData()), batch.Inputs[0].Data)
			out, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(n), 10))
			if err != nil {
				b.Fatal(err)
			}
			defer out.Destroy()
			b.SetBytes(inBytes)
			b.ReportAllocs()
			for b.Loop() {
				if err := sess.Run([]ort.Value{in}, []ort.Value{out}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			if string(sliceBytes(out.GetData())) != string(batch.Outputs[0].Data) {
				b.Error("ort-direct logits differ from the engine's")
			}
		})
	}
}
