package models_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/trt/trttest"
	"github.com/jetinfer/jetinfer/worker/models"
)

var updateGate = flag.Bool("update-gate", false, "rewrite testdata/digits_gate.arrow from digits_test.arrow and digits_ref.arrow")

// digitsGate joins the digits test split (id, pixels) and its PyTorch
// reference logits into one reference file for the accuracy gate.
func digitsGate(t testing.TB) []byte {
	t.Helper()
	read := func(name string) *codec.Request {
		b, err := os.ReadFile(repoFile("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		r, err := codec.DecodeRequest(b, codec.Limits{MaxBodyBytes: len(b) + 1})
		if err != nil {
			t.Fatalf("decoding %s: %v", name, err)
		}
		t.Cleanup(r.Release)
		return r
	}
	test, ref := read("digits_test.arrow"), read("digits_ref.arrow")
	px, _ := test.Column("pixels")
	logits, _ := ref.Column("logits")
	if test.Rows != ref.Rows || px == nil || logits == nil {
		t.Fatal("digits_test.arrow and digits_ref.arrow do not line up")
	}
	pt, _ := px.Tensor()
	lt, _ := logits.Tensor()
	var buf bytes.Buffer
	if err := codec.EncodeRequest(&buf, []trt.Tensor{pt, lt}, test.IDs); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestDigitsGateFile keeps testdata/digits_gate.arrow equal to the join it
// is made from (same ids, same pixels, same logits; the byte layout is the
// encoder's business); -update-gate rewrites it.
func TestDigitsGateFile(t *testing.T) {
	want := digitsGate(t)
	path := repoFile("testdata", "digits_gate.arrow")
	if *updateGate {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	decode := func(b []byte) *codec.Request {
		r, err := codec.DecodeRequest(b, codec.Limits{MaxBodyBytes: len(b) + 1})
		if err != nil {
			t.Fatalf("decoding %s: %v", path, err)
		}
		t.Cleanup(r.Release)
		return r
	}
	g, w := decode(got), decode(want)
	stale := func(what string) {
		t.Fatalf("%s: %s differs from the join of digits_test.arrow and digits_ref.arrow; run go test ./worker/models -run TestDigitsGateFile -update-gate", path, what)
	}
	if g.Rows != w.Rows || g.IDs == nil || w.IDs == nil || !array.Equal(g.IDs, w.IDs) {
		stale("ids")
	}
	for _, name := range []string{"pixels", "logits"} {
		gc, _ := g.Column(name)
		wc, _ := w.Column(name)
		if gc == nil || wc == nil {
			stale("column " + name)
		}
		gt, _ := gc.Tensor()
		wt, _ := wc.Tensor()
		if gt.DType != wt.DType || !slices.Equal(gt.Shape, wt.Shape) || !bytes.Equal(gt.Data, wt.Data) {
			stale("column " + name)
		}
	}
}

// ortRuntime opens ONNX Runtime or skips the test.
func ortRuntime(t testing.TB) *onnxrt.Runtime {
	t.Helper()
	lib, err := onnxrt.FindLibrary(os.Getenv("JETINFER_ORT_LIBRARY"))
	if err != nil {
		t.Skipf("ONNX Runtime library not available (%v)", err)
	}
	rt, err := onnxrt.NewRuntime(lib)
	if err != nil {
		t.Skipf("ONNX Runtime not usable here: %v", err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	return rt
}

func loadModel(t testing.TB, rt *onnxrt.Runtime, model []byte) *onnxrt.Engine {
	t.Helper()
	eng, err := rt.Load(context.Background(), model, onnxrt.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatalf("loading model: %v", err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	return eng
}

func readFile(t testing.TB, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoFile(parts...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckAccuracy(t *testing.T) {
	rt := ortRuntime(t)
	digits := readFile(t, "testdata", "models", "digits.onnx")
	perturbed, weight, err := trttest.PerturbONNX(digits, 1.1)
	if err != nil {
		t.Fatal(err)
	}
	gate := readFile(t, "testdata", "digits_gate.arrow")
	ctx := t.Context()
	g := models.Gate{Tolerance: models.DefaultTolerance}

	t.Run("fp32 model against its PyTorch reference", func(t *testing.T) {
		acc, err := models.CheckAccuracy(ctx, loadModel(t, rt, digits), gate, g)
		if err != nil || !acc.Passed() || acc.Rows != 360 || acc.Compared != 3600 || acc.MaxAbsErr > 1e-5 {
			t.Fatalf("CheckAccuracy = %+v, %v; want 3600 elements within 1e-5", acc, err)
		}
	})
	t.Run("fp16 model against the fp32 reference", func(t *testing.T) {
		// Inputs converted to float16, outputs compared as float64: the
		// float16 output rounding is within the default tolerance, and
		// measurably not exact.
		acc, err := models.CheckAccuracy(ctx, loadModel(t, rt, readFile(t, "testdata", "models", "digits_fp16.onnx")), gate, g)
		if err != nil || !acc.Passed() || acc.MaxAbsErr == 0 || acc.MaxRelErr > 1e-3 {
			t.Fatalf("CheckAccuracy = %+v, %v; want a pass with float16 rounding (0 < rel err ≤ 1e-3)", acc, err)
		}
		t.Logf("digits_fp16.onnx vs FP32 reference: %s", acc)
	})
	t.Run("perturbed model is refused with the measured error", func(t *testing.T) {
		acc, err := models.CheckAccuracy(ctx, loadModel(t, rt, perturbed), gate, g)
		if !errors.Is(err, models.ErrAccuracy) || acc.Passed() || acc.MaxAbsErr < 0.01 ||
			!strings.Contains(err.Error(), "max abs error") || !strings.Contains(err.Error(), "output logits row") {
			t.Fatalf("CheckAccuracy = %+v, %v; want ErrAccuracy stating the max error", acc, err)
		}
		t.Logf("%s ×1.1: %v", weight, err)
	})
	t.Run("ragged reference with a generated mask", func(t *testing.T) {
		acc, err := models.CheckAccuracy(ctx, loadModel(t, rt, readFile(t, "testdata", "models", "seq_encoder.onnx")),
			readFile(t, "testdata", "seq_ref.arrow"), g)
		if err != nil || !acc.Passed() || acc.Rows != 24 || acc.Compared != 24*8 {
			t.Fatalf("CheckAccuracy = %+v, %v", acc, err)
		}
	})
	t.Run("reference without the engine's input", func(t *testing.T) {
		_, err := models.CheckAccuracy(ctx, loadModel(t, rt, digits), readFile(t, "testdata", "digits_ref.arrow"), g)
		if err == nil || errors.Is(err, models.ErrAccuracy) || !strings.Contains(err.Error(), `engine input "pixels"`) {
			t.Fatalf("CheckAccuracy = %v; want an error naming the missing input", err)
		}
	})
	t.Run("reference of another model", func(t *testing.T) {
		_, err := models.CheckAccuracy(ctx, loadModel(t, rt, readFile(t, "testdata", "models", "seq_encoder.onnx")), gate, g)
		if err == nil || errors.Is(err, models.ErrAccuracy) {
			t.Fatalf("CheckAccuracy = %v; want an error about the reference", err)
		}
	})
}

func TestRepositoryCheckAccuracy(t *testing.T) {
	rt := ortRuntime(t)
	e := newEnv(t, 8<<20)
	ctx := t.Context()
	dir := t.TempDir()
	gatePath := repoFile("testdata", "digits_gate.arrow")
	perturbed, _, err := trttest.PerturbONNX(readFile(t, "testdata", "models", "digits.onnx"), 1.1)
	if err != nil {
		t.Fatal(err)
	}
	bad := dir + "/perturbed.onnx"
	if err := os.WriteFile(bad, perturbed, 0o644); err != nil {
		t.Fatal(err)
	}
	v1, err := e.repo.Push(ctx, "digits", "1", []models.Upload{{Kind: models.KindONNX, Path: repoFile("testdata", "models", "digits.onnx")},
		{Kind: models.KindReference, Path: gatePath}})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := e.repo.Push(ctx, "digits", "2", []models.Upload{{Kind: models.KindONNX, Path: bad}, {Kind: models.KindReference, Path: gatePath}})
	if err != nil {
		t.Fatal(err)
	}
	v3, err := e.repo.Push(ctx, "digits", "3", []models.Upload{{Kind: models.KindONNX, Path: bad}})
	if err != nil {
		t.Fatal(err)
	}
	g := models.Gate{Tolerance: models.DefaultTolerance}
	if acc, err := e.repo.CheckAccuracy(ctx, v1, loadModel(t, rt, readFile(t, "testdata", "models", "digits.onnx")), g); err != nil || acc.Reference != "digits_gate.arrow" {
		t.Fatalf("v1: %+v, %v", acc, err)
	}
	if acc, err := e.repo.CheckAccuracy(ctx, v2, loadModel(t, rt, perturbed), g); !errors.Is(err, models.ErrAccuracy) || acc.Reference != "digits_gate.arrow" {
		t.Fatalf("v2 (perturbed): %+v, %v; want ErrAccuracy", acc, err)
	}
	if acc, err := e.repo.CheckAccuracy(ctx, v3, loadModel(t, rt, perturbed), g); err != nil || acc.Reference != "" || !strings.Contains(acc.String(), "not run") {
		t.Fatalf("v3 (no reference): %+v, %v; want the gate not run", acc, err)
	}
}
