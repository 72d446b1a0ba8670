package main

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// mlpModel returns an ONNX model (opset 17) of a ReLU MLP with random
// weights: input "x" float32 [batch, in], hidden layers of width hidden,
// output "y" float32 [batch, out]. It is the compute-bound model of the
// benchmark: its cost per row is about 2·(in·hidden + (layers-1)·hidden² +
// hidden·out) flops, chosen so that a 64-row batch costs milliseconds
// rather than microseconds. The same seed gives the same bytes.
//
// The protobuf is written field by field (onnx.proto3 field numbers), so
// that the benchmark needs no generated ONNX bindings and no Python.
func mlpModel(in, hidden, out, layers int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var graph []byte
	prev, width := "x", in
	for l := range layers {
		next := hidden
		if l == layers-1 {
			next = out
		}
		w, b := "w"+strconv.Itoa(l), "b"+strconv.Itoa(l)
		// He-style scale keeps activations in range through the layers.
		graph = protowire.AppendTag(graph, 5, protowire.BytesType) // GraphProto.initializer
		graph = protowire.AppendBytes(graph, tensorProto(w, []int64{int64(width), int64(next)}, randomFloats(rng, width*next, math.Sqrt(2/float64(width)))))
		graph = protowire.AppendTag(graph, 5, protowire.BytesType)
		graph = protowire.AppendBytes(graph, tensorProto(b, []int64{int64(next)}, randomFloats(rng, next, 0.01)))
		mm, add := "h"+strconv.Itoa(l)+"_mm", "h"+strconv.Itoa(l)+"_add"
		graph = appendNode(graph, "MatMul", []string{prev, w}, mm)
		if l == layers-1 {
			graph = appendNode(graph, "Add", []string{mm, b}, "y")
			break
		}
		graph = appendNode(graph, "Add", []string{mm, b}, add)
		relu := "h" + strconv.Itoa(l)
		graph = appendNode(graph, "Relu", []string{add}, relu)
		prev, width = relu, next
	}
	graph = protowire.AppendTag(graph, 2, protowire.BytesType) // GraphProto.name
	graph = protowire.AppendString(graph, "mlp")
	graph = protowire.AppendTag(graph, 11, protowire.BytesType) // GraphProto.input
	graph = protowire.AppendBytes(graph, valueInfo("x", in))
	graph = protowire.AppendTag(graph, 12, protowire.BytesType) // GraphProto.output
	graph = protowire.AppendBytes(graph, valueInfo("y", out))

	var opset []byte
	opset = protowire.AppendTag(opset, 2, protowire.VarintType) // OperatorSetIdProto.version
	opset = protowire.AppendVarint(opset, 17)

	var model []byte
	model = protowire.AppendTag(model, 1, protowire.VarintType) // ModelProto.ir_version
	model = protowire.AppendVarint(model, 8)
	model = protowire.AppendTag(model, 2, protowire.BytesType) // ModelProto.producer_name
	model = protowire.AppendString(model, "jetinfer cmd/ceiling")
	model = protowire.AppendTag(model, 7, protowire.BytesType) // ModelProto.graph
	model = protowire.AppendBytes(model, graph)
	model = protowire.AppendTag(model, 8, protowire.BytesType) // ModelProto.opset_import
	model = protowire.AppendBytes(model, opset)
	return model
}

// randomFloats returns n little-endian float32 values, normal with the
// given standard deviation.
func randomFloats(rng *rand.Rand, n int, std float64) []byte {
	b := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(rng.NormFloat64()*std)))
	}
	return b
}

// tensorProto is a float32 TensorProto with raw little-endian data.
func tensorProto(name string, dims []int64, raw []byte) []byte {
	var t []byte
	for _, d := range dims {
		t = protowire.AppendTag(t, 1, protowire.VarintType) // dims
		t = protowire.AppendVarint(t, uint64(d))
	}
	t = protowire.AppendTag(t, 2, protowire.VarintType) // data_type
	t = protowire.AppendVarint(t, 1)                    // FLOAT
	t = protowire.AppendTag(t, 8, protowire.BytesType)  // name
	t = protowire.AppendString(t, name)
	t = protowire.AppendTag(t, 9, protowire.BytesType) // raw_data
	return protowire.AppendBytes(t, raw)
}

// appendNode appends a NodeProto (GraphProto.node) to graph.
func appendNode(graph []byte, op string, inputs []string, output string) []byte {
	var n []byte
	for _, in := range inputs {
		n = protowire.AppendTag(n, 1, protowire.BytesType)
		n = protowire.AppendString(n, in)
	}
	n = protowire.AppendTag(n, 2, protowire.BytesType)
	n = protowire.AppendString(n, output)
	n = protowire.AppendTag(n, 3, protowire.BytesType)
	n = protowire.AppendString(n, output+"_"+op)
	n = protowire.AppendTag(n, 4, protowire.BytesType)
	n = protowire.AppendString(n, op)
	graph = protowire.AppendTag(graph, 1, protowire.BytesType)
	return protowire.AppendBytes(graph, n)
}

// valueInfo is a ValueInfoProto of a float32 [batch, width] tensor.
func valueInfo(name string, width int) []byte {
	var batch, fixed []byte
	batch = protowire.AppendTag(batch, 2, protowire.BytesType) // Dimension.dim_param
	batch = protowire.AppendString(batch, "batch")
	fixed = protowire.AppendTag(fixed, 1, protowire.VarintType) // Dimension.dim_value
	fixed = protowire.AppendVarint(fixed, uint64(width))
	var shape []byte
	shape = protowire.AppendTag(shape, 1, protowire.BytesType)
	shape = protowire.AppendBytes(shape, batch)
	shape = protowire.AppendTag(shape, 1, protowire.BytesType)
	shape = protowire.AppendBytes(shape, fixed)
	var tensor []byte
	tensor = protowire.AppendTag(tensor, 1, protowire.VarintType) // elem_type
	tensor = protowire.AppendVarint(tensor, 1)                    // FLOAT
	tensor = protowire.AppendTag(tensor, 2, protowire.BytesType)  // shape
	tensor = protowire.AppendBytes(tensor, shape)
	var typ []byte
	typ = protowire.AppendTag(typ, 1, protowire.BytesType) // TypeProto.tensor_type
	typ = protowire.AppendBytes(typ, tensor)
	var vi []byte
	vi = protowire.AppendTag(vi, 1, protowire.BytesType)
	vi = protowire.AppendString(vi, name)
	vi = protowire.AppendTag(vi, 2, protowire.BytesType)
	return protowire.AppendBytes(vi, typ)
}
