package tensorrt

import (
	"fmt"

	"github.com/jetinfer/jetinfer/trt"
)

// Code classifies a failure reported by the shim (JT_ERR_* in shim.h).
type Code int32

// Shim status codes.
const (
	CodeOK          Code = 0
	CodeInvalid     Code = 1 // the request is wrong (e.g. a shape outside the profile)
	CodeTensorRT    Code = 2 // TensorRT refused or failed; Msg carries its log lines
	CodeCUDA        Code = 3 // a CUDA call failed; Error.CUDA holds cudaError_t
	CodeUnsupported Code = 4 // valid, but not supported by the shim or this TensorRT
	CodeInternal    Code = 5 // a C++ exception or broken invariant
	CodeNoMemory    Code = 6 // host allocation failed
	CodeCapacity    Code = 7 // a staging buffer was too small
)

var codeNames = map[Code]string{
	CodeOK: "ok", CodeInvalid: "invalid", CodeTensorRT: "tensorrt", CodeCUDA: "cuda",
	CodeUnsupported: "unsupported", CodeInternal: "internal", CodeNoMemory: "no memory",
	CodeCapacity: "capacity",
}

func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return fmt.Sprintf("code(%d)", int32(c))
}

// Error is a failure reported by the TensorRT shim.
type Error struct {
	Op   string // the Go-side operation, e.g. "deserializing the plan"
	Code Code
	CUDA int    // cudaError_t when Code is CodeCUDA
	Msg  string // what failed, followed by what TensorRT logged during the call
	// DeviceLost: the shim classified the failure as a sticky CUDA error
	// (jc_sticky): the GPU context is unusable for the rest of the
	// process. Such an Error matches trt.ErrDeviceLost.
	DeviceLost bool
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Op, e.Msg) }

// Is reports whether target is trt.ErrInvalidInput and the shim blamed the
// request (CodeInvalid), target is trt.ErrDeviceLost and the device is
// lost, or target is an *Error with the same Code.
func (e *Error) Is(target error) bool {
	switch target {
	case trt.ErrInvalidInput:
		return e.Code == CodeInvalid
	case trt.ErrDeviceLost:
		return e.DeviceLost
	}
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// FormatFullVersion renders a version number as FormatVersion does, with
// the build number appended: "major.minor.patch.build".
func FormatFullVersion(v, build int) string {
	return fmt.Sprintf("%s.%d", FormatVersion(v), build)
}

// FormatVersion renders a TensorRT version number (10000*major +
// 100*minor + patch, as getInferLibVersion returns it) as "major.minor.patch".
func FormatVersion(v int) string {
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}
