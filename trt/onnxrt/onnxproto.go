package onnxrt

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// This file reads the one thing ONNX Runtime's C API does not report: the
// symbolic names (dim_param) of dynamic dimensions of graph inputs and
// outputs. ONNX Runtime reports such dimensions as -1; their names tell
// which output dimensions follow which input dimensions ("seq" in both x and
// y), and let Options.DimRanges be keyed by name.
//
// It is a minimal reader of the protobuf wire format: it walks ModelProto →
// GraphProto → ValueInfoProto → TypeProto.Tensor → TensorShapeProto and skips
// everything else (initializers included) by length, so it costs little even
// for large models. Field numbers are those of onnx.proto3.

const (
	fieldModelGraph     = 7  // ModelProto.graph
	fieldGraphInput     = 11 // GraphProto.input
	fieldGraphOutput    = 12 // GraphProto.output
	fieldValueInfoName  = 1  // ValueInfoProto.name
	fieldValueInfoType  = 2  // ValueInfoProto.type
	fieldTypeTensor     = 1  // TypeProto.tensor_type
	fieldTensorShape    = 2  // TypeProto.Tensor.shape
	fieldShapeDim       = 1  // TensorShapeProto.dim
	fieldDimensionParam = 2  // TensorShapeProto.Dimension.dim_param
	wireVarint          = 0
	wireFixed64         = 1
	wireBytes           = 2
	wireFixed32         = 5
)

var errMalformedProto = errors.New("malformed ONNX protobuf")

// graphDims maps a graph input or output name to the dim_param of each of
// its dimensions ("" for a fixed or unnamed dimension).
type graphDims struct {
	inputs  map[string][]string
	outputs map[string][]string
}

// protoField is one decoded protobuf field: num and wire type, the value of
// a varint, or the payload of a length-delimited field.
type protoField struct {
	num   uint64
	wire  uint64
	value uint64
	data  []byte
}

// nextField decodes the field at the start of b and returns it with the
// remaining bytes.
func nextField(b []byte) (protoField, []byte, error) {
	key, n := binary.Uvarint(b)
	if n <= 0 {
		return protoField{}, nil, fmt.Errorf("reading field key: %w", errMalformedProto)
	}
	b = b[n:]
	f := protoField{num: key >> 3, wire: key & 7}
	if f.num == 0 {
		return protoField{}, nil, fmt.Errorf("reading field number 0: %w", errMalformedProto)
	}
	switch f.wire {
	case wireVarint:
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return protoField{}, nil, fmt.Errorf("reading varint of field %d: %w", f.num, errMalformedProto)
		}
		f.value = v
		return f, b[n:], nil
	case wireFixed64:
		if len(b) < 8 {
			return protoField{}, nil, fmt.Errorf("reading fixed64 field %d: %w", f.num, errMalformedProto)
		}
		return f, b[8:], nil
	case wireFixed32:
		if len(b) < 4 {
			return protoField{}, nil, fmt.Errorf("reading fixed32 field %d: %w", f.num, errMalformedProto)
		}
		return f, b[4:], nil
	case wireBytes:
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return protoField{}, nil, fmt.Errorf("reading length of field %d: %w", f.num, errMalformedProto)
		}
		b = b[n:]
		f.data = b[:l]
		return f, b[l:], nil
	default:
		return protoField{}, nil, fmt.Errorf("field %d has unsupported wire type %d: %w", f.num, f.wire, errMalformedProto)
	}
}

// eachField calls fn for every field of message b, in order.
func eachField(b []byte, fn func(protoField) error) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			return err
		}
		b = rest
	}
	return nil
}

// readGraphDims returns the dim_param names of the graph inputs and outputs
// of the serialized ModelProto model.
func readGraphDims(model []byte) (graphDims, error) {
	g := graphDims{inputs: map[string][]string{}, outputs: map[string][]string{}}
	var graph []byte
	err := eachField(model, func(f protoField) error {
		if f.num == fieldModelGraph && f.wire == wireBytes {
			graph = f.data
		}
		return nil
	})
	if err != nil {
		return g, fmt.Errorf("reading ModelProto: %w", err)
	}
	if graph == nil {
		return g, fmt.Errorf("reading ModelProto: no graph: %w", errMalformedProto)
	}
	err = eachField(graph, func(f protoField) error {
		if f.wire != wireBytes || (f.num != fieldGraphInput && f.num != fieldGraphOutput) {
			return nil
		}
		name, dims, err := readValueInfo(f.data)
		if err != nil {
			return err
		}
		if f.num == fieldGraphInput {
			g.inputs[name] = dims
		} else {
			g.outputs[name] = dims
		}
		return nil
	})
	if err != nil {
		return g, fmt.Errorf("reading GraphProto: %w", err)
	}
	return g, nil
}

// readValueInfo decodes a ValueInfoProto into its name and the dim_param
// of each dimension of its tensor type (nil for a non-tensor type).
func readValueInfo(b []byte) (string, []string, error) {
	var name string
	var dims []string
	err := eachField(b, func(f protoField) error {
		if f.wire != wireBytes {
			return nil
		}
		switch f.num {
		case fieldValueInfoName:
			name = string(f.data)
		case fieldValueInfoType:
			return eachField(f.data, func(t protoField) error {
				if t.num != fieldTypeTensor || t.wire != wireBytes {
					return nil
				}
				return eachField(t.data, func(tt protoField) error {
					if tt.num != fieldTensorShape || tt.wire != wireBytes {
						return nil
					}
					return eachField(tt.data, func(s protoField) error {
						if s.num != fieldShapeDim || s.wire != wireBytes {
							return nil
						}
						param := ""
						err := eachField(s.data, func(d protoField) error {
							if d.num == fieldDimensionParam && d.wire == wireBytes {
								param = string(d.data)
							}
							return nil
						})
						dims = append(dims, param)
						return err
					})
				})
			})
		}
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("reading ValueInfoProto %q: %w", name, err)
	}
	return name, dims, nil
}
