package batcher

import (
	"fmt"
	"slices"
	"time"

	"github.com/jetinfer/jetinfer/trt"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultMaxDelay     = 5 * time.Millisecond
	DefaultPadMultiple  = 1
	DefaultBucketRatio  = 1.0 / 16
	DefaultCostMargin   = 0.1
	DefaultMaxPadding   = 0.1
	DefaultMaxQueueRows = 1 << 16
)

// Config tunes a Batcher. The zero value is usable: New fills defaults.
type Config struct {
	// MaxDelay bounds how long a row waits for a better batch. A row that
	// has waited MaxDelay is due: the next Next builds a batch around its
	// item. Below it, a batch is released early once its measured
	// efficiency is high enough (see the package doc). Default 5ms.
	MaxDelay time.Duration
	// PadMultiple: padded sequence lengths are multiples of it (or a
	// profile's min/max). Default 1; 8 suits TensorRT FP16/INT8 engines,
	// whose kernels prefer aligned shapes. Ignored when Buckets is set.
	PadMultiple int
	// BucketRatio bounds the relative gap between consecutive default
	// buckets: bucket lengths grow by PadMultiple or by this fraction,
	// whichever is larger, so that rounding a row up to its bucket wastes
	// at most about this fraction. Default 1/16. Ignored when Buckets is
	// set.
	BucketRatio float64
	// Buckets, when set, lists the only padded sequence lengths the
	// batcher uses (ascending; the largest must be at least the longest
	// row accepted). Useful when an engine was tuned for given lengths.
	Buckets []int
	// MaxPadding caps the fraction of a batch's positions that are
	// padding (positions past a row's length, and rows [Rows, Batch)).
	// The cost model alone would often merge a few short rows into a
	// batch of longer ones to save per-call overhead; the cap keeps
	// lengths apart instead (in docs/batching.md's simulation: padding
	// 7 % instead of 13 % for about 1 % more engine time and a lower p99)
	// and bounds memory spent on padding. A batch of one item's rows of
	// one bucket is always allowed. Default 0.1; 1 disables the cap.
	MaxPadding float64
	// CostMargin inflates predicted latencies in deadline decisions by
	// this fraction, so that engine jitter does not turn a deadline that
	// was planned to be met into a late result. Default 0.1; negative
	// means 0.
	CostMargin float64
	// MaxQueueRows bounds the rows queued and not yet planned; Add returns
	// ErrQueueFull beyond it. Default 65536.
	MaxQueueRows int
	// Masks names inputs that the batcher fills itself: 1 at real
	// positions of a row, 0 at padded positions and in padding rows. Such
	// inputs must have the sequence dimension.
	Masks []string
	// Lengths names inputs that the batcher fills itself with each row's
	// sequence length (0 for padding rows); shape [batch] or [batch, 1],
	// dtype int32, int64, float32 or float64.
	Lengths []string
	// PadValues gives, per data input, the bytes of one element written
	// at padded positions (little-endian, len = dtype size). Default zero.
	PadValues map[string][]byte
}

func (c Config) withDefaults() Config {
	if c.MaxDelay == 0 {
		c.MaxDelay = DefaultMaxDelay
	}
	if c.PadMultiple == 0 {
		c.PadMultiple = DefaultPadMultiple
	}
	if c.MaxQueueRows == 0 {
		c.MaxQueueRows = DefaultMaxQueueRows
	}
	if c.BucketRatio == 0 {
		c.BucketRatio = DefaultBucketRatio
	}
	if c.MaxPadding == 0 {
		c.MaxPadding = DefaultMaxPadding
	}
	if c.CostMargin == 0 {
		c.CostMargin = DefaultCostMargin
	}
	c.CostMargin = max(c.CostMargin, 0)
	return c
}

// Validate reports the first setting that is out of range. It checks
// Config on its own; New also checks it against the engine's Spec.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.MaxDelay < 0 {
		return fmt.Errorf("max delay %v is negative", c.MaxDelay)
	}
	if c.PadMultiple < 1 {
		return fmt.Errorf("pad multiple %d is below 1", c.PadMultiple)
	}
	if c.MaxPadding < 0 || c.MaxPadding > 1 {
		return fmt.Errorf("max padding %g is outside [0, 1]", c.MaxPadding)
	}
	if c.BucketRatio < 0 {
		return fmt.Errorf("bucket ratio %g is negative", c.BucketRatio)
	}
	if c.MaxQueueRows < 1 {
		return fmt.Errorf("max queue rows %d is below 1", c.MaxQueueRows)
	}
	if !slices.IsSorted(c.Buckets) {
		return fmt.Errorf("buckets %v are not ascending", c.Buckets)
	}
	for i, b := range c.Buckets {
		if b < 1 || (i > 0 && b == c.Buckets[i-1]) {
			return fmt.Errorf("bucket %d in %v is not a distinct positive length", b, c.Buckets)
		}
	}
	for _, m := range c.Masks {
		if slices.Contains(c.Lengths, m) {
			return fmt.Errorf("input %q is named both as a mask and as a length", m)
		}
	}
	return nil
}

func (c Config) validateFor(spec trt.Spec) error {
	for _, names := range [][]string{c.Masks, c.Lengths} {
		for _, n := range names {
			if _, ok := spec.Input(n); !ok {
				return fmt.Errorf("generated input %q is not an engine input", n)
			}
		}
	}
	for n, v := range c.PadValues {
		in, ok := spec.Input(n)
		if !ok {
			return fmt.Errorf("pad value for %q: not an engine input", n)
		}
		if len(v) != in.DType.Size() {
			return fmt.Errorf("pad value for %q has %d bytes, %v needs %d", n, len(v), in.DType, in.DType.Size())
		}
	}
	return nil
}
