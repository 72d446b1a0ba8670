package onnxrt

import (
	"errors"
	"fmt"
)

// Defaults applied by Runtime.Load to zero-valued Options fields.
const (
	DefaultIntraOpThreads = 1
	DefaultInterOpThreads = 1
	DefaultMaxBatch       = 64
	DefaultDimMin         = 1
	DefaultDimMax         = 4096
)

// ErrClosed is returned by Engine.Run after Engine.Close, and by
// Runtime.Load after Runtime.Close.
var ErrClosed = errors.New("onnxrt: closed")

// DimRange bounds one dynamic non-batch dimension in the engine's
// optimization profile. Opt is the preferred size; 0 means Max.
type DimRange struct {
	Min, Opt, Max int64
}

// Options configure one engine. The zero value is valid: one intra-op and
// one inter-op thread, batches of 1 to 64 rows, dynamic dimensions of 1 to
// 4096.
type Options struct {
	// IntraOpThreads is the size of ONNX Runtime's per-session thread pool
	// for parallelism inside one operator; 0 means 1. With 1 (the default)
	// a Run computes on the calling goroutine's thread alone, and a worker
	// gets parallelism from several concurrent Runs instead. ONNX Runtime's
	// own default (one thread per core, for every session) is never used.
	IntraOpThreads int
	// InterOpThreads is the size of the pool that runs independent
	// operators in parallel; 0 means 1. ONNX Runtime uses it only in
	// parallel execution mode, which this package does not enable.
	InterOpThreads int
	// MaxBatch is the largest batch the single optimization profile
	// advertises when the model's batch dimension is dynamic; 0 means 64.
	// Run rejects larger batches with trt.ErrInvalidInput.
	MaxBatch int
	// DimRanges bounds dynamic dimensions other than the batch dimension.
	// A dimension is looked up first as "input:index" (e.g. "x:1"), then by
	// its symbolic name in the model (its dim_param, e.g. "seq"); a
	// dimension found under neither gets [1, 4096].
	DimRanges map[string]DimRange
}

// withDefaults validates o and fills its zero fields.
func (o Options) withDefaults() (Options, error) {
	if o.IntraOpThreads < 0 || o.InterOpThreads < 0 {
		return o, fmt.Errorf("onnxrt: thread counts must not be negative (intra %d, inter %d)",
			o.IntraOpThreads, o.InterOpThreads)
	}
	if o.MaxBatch < 0 {
		return o, fmt.Errorf("onnxrt: MaxBatch %d is negative", o.MaxBatch)
	}
	if o.IntraOpThreads == 0 {
		o.IntraOpThreads = DefaultIntraOpThreads
	}
	if o.InterOpThreads == 0 {
		o.InterOpThreads = DefaultInterOpThreads
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	for k, r := range o.DimRanges {
		opt := r.Opt
		if opt == 0 {
			opt = r.Max
		}
		if r.Min < 1 || r.Max < r.Min || opt < r.Min || opt > r.Max {
			return o, fmt.Errorf("onnxrt: DimRanges[%q] = {Min:%d Opt:%d Max:%d} is not 1 <= Min <= Opt <= Max",
				k, r.Min, r.Opt, r.Max)
		}
	}
	return o, nil
}

// dimRange returns the range for dimension index of input, named param in
// the model ("" if unnamed).
func (o Options) dimRange(input string, index int, param string) DimRange {
	r, ok := o.DimRanges[fmt.Sprintf("%s:%d", input, index)]
	if !ok && param != "" {
		r, ok = o.DimRanges[param]
	}
	if !ok {
		r = DimRange{Min: DefaultDimMin, Max: DefaultDimMax}
	}
	if r.Opt == 0 {
		r.Opt = r.Max
	}
	return r
}
