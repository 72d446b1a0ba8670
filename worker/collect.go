package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetinfer/jetinfer/batcher"
	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// request is one received message on its way through the pipeline.
type request struct {
	msg        jetstream.Msg
	meta       requestMeta
	subject    string // where its result goes
	attempt    uint64 // server delivery count, 1 on first delivery (not an attempt count)
	received   time.Time
	req        *codec.Request // nil when the request was rejected
	rows       int
	columns    map[string]batcher.Rows // per engine data input, aliasing the message
	seqLens    []int                   // per row, for engines with a sequence dimension
	ctx        context.Context         // carries the request span
	span       trace.Span
	dispatched time.Time     // first batch holding its rows started
	compute    time.Duration // engine time of the batches holding its rows
	held       int64         // bytes held against the admission budget
	heldRows   int64         // rows held against the admission budget
}

// collect pulls requests and hands each decoded one to the scheduler
// until the iterator is closed (by Drain on shutdown). Rejected requests go
// straight to outcomes.
func (w *Worker) collect(cons jetstream.Consumer, it jetstream.MessagesContext, arrivals chan<- *request, outcomes chan<- *outcome) error {
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				if errors.Is(err, jetstream.ErrConnectionClosed) {
					return fmt.Errorf("pulling requests: %w", err)
				}
				return nil
			}
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				// Silence from the server: a disconnect (the client
				// reconnects by itself) or a deleted consumer.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err = cons.Info(ctx)
				cancel()
				if err == nil {
					continue
				}
			}
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				// Without its consumer the worker would idle forever; stop
				// so that the orchestrator restarts it, which recreates
				// the consumer.
				it.Stop()
				return fmt.Errorf("pulling requests: consumer %s: %w", w.cfg.Model, err)
			}
			w.log.Warn("pulling requests", "model", w.cfg.Model, "err", err)
			continue
		}
		// Admission: hold the request's bytes, then its rows, until it is
		// settled. While the budget is spent the collector waits here and
		// pulls nothing more; no request is handed back for want of room.
		held := w.admission.takeBytes(int64(len(msg.Data())))
		w.stats.inFlight.Add(1)
		w.metrics.addInflight(int64(1), held)
		r, rejected := w.accept(msg, held)
		if rejected != nil {
			w.holding.add(rejected.r, rejected.r.received)
			outcomes <- rejected
			continue
		}
		w.holding.add(r, r.received)
		r.heldRows = w.admission.takeRows(int64(r.rows))
		arrivals <- r
	}
}

// accept parses, decodes and validates one message. It returns either a
// request ready to batch or an outcome that answers it with an error.
// held is the budget the request holds until it is settled.
func (w *Worker) accept(msg jetstream.Msg, held int64) (*request, *outcome) {
	now := time.Now()
	h := msg.Headers()
	if h == nil {
		h = nats.Header{}
	}
	r := &request{msg: msg, received: now, attempt: 1, held: held}
	var seq uint64
	if md, err := msg.Metadata(); err == nil {
		seq, r.attempt = md.Sequence.Stream, md.NumDelivered
	}
	if r.attempt > 1 {
		w.metrics.redelivered()
	}
	meta, problem := parseMeta(h, seq)
	r.meta = meta
	parent := w.prop.Extract(context.Background(), wire.HeaderCarrier(h))
	r.ctx, r.span = w.tracer.Start(parent, "receive "+w.cfg.Model,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", msg.Subject()),
			attribute.String("messaging.message.id", meta.id),
			attribute.Int64("jetinfer.attempt", int64(r.attempt)),
		))
	subject, err := w.cfg.resultSubject(meta)
	if err != nil && problem == "" {
		// Answered on the default subject, so that the error is visible.
		problem = err.Error()
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
	case r.attempt > uint64(w.cfg.MaxDeliveries):
		// Not settled after this many deliveries although no engine
		// failure was counted: the request most likely kills the workers
		// that run it. Answer it instead of crashing the next one.
		return reject(codec.CodeInternal, fmt.Sprintf("delivered %d times without being settled (does it crash the worker?); not run again", r.attempt-1))
	}
	req, err := codec.DecodeRequest(msg.Data(), w.limits)
	if err != nil {
		return reject(errorCode(err), fmt.Sprintf("decoding request: %v", err))
	}
	if err := codec.ValidateRequest(req, w.reqSpec, codec.ValidateOptions{RejectNonFinite: w.cfg.RejectNonFinite}); err != nil {
		req.Release()
		return reject(errorCode(err), err.Error())
	}
	r.req, r.rows = req, req.Rows
	r.columns = make(map[string]batcher.Rows, len(w.reqSpec.Inputs))
	for _, desc := range w.reqSpec.Inputs {
		c, _ := req.Column(desc.Name)
		rows := batcher.Rows{Data: c.Data}
		if in := w.inputs[desc.Name]; in.Ragged() {
			rows.Offsets = c.Offsets
			if !c.Ragged {
				// A fixed-shape column for a sequence input: every row
				// has RowShape[0] positions.
				n := int32(c.RowShape[0])
				rows.Offsets = make([]int32, req.Rows+1)
				for i := range rows.Offsets {
					rows.Offsets[i] = int32(i) * n
				}
			}
			if r.seqLens == nil {
				r.seqLens = make([]int, req.Rows)
				for i := range r.seqLens {
					r.seqLens[i] = int(rows.Offsets[i+1] - rows.Offsets[i])
				}
			}
		} else if c.Ragged {
			req.Release()
			return reject(codec.CodeInvalidArgument, fmt.Sprintf("column %q: ragged rows for an input without a sequence dimension", c.Name))
		}
		r.columns[desc.Name] = rows
	}
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
