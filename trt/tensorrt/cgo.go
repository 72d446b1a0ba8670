//go:build tensorrt && cgo

package tensorrt

/*
#cgo CFLAGS: -I${SRCDIR}/../cuda -I/usr/local/cuda/include
#cgo CXXFLAGS: -std=c++17 -I${SRCDIR}/../cuda -I/usr/local/cuda/include -I/usr/include/x86_64-linux-gnu
#cgo LDFLAGS: -L/usr/local/cuda/lib64 -lnvinfer -lnvinfer_plugin -lnvonnxparser -lcudart -lstdc++
#cgo noescape jt_context_enqueue
#cgo nocallback jt_context_enqueue
#cgo noescape jt_context_wait
#cgo nocallback jt_context_wait
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"log/slog"
	"unsafe"
)

// Available reports whether this binary was built with TensorRT.
const Available = true

func statusError(op string, st *C.jt_status) error {
	return &Error{
		Op:         op,
		Code:       Code(st.code),
		CUDA:       int(st.cuda_error),
		Msg:        cString(st.message[:]),
		DeviceLost: st.device_lost != 0,
	}
}

// cString copies a NUL-terminated C string out of a fixed array without
// C.GoString, so that status structs on the Go stack do not escape to the
// heap on every call.
func cString(b []C.char) string {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b))), n))
}

// LinkedVersion returns the full version of the libnvinfer this process
// loaded ("major.minor.patch.build", from getInferLibVersion and
// getInferLibBuildVersion).
func LinkedVersion() (string, error) {
	v, b := int(C.jt_linked_version()), int(C.jt_linked_build())
	if v <= 0 || b < 0 {
		return "", &Error{Op: "reading the TensorRT version", Code: CodeInternal, Msg: "getInferLibVersion failed"}
	}
	return FormatFullVersion(v, b), nil
}

// HeaderVersion returns the full version of the TensorRT headers the shim
// was compiled against ("major.minor.patch.build").
func HeaderVersion() string {
	return FormatFullVersion(int(C.jt_header_version()), int(C.jt_header_build()))
}

func setLogLevel(verbose bool) {
	lvl := C.int32_t(C.JT_LOG_WARNING)
	if verbose {
		lvl = C.JT_LOG_INFO
	}
	C.jt_log_set_level(lvl)
}

// drainLog moves the shim's queued TensorRT log lines into log. The queue
// is process-wide and thread-safe; concurrent drainers split the lines.
func drainLog(log *slog.Logger) {
	lines := make([]C.jt_log_line, 32)
	for {
		var dropped C.int64_t
		n := int(C.jt_log_drain(&lines[0], C.int32_t(len(lines)), &dropped))
		if dropped > 0 {
			log.Warn("TensorRT log lines dropped", "count", int64(dropped))
		}
		for _, l := range lines[:n] {
			lvl := slog.LevelDebug
			switch l.severity {
			case C.JT_LOG_INTERNAL_ERROR, C.JT_LOG_ERROR:
				lvl = slog.LevelError
			case C.JT_LOG_WARNING:
				lvl = slog.LevelWarn
			case C.JT_LOG_INFO:
				lvl = slog.LevelInfo
			}
			log.Log(context.Background(), lvl, cString(l.message[:]), "source", "tensorrt")
		}
		if n < len(lines) {
			return
		}
	}
}
