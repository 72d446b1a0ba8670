package worker

import (
	"time"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
)

// outcome is how one request ends: a result to publish (ok or error), or
// a transient failure to retry.
type outcome struct {
	r       *request
	code    codec.Code // codec.CodeOK for a successful result
	msg     string     // error message for error results
	outputs []trt.Tensor
	retry   bool // transient failure: nak with delay unless attempts are exhausted
	requeue bool // no room to batch it now: hand back without counting an attempt
	queue   time.Duration
	compute time.Duration
}
