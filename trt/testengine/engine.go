package testengine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jetinfer/jetinfer/trt"
)

// Defaults of Config: the digits model's IO.
const (
	DefaultInput       = "pixels"
	DefaultOutput      = "logits"
	DefaultOutputWidth = 10
	DefaultMaxBatch    = 64
)

// DefaultRowShape is the default shape of one input row.
func DefaultRowShape() trt.Shape { return trt.Shape{8, 8} }

// DeviceName is the Device().Name of every test engine, so that result
// headers and logs say plainly that no real model ran.
const DeviceName = "jetinfer test engine (pure Go)"

// Config shapes a test engine. Zero fields take the defaults above.
type Config struct {
	// Input and Output name the one input and the one output tensor.
	Input, Output string
	// RowShape is the shape of one input row (fixed; no dynamic dims).
	RowShape trt.Shape
	// OutputWidth is the number of float32 values per output row.
	OutputWidth int
	// MaxBatch is the largest batch of the engine's one profile.
	MaxBatch int
	// Latency delays every Run call (see Engine.SetLatency).
	Latency time.Duration
}

func (c Config) withDefaults() Config {
	if c.Input == "" {
		c.Input = DefaultInput
	}
	if c.Output == "" {
		c.Output = DefaultOutput
	}
	if len(c.RowShape) == 0 {
		c.RowShape = DefaultRowShape()
	}
	if c.OutputWidth == 0 {
		c.OutputWidth = DefaultOutputWidth
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	return c
}

// Call is one Run call as a Fault sees it.
type Call struct {
	// N counts the calls since the fault was set, from 1.
	N int64
	// Batch is the batch being run; a Fault must not modify it.
	Batch *trt.Batch
}

// Fault decides the outcome of one Run call before the engine computes:
// a nil error lets the call compute, any other error is what Run returns
// (wrapped; errors.Is sees it). A Fault may block, and should then return
// ctx.Err() when ctx ends. It is called from Run's goroutine, so from
// several goroutines at once.
type Fault func(ctx context.Context, c Call) error

// Stats are the engine's counters since New or the last ResetStats.
type Stats struct {
	// Calls is the number of Run calls, failed ones included.
	Calls int64
	// Failed is the number of calls that returned an error.
	Failed int64
	// Rows is the number of batch rows computed (padding rows included).
	Rows int64
	// MaxBatchRows is the largest batch computed.
	MaxBatchRows int64
	// Running is the number of calls inside Run now.
	Running int64
}

// Engine is the test engine. Create it with New.
type Engine struct {
	cfg  Config
	spec trt.Spec
	rowN int // input elements per row

	mu         sync.Mutex // guards fault, faultCalls and latency
	fault      Fault
	faultCalls int64
	latency    time.Duration

	calls, failed, rows, maxRows, running atomic.Int64
	closed                                atomic.Bool
}

var (
	_ trt.Engine = (*Engine)(nil)
	// errClosed is returned by Run after Close.
	errClosed = errors.New("test engine closed")
)

// New returns a test engine shaped by cfg.
func New(cfg Config) (*Engine, error) {
	cfg = cfg.withDefaults()
	if cfg.MaxBatch < 1 || cfg.OutputWidth < 1 || cfg.Latency < 0 {
		return nil, fmt.Errorf("test engine config: max batch %d and output width %d must be positive, latency %v not negative",
			cfg.MaxBatch, cfg.OutputWidth, cfg.Latency)
	}
	n, err := cfg.RowShape.NumElements(1 << 24)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("test engine config: row shape %v must be concrete and non-empty: %w", cfg.RowShape, err)
	}
	if cfg.Input == cfg.Output {
		return nil, fmt.Errorf("test engine config: input and output are both named %q", cfg.Input)
	}
	in := append(trt.Shape{trt.Dynamic}, cfg.RowShape...)
	shape := func(b int64) trt.Shape { return append(trt.Shape{b}, cfg.RowShape...) }
	e := &Engine{
		cfg:  cfg,
		rowN: int(n),
		spec: trt.Spec{
			Inputs:  []trt.TensorDesc{{Name: cfg.Input, DType: trt.Float32, Shape: in}},
			Outputs: []trt.TensorDesc{{Name: cfg.Output, DType: trt.Float32, Shape: trt.Shape{trt.Dynamic, int64(cfg.OutputWidth)}}},
			Profiles: []trt.Profile{{
				Min: map[string]trt.Shape{cfg.Input: shape(1)},
				Opt: map[string]trt.Shape{cfg.Input: shape(int64(max(1, cfg.MaxBatch/2)))},
				Max: map[string]trt.Shape{cfg.Input: shape(int64(cfg.MaxBatch))},
			}},
		},
		latency: cfg.Latency,
	}
	return e, nil
}

// Spec returns a copy of the engine's spec.
func (e *Engine) Spec() trt.Spec {
	s := e.spec
	s.Inputs = cloneDescs(s.Inputs)
	s.Outputs = cloneDescs(s.Outputs)
	s.Profiles = make([]trt.Profile, len(e.spec.Profiles))
	for i, p := range e.spec.Profiles {
		s.Profiles[i] = trt.Profile{Min: cloneShapes(p.Min), Opt: cloneShapes(p.Opt), Max: cloneShapes(p.Max)}
	}
	return s
}

func cloneDescs(ds []trt.TensorDesc) []trt.TensorDesc {
	out := make([]trt.TensorDesc, len(ds))
	for i, d := range ds {
		out[i] = trt.TensorDesc{Name: d.Name, DType: d.DType, Shape: d.Shape.Clone()}
	}
	return out
}

