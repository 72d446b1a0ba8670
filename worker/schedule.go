package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetinfer/jetinfer/batcher"
	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
)

// job is one batch plan handed to an executor, with every row it needs.
type job struct {
	gen   *generation // whose batcher planned it and whose engine runs it
	plan  batcher.Plan
	reqs  map[uint64]*request // the plan's items
	start time.Time
}

// jobResult is what an executor reports back to the scheduler.
type jobResult struct {
	job     *job
	outputs []trt.Tensor     // all batch rows; nil if the whole batch failed
	failed  map[uint64]error // items whose rows could not be run
	compute time.Duration
}

// scheduler state, owned by the schedule goroutine alone.
type schedState struct {
	// gens are the generations whose batchers may hold rows, oldest
	// first: the current one, and after a switch the retired ones until
	// their rows are planned and their batches done.
	gens   []*schedGen
	reqs   map[uint64]*request
	nextID uint64
	busy   int
}

// schedGen is a generation as the scheduler tracks it.
type schedGen struct {
	g    *generation
	busy int // its batches running
}

// genOf returns g's entry, adding one.
func (st *schedState) genOf(g *generation) *schedGen {
	for _, sg := range st.gens {
		if sg.g == g {
			return sg
		}
	}
	sg := &schedGen{g: g}
	st.gens = append(st.gens, sg)
	return sg
}

// prune forgets generations that are no longer current and hold nothing.
func (st *schedState) prune(cur *generation) {
	st.gens = slices.DeleteFunc(st.gens, func(sg *schedGen) bool {
		items, _ := sg.g.batcher.Len()
		return sg.g != cur && items == 0 && sg.busy == 0
	})
}

// schedule owns the batchers: it admits requests from arrivals into the
// batcher of the generation each was accepted for, releases plans to the
// executors whenever one is free (a retired generation's rows first, so
// that its engine drains), answers expired deadlines, and reassembles
// each request's result rows. It closes jobs when arrivals is closed and
// every admitted request has ended.
func (w *Worker) schedule(arrivals <-chan *request, jobs chan<- *job, done <-chan *jobResult, outcomes chan<- *outcome) {
	defer close(jobs)
	st := &schedState{reqs: map[uint64]*request{}}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	draining := false
	for {
		now := time.Now()
		st.prune(w.current())
		for _, sg := range st.gens {
			for _, id := range sg.g.batcher.Expired(now) {
				sg.g.assembler.Drop(id)
				if r := st.reqs[id]; r != nil {
					delete(st.reqs, id)
					outcomes <- &outcome{r: r, code: codec.CodeDeadlineExceeded, queue: now.Sub(r.received),
						msg: fmt.Sprintf("deadline %s cannot be met: the request would finish after it", r.meta.deadline.Format(time.RFC3339Nano))}
				}
			}
		}
		for st.busy < w.cfg.Executors {
			var plan batcher.Plan
			var sg *schedGen
			ok := false
			for _, cand := range st.gens {
				if plan, ok = cand.g.batcher.Next(now); !ok && draining {
					plan, ok = cand.g.batcher.Flush(now)
				}
				if ok {
					sg = cand
					break
				}
			}
			if !ok {
				break
			}
			j := &job{gen: sg.g, plan: plan, reqs: make(map[uint64]*request, len(plan.Slots)), start: now}
			for _, s := range plan.Slots {
				r := st.reqs[s.Item]
				j.reqs[s.Item] = r
				if r.dispatched.IsZero() {
					r.dispatched = now
					w.metrics.observeQueue(context.Background(), now.Sub(r.received), plan.Seq)
					w.stats.queueNs.Add(int64(now.Sub(r.received)))
					w.stats.queued.Add(1)
				}
			}
			st.busy++
			sg.busy++
			jobs <- j
		}
		items := 0
		var wake time.Time
		for _, sg := range st.gens {
			n, _ := sg.g.batcher.Len()
			items += n
			if t, ok := sg.g.batcher.NextWakeup(); ok && (wake.IsZero() || t.Before(wake)) {
				wake = t
			}
		}
		if draining && items == 0 && st.busy == 0 && len(st.reqs) == 0 {
			return
		}
		if !wake.IsZero() && st.busy < w.cfg.Executors {
			timer.Reset(max(time.Until(wake), 0))
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case r, ok := <-arrivals:
			if !ok {
				draining, arrivals = true, nil
				continue
			}
			w.admit(st, r, outcomes)
		case res := <-done:
			st.busy--
			st.genOf(res.job.gen).busy--
			w.finish(st, res, outcomes)
		case <-timer.C:
		}
	}
}

