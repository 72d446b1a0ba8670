package codec_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
)

// A producer encodes a batch of two 2×2 float32 images as a request body.
func ExampleEncodeRequest() {
	data := make([]byte, 0, 2*2*2*4)
	for i := range 8 {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(i)))
	}
	pixels := trt.Tensor{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{2, 2, 2}, Data: data}

	var body bytes.Buffer
	if err := codec.EncodeRequest(&body, []trt.Tensor{pixels}, nil); err != nil {
		fmt.Println(err)
		return
	}
	// The body is an Arrow IPC stream with one arrow.fixed_shape_tensor
	// column; any Arrow implementation reads it.
	fmt.Println(bytes.Contains(body.Bytes(), []byte(`{"shape":[2,2]}`)))
	// Output: true
}

// A worker decodes a request body without copying it and checks it
// against the engine before batching.
func ExampleDecodeRequest() {
	var body bytes.Buffer
	_ = codec.EncodeRequest(&body, []trt.Tensor{{
		Name: "pixels", DType: trt.Float64, Shape: trt.Shape{3, 4}, Data: make([]byte, 3*4*8),
	}}, nil)

	req, err := codec.DecodeRequest(body.Bytes(), codec.Limits{})
	if err != nil {
		fmt.Println(codec.CodeOf(err), err)
		return
	}
	defer req.Release()
	c, _ := req.Column("pixels")
	fmt.Println(req.Rows, c.DType, c.RowShape, c.RowBytes())

	spec := trt.Spec{Inputs: []trt.TensorDesc{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{-1, 4}}}}
	err = codec.ValidateRequest(req, spec, codec.ValidateOptions{})
	fmt.Println(codec.CodeOf(err), err)
	// Output:
	// 3 float64 [4] 32
	// INVALID_ARGUMENT column "pixels": dtype float64, engine expects float32
}

// A worker encodes engine outputs, echoing the request's ids.
func ExampleEncodeResultBytes() {
	var body bytes.Buffer
	_ = codec.EncodeRequest(&body, []trt.Tensor{{Name: "x", DType: trt.Int8, Shape: trt.Shape{2}, Data: []byte{1, 2}}}, nil)
	req, _ := codec.DecodeRequest(body.Bytes(), codec.Limits{})
	defer req.Release()

	logits := trt.Tensor{Name: "logits", DType: trt.Float32, Shape: trt.Shape{2, 10}, Data: make([]byte, 2*10*4)}
	var buf []byte // reuse across results: buf = out[:0]
	out, err := codec.EncodeResultBytes(buf, []trt.Tensor{logits}, req.IDs)
	if err != nil {
		fmt.Println(err)
		return
	}
	res, _ := codec.DecodeResult(out, codec.Limits{})
	defer res.Release()
	fmt.Println(res.Rows, res.Columns[0].Name, res.Columns[0].RowShape)
	// Output: 2 logits [10]
}