func cloneShapes(m map[string]trt.Shape) map[string]trt.Shape {
	out := make(map[string]trt.Shape, len(m))
	for k, v := range m {
		out[k] = v.Clone()
	}
	return out
}

// Device reports a CPU device named DeviceName.
func (e *Engine) Device() trt.Device { return trt.Device{Kind: "cpu", Name: DeviceName} }

// Close makes later Run calls fail. No Run may be in flight.
func (e *Engine) Close() error {
	e.closed.Store(true)
	return nil
}

// SetFault makes f decide every later Run call (nil: none) and restarts
// the call count that f sees.
func (e *Engine) SetFault(f Fault) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fault, e.faultCalls = f, 0
}

// SetLatency makes every later Run call wait d before it computes (or
// until its context ends).
func (e *Engine) SetLatency(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.latency = d
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	return Stats{Calls: e.calls.Load(), Failed: e.failed.Load(), Rows: e.rows.Load(),
		MaxBatchRows: e.maxRows.Load(), Running: e.running.Load()}
}

// ResetStats sets the counters to zero (Running excepted), for example
// once a worker's warm-up measurements are over.
func (e *Engine) ResetStats() {
	e.calls.Store(0)
	e.failed.Store(0)
	e.rows.Store(0)
	e.maxRows.Store(0)
}

// Run checks b against the spec (an error wrapping trt.ErrInvalidInput
// when it does not fit), waits the latency, consults the fault, and then
// writes Compute of every input row into the output, into b.Outputs[0]'s
// buffer when it has the exact size.
func (e *Engine) Run(ctx context.Context, b *trt.Batch) (err error) {
	e.calls.Add(1)
	e.running.Add(1)
	defer func() {
		e.running.Add(-1)
		if err != nil {
			e.failed.Add(1)
		}
	}()
	if e.closed.Load() {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rows, err := e.check(b)
	if err != nil {
		return fmt.Errorf("test engine: %w: %w", trt.ErrInvalidInput, err)
	}
	e.mu.Lock()
	latency, fault := e.latency, e.fault
	e.faultCalls++
	n := e.faultCalls
	e.mu.Unlock()
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if fault != nil {
		if err := fault(ctx, Call{N: n, Batch: b}); err != nil {
			return fmt.Errorf("test engine call %d: %w", n, err)
		}
	}
	width := e.cfg.OutputWidth
	size := rows * width * 4
	if len(b.Outputs) == 0 {
		b.Outputs = make([]trt.Tensor, 1)
	}
	out := &b.Outputs[0]
	if len(out.Data) != size {
		out.Data = make([]byte, size)
	}
	out.Name, out.DType, out.Shape = e.cfg.Output, trt.Float32, trt.Shape{int64(rows), int64(width)}
	in := b.Inputs[0].Data
	x := make([]float32, e.rowN)
	y := make([]float32, width)
	for r := range rows {
		decode(x, in[r*e.rowN*4:])
		Compute(y, x)
		encode(out.Data[r*width*4:], y)
	}
	e.rows.Add(int64(rows))
	for {
		m := e.maxRows.Load()
		if int64(rows) <= m || e.maxRows.CompareAndSwap(m, int64(rows)) {
			break
		}
	}
	return nil
}

// check validates b and returns its row count.
func (e *Engine) check(b *trt.Batch) (int, error) {
	if b == nil {
		return 0, errors.New("nil batch")
	}
	if b.Profile < 0 || b.Profile >= len(e.spec.Profiles) {
		return 0, fmt.Errorf("profile %d out of range [0,%d)", b.Profile, len(e.spec.Profiles))
	}
	if len(b.Inputs) != 1 {
		return 0, fmt.Errorf("%d inputs, want 1 (%s)", len(b.Inputs), e.cfg.Input)
	}
	if len(b.Outputs) != 0 && len(b.Outputs) != 1 {
		return 0, fmt.Errorf("%d outputs, want 0 or 1", len(b.Outputs))
	}
	in := b.Inputs[0]
	desc := e.spec.Inputs[0]
	if in.Name != desc.Name || in.DType != desc.DType || !desc.Shape.Matches(in.Shape) {
		return 0, fmt.Errorf("input %q %v %v does not match %q %v %v", in.Name, in.DType, in.Shape, desc.Name, desc.DType, desc.Shape)
	}
	if !e.spec.Profiles[b.Profile].Contains(desc.Name, in.Shape) {
		return 0, fmt.Errorf("input shape %v outside profile %d", in.Shape, b.Profile)
	}
	size, err := trt.ByteSize(in.DType, in.Shape)
	if err != nil || len(in.Data) != size {
		return 0, fmt.Errorf("input %q holds %d bytes, shape %v needs %d", in.Name, len(in.Data), in.Shape, size)
	}
	return int(in.Shape[0]), nil
}

// Compute is the engine's function of one row: it fills out from the
// input row in. Every output value depends on every input value and its
// position, so two different rows give different outputs:
//
//	out[k] = k + Σ_i in[i] · w(i,k),   w(i,k) = ((7·i + 13·k) mod 23 − 11) / 8
//
// Tests call it to compute the result they expect, which the engine
// produces bit for bit.
func Compute(out, in []float32) {
	for k := range out {
		s := float32(k)
		for i, v := range in {
			s += v * float32((7*i+13*k)%23-11) / 8
		}
		out[k] = s
	}
}

func decode(dst []float32, b []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

func encode(dst []byte, v []float32) {
	for i, f := range v {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(f))
	}
}
