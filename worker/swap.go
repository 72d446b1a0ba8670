package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jetinfer/jetinfer/worker/models"
)

// This file is the worker side of the model repository: serving the
// repository's active version and switching engines when it changes.
//
// Swap protocol (docs/models.md): the swapper goroutine watches the
// model's <model>.active key. When it names a version other than the one
// served, the swapper resolves the version for this node, opens the
// chosen artifact's engine beside the serving one, runs the accuracy gate
// on it, measures (or loads) its cost model, and switches: requests
// accepted from then on are validated for and run on the new engine;
// those accepted before still run on the old one, whose batcher releases
// its rows as usual, and whose engine is closed when the last of them is
// settled. A version that fails to load or is refused by the gate is not
// switched to: the worker keeps serving what it served, logs why and
// counts it (jetinfer_model_swaps_total{result}); failures other than the
// gate's are retried with a backoff while the version stays active.

// Source makes a worker serve its model from the model repository instead
// of a fixed engine: New is given a nil engine and WithSource.
type Source struct {
	// Repository is the model repository.
	Repository *models.Repository
	// Node is this node's identity, against which plans are chosen
	// (models.Repository.ResolveVersion).
	Node models.Node
	// Open opens the engine of the artifact chosen for this node
	// (res.Path is its verified local copy; res.Artifact.Manifest
	// describes a plan). The returned function closes the engine; the
	// worker calls it once no batch can run on the engine any more.
	Open OpenFunc
}

// OpenFunc opens the engine of a resolved artifact; see Source.Open.
type OpenFunc func(ctx context.Context, res models.Resolution) (Engine, func() error, error)

// WithSource makes the worker resolve its model from the repository,
// watch the active version and switch engines when it changes.
func WithSource(s Source) Option { return func(w *Worker) { w.source = &s } }

func (s *Source) validate() error {
	if s.Repository == nil || s.Open == nil {
		return errors.New("creating worker: a repository source needs a repository and an open function")
	}
	return nil
}

// following names what a repository worker serves, for logs: "the
// active version" or "alias canary".
func (w *Worker) following() string {
	if a := w.alias(); a != "" {
		return "alias " + a
	}
	return "the active version"
}

// alias is the alias the worker follows; "" for the active version.
func (w *Worker) alias() string {
	if a := w.cfg.ModelAlias; a != models.ActiveAlias {
		return a
	}
	return ""
}

// sourceName says where the worker's engines come from, for logs.
func (w *Worker) sourceName() string {
	if w.source == nil {
		return "file"
	}
	return "repository"
}

// ServingInfo is what a worker serves now.
type ServingInfo struct {
	// Version is the model version new requests are answered with.
	Version string
	// Engine is the engine serving it, as in the Jetinfer-Engine header.
	Engine string
	// Artifact names the repository artifact it was loaded from ("" for
	// an engine given to New).
	Artifact string
	// EnginesOpened and EnginesClosed count the engines the worker opened
	// from the repository and closed again: after any number of swaps,
	// at most one more than the serving engine stays open while the
	// requests of the previous version finish.
	EnginesOpened, EnginesClosed int64
}

// Serving reports what the worker serves; before Run has set up its
// first engine the version and engine are empty.
func (w *Worker) Serving() ServingInfo {
	s := ServingInfo{EnginesOpened: w.enginesOpened.Load(), EnginesClosed: w.enginesClosed.Load()}
	w.genMu.Lock()
	defer w.genMu.Unlock()
	if g := w.cur; g != nil {
		s.Version, s.Engine, s.Artifact = g.version, g.engineID, g.artifact
	}
	return s
}

// startFromRepository sets up the first generation from the version the
// worker follows: the repository's active version, or the one its alias
// names (Config.ModelAlias). When that version cannot be loaded here (no
// usable artifact, refused by the accuracy gate), the versions active (or
// aliased) before it are tried, most recent first, so that a bad
// promotion does not keep a pool from starting; the swapper keeps trying
// the followed one. While the model has no active version (the alias is
// not set), or none of its versions loads, the worker waits (not ready,
// not pulling) for the next promotion, retrying every minute; it never
// exits for it, so an orchestrator does not restart it in a loop.
func (w *Worker) startFromRepository(ctx context.Context) error {
	repo := w.source.Repository
	wctx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	var updates <-chan models.Active
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		a, err := repo.Target(ctx, w.cfg.Model, w.cfg.ModelAlias)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, models.ErrNotFound) && w.alias() != "":
			w.log.Warn("the alias this worker follows is not set; waiting for it to be (jetinfer model alias)",
				"model", w.cfg.Model, "alias", w.cfg.ModelAlias)
		case errors.Is(err, models.ErrNotFound):
			w.log.Warn("no version of the model is active in the repository; waiting for one to be promoted (jetinfer model push, jetinfer model promote)",
				"model", w.cfg.Model)
		case err != nil:
			w.log.Error("reading the followed version; retrying every minute", "model", w.cfg.Model, "following", w.following(), "err", err)
		default:
			w.active.Store(&a)
			if err = w.loadFirst(ctx, a); err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			w.log.Error("model not served: waiting for a promotion, retrying every minute", "model", w.cfg.Model, "err", err)
		}
		if updates == nil {
			updates = w.watchActive(wctx)
		}
		retry.Reset(time.Minute)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-updates:
		case <-retry.C:
		}
	}
}

