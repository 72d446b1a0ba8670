package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetinfer/jetinfer/codec"
)

// request is one received message on its way through the pipeline.
type request struct {
	msg       jetstream.Msg
	meta      requestMeta
	subject   string // where its result goes
	attempt   uint64 // delivery count, 1 on first delivery
	received  time.Time
	req       *codec.Request // nil when the request was rejected
	rows      int
	shapeKey  string
	ctx       context.Context // carries the request span
	span      trace.Span
	published time.Time // stream timestamp
}

// batch is a group of requests with equal row shapes run together.
type batch struct {
	reqs []*request
	rows int
}

// collect pulls requests and hands batches to the executors until the
// iterator is closed (by Drain on shutdown). Rejected requests go straight
// to outcomes.
func (w *Worker) collect(it jetstream.MessagesContext, batches chan<- *batch, outcomes chan<- *outcome) error {
	groups := map[string]*batch{}
	var order []string
	flush := func(key string) {
		if b := groups[key]; b != nil {
			delete(groups, key)
			batches <- b
		}
	}
	flushAll := func() {
		for _, k := range order {
			flush(k)
		}
		order = order[:0]
	}
	add := func(msg jetstream.Msg) {
		w.stats.inFlight.Add(1)
		r, rejected := w.accept(msg)
		if rejected != nil {
			outcomes <- rejected
			return
		}
		if r.rows >= w.cfg.MaxBatchRows {
			// Large requests run alone, split into engine-sized chunks.
			batches <- &batch{reqs: []*request{r}, rows: r.rows}
			return
		}
		b := groups[r.shapeKey]
		if b != nil && b.rows+r.rows > w.cfg.MaxBatchRows {
			flush(r.shapeKey)
			b = nil
		}
		if b == nil {
			b = &batch{}
			groups[r.shapeKey] = b
			order = append(order, r.shapeKey)
		}
		b.reqs = append(b.reqs, r)
		b.rows += r.rows
		if b.rows == w.cfg.MaxBatchRows {
			flush(r.shapeKey)
		}
	}
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				flushAll()
				if errors.Is(err, jetstream.ErrConnectionClosed) {
					return fmt.Errorf("pulling requests: %w", err)
				}
				return nil
			}
			w.log.Warn("pulling requests", "model", w.cfg.Model, "err", err)
			continue
		}
		add(msg)
		// Coalesce: keep collecting until the window closes or every
		// group has been flushed full.
		windowEnd := time.Now().Add(w.cfg.MaxDelay)
		for len(groups) > 0 {
			wait := time.Until(windowEnd)
			if wait <= 0 {
				break
			}
			msg, err := it.Next(jetstream.NextMaxWait(wait))
			if err != nil {
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					flushAll()
					return nil
				}
				break // timeout: the window closed
			}
			add(msg)
		}
		flushAll()
	}
}

// accept parses, decodes and validates one message. It returns either a
// request ready to batch or an outcome that answers it with an error.
func (w *Worker) accept(msg jetstream.Msg) (*request, *outcome) {
	now := time.Now()
	h := msg.Headers()
	if h == nil {
		h = nats.Header{}
	}
	r := &request{msg: msg, received: now, attempt: 1}
	var seq uint64
	if md, err := msg.Metadata(); err == nil {
		seq, r.attempt, r.published = md.Sequence.Stream, md.NumDelivered, md.Timestamp
	}
	meta, problem := parseMeta(h, seq)
	r.meta = meta
	parent := w.prop.Extract(context.Background(), HeaderCarrier(h))
	r.ctx, r.span = w.tracer.Start(parent, "receive "+w.cfg.Model,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", msg.Subject()),
			attribute.String("messaging.message.id", meta.id),
			attribute.Int64("jetinfer.attempt", int64(r.attempt)),
		))
	subject, subjProblem := w.cfg.resultSubject(meta)
	if subjProblem != "" {
		// Answer on the default subject so that the error is still visible.
		meta.replyTo = ""
		subject, _ = w.cfg.resultSubject(meta)
		if problem == "" {
			problem = subjProblem
		}
	}
	r.subject = subject
	reject := func(code codec.Code, msg string) (*request, *outcome) {
		return nil, &outcome{r: r, code: code, msg: msg}
	}
	switch {
	case problem != "":
		return reject(codec.CodeInvalidArgument, problem)
	case meta.version != "" && meta.version != w.cfg.ModelVersion:
		return reject(codec.CodeNotFound, fmt.Sprintf("model %s version %q is not served here (serving %q)",
			w.cfg.Model, meta.version, w.cfg.ModelVersion))
	case !meta.deadline.IsZero() && now.After(meta.deadline):
		return reject(codec.CodeDeadlineExceeded, fmt.Sprintf("deadline %s passed before the request was processed",
			meta.deadline.Format(time.RFC3339Nano)))
	case r.attempt > uint64(w.cfg.MaxAttempts):
		return reject(codec.CodeInternal, fmt.Sprintf("giving up after %d deliveries", r.attempt-1))
	}
	req, err := codec.DecodeRequest(msg.Data(), w.limits)
	if err != nil {
		return reject(errorCode(err), fmt.Sprintf("decoding request: %v", err))
	}
	if err := codec.ValidateRequest(req, w.spec, codec.ValidateOptions{RejectNonFinite: w.cfg.RejectNonFinite}); err != nil {
		req.Release()
		return reject(errorCode(err), err.Error())
	}
	var key strings.Builder
	for _, in := range w.spec.Inputs {
		c, _ := req.Column(in.Name)
		if c.Ragged {
			req.Release()
			return reject(codec.CodeInvalidArgument, fmt.Sprintf(
				"column %q: ragged (List) rows are not supported by this worker's batcher; send a fixed_shape_tensor", c.Name))
		}
		fmt.Fprintf(&key, "%s%v;", c.DType, c.RowShape)
	}
	r.req, r.rows, r.shapeKey = req, req.Rows, key.String()
	w.stats.msgs.Add(1)
	w.stats.msgRows.Add(int64(r.rows))
	r.span.SetAttributes(attribute.Int("jetinfer.rows", r.rows))
	return r, nil
}

// errorCode is the wire code of err: the codec's own code when it has one,
// otherwise INVALID_ARGUMENT.
func errorCode(err error) codec.Code {
	var ce *codec.Error
	if errors.As(err, &ce) && ce.Code != "" {
		return ce.Code
	}
	return codec.CodeInvalidArgument
}
