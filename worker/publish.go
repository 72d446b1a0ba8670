package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// settlement is what the settler does with one request: wait for its
// result's PubAck (fut), publish its result again after a failed publish
// (fut == nil, msg != nil), or hand it back for redelivery (handBack).
type settlement struct {
	r        *request
	fut      jetstream.PubAckFuture
	msg      *nats.Msg // the result message, kept for republishing
	pubErr   error     // why the asynchronous publish was refused
	code     codec.Code
	handBack bool
	delay    time.Duration
	reason   string
}

// publish turns outcomes into result messages and publishes them
// asynchronously; settlements go to the settler in the same order.
func (w *Worker) publish(ctx context.Context, outcomes <-chan *outcome, settles chan<- *settlement) {
	for o := range outcomes {
		if o.handBack {
			settles <- &settlement{r: o.r, handBack: true, delay: o.delay, reason: o.reason}
			continue
		}
		msg, err := w.resultMsg(o)
		if err != nil {
			w.log.Error("encoding result", "model", w.cfg.Model, "request_id", o.r.meta.id, "err", err)
			msg = w.errorResult(o.r, codec.CodeInternal, fmt.Sprintf("encoding result: %v", err))
			o.code = codec.CodeInternal
		}
		if max := w.nc.MaxPayload(); int64(len(msg.Data)+headerSize(msg.Header)) > max {
			msg = w.errorResult(o.r, codec.CodeResourceExhausted,
				fmt.Sprintf("result of %d bytes exceeds the server's max payload of %d bytes; send fewer rows per request", len(msg.Data), max))
			o.code = codec.CodeResourceExhausted
		}
		w.metrics.observeResult(ctx, o.code)
		fut, err := w.js.PublishMsgAsync(msg, jetstream.WithMsgID(wire.ResultMsgID(o.r.meta.id)))
		if err != nil {
			// Too many results await their PubAck (the result side is
			// slow or down): the settler publishes this one itself.
			settles <- &settlement{r: o.r, msg: msg, pubErr: err, code: o.code}
			continue
		}
		settles <- &settlement{r: o.r, fut: fut, msg: msg, code: o.code}
	}
}

// errorResult is the result message answering r with an error.
func (w *Worker) errorResult(r *request, code codec.Code, text string) *nats.Msg {
	msg, _ := w.resultMsg(&outcome{r: r, code: code, msg: text}) // error results encode no body
	return msg
}