// loadFirst loads a's version, or the versions active before it.
func (w *Worker) loadFirst(ctx context.Context, a models.Active) error {
	candidates := []string{a.Version}
	for i := len(a.Previous) - 1; i >= 0; i-- {
		if !slices.Contains(candidates, a.Previous[i]) {
			candidates = append(candidates, a.Previous[i])
		}
	}
	var errs []error
	for _, v := range candidates {
		g, err := w.load(ctx, v)
		if err == nil {
			if v != a.Version {
				w.log.Error("serving an earlier version: the one followed cannot be loaded here",
					"model", w.cfg.Model, "following", w.following(), "version", a.Version, "serving", v)
			}
			w.cur = g
			return nil
		}
		errs = append(errs, err)
		w.metrics.swapped(swapResult(err))
		if ctx.Err() != nil {
			break
		}
		w.log.Error("model version not loaded", "model", w.cfg.Model, "version", v, "err", err)
	}
	return fmt.Errorf("loading %s from the model repository: no version could be loaded: %w", w.cfg.Model, errors.Join(errs...))
}

// Retry delays of a version that failed to load for a reason other than
// the accuracy gate (the broker, a fetch, an engine that did not open).
const (
	swapRetryMin = 10 * time.Second
	swapRetryMax = 5 * time.Minute
)

// runSwaps is the swapper goroutine: it watches the version the worker
// follows (the active one, or its alias's) until ctx ends and switches to
// each new one that loads.
func (w *Worker) runSwaps(ctx context.Context) {
	updates := w.watchActive(ctx)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	backoff := swapRetryMin
	skipWait := false
	for {
		if !skipWait {
			select {
			case <-ctx.Done():
				return
			case a, ok := <-updates:
				if !ok {
					return
				}
				w.active.Store(&a)
				retry.Stop()
				backoff = swapRetryMin
			case <-retry.C:
			}
		}
		skipWait = false
		want := w.active.Load().Version
		cur := w.current()
		if want == cur.version {
			continue
		}
		g, err := w.load(ctx, want)
		if ctx.Err() != nil {
			if g != nil {
				w.closeUnused(g)
			}
			return
		}
		// A record that arrived meanwhile wins over the version loaded.
		if w.takeLatest(updates) && w.active.Load().Version != want {
			if g != nil {
				w.closeUnused(g)
				w.metrics.swapped("superseded")
				w.log.Info("model version loaded but superseded before the switch", "model", w.cfg.Model,
					"version", want, "active", w.active.Load().Version)
			}
			retry.Stop()
			backoff = swapRetryMin
			skipWait = true
			continue
		}
		if err != nil {
			result := swapResult(err)
			w.metrics.swapped(result)
			args := []any{"model", w.cfg.Model, "version", want, "serving", cur.version, "err", err}
			if result != "refused" {
				retry.Reset(backoff)
				args = append(args, "retry_in", backoff)
				backoff = min(2*backoff, swapRetryMax)
			}
			w.log.Error("model version not loaded; still serving the previous one", args...)
			continue
		}
		old := w.switchTo(g)
		w.metrics.serving(g.version, g.engineID, true)
		w.metrics.swapped("switched")
		w.log.Info("model version switched", "model", w.cfg.Model, "following", w.following(), "from", old.version, "to", g.version,
			"engine", g.engineID, "artifact", g.artifact)
		select {
		case w.reportNow <- struct{}{}:
		default:
		}
	}
}

// swapResult is the jetinfer_model_swaps_total result label of a failed
// load: "refused" by the accuracy gate, else "failed".
func swapResult(err error) string {
	if errors.Is(err, models.ErrAccuracy) {
		return "refused"
	}
	return "failed"
}

// takeLatest stores the newest record waiting in updates, if any, and
// reports whether there was one.
func (w *Worker) takeLatest(updates <-chan models.Active) bool {
	select {
	case a, ok := <-updates:
		if ok {
			w.active.Store(&a)
		}
		return ok
	default:
		return false
	}
}