// admit adds a decoded request to its generation's batcher and assembler.
func (w *Worker) admit(st *schedState, r *request, outcomes chan<- *outcome) {
	st.nextID++
	id := st.nextID
	it := batcher.Item{ID: id, Rows: r.rows, SeqLens: r.seqLens, Arrival: r.received,
		Deadline: r.meta.deadline, Priority: r.meta.priority}
	g := r.gen
	if msg := g.seqProblem(r); msg != "" {
		outcomes <- &outcome{r: r, code: codec.CodeInvalidArgument, msg: msg}
		return
	}
	st.genOf(g)
	if err := g.batcher.Add(time.Now(), it); err != nil {
		if errors.Is(err, batcher.ErrQueueFull) {
			// Admission holds rows against the batcher's queue limit, so
			// this is a bug; hand the request back without charging it.
			w.log.Error("batcher queue full despite admission control", "model", w.cfg.Model, "err", err)
			outcomes <- &outcome{r: r, handBack: true, delay: w.cfg.RetryBackoff, reason: "batcher queue full"}
			return
		}
		// seqProblem has caught what a request can get wrong; what is
		// left names the batcher's own item number, which means nothing
		// to a producer: log it and answer in the request's terms.
		w.log.Warn("batcher rejected a validated request", "model", w.cfg.Model, "request_id", r.meta.id, "err", err)
		outcomes <- &outcome{r: r, code: codec.CodeInvalidArgument,
			msg: fmt.Sprintf("request of %d rows cannot be batched for this engine", r.rows)}
		return
	}
	if err := g.assembler.Add(it); err != nil {
		g.batcher.Remove(id)
		outcomes <- &outcome{r: r, code: codec.CodeInternal, msg: fmt.Sprintf("batching request: %v", err)}
		return
	}
	st.reqs[id] = r
}

// finish scatters a finished batch into its requests and answers every
// request that is now complete or failed.
func (w *Worker) finish(st *schedState, res *jobResult, outcomes chan<- *outcome) {
	p := res.job.plan
	g := res.job.gen
	for id, err := range res.failed {
		r := st.reqs[id]
		if r == nil {
			continue
		}
		g.batcher.Remove(id)
		g.assembler.Drop(id)
		delete(st.reqs, id)
		o := w.engineFailure(r, fmt.Errorf("running engine: %w", err))
		o.queue, o.compute = r.dispatched.Sub(r.received), res.compute
		outcomes <- o
	}
	if res.outputs == nil {
		return
	}
	w.stats.rows.Add(int64(p.Rows))
	w.stats.busyNs.Add(int64(res.compute))
	w.metrics.observeBatch(context.Background(), p, res.compute)
	for _, s := range p.Slots {
		if r := st.reqs[s.Item]; r != nil {
			r.compute += res.compute
		}
	}
	complete, err := g.assembler.Scatter(p, res.outputs)
	if err != nil {
		// The engine returned outputs of the wrong shape: a bug, not the
		// requests' fault; fail the plan's items so that none is lost.
		for _, s := range p.Slots {
			if r := st.reqs[s.Item]; r != nil {
				g.batcher.Remove(s.Item)
				g.assembler.Drop(s.Item)
				delete(st.reqs, s.Item)
				outcomes <- w.engineFailure(r, fmt.Errorf("scattering engine outputs: %w", err))
			}
		}
		return
	}
	for _, id := range complete {
		r := st.reqs[id]
		parts, ok := g.assembler.Take(id)
		if r == nil || !ok {
			continue
		}
		delete(st.reqs, id)
		o := &outcome{r: r, code: codec.CodeOK, queue: r.dispatched.Sub(r.received), compute: r.compute}
		for _, part := range parts {
			t, err := resultTensor(part)
			if err != nil {
				o.code, o.msg = codec.CodeInternal, fmt.Sprintf("encoding results: %v", err)
				break
			}
			o.outputs = append(o.outputs, t)
		}
		if o.code != codec.CodeOK {
			o.outputs = nil
		}
		outcomes <- o
	}
}

// engineFailure decides how a request whose rows the engine failed to run
// ends. Invalid input is the request's fault: an error result. A lost
// device is nobody's fault: the request is handed back uncharged and the
// worker stops. Any other failure costs the request one attempt: it is
// handed back with a growing delay until Config.MaxAttempts attempts have
// failed, then answered INTERNAL.
func (w *Worker) engineFailure(r *request, err error) *outcome {
	switch {
	case errors.Is(err, trt.ErrInvalidInput):
		return &outcome{r: r, code: codec.CodeInvalidArgument, msg: err.Error()}
	case errors.Is(err, trt.ErrDeviceLost):
		w.stop(err)
		return &outcome{r: r, handBack: true, reason: "engine device lost"}
	}
	n := w.attempts.fail(r.meta.id, time.Now(), err.Error())
	if n >= w.cfg.MaxAttempts {
		return &outcome{r: r, code: codec.CodeInternal,
			msg: fmt.Sprintf("%v (attempt %d of %d failed; giving up)", err, n, w.cfg.MaxAttempts)}
	}
	return &outcome{r: r, handBack: true, delay: w.backoff(n), reason: "engine failure"}
}

