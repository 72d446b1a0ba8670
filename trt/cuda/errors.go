package cuda

import (
	"errors"
	"fmt"

	"github.com/jetinfer/jetinfer/trt"
)

// Code classifies a failure of the C staging layer.
type Code int32

// Codes returned by the C staging layer (JC_* in jcuda.h).
const (
	CodeOK          Code = 0
	CodeCUDA        Code = 1 // a CUDA runtime call failed; Error.CUDA holds cudaError_t
	CodeInvalid     Code = 2 // bad argument
	CodeUnsupported Code = 3 // this build or device cannot do it
	CodeWork        Code = 4 // the work slot of a batch failed
)

// CUDA runtime error codes that this package interprets.
const (
	cudaErrorInsufficientDriver = 35
	cudaErrorNoDevice           = 100
	cudaErrorInvalidDevice      = 101
)

// ErrNoDevice matches errors caused by the absence of a usable CUDA device
// or driver.
var ErrNoDevice = errors.New("no usable CUDA device")

// Error is a failure reported by the C staging layer.
type Error struct {
	Op   string // the Go-side operation, e.g. "allocating pinned memory"
	Code Code
	CUDA int    // cudaError_t when Code is CodeCUDA
	Msg  string // the C side's message, naming the failing CUDA call
	// Sticky: CUDA is a sticky error (jc_sticky in jcuda.h, such as an
	// illegal address or a launch failure inside a kernel): the device's
	// context is unusable for the rest of the process.
	Sticky bool
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s", e.Op, e.Msg)
}

// Is reports whether target is ErrNoDevice and e was caused by a missing
// device or driver, whether target is trt.ErrDeviceLost and e is sticky,
// or whether target is an *Error with the same Code.
func (e *Error) Is(target error) bool {
	if target == trt.ErrDeviceLost {
		return e.Sticky
	}
	if target == ErrNoDevice {
		return e.Code == CodeCUDA && (e.CUDA == cudaErrorNoDevice ||
			e.CUDA == cudaErrorInsufficientDriver || e.CUDA == cudaErrorInvalidDevice)
	}
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}
