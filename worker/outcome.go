package worker

import (
	"time"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
)

// outcome is how one request ends in this worker: a result to publish (ok
// or error), or a hand-back for redelivery.
type outcome struct {
	r       *request
	code    codec.Code // codec.CodeOK for a successful result
	msg     string     // error message for error results
	outputs []trt.Tensor
	// handBack: nak the request so that it is redelivered after delay,
	// publishing nothing. reason says why (metrics, traces). Whether it
	// cost the request an attempt was decided before (attempts.fail).
	handBack bool
	delay    time.Duration
	reason   string
	queue    time.Duration
	compute  time.Duration
}
