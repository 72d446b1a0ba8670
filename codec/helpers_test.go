package codec_test

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
)

var allDTypes = []trt.DType{
	trt.Float32, trt.Float16, trt.BFloat16, trt.Float64,
	trt.Int8, trt.Uint8, trt.Int32, trt.Int64, trt.Bool,
}

// randTensor returns a tensor of deterministic pseudo-random bytes; bool
// elements are 0 or 1.
func randTensor(name string, d trt.DType, shape trt.Shape, seed uint64) trt.Tensor {
	n, err := trt.ByteSize(d, shape)
	if err != nil {
		panic(err)
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(rng.Uint32())
		if d == trt.Bool {
			data[i] &= 1
		}
	}
	return trt.Tensor{Name: name, DType: d, Shape: shape, Data: data}
}

// encodeRequest encodes cols with the package encoder and fails the test
// on error.
func encodeRequest(t testing.TB, cols []trt.Tensor, ids arrow.Array) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := codec.EncodeRequest(&buf, cols, ids); err != nil {
		t.Fatalf("EncodeRequest: %v", err)
	}
	return buf.Bytes()
}

// writeStream writes records with arrow-go's own IPC writer, standing in
// for any third-party producer.
func writeStream(t testing.TB, schema *arrow.Schema, recs ...arrow.RecordBatch) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatalf("writing record batch: %v", err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("closing IPC writer: %v", err)
	}
	return buf.Bytes()
}

// aliases reports whether data lies inside b.
func aliases(data, b []byte) bool {
	if len(data) == 0 {
		return true
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= lo && p+uintptr(len(data)) <= lo+uintptr(len(b))
}

// checkedAlloc returns an allocator that fails the test if anything
// allocated through it is still live when the test ends.
func checkedAlloc(t *testing.T) *memory.CheckedAllocator {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return mem
}

// wantCode fails unless err is a *codec.Error with code c whose message
// contains every fragment.
func wantCode(t *testing.T, err error, c codec.Code, column string, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", c)
	}
	e, ok := err.(*codec.Error)
	if !ok {
		t.Fatalf("error %v is a %T, want *codec.Error", err, err)
	}
	if e.Code != c {
		t.Fatalf("error %q has code %s, want %s", err, e.Code, c)
	}
	if e.Column != column {
		t.Fatalf("error %q names column %q, want %q", err, e.Column, column)
	}
	for _, f := range fragments {
		if !bytes.Contains([]byte(err.Error()), []byte(f)) {
			t.Fatalf("error %q does not mention %q", err, f)
		}
	}
}
