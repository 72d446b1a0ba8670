package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/scheduler"
	"github.com/jetinfer/jetinfer/worker/models"
)

// Requests pinned to a version this worker does not serve
// (Jetinfer-Model-Version; docs/models.md, "Pinned versions"):
//
//   - a version the repository does not have: NOT_FOUND;
//   - the version this worker follows (the repository's active version,
//     or its alias's: a rollout this worker has not finished, or a
//     version it could not load), or a version another live
//     worker reports serving: handed back, uncharged, with a delay growing
//     from 250 ms to 5 s (randomized down to half), so that a worker
//     serving it takes it; once its deliveries account for at least
//     Config.PinnedWait of such delays it is answered FAILED_PRECONDITION
//     instead, so nothing loops forever;
//   - a version the repository has but no worker serves: FAILED_PRECONDITION,
//     after being handed back for pinPromoteGrace (a promotion this worker
//     has not seen yet).
//
// Without a repository (a worker serving a file) the same holds with "the
// repository does not have it" read as "no live worker serves it":
// NOT_FOUND, as before workers had a repository.

// Hand-back delays of a pinned request: pinDelayMin doubled per delivery,
// at most pinDelayMax.
const (
	pinDelayMin = 250 * time.Millisecond
	pinDelayMax = 5 * time.Second
)

// pinPromoteGrace is how long a request pinned to a version the
// repository has but no worker serves is handed back before it is
// answered FAILED_PRECONDITION: the version may have been promoted a
// moment before this worker's view of the active version catches up.
const pinPromoteGrace = 500 * time.Millisecond

// pinStep is the hand-back delay step of a pinned request on its n-th
// delivery (n ≥ 1): pinDelayMin doubled per delivery, at most
// pinDelayMax.
func pinStep(n uint64) time.Duration {
	d := pinDelayMin
	for i := uint64(1); i < n && d < pinDelayMax; i++ {
		d *= 2
	}
	return min(d, pinDelayMax)
}

// pinDelay is the hand-back delay of a pinned request on its n-th
// delivery: uniform in [step/2, step], so that hand-backs of many
// requests do not come back in waves.
func pinDelay(n uint64) time.Duration {
	step := pinStep(n)
	return step/2 + rand.N(step/2+1)
}

// pinWaited is the least time a request on its n-th delivery has waited
// in hand-backs if every earlier delivery was one (other redeliveries
// count too, so it may have waited less).
func pinWaited(n uint64) time.Duration {
	var sum time.Duration
	for k := uint64(1); k < n; k++ {
		sum += pinStep(k) / 2
		if sum > 24*time.Hour {
			break
		}
	}
	return sum
}

// pinDeliveries is the number of deliveries whose hand-backs add up to
// wait.
func pinDeliveries(wait time.Duration) uint64 {
	var sum time.Duration
	n := uint64(1)
	for sum < wait && n < 1<<20 {
		sum += pinStep(n) / 2
		n++
	}
	return n
}

// pinnedElsewhere decides how a request pinned to version v ends in this
// worker, which serves g.version instead (see the rules above).
func (w *Worker) pinnedElsewhere(r *request, v string, g *generation) *outcome {
	model := w.cfg.Model
	inRepo := false
	if w.source != nil {
		exists, err := w.versions.exists(w.source.Repository, model, v)
		if err != nil {
			// The repository cannot tell now; guessing NOT_FOUND would be
			// wrong for a version it has.
			w.log.Warn("looking up a pinned version", "model", model, "version", v, "err", err)
			return &outcome{r: r, handBack: true, delay: pinDelay(r.attempt), reason: "pinned version lookup failed"}
		}
		if !exists {
			return &outcome{r: r, code: codec.CodeNotFound,
				msg: fmt.Sprintf("model %s has no version %q in the model repository (this worker serves %q)", model, v, g.version)}
		}
		inRepo = true
	}
	active := ""
	if a := w.active.Load(); a != nil {
		active = a.Version
	}
	if v == active || w.peers.serves(v, w.cfg.WorkerID, time.Now()) {
		if waited := pinWaited(r.attempt); waited < w.cfg.PinnedWait {
			return &outcome{r: r, handBack: true, delay: pinDelay(r.attempt), reason: "pinned to another version"}
		}
		return &outcome{r: r, code: codec.CodeFailedPrecondition,
			msg: fmt.Sprintf("model %s version %q: no worker serving it took the request in about %v of hand-backs (%d deliveries; this worker serves %q)",
				model, v, w.cfg.PinnedWait, r.attempt, g.version)}
	}
	if inRepo && pinWaited(r.attempt) < pinPromoteGrace {
		// Maybe promoted a moment ago: this worker has not seen the
		// repository's new active version yet (a KV watch update in
		// flight). Hand it back for a moment before failing it.
		return &outcome{r: r, handBack: true, delay: pinDelay(r.attempt), reason: "pinned version not active yet"}
	}
	if inRepo {
		return &outcome{r: r, code: codec.CodeFailedPrecondition,
			msg: fmt.Sprintf("model %s version %q is in the model repository but no worker serves it (%s is %q, this worker serves %q): promote it, or pin a served version",
				model, v, w.following(), active, g.version)}
	}
	return &outcome{r: r, code: codec.CodeNotFound,
		msg: fmt.Sprintf("model %s version %q is not served by any worker (this worker serves %q)", model, v, g.version)}
}

