package trt

import "fmt"

// DType is a tensor element type. The zero value is Invalid.
type DType uint8

// Element types understood by jetinfer. The set is the intersection of what
// Arrow can carry as fixed-width values and what TensorRT and ONNX Runtime
// accept as IO tensors.
const (
	Invalid DType = iota
	Float32
	Float16  // IEEE 754 binary16, kept as raw bits
	BFloat16 // bfloat16, kept as raw bits
	Float64
	Int8
	Uint8
	Int32
	Int64
	Bool // one byte per element, 0 or 1
)

var dtypeNames = [...]string{
	Invalid:  "invalid",
	Float32:  "float32",
	Float16:  "float16",
	BFloat16: "bfloat16",
	Float64:  "float64",
	Int8:     "int8",
	Uint8:    "uint8",
	Int32:    "int32",
	Int64:    "int64",
	Bool:     "bool",
}

var dtypeSizes = [...]int{
	Float32: 4, Float16: 2, BFloat16: 2, Float64: 8,
	Int8: 1, Uint8: 1, Int32: 4, Int64: 8, Bool: 1,
}

// String returns the lower-case name used in docs, headers and errors.
func (d DType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Size is the width of one element in bytes; 0 for Invalid or unknown types.
func (d DType) Size() int {
	if int(d) < len(dtypeSizes) {
		return dtypeSizes[d]
	}
	return 0
}

// Valid reports whether d is one of the defined element types.
func (d DType) Valid() bool { return d != Invalid && int(d) < len(dtypeNames) }

// ParseDType is the inverse of DType.String.
func ParseDType(s string) (DType, error) {
	for i, n := range dtypeNames {
		if i != int(Invalid) && n == s {
			return DType(i), nil
		}
	}
	return Invalid, fmt.Errorf("unknown dtype %q", s)
}
