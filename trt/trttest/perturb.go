package trttest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// PerturbONNX returns a copy of an ONNX model whose largest float32
// weight tensor (an initializer stored as raw_data) is multiplied by
// factor: a real model that loads and runs like the original but computes
// different outputs, for tests of accuracy checks. The tensor keeps its
// byte length, so no protobuf length changes and the copy is edited in
// place. It returns the perturbed initializer's name too.
func PerturbONNX(model []byte, factor float32) ([]byte, string, error) {
	out := append([]byte(nil), model...)
	var best, bestName []byte
	// ModelProto.graph (7) → GraphProto.initializer (5) → TensorProto:
	// data_type (2, 1 = FLOAT), name (8), raw_data (9).
	err := protoFields(out, func(num uint64, payload []byte) error {
		if num != 7 {
			return nil
		}
		return protoFields(payload, func(num uint64, tensor []byte) error {
			if num != 5 {
				return nil
			}
			var dtype uint64
			var raw, name []byte
			err := protoFieldsVarint(tensor, func(num, v uint64) {
				if num == 2 {
					dtype = v
				}
			}, func(num uint64, b []byte) {
				switch num {
				case 8:
					name = b
				case 9:
					raw = b
				}
			})
			if err != nil {
				return err
			}
			if dtype == 1 && len(raw) > len(best) && len(raw)%4 == 0 {
				best, bestName = raw, name
			}
			return nil
		})
	})
	if err != nil {
		return nil, "", err
	}
	if best == nil {
		return nil, "", errors.New("perturbing ONNX model: no float32 initializer stored as raw_data")
	}
	for i := 0; i+4 <= len(best); i += 4 {
		v := math.Float32frombits(binary.LittleEndian.Uint32(best[i:]))
		binary.LittleEndian.PutUint32(best[i:], math.Float32bits(v*factor))
	}
	return out, string(bestName), nil
}

// protoFields calls fn with every length-delimited field of the protobuf
// message b (payloads alias b) and skips the others.
func protoFields(b []byte, fn func(num uint64, payload []byte) error) error {
	var cbErr error
	err := protoFieldsVarint(b, func(uint64, uint64) {}, func(num uint64, p []byte) {
		if cbErr == nil {
			cbErr = fn(num, p)
		}
	})
	if err != nil {
		return err
	}
	return cbErr
}

// protoFieldsVarint walks the fields of the protobuf message b, calling
// varint for varint fields and bytes for length-delimited ones.
func protoFieldsVarint(b []byte, varint func(num, v uint64), bytes func(num uint64, payload []byte)) error {
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return errors.New("perturbing ONNX model: malformed protobuf key")
		}
		b = b[n:]
		num, wire := key>>3, key&7
		switch wire {
		case 0:
			v, n := binary.Uvarint(b)
			if n <= 0 {
				return fmt.Errorf("perturbing ONNX model: malformed varint in field %d", num)
			}
			varint(num, v)
			b = b[n:]
		case 1:
			if len(b) < 8 {
				return errors.New("perturbing ONNX model: truncated fixed64")
			}
			b = b[8:]
		case 5:
			if len(b) < 4 {
				return errors.New("perturbing ONNX model: truncated fixed32")
			}
			b = b[4:]
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return fmt.Errorf("perturbing ONNX model: malformed length of field %d", num)
			}
			bytes(num, b[n:n+int(l)])
			b = b[n+int(l):]
		default:
			return fmt.Errorf("perturbing ONNX model: unsupported wire type %d", wire)
		}
	}
	return nil
}
