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
)

// request is one received message on its way through the pipeline.
type request struct {
	msg        jetstream.Msg
	meta       requestMeta
	subject    string // where its result goes
	attempt    uint64 // delivery count, 1 on first delivery
	received   time.Time
	req        *codec.Request // nil when the request was rejected
	rows       int
	columns    map[string]batcher.Rows // per engine data input, aliasing the message
	seqLens    []int                   // per row, for engines with a sequence dimension
	ctx        context.Context         // carries the request span
	span       trace.Span
	dispatched time.Time     // first batch holding its rows started
	compute    time.Duration // engine time of the batches holding its rows
	held       int64         // bytes held against the in-flight budget
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
		// Hold the request's bytes against the in-flight budget until it
		// is settled: pulling stops while the pipeline is full.
		held := min(int64(len(msg.Data())), int64(w.cfg.MaxPullBytes))
		_ = w.budget.Acquire(context.Background(), held)
		w.stats.inFlight.Add(1)
		r, rejected := w.accept(msg, held)
		if rejected != nil {
			outcomes <- rejected
			continue
		}
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
	if err := codec.ValidateRequest(req, w.reqSpec, codec.ValidateOptions{RejectNonFinite: w.cfg.RejectNonFinite, Generated: w.filledInputs()}); err != nil {
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