// versionCache remembers for a few seconds which versions the repository
// has, so that a stream of pinned requests costs one lookup per version.
// It is used by the collector goroutine only.
type versionCache struct {
	ttl     time.Duration
	entries map[string]versionEntry
}

type versionEntry struct {
	exists bool
	at     time.Time
}

func newVersionCache() *versionCache {
	return &versionCache{ttl: 5 * time.Second, entries: map[string]versionEntry{}}
}

// exists reports whether repo has model version v.
func (c *versionCache) exists(repo *models.Repository, model, v string) (bool, error) {
	now := time.Now()
	if e, ok := c.entries[v]; ok && now.Sub(e.at) < c.ttl {
		return e.exists, nil
	}
	if models.CheckName(model, v) != nil {
		return false, nil // not a name the repository can hold
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := repo.Version(ctx, model, v)
	switch {
	case errors.Is(err, models.ErrNotFound):
	case err != nil:
		return false, err
	}
	if len(c.entries) > 1024 {
		clear(c.entries)
	}
	c.entries[v] = versionEntry{exists: err == nil, at: now}
	return err == nil, nil
}

// peers tracks which version each other live worker of the model
// serves, from their scaling reports (scheduler.WorkerReport.Version). A
// watcher goroutine writes; the collector reads. A nil *peers knows of
// no other worker (reports disabled).
type peers struct {
	maxAge time.Duration
	mu     sync.Mutex
	byKey  map[string]scheduler.WorkerReport
}

// serves reports whether a worker other than self reported serving
// version v less than maxAge before now.
func (p *peers) serves(v, self string, now time.Time) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.byKey {
		if r.Version == v && r.WorkerID != self && now.Sub(r.At) < p.maxAge {
			return true
		}
	}
	return false
}

// watchPeers starts following the other workers' reports, and returns
// once the current ones are read. Without reports (a negative report
// interval, or a bucket that cannot be read) the worker knows no peers.
func (w *Worker) watchPeers(ctx context.Context) error {
	if w.source != nil {
		w.versions = newVersionCache()
	}
	if w.cfg.ReportInterval <= 0 {
		return nil
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kv, err := scheduler.OpenReportBucket(octx, w.js, w.cfg.ReportBucket, 0)
	var watch jetstream.KeyWatcher
	if err == nil {
		watch, err = kv.Watch(ctx, scheduler.ReportKey(w.cfg.Model, "*"))
	}
	if err != nil {
		w.log.Warn("not following other workers' reports: requests pinned to a version this worker does not serve are answered without them",
			"model", w.cfg.Model, "err", err)
		return nil
	}
	p := &peers{maxAge: max(4*w.cfg.ReportInterval, 20*time.Second), byKey: map[string]scheduler.WorkerReport{}}
	initial := make(chan struct{})
	w.bg.Go(func() {
		seen := false
		defer func() { _ = watch.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-watch.Updates():
				if !ok {
					return
				}
				if e == nil {
					if !seen {
						seen = true
						close(initial)
					}
					continue
				}
				p.mu.Lock()
				if e.Operation() != jetstream.KeyValuePut {
					delete(p.byKey, e.Key())
				} else {
					var r scheduler.WorkerReport
					if json.Unmarshal(e.Value(), &r) == nil && strings.HasPrefix(e.Key(), w.cfg.Model+".") {
						p.byKey[e.Key()] = r
					}
				}
				p.mu.Unlock()
			}
		}
	})
	select {
	case <-initial:
	case <-octx.Done():
		w.log.Warn("other workers' reports not read in time; following them as they come", "model", w.cfg.Model)
	}
	w.peers = p
	return nil
}