// executeJob gathers a plan's inputs, runs the engine, and, when a batch
// of several requests fails, runs each request's rows alone so that one
// bad request cannot fail the others.
func (w *Worker) executeJob(ctx context.Context, j *job) *jobResult {
	links := make([]trace.Link, 0, len(j.reqs))
	for _, r := range j.reqs {
		links = append(links, trace.LinkFromContext(r.ctx))
	}
	ctx, span := w.tracer.Start(ctx, "batch "+w.cfg.Model,
		trace.WithNewRoot(), trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.Int("jetinfer.batch.requests", len(j.reqs)),
			attribute.Int("jetinfer.batch.rows", j.plan.Rows),
			attribute.Int("jetinfer.batch.padded_rows", j.plan.Batch),
			attribute.Int("jetinfer.batch.seq", j.plan.Seq),
			attribute.Int("jetinfer.batch.profile", j.plan.Profile),
			attribute.String("jetinfer.engine", j.gen.engineID),
			attribute.String("jetinfer.model.version", j.gen.version)))
	defer span.End()
	start := time.Now()
	outputs, err := w.runPlan(ctx, j.gen, j.plan, j.reqs)
	res := &jobResult{job: j, outputs: outputs, compute: time.Since(start)}
	if err == nil {
		return res
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	res.failed = map[uint64]error{}
	if len(j.plan.Slots) == 1 {
		res.failed[j.plan.Slots[0].Item] = err
		return res
	}
	span.AddEvent("batch failed; running requests one by one")
	// Run each slot as its own plan and copy its output rows into place.
	full := make([]trt.Tensor, len(j.gen.spec.Outputs))
	for _, s := range j.plan.Slots {
		if _, already := res.failed[s.Item]; already {
			continue
		}
		sub := batcher.Plan{Profile: j.plan.Profile, Batch: s.Rows, Seq: j.plan.Seq, Rows: s.Rows,
			Slots: []batcher.Slot{{Item: s.Item, ItemRow: s.ItemRow, Rows: s.Rows}}}
		if len(j.plan.Lens) > 0 {
			sub.Lens = j.plan.Lens[s.BatchRow : s.BatchRow+s.Rows]
		}
		outs, err := w.runPlan(ctx, j.gen, sub, j.reqs)
		if err != nil {
			res.failed[s.Item] = err
			continue
		}
		for i, o := range outs {
			rowBytes := len(o.Data) / s.Rows
			if full[i].Data == nil {
				sh := o.Shape.Clone()
				sh[0] = int64(j.plan.Batch)
				full[i] = trt.Tensor{Name: o.Name, DType: o.DType, Shape: sh, Data: make([]byte, rowBytes*j.plan.Batch)}
			}
			copy(full[i].Data[s.BatchRow*rowBytes:], o.Data)
		}
	}
	res.compute = time.Since(start)
	if full[0].Data != nil {
		res.outputs = full
	}
	return res
}

// runPlan gathers plan's inputs from the requests' decoded columns and
// runs the engine once. Engines that stage inputs in memory of their own
// (trt.StagedRunner: TensorRT's pinned buffers) get the rows gathered
// straight into it.
func (w *Worker) runPlan(ctx context.Context, g *generation, p batcher.Plan, reqs map[uint64]*request) ([]trt.Tensor, error) {
	ins := make([]batcher.Input, len(g.spec.Inputs))
	shapes := make([]trt.Shape, len(g.spec.Inputs))
	for i, desc := range g.spec.Inputs {
		in, ok := g.inputs[desc.Name]
		if !ok {
			return nil, fmt.Errorf("engine input %q unknown to the batcher", desc.Name)
		}
		ins[i], shapes[i] = in, in.Shape(p)
	}
	src := func(name string) batcher.Source {
		return func(id uint64) (batcher.Rows, bool) {
			r := reqs[id]
			if r == nil {
				return batcher.Rows{}, false
			}
			rows, ok := r.columns[name]
			return rows, ok
		}
	}
	gather := func(bufs [][]byte) error {
		for i, in := range ins {
			if err := in.Gather(bufs[i], p, src(in.Name)); err != nil {
				return fmt.Errorf("%w: %w", trt.ErrInvalidInput, err)
			}
		}
		return nil
	}
	outputs := make([]trt.Tensor, len(g.spec.Outputs))
	for i, o := range g.spec.Outputs {
		outputs[i] = trt.Tensor{Name: o.Name, DType: o.DType}
		if sh := concreteShape(o.Shape, p.Batch, p.Seq); sh.IsConcrete() {
			if n, err := trt.ByteSize(o.DType, sh); err == nil {
				outputs[i].Shape, outputs[i].Data = sh, make([]byte, n)
			}
		}
	}
	if sr, ok := g.engine.(trt.StagedRunner); ok {
		if err := sr.RunStaged(ctx, p.Profile, shapes, gather, outputs); err != nil {
			return nil, err
		}
		return outputs, nil
	}
	bufs := make([][]byte, len(ins))
	b := &trt.Batch{Profile: p.Profile, Inputs: make([]trt.Tensor, len(ins)), Outputs: outputs}
	for i, in := range ins {
		bufs[i] = make([]byte, in.Size(p))
		b.Inputs[i] = trt.Tensor{Name: in.Name, DType: in.DType, Shape: shapes[i], Data: bufs[i]}
	}
	if err := gather(bufs); err != nil {
		return nil, err
	}
	if err := g.engine.Run(ctx, b); err != nil {
		return nil, err
	}
	return b.Outputs, nil
}
