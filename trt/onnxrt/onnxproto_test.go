package onnxrt

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// protoBuf appends protobuf wire-format fields; tests use it to write small
// ONNX models by hand.
type protoBuf []byte

func (p protoBuf) varint(num int, v uint64) protoBuf {
	p = binary.AppendUvarint(p, uint64(num)<<3|wireVarint)
	return binary.AppendUvarint(p, v)
}

func (p protoBuf) bytes(num int, b []byte) protoBuf {
	p = binary.AppendUvarint(p, uint64(num)<<3|wireBytes)
	p = binary.AppendUvarint(p, uint64(len(b)))
	return append(p, b...)
}

func (p protoBuf) str(num int, s string) protoBuf { return p.bytes(num, []byte(s)) }

// tensorValueInfo encodes a ValueInfoProto of a tensor; each dim is an
// int (dim_value) or a string (dim_param).
func tensorValueInfo(name string, elemType int, dims ...any) []byte {
	var shape protoBuf
	for _, d := range dims {
		var dim protoBuf
		switch d := d.(type) {
		case int:
			dim = dim.varint(1, uint64(d))
		case string:
			dim = dim.str(2, d)
		}
		shape = shape.bytes(fieldShapeDim, dim)
	}
	tensor := protoBuf(nil).varint(1, uint64(elemType)).bytes(fieldTensorShape, shape)
	typ := protoBuf(nil).bytes(fieldTypeTensor, tensor)
	return protoBuf(nil).str(fieldValueInfoName, name).bytes(fieldValueInfoType, typ)
}

// identityModel encodes an ONNX model (IR 8, opset 17) with one Identity
// node from input "x" to output "y", with the given value infos.
func identityModel(x, y []byte) []byte {
	node := protoBuf(nil).str(1, "x").str(2, "y").str(4, "Identity") // NodeProto input, output, op_type
	graph := protoBuf(nil).bytes(1, node).str(2, "identity").
		bytes(fieldGraphInput, x).bytes(fieldGraphOutput, y)
	opset := protoBuf(nil).str(1, "").varint(2, 17) // OperatorSetIdProto domain, version
	return protoBuf(nil).varint(1, 8).bytes(8, opset).bytes(fieldModelGraph, graph)
}

const (
	onnxFloat   = 1  // TensorProto.FLOAT
	onnxFloat16 = 10 // TensorProto.FLOAT16
)

func TestReadGraphDimsHandMade(t *testing.T) {
	m := identityModel(tensorValueInfo("x", onnxFloat, "batch", "n", 3), tensorValueInfo("y", onnxFloat, "batch", "m", 3))
	g, err := readGraphDims(m)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"batch", "n", ""}; !reflect.DeepEqual(g.inputs["x"], want) {
		t.Errorf("inputs[x] = %q, want %q", g.inputs["x"], want)
	}
	if want := []string{"batch", "m", ""}; !reflect.DeepEqual(g.outputs["y"], want) {
		t.Errorf("outputs[y] = %q, want %q", g.outputs["y"], want)
	}
}

func TestReadGraphDimsTestModels(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "models")
	for _, c := range []struct {
		file    string
		inputs  map[string][]string
		outputs map[string][]string
	}{
		{"digits.onnx", map[string][]string{"pixels": {"batch", "", ""}}, map[string][]string{"logits": {"batch", ""}}},
		{"seq_encoder.onnx", map[string][]string{"x": {"batch", "seq", ""}, "mask": {"batch", "seq"}},
			map[string][]string{"y": {"batch", ""}}},
	} {
		t.Run(c.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, c.file))
			if err != nil {
				t.Fatal(err)
			}
			g, err := readGraphDims(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(g.inputs, c.inputs) || !reflect.DeepEqual(g.outputs, c.outputs) {
				t.Errorf("got inputs %q outputs %q, want %q %q", g.inputs, g.outputs, c.inputs, c.outputs)
			}
		})
	}
}

func TestReadGraphDimsMalformed(t *testing.T) {
	good := identityModel(tensorValueInfo("x", onnxFloat, "batch"), tensorValueInfo("y", onnxFloat, "batch"))
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"not protobuf", []byte("this is not an onnx model")},
		{"truncated", good[:len(good)-3]},
		{"length past end", protoBuf(nil).bytes(fieldModelGraph, []byte{0x5a, 0x10, 1})},
		{"field number 0", []byte{0x02, 0x00}},
		{"group wire type", []byte{0x3b}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := readGraphDims(c.b); !errors.Is(err, errMalformedProto) {
				t.Errorf("readGraphDims = %v, want errMalformedProto", err)
			}
		})
	}
}

func FuzzReadGraphDims(f *testing.F) {
	f.Add(identityModel(tensorValueInfo("x", onnxFloat, "batch", 4), tensorValueInfo("y", onnxFloat, "batch", 4)))
	if b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "models", "seq_encoder.onnx")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = readGraphDims(b) // must not panic or hang
	})
}