// resultMsg builds the result message of o.
func (w *Worker) resultMsg(o *outcome) (*nats.Msg, error) {
	r := o.r
	h := nats.Header{}
	h.Set(wire.HeaderRequestID, r.meta.id)
	h.Set(wire.HeaderStatus, string(o.code))
	h.Set(wire.HeaderModel, w.cfg.Model)
	h.Set(wire.HeaderModelVersion, r.gen.version)
	h.Set(wire.HeaderEngine, r.gen.engineID)
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

// backoff is the redelivery delay after the n-th failed engine attempt:
// RetryBackoff doubled per failure, at most 30s.
func (w *Worker) backoff(n int) time.Duration {
	d := w.cfg.RetryBackoff
	for i := 1; i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

// settle waits for each result's PubAck, in publish order, and then acks
// the request (ok results) or terminates it (error results). A result the
// server did not store is published again, with the same Nats-Msg-Id,
// until it is stored: a result side that is down holds requests, it does
// not fail them. Hand-backs are naked with their delay.
func (w *Worker) settle(ctx context.Context, settles <-chan *settlement) {
	for s := range settles {
		r := s.r
		switch {
		case s.handBack:
			w.handBack(r, s.delay, s.reason)
		case s.fut == nil:
			w.republish(ctx, s, s.pubErr)
		default:
			select {
			case <-s.fut.Ok():
				w.resultSideUp()
				w.answered(r, s.code)
			case err := <-s.fut.Err():
				w.republish(ctx, s, err)
			case <-ctx.Done():
				w.handBack(r, 0, "drain timeout")
			}
		}
		w.release(r)
	}
}

// answered acks (ok) or terminates (error result) a request whose result
// is stored.
func (w *Worker) answered(r *request, code codec.Code) {
	var err error
	if code == codec.CodeOK {
		w.stats.firstResult.CompareAndSwap(0, time.Now().UnixNano())
		err = r.msg.Ack()
	} else {
		err = r.msg.Term()
	}
	if err != nil {
		// The result is stored: a redelivery finds it a duplicate.
		w.log.Warn("acking request", "model", w.cfg.Model, "request_id", r.meta.id, "err", err)
	}
	w.attempts.forget(r.meta.id)
	r.span.SetAttributes(attribute.String("jetinfer.status", string(code)))
	if code != codec.CodeOK {
		r.span.SetStatus(codes.Error, string(code))
	}
}

// release gives back what a settled (or handed back) request held.
func (w *Worker) release(r *request) {
	if r.req != nil {
		r.req.Release()
	}
	r.span.End()
	w.releaseGen(r.gen)
	w.holding.remove(r.msg)
	w.stats.inFlight.Add(-1)
	w.metrics.addInflight(-1, -r.held)
	w.admission.give(r.held, r.heldRows)
}

// Outage backoff: how long the settler waits between attempts to store a
// result while the result side is down.
const (
	outageBackoffMin = 250 * time.Millisecond
	outageBackoffMax = 5 * time.Second
)

// republish stores s's result after the publish failed with err, trying
// again with a jittered, bounded backoff for as long as it takes. The
// request stays unacked and in progress meanwhile (the keeper extends its
// ack wait) and is not charged an attempt: a downstream outage is not the
// request's fault. A result the result stream refuses for its own sake (too
// large for the stream) is replaced by a RESOURCE_EXHAUSTED error result;
// a request whose result can be stored nowhere is terminated and counted.
// On drain timeout the request is handed back.
func (w *Worker) republish(ctx context.Context, s *settlement, err error) {
	r := s.r
	id := wire.ResultMsgID(r.meta.id)
	delay := outageBackoffMin
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	// The first retry is immediate unless the side is known to be down:
	// results queued behind one that failed during an outage are stored
	// without delay once it is over.
	for first := true; ; first = false {
		if refusal := refusedForGood(err); refusal != "" {
			if s.code == codec.CodeOK {
				s.msg = w.errorResult(r, codec.CodeResourceExhausted, fmt.Sprintf("result not storable: %s; send fewer rows per request", refusal))
				s.code = codec.CodeResourceExhausted
				w.log.Warn("result refused by the result stream; answering with an error", "model", w.cfg.Model, "request_id", r.meta.id, "err", err)
			} else {
				w.log.Error("no result can be stored for request; terminating it", "model", w.cfg.Model,
					"request_id", r.meta.id, "subject", s.msg.Subject, "err", err)
				w.metrics.unanswerable()
				_ = r.msg.Term()
				return
			}
		} else if w.metrics.publishFailed(); !first || w.resultDown.Load() != 0 {
			// Known down, or the immediate retry failed too: wait.
			w.resultSideDown(err)
			timer.Reset(jitter(delay))
			select {
			case <-timer.C:
			case <-ctx.Done():
				w.handBack(r, 0, "drain timeout")
				return
			}
			delay = min(2*delay, outageBackoffMax)
		}
		pctx, cancel := context.WithTimeout(ctx, w.cfg.PublishTimeout)
		_, err = w.js.PublishMsg(pctx, s.msg, jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			w.resultSideUp()
			w.answered(r, s.code)
			return
		}
	}
}

// refusedForGood says why the result stream will never store a message,
// or "" when trying again may succeed (timeouts, no responders during a
// leader election, a full stream, a disconnect).
func refusedForGood(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
		return apiErr.Description
	case errors.Is(err, nats.ErrMaxPayload):
		return "larger than the server's max payload"
	case errors.Is(err, nats.ErrBadSubject), errors.Is(err, wire.ErrBadSubject):
		return "invalid result subject"
	}
	return ""
}

// jitter spreads d by ±20% so that workers that lost the result side
// together do not retry in lockstep.
func jitter(d time.Duration) time.Duration {
	return d - d/5 + rand.N(2*d/5+1)
}

// resultSideDown records that a result could not be stored: the worker
// reports not ready and logs the outage once.
func (w *Worker) resultSideDown(err error) {
	if w.resultDown.CompareAndSwap(0, time.Now().UnixNano()) {
		w.log.Warn("result side unavailable; holding requests until results can be stored", "model", w.cfg.Model, "err", err)
		w.metrics.setResultSide(false)
	}
}

// resultSideUp records that a result was stored.
func (w *Worker) resultSideUp() {
	if since := w.resultDown.Swap(0); since != 0 {
		w.log.Info("result side back", "model", w.cfg.Model, "outage", time.Since(time.Unix(0, since)).Round(time.Millisecond))
		w.metrics.setResultSide(true)
	}
}

// handBack naks r so that it is redelivered after delay.
func (w *Worker) handBack(r *request, delay time.Duration, why string) {
	r.span.AddEvent("handed back", attributeReason(why))
	w.metrics.handedBack(why)
	if err := r.msg.NakWithDelay(delay); err != nil {
		w.log.Warn("naking request", "model", w.cfg.Model, "request_id", r.meta.id, "err", err)
	}
}
