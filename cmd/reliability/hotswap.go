package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/worker/models"
	"github.com/jetinfer/jetinfer/worker/traffic"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// hotSwap runs three worker processes that serve digits from the model
// repository (JETINFER_MODEL_SOURCE=repository, everything else at its
// default) while requests flow: five promotions and a rollback, one
// worker SIGKILLed while it loads a version and started again. After each
// promotion, requests pinned to the new version are sent (they must be
// answered by it, or FAILED_PRECONDITION once the pool has moved on, never
// NOT_FOUND), and a few pinned to a version the repository does not have
// (NOT_FOUND). Every version is digits.onnx with the gate's reference
// data, so every OK result must carry the PyTorch logits; the last
// requests, sent once every worker has switched back, must name the
// rollback's version.
func hotSwap(ctx context.Context, r *runner, rw *row) error {
	b, nc, js, err := r.single()
	if err != nil {
		return err
	}
	defer b.shutdown()
	defer nc.Close()
	repo, err := models.Open(ctx, js, models.Config{CacheDir: filepath.Join(r.dir, "runner-cache")})
	if err != nil {
		return err
	}
	const versions = 6
	for v := 1; v <= versions; v++ {
		if _, err := repo.Push(ctx, model, fmt.Sprint(v), []models.Upload{
			{Kind: models.KindONNX, Path: filepath.Join(r.root, "testdata", "models", "digits.onnx")},
			{Kind: models.KindReference, Path: filepath.Join(r.root, "testdata", "digits_gate.arrow")},
		}); err != nil {
			return fmt.Errorf("pushing version %d: %w", v, err)
		}
	}
	if _, err := repo.Promote(ctx, model, "1"); err != nil {
		return err
	}
	if err := ensureStreams(ctx, js); err != nil {
		return err
	}
	envOf := func(name string) map[string]string {
		// The repository instead of a model file, and a cache of its own
		// per worker (a node of its own); nothing else differs from the
		// defaults.
		e := r.env(b.url(), "JETINFER_MODEL_SOURCE", "repository", "JETINFER_MODEL_CACHE_DIR", filepath.Join(r.dir, "cache-"+name))
		delete(e, "JETINFER_MODEL_PATH")
		return e
	}
	rw.rssBound = boundOf(envOf("w"))
	workers := map[string]*proc{}
	for _, name := range []string{"w1", "w2", "w3"} {
		if workers[name], err = r.startWorker(realWorker, name, envOf(name)); err != nil {
			return err
		}
	}

	var reqs []*traffic.Request
	var st traffic.SendStats
	steady := r.okRequests("h", "swap", r.n(4000), 16, 11)
	reqs = append(reqs, steady...)
	wait := sendAsync(ctx, js, steady, 4, float64(len(steady))/45, &st)
	var waits []func() error
	pinned := func(round int, version string) {
		batch := r.okRequests(fmt.Sprintf("pin%d", round), "swap", r.n(30), 8, uint64(100+round))
		for i, q := range batch {
			q.Header.Set(wire.HeaderModelVersion, version)
			q.Version, q.Known = version, true
			q.Want = []codec.Code{codec.CodeOK, codec.CodeFailedPrecondition}
			if i < 2 {
				q.ID += "-missing"
				q.Header.Set(wire.HeaderModelVersion, "99")
				q.Version, q.Known = "", false
				q.Want, q.Mention = []codec.Code{codec.CodeNotFound}, []string{`no version "99"`}
			}
		}
		reqs = append(reqs, batch...)
		waits = append(waits, sendAsync(ctx, js, batch, 2, 0, &st))
	}

	sleepCtx(ctx, 4*time.Second)
	var victim string
	for v := 2; v <= versions; v++ {
		ver := fmt.Sprint(v)
		if _, err := repo.Promote(ctx, model, ver); err != nil {
			return fmt.Errorf("promoting %s: %w", ver, err)
		}
		pinned(v, ver)
		if v == 4 {
			// SIGKILL the first worker seen loading version 4, then start
			// it again: it comes back on whatever is active.
			name, err := firstLogged(ctx, workers, `msg="loading model version"`, "version="+ver)
			if err != nil {
				return err
			}
			workers[name].kill()
			victim = name
			rw.note("SIGKILLed %s while it was loading version %s", name, ver)
			sleepCtx(ctx, time.Second)
			if workers[name], err = r.startWorker(realWorker, name, envOf(name)); err != nil {
				return err
			}
		}
		sleepCtx(ctx, 6*time.Second)
	}
	a, err := repo.Rollback(ctx, model)
	if err != nil {
		return err
	}
	pinned(versions+1, a.Version)
	rw.note("5 promotions (versions 2 to %d, 6 s apart under load), then a rollback to %s", versions, a.Version)
	// Every worker serves the rollback's version, then a last batch must
	// name it.
	for name, p := range workers {
		back := func() bool {
			l := lastLogWith(p, `msg="model version switched"`)
			return logHas(p, `msg="model version switched"`, fmt.Sprintf("to=%d", versions)) && strings.Contains(l, "to="+a.Version+" ")
		}
		for deadline := time.Now().Add(30 * time.Second); !back(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("worker %s did not switch back to %s after the rollback: %s", name, a.Version, p.tail(5))
			}
		}
	}
	last := r.okRequests("last", "swap", r.n(200), 16, 12)
	for _, q := range last {
		q.Version = a.Version
	}
	reqs = append(reqs, last...)
	waits = append(waits, sendAsync(ctx, js, last, 4, 0, &st))
	if err := wait(); err != nil {
		return err
	}
	for _, w := range waits {
		if err := w(); err != nil {
			return err
		}
	}
	switches, refusals := 0, 0
	for _, p := range r.procList() {
		switches += p.countLog(`msg="model version switched"`)
		refusals += p.countLog("still serving the previous one")
	}
	if err := r.finish(ctx, rw, js, reqs, 150*time.Second); err != nil {
		return err
	}
	rw.note("%d switches logged by the worker processes (the restarted %s included), %d versions not loaded", switches, victim, refusals)
	rw.note("not_found=%d (NOT_FOUND answers to requests pinned to a version the repository has); FAILED_PRECONDITION %d (pinned to a version the pool had left)",
		rw.a.NotFound, rw.a.ByCode[codec.CodeFailedPrecondition])
	rw.check(switches >= 3*versions-3, "only %d switches logged for %d promotions and a rollback over 3 workers", switches, versions-1)
	rw.check(refusals == 0, "%d versions were not loaded", refusals)
	return nil
}

// firstLogged waits until one of ps logs a line holding every fragment,
// and returns its name.
func firstLogged(ctx context.Context, ps map[string]*proc, frags ...string) (string, error) {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		for name, p := range ps {
			if logHas(p, frags...) {
				return name, nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return "", fmt.Errorf("no worker logged %q within 30s", strings.Join(frags, " … "))
}

// lastLogWith returns the last line of p's log holding frag ("" if none).
func lastLogWith(p *proc, frag string) string {
	b, _ := os.ReadFile(p.logPath)
	last := ""
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, frag) {
			last = l
		}
	}
	return last
}

// logHas reports whether one line of p's log holds every fragment.
func logHas(p *proc, frags ...string) bool {
	f, err := os.Open(p.logPath)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		all := true
		for _, fr := range frags {
			if !strings.Contains(l, fr) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}
