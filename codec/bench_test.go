package codec_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
)

// bench16MiB is a 16 MiB float32 tensor: 4096 rows of [1024].
func bench16MiB() trt.Tensor {
	return randTensor("x", trt.Float32, trt.Shape{4096, 1024}, 42)
}

// BenchmarkDecodeRequest16MiB compares decoding a 16 MiB request with
// copying its bytes once. "ratio" times both in the same loop and reports
// decode time ÷ copy time (target ≤ 0.05).
func BenchmarkDecodeRequest16MiB(b *testing.B) {
	body := encodeRequest(b, []trt.Tensor{bench16MiB()}, nil)
	dst := make([]byte, len(body))
	decode := func() {
		req, err := codec.DecodeRequest(body, codec.Limits{})
		if err != nil {
			b.Fatal(err)
		}
		req.Release()
	}
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			decode()
		}
	})
	b.Run("memcpy", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			copy(dst, body)
		}
	})
	b.Run("ratio", func(b *testing.B) {
		var tDecode, tCopy time.Duration
		for b.Loop() {
			t0 := time.Now()
			decode()
			t1 := time.Now()
			copy(dst, body)
			tDecode += t1.Sub(t0)
			tCopy += time.Since(t1)
		}
		b.ReportMetric(float64(tDecode)/float64(tCopy), "ratio")
	})
}

// BenchmarkEncodeResult16MiB compares encoding a 16 MiB result into a
// reused buffer with copying the tensor bytes once. "ratio" reports encode
// time ÷ copy time (target ≤ 1.5).
func BenchmarkEncodeResult16MiB(b *testing.B) {
	out := []trt.Tensor{bench16MiB()}
	buf, err := codec.EncodeResultBytes(nil, out, nil)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, len(out[0].Data))
	encode := func() {
		if buf, err = codec.EncodeResultBytes(buf[:0], out, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("encode", func(b *testing.B) {
		b.SetBytes(int64(len(out[0].Data)))
		b.ReportAllocs()
		for b.Loop() {
			encode()
		}
	})
	b.Run("memcpy", func(b *testing.B) {
		b.SetBytes(int64(len(out[0].Data)))
		b.ReportAllocs()
		for b.Loop() {
			copy(dst, out[0].Data)
		}
	})
	b.Run("ratio", func(b *testing.B) {
		var tEncode, tCopy time.Duration
		for b.Loop() {
			t0 := time.Now()
			encode()
			t1 := time.Now()
			copy(dst, out[0].Data)
			tEncode += t1.Sub(t0)
			tCopy += time.Since(t1)
		}
		b.ReportMetric(float64(tEncode)/float64(tCopy), "ratio")
	})
}

// BenchmarkSmallMessages measures the per-request cost of the codec on the
// messages a worker handles most: a request of 4 or 64 digits rows
// (float32 [8,8], int64 ids) decoded, and its result (float32 [10] per
// row, the same ids) encoded. allocs/op is the figure to watch: at small
// sizes the codec's cost is its bookkeeping, not its bytes.
func BenchmarkSmallMessages(b *testing.B) {
	for _, rows := range []int{4, 64} {
		pixels := randTensor("pixels", trt.Float32, trt.Shape{int64(rows), 8, 8}, 7)
		logits := randTensor("logits", trt.Float32, trt.Shape{int64(rows), 10}, 8)
		body := encodeRequest(b, []trt.Tensor{pixels}, nil)
		b.Run("decode/rows="+strconv.Itoa(rows), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				req, err := codec.DecodeRequest(body, codec.Limits{})
				if err != nil {
					b.Fatal(err)
				}
				req.Release()
			}
		})
		b.Run("encode/rows="+strconv.Itoa(rows), func(b *testing.B) {
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = codec.EncodeResultBytes(buf[:0], []trt.Tensor{logits}, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}
