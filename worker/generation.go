package worker

import (
	"context"
	"fmt"
	"slices"

	"github.com/jetinfer/jetinfer/batcher"
	"github.com/jetinfer/jetinfer/trt"
)

// generation is one engine the worker serves and everything derived from
// it: the model version it answers as, what requests must carry, and the
// batcher and assembler shaped for it. A worker serving a file has one
// generation for its whole life; a worker serving from the model
// repository starts one per version it switches to (swap.go), and for a
// while after a switch the old one finishes the requests accepted for it.
//
// The scheduler goroutine alone uses batcher and assembler; the other
// fields are read-only once newGeneration returns. refs, retired and
// closed are guarded by Worker.genMu (see acquire and release).
type generation struct {
	version      string
	engine       Engine
	closeEngine  func() error // nil: the engine belongs to the caller of New
	artifact     string       // what was loaded, for logs: "model.onnx (onnx, sha256 6f3aee67f8f8)"
	spec         trt.Spec
	engineID     string
	maxBatchRows int
	reqSpec      trt.Spec                 // what requests must carry
	batcher      *batcher.Batcher         // owned by the schedule goroutine
	assembler    *batcher.Assembler       // owned by the schedule goroutine
	inputs       map[string]batcher.Input // read-only
	masks        []string                 // generated inputs (batcher fills them)
	lengths      []string

	refs    int  // requests accepted against it and not yet settled
	retired bool // no longer current: closed once refs is 0
	closed  bool
}

// newGeneration prepares eng for serving as version: the engine's limits,
// which inputs the worker generates, what requests must carry, and the
// batcher with its cost model, loaded from costPath or measured on eng.
func (w *Worker) newGeneration(ctx context.Context, eng Engine, closeEngine func() error, version, artifact, costPath string) (*generation, error) {
	g := &generation{version: version, engine: eng, closeEngine: closeEngine, artifact: artifact, spec: eng.Spec()}
	maxBatch, err := profileMaxBatch(g.spec)
	if err != nil {
		return nil, err
	}
	g.maxBatchRows = w.cfg.MaxBatchRows
	if g.maxBatchRows == 0 {
		g.maxBatchRows = min(maxBatch, 64)
	}
	g.maxBatchRows = min(g.maxBatchRows, maxBatch)
	d := eng.Device()
	g.engineID = d.Kind + ":" + d.Name
	g.masks, g.lengths = generatedInputs(g.spec, w.cfg.MaskInputs, w.cfg.LengthInputs)
	g.reqSpec = requestSpec(g.spec, append(slices.Clone(g.masks), g.lengths...))
	bspec := batcherSpec(g.spec, g.maxBatchRows)
	bcfg := batcher.Config{MaxDelay: w.cfg.MaxDelay, MaxPadding: w.cfg.MaxPadding, Masks: g.masks, Lengths: g.lengths,
		MaxQueueRows: w.cfg.MaxInflightRows} // the admission budget's rows: never full
	cost, err := w.loadCostModel(ctx, eng, costPath, bspec, bcfg)
	if err != nil {
		return nil, err
	}
	if g.batcher, err = batcher.New(bspec, cost, bcfg); err != nil {
		return nil, fmt.Errorf("creating batcher: %w", err)
	}
	if g.assembler, err = batcher.NewAssembler(bspec); err != nil {
		return nil, fmt.Errorf("creating assembler: %w", err)
	}
	g.inputs = map[string]batcher.Input{}
	for _, in := range g.batcher.Inputs() {
		g.inputs[in.Name] = in
	}
	return g, nil
}

// current returns the generation new requests are accepted for.
func (w *Worker) current() *generation {
	w.genMu.Lock()
	defer w.genMu.Unlock()
	return w.cur
}

// acquire returns the current generation with a reference taken for one
// request; release gives it back once the request is settled.
func (w *Worker) acquire() *generation {
	w.genMu.Lock()
	defer w.genMu.Unlock()
	w.cur.refs++
	return w.cur
}

// releaseGen gives back a request's reference to g and closes g's engine
// when g is retired and was the last thing holding it.
func (w *Worker) releaseGen(g *generation) {
	w.genMu.Lock()
	g.refs--
	last := g.retired && g.refs == 0 && !g.closed
	if last {
		g.closed = true
	}
	w.genMu.Unlock()
	if last {
		w.closeGen(g)
	}
}

// switchTo makes g the generation new requests are accepted for and
// retires the previous one: requests accepted for it still run on its
// engine, which is closed when the last of them is settled.
func (w *Worker) switchTo(g *generation) (old *generation) {
	w.genMu.Lock()
	old, w.cur = w.cur, g
	old.retired = true
	idle := old.refs == 0 && !old.closed
	if idle {
		old.closed = true
	}
	w.genMu.Unlock()
	if idle {
		w.closeGen(old)
	}
	return old
}

// closeGen closes g's engine in the background (Run waits for it) if the
// worker owns it.
func (w *Worker) closeGen(g *generation) {
	w.metrics.serving(g.version, g.engineID, false)
	if g.closeEngine == nil {
		return
	}
	w.closing.Go(func() {
		if err := g.closeEngine(); err != nil {
			w.log.Warn("closing engine", "model", w.cfg.Model, "version", g.version, "err", err)
		} else {
			w.log.Info("engine closed", "model", w.cfg.Model, "version", g.version, "artifact", g.artifact)
		}
	})
}

// closeUnused closes the engine of a generation that never served (a
// version loaded and then refused or superseded).
func (w *Worker) closeUnused(g *generation) {
	w.genMu.Lock()
	g.retired, g.closed = true, true
	w.genMu.Unlock()
	w.closeGen(g)
}