// watchActive forwards the records of the version the worker follows (the
// model's active version, or the one its alias names) until ctx ends,
// watching again (after a pause) whenever the watch fails.
func (w *Worker) watchActive(ctx context.Context) <-chan models.Active {
	out := make(chan models.Active)
	go func() {
		defer close(out)
		pause := time.NewTimer(time.Hour)
		defer pause.Stop()
		for ctx.Err() == nil {
			in, err := w.source.Repository.WatchAlias(ctx, w.cfg.Model, w.cfg.ModelAlias)
			if err == nil {
				for a := range in {
					select {
					case out <- a:
					case <-ctx.Done():
					}
				}
			} else {
				w.log.Warn("watching the followed model version", "model", w.cfg.Model, "following", w.following(), "err", err)
			}
			pause.Reset(time.Second)
			select {
			case <-ctx.Done():
			case <-pause.C:
			}
		}
	}()
	return out
}

// load resolves version for this node, opens the chosen artifact's engine,
// runs the accuracy gate on it and prepares a generation (cost model
// included). A plan that fits on paper but does not open falls back to
// the version's ONNX model. On error nothing stays open.
func (w *Worker) load(ctx context.Context, version string) (*generation, error) {
	start := time.Now()
	src := w.source
	model := w.cfg.Model
	w.log.Info("loading model version", "model", model, "version", version)
	v, err := src.Repository.Version(ctx, model, version)
	if err != nil {
		return nil, fmt.Errorf("loading %s %s: %w", model, version, err)
	}
	res, err := src.Repository.ResolveVersion(ctx, model, version, src.Node)
	w.logSkipped(res)
	if err != nil {
		return nil, fmt.Errorf("loading %s %s: %w", model, version, err)
	}
	eng, closeEngine, err := src.Open(ctx, res)
	if err != nil && res.Artifact.Kind == models.KindPlan && ctx.Err() == nil {
		w.log.Warn("plan chosen for this node does not open; trying the version's ONNX model", "model", model,
			"version", version, "artifact", res.Artifact.Name, "err", err)
		cpu := src.Node
		cpu.GPU.Kind = "cpu" // no plan fits: the ONNX model
		var err2 error
		if res, err2 = src.Repository.ResolveVersion(ctx, model, version, cpu); err2 == nil {
			eng, closeEngine, err2 = src.Open(ctx, res)
		}
		if err2 != nil {
			err = errors.Join(err, err2)
		} else {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("loading %s %s: opening %s: %w", model, version, res.Artifact.Name, err)
	}
	// Its cache entry stays while the engine is open (serving or
	// retiring); nothing fetches between the resolution and here.
	unpin := src.Repository.Pin(res.Artifact.SHA256)
	w.enginesOpened.Add(1)
	w.metrics.engineOpened()
	closeFn := func() error {
		err := closeEngine()
		unpin()
		w.enginesClosed.Add(1)
		w.metrics.engineClosed()
		return err
	}
	artifact := fmt.Sprintf("%s (%s, sha256 %s)", res.Artifact.Name, res.Artifact.Kind, res.Artifact.SHA256[:min(12, len(res.Artifact.SHA256))])
	masks, lengths := generatedInputs(eng.Spec(), w.cfg.MaskInputs, w.cfg.LengthInputs)
	acc, err := src.Repository.CheckAccuracy(ctx, v, eng, models.Gate{Tolerance: w.cfg.gateTolerance(), Masks: masks, Lengths: lengths})
	if err != nil {
		_ = closeFn()
		return nil, fmt.Errorf("loading %s %s (%s): %w", model, version, artifact, err)
	}
	costPath := w.cfg.CostModelPath
	if costPath != "" {
		costPath += "." + res.Artifact.SHA256[:min(16, len(res.Artifact.SHA256))] // one per artifact
	}
	g, err := w.newGeneration(ctx, eng, closeFn, version, artifact, costPath)
	if err != nil {
		_ = closeFn()
		return nil, fmt.Errorf("loading %s %s (%s): %w", model, version, artifact, err)
	}
	w.log.Info("model version loaded", "model", model, "version", version, "artifact", artifact, "engine", g.engineID,
		"cached", res.Cached, "accuracy", acc.String(), "took", time.Since(start).Round(time.Millisecond))
	return g, nil
}

// logSkipped logs why each artifact other than the chosen one was not
// chosen: failures (incompatible, corrupt, unreachable) as warnings.
func (w *Worker) logSkipped(res models.Resolution) {
	for _, s := range res.Skipped {
		if s.Err != nil {
			w.log.Warn("model artifact skipped", "model", res.Model, "version", res.Version, "artifact", s.Artifact,
				"kind", s.Kind, "reason", s.Reason)
		} else {
			w.log.Debug("model artifact not chosen", "model", res.Model, "version", res.Version, "artifact", s.Artifact,
				"reason", s.Reason)
		}
	}
}
