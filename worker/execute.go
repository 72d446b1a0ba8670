package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

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
	queue   time.Duration
	compute time.Duration
}

// execute runs one batch and sends one outcome per request.
func (w *Worker) execute(ctx context.Context, b *batch, outcomes chan<- *outcome) {
	start := time.Now()
	live := b.reqs[:0:0]
	for _, r := range b.reqs {
		if d := r.meta.deadline; !d.IsZero() && start.After(d) {
			outcomes <- &outcome{r: r, code: codec.CodeDeadlineExceeded, queue: start.Sub(r.received),
				msg: fmt.Sprintf("deadline %s passed while queued", d.Format(time.RFC3339Nano))}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	links := make([]trace.Link, len(live))
	rows := 0
	for i, r := range live {
		links[i] = trace.LinkFromContext(r.ctx)
		rows += r.rows
	}
	ctx, span := w.tracer.Start(ctx, "batch "+w.cfg.Model,
		trace.WithNewRoot(), trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.Int("jetinfer.batch.requests", len(live)),
			attribute.Int("jetinfer.batch.rows", rows),
			attribute.String("jetinfer.engine", w.engineID)))
	defer span.End()

	outputs, err := w.runRows(ctx, live, rows)
	compute := time.Since(start)
	if err != nil && len(live) > 1 {
		// One request may have broken the batch: run each alone so that
		// the others are unaffected and the culprit gets its own error.
		span.AddEvent("batch failed; retrying requests one by one", trace.WithAttributes(attribute.String("error", err.Error())))
		for _, r := range live {
			w.execute(ctx, &batch{reqs: []*request{r}, rows: r.rows}, outcomes)
		}
		return
	}
	w.metrics.observeBatch(ctx, len(live), rows, compute, err)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		r := live[0]
		o := &outcome{r: r, queue: start.Sub(r.received), compute: compute}
		if errors.Is(err, trt.ErrInvalidInput) {
			o.code, o.msg = codec.CodeInvalidArgument, fmt.Sprintf("running engine: %v", err)
		} else {
			o.code, o.msg, o.retry = codec.CodeInternal, fmt.Sprintf("running engine: %v", err), true
		}
		outcomes <- o
		return
	}
	w.stats.rows.Add(int64(rows))
	w.stats.busyNs.Add(int64(compute))
	off := 0
	for _, r := range live {
		outs := make([]trt.Tensor, len(outputs))
		for i, t := range outputs {
			rowBytes := len(t.Data) / rows
			sh := t.Shape.Clone()
			sh[0] = int64(r.rows)
			outs[i] = trt.Tensor{Name: t.Name, DType: t.DType, Shape: sh,
				Data: t.Data[off*rowBytes : (off+r.rows)*rowBytes : (off+r.rows)*rowBytes]}
		}
		off += r.rows
		w.metrics.observeQueue(ctx, start.Sub(r.received))
		w.stats.queueNs.Add(int64(start.Sub(r.received)))
		w.stats.queued.Add(1)
		outcomes <- &outcome{r: r, code: codec.CodeOK, outputs: outs, queue: start.Sub(r.received), compute: compute}
	}
}

// runRows gathers the requests' rows into batch tensors and runs the
// engine, in chunks of at most maxBatch rows. It returns one tensor per
// engine output holding all rows in request order.
func (w *Worker) runRows(ctx context.Context, reqs []*request, rows int) ([]trt.Tensor, error) {
	inputs := make([]trt.Tensor, len(w.spec.Inputs))
	for i, in := range w.spec.Inputs {
		c0, _ := reqs[0].req.Column(in.Name)
		t := trt.Tensor{Name: in.Name, DType: c0.DType, Shape: append(trt.Shape{int64(rows)}, c0.RowShape...)}
		if len(reqs) == 1 {
			t.Data = c0.Data // zero-copy: the engine reads the message bytes
		} else {
			t.Data = make([]byte, 0, rows*c0.RowBytes())
			for _, r := range reqs {
				c, _ := r.req.Column(in.Name)
				t.Data = append(t.Data, c.Data...)
			}
		}
		inputs[i] = t
	}
	var outs []trt.Tensor
	for lo := 0; lo < rows; lo += w.maxBatch {
		hi := min(rows, lo+w.maxBatch)
		b := &trt.Batch{Inputs: make([]trt.Tensor, len(inputs)), Outputs: make([]trt.Tensor, len(w.spec.Outputs))}
		shapes := make(map[string]trt.Shape, len(inputs))
		for i, t := range inputs {
			rb := len(t.Data) / rows
			sh := t.Shape.Clone()
			sh[0] = int64(hi - lo)
			b.Inputs[i] = trt.Tensor{Name: t.Name, DType: t.DType, Shape: sh, Data: t.Data[lo*rb : hi*rb]}
			shapes[t.Name] = sh
		}
		p, err := w.spec.ProfileFor(shapes)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", trt.ErrInvalidInput, err)
		}
		b.Profile = p
		for i, o := range w.spec.Outputs {
			b.Outputs[i] = trt.Tensor{Name: o.Name, DType: o.DType}
			if rs := o.RowShape(); rs.IsConcrete() {
				sh := append(trt.Shape{int64(hi - lo)}, rs...)
				n, err := trt.ByteSize(o.DType, sh)
				if err != nil {
					return nil, fmt.Errorf("sizing output %q: %w", o.Name, err)
				}
				b.Outputs[i].Shape, b.Outputs[i].Data = sh, make([]byte, n)
			}
		}
		if err := w.engine.Run(ctx, b); err != nil {
			return nil, err
		}
		if outs == nil {
			outs = b.Outputs
			continue
		}
		for i := range outs {
			outs[i].Data = append(outs[i].Data, b.Outputs[i].Data...)
			outs[i].Shape[0] += b.Outputs[i].Shape[0]
		}
	}
	for _, o := range outs {
		if len(o.Shape) == 0 || o.Shape[0] != int64(rows) || len(o.Data)%rows != 0 {
			return nil, fmt.Errorf("engine output %q has shape %v for a batch of %d rows", o.Name, o.Shape, rows)
		}
	}
	return outs, nil
}
