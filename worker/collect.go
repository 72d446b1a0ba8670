package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
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
	gen        *generation // the engine it was accepted for; released at settle
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

// Pulls: each fetch asks for at most fetchMsgs messages and the bytes the
// admission budget has free, and lasts at most about fetchWait when fewer
// are queued (an idle worker asks again every fetchWait or so). The wait
// is spread by ±25% per fetch: the server gives a redelivered message to
// the oldest waiting pull, so pulls renewed in lockstep would send every
// hand-back (a request pinned to another worker's version) to the worker
// that happened to start first — measured: 26 times in a row.
const (
	fetchMsgs = 1024
	fetchWait = 2 * time.Second
	pullers   = 2
)

// collect pulls requests and hands each decoded one to the scheduler until
// ctx ends (shutdown) or the consumer is gone. Rejected requests go
// straight to outcomes. A puller goroutine fetches; this one decodes.
func (w *Worker) collect(ctx context.Context, cons jetstream.Consumer, arrivals chan<- *request, outcomes chan<- *outcome) error {
	// Room for every message the budget can have pulled and not yet
	// taken in, so that the puller never waits on the decoder: each pull
	// reserves at least one max payload and brings at most fetchMsgs.
	room := fetchMsgs * int(max(pullers, w.admission.bytes.max/max(1, w.nc.MaxPayload())))
	pulled := make(chan pulledMsg, room)
	// Two pullers, so that the next pull is on its way while the last
	// one's messages arrive: the server never waits for a pull request.
	errs := make([]error, pullers)
	var wg sync.WaitGroup
	for i := range pullers {
		wg.Go(func() { errs[i] = w.pull(ctx, cons, pulled) })
	}
	go func() {
		wg.Wait()
		close(pulled)
	}()
	for p := range pulled {
		w.takeIn(p.msg, p.held, arrivals, outcomes)
	}
	return errors.Join(errs...)
}

// pulledMsg is a message the puller received, with the bytes it holds.
type pulledMsg struct {
	msg  jetstream.Msg
	held int64
}

// pull fetches requests until ctx ends or the consumer is gone. Every
// fetch is sized by the free admission budget, so every message the
// server sends is already paid for, and every one is kept in progress (the
// keeper) from the moment it arrives: nothing waits outside the budget or
// long enough for its AckWait to expire.
func (w *Worker) pull(ctx context.Context, cons jetstream.Consumer, pulled chan<- pulledMsg) error {
	var failing time.Duration // backoff after failed pulls
	for {
		// At least one largest message (a pull smaller than the next
		// message would return nothing), at most one pull's worth.
		reserved, ok := w.admission.bytes.take(ctx, w.nc.MaxPayload(), int64(w.pullBytes))
		if !ok {
			return nil
		}
		wait := fetchWait - fetchWait/4 + rand.N(fetchWait/2)
		batch, err := cons.Fetch(fetchMsgs, jetstream.FetchMaxBytes(int(reserved)), jetstream.FetchMaxWait(wait))
		if err == nil {
			for msg := range batch.Messages() {
				held := min(int64(len(msg.Data())), reserved)
				reserved -= held
				w.holding.add(msg, time.Now())
				pulled <- pulledMsg{msg: msg, held: held}
			}
			err = batch.Error()
		}
		w.admission.bytes.give(reserved)
		if err == nil || errors.Is(err, jetstream.ErrBatchCompleted) || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) {
			failing = 0
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		if stop := w.pullFailed(ctx, cons, err); stop != nil {
			return stop
		}
		failing = min(max(2*failing, 100*time.Millisecond), 2*time.Second)
		t := time.NewTimer(failing)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// pullFailed classifies a failed pull: it returns an error when the
// worker must stop (its consumer is gone, so it would idle forever; the
// orchestrator restarts it, which recreates the consumer), nil when the
// next pull may succeed (a disconnect, a leader election, a restart).
func (w *Worker) pullFailed(ctx context.Context, cons jetstream.Consumer, err error) error {
	switch {
	case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound):
		return fmt.Errorf("pulling requests: consumer %s: %w", w.cfg.Model, err)
	case errors.Is(err, nats.ErrConnectionClosed):
		return fmt.Errorf("pulling requests: %w", err)
	case errors.Is(err, nats.ErrNoResponders) && ctx.Err() == nil:
		// Nobody answered the pull: the consumer may have been deleted.
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, ierr := cons.Info(ictx)
		cancel()
		if errors.Is(ierr, jetstream.ErrConsumerNotFound) || errors.Is(ierr, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("pulling requests: consumer %s: %w", w.cfg.Model, ierr)
		}
	}
	if ctx.Err() == nil {
		w.log.Warn("pulling requests", "model", w.cfg.Model, "err", err)
	}
	return nil
}

// takeIn takes in one pulled message: it holds its bytes (reserved by the
// pull) and, once decoded, its rows until it is settled, and hands it to
// the scheduler, or answers it with an error outcome.
func (w *Worker) takeIn(msg jetstream.Msg, held int64, arrivals chan<- *request, outcomes chan<- *outcome) {
	w.stats.inFlight.Add(1)
	w.metrics.addInflight(1, held)
	r, rejected := w.accept(msg, held)
	if rejected != nil {
		outcomes <- rejected
		return
	}
	r.heldRows = w.admission.takeRows(int64(r.rows))
	arrivals <- r
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
	g := w.acquire()
	r := &request{msg: msg, gen: g, received: now, attempt: 1, held: held}
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
	case meta.version != "" && meta.version != g.version:
		return nil, w.pinnedElsewhere(r, meta.version, g)
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
	if err := codec.ValidateRequest(req, g.reqSpec, codec.ValidateOptions{RejectNonFinite: w.cfg.RejectNonFinite, Generated: g.filledInputs()}); err != nil {
		req.Release()
		return reject(errorCode(err), err.Error())
	}
	r.req, r.rows = req, req.Rows
	r.columns = make(map[string]batcher.Rows, len(g.reqSpec.Inputs))
	for _, desc := range g.reqSpec.Inputs {
		c, _ := req.Column(desc.Name)
		rows := batcher.Rows{Data: c.Data}
		if in := g.inputs[desc.Name]; in.Ragged() {
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
