package worker

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// settlement is a request waiting for its result's PubAck (fut != nil), or
// one to hand back for redelivery after delay (fut == nil).
type settlement struct {
	r     *request
	fut   jetstream.PubAckFuture
	code  codec.Code
	delay time.Duration
}

// publish turns outcomes into result messages and publishes them
// asynchronously; settlements go to the acker in the same order.
func (w *Worker) publish(ctx context.Context, outcomes <-chan *outcome, settles chan<- *settlement) {
	for o := range outcomes {
		if o.requeue {
			settles <- &settlement{r: o.r, code: o.code, delay: w.cfg.RetryBackoff}
			continue
		}
		if o.retry && o.r.attempt < uint64(w.cfg.MaxAttempts) {
			settles <- &settlement{r: o.r, code: o.code, delay: w.backoff(o.r.attempt)}
			continue
		}
		if o.retry {
			o.msg = fmt.Sprintf("%s (attempt %d of %d)", o.msg, o.r.attempt, w.cfg.MaxAttempts)
		}
		msg, err := w.resultMsg(o)
		if err != nil {
			w.log.Error("encoding result", "model", w.cfg.Model, "request_id", o.r.meta.id, "err", err)
			msg, _ = w.resultMsg(&outcome{r: o.r, code: codec.CodeInternal, msg: fmt.Sprintf("encoding result: %v", err)})
			o.code = codec.CodeInternal
		}
		if max := w.nc.MaxPayload(); int64(len(msg.Data)+headerSize(msg.Header)) > max {
			msg, _ = w.resultMsg(&outcome{r: o.r, code: codec.CodeResourceExhausted,
				msg: fmt.Sprintf("result of %d bytes exceeds the server's max payload of %d bytes; send fewer rows per request", len(msg.Data), max)})
			o.code = codec.CodeResourceExhausted
		}
		w.metrics.observeResult(ctx, o.code)
		fut, err := w.js.PublishMsgAsync(msg, jetstream.WithMsgID(wire.ResultMsgID(o.r.meta.id)))
		if err != nil {
			w.log.Warn("publishing result", "model", w.cfg.Model, "request_id", o.r.meta.id, "err", err)
			settles <- &settlement{r: o.r, code: o.code, delay: w.backoff(o.r.attempt)}
			continue
		}
		settles <- &settlement{r: o.r, fut: fut, code: o.code}
	}
}

// resultMsg builds the result message of o.
func (w *Worker) resultMsg(o *outcome) (*nats.Msg, error) {
	r := o.r
	h := nats.Header{}
	h.Set(wire.HeaderRequestID, r.meta.id)
	h.Set(wire.HeaderStatus, string(o.code))
	h.Set(wire.HeaderModel, w.cfg.Model)
	h.Set(wire.HeaderModelVersion, w.cfg.ModelVersion)
	h.Set(wire.HeaderEngine, w.engineID)
	h.Set(wire.HeaderQueueMs, strconv.FormatFloat(float64(o.queue.Microseconds())/1000, 'f', 3, 64))
	h.Set(wire.HeaderComputeMs, strconv.FormatFloat(float64(o.compute.Microseconds())/1000, 'f', 3, 64))
	if r.meta.job != "" {
		h.Set(wire.HeaderJob, r.meta.job)
	}
	w.prop.Inject(r.ctx, wire.HeaderCarrier(h))
	msg := &nats.Msg{Subject: r.subject, Header: h}
	if o.code != codec.CodeOK {
		h.Set(wire.HeaderError, truncate(o.msg, 4096))
		h.Set(wire.HeaderRows, "0")
		return msg, nil
	}
	h.Set(wire.HeaderRows, strconv.Itoa(r.rows))
	// Encode straight into the message's own buffer: it is handed to the
	// async publisher and must not be reused.
	size := 1024
	for _, t := range o.outputs {
		size += len(t.Data) + 64
	}
	data, err := codec.EncodeResultBytes(make([]byte, 0, size), o.outputs, r.req.IDs)
	if err != nil {
		return nil, err
	}
	msg.Data = data
	return msg, nil
}

func headerSize(h nats.Header) int {
	n := 12 // "NATS/1.0\r\n" + final "\r\n"
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// backoff is the redelivery delay after a transient failure of the given
// attempt: RetryBackoff doubled per attempt, at most 30s.
func (w *Worker) backoff(attempt uint64) time.Duration {
	d := w.cfg.RetryBackoff
	for i := uint64(1); i < attempt && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// settle waits for each result's PubAck, in publish order, and then acks
// the request (ok results), terminates it (error results) or naks it for
// redelivery (publish failed).
func (w *Worker) settle(ctx context.Context, settles <-chan *settlement) {
	for s := range settles {
		r := s.r
		switch {
		case s.fut == nil:
			w.handBack(r, s.delay, "transient failure")
		default:
			select {
			case <-s.fut.Ok():
				var err error
				if s.code == codec.CodeOK {
					w.stats.firstResult.CompareAndSwap(0, time.Now().UnixNano())
					err = r.msg.Ack()
				} else {
					err = r.msg.Term()
				}
				if err != nil {
					w.log.Warn("acking request", "model", w.cfg.Model, "request_id", r.meta.id, "err", err)
				}
				r.span.SetAttributes(attribute.String("jetinfer.status", string(s.code)))
				if s.code != codec.CodeOK {
					r.span.SetStatus(codes.Error, string(s.code))
				}
			case err := <-s.fut.Err():
				w.log.Warn("result not stored", "model", w.cfg.Model, "request_id", r.meta.id, "err", err)
				w.handBack(r, w.backoff(r.attempt), "result publish failed")
			case <-ctx.Done():
				w.handBack(r, 0, "drain timeout")
			}
		}
		if r.req != nil {
			r.req.Release()
		}
		r.span.End()
		w.stats.inFlight.Add(-1)
		w.budget.Release(r.held)
	}
}

// handBack naks r so that it is redelivered after delay.
func (w *Worker) handBack(r *request, delay time.Duration, why string) {
	r.span.AddEvent("handed back", attributeReason(why))
	if err := r.msg.NakWithDelay(delay); err != nil {
		w.log.Warn("naking request", "model", w.cfg.Model, "request_id", r.meta.id, "err", err)
	}
}
