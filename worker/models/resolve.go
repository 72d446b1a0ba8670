package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/trt"
)

// Node is what the per-node choice needs to know about this node: the
// identity trt.Manifest.Check compares a plan's manifest against.
type Node = trt.Node

// Skip says why an artifact was not chosen.
type Skip struct {
	Artifact string `json:"artifact"`
	Kind     Kind   `json:"kind"`
	Reason   string `json:"reason"`
	// Err is the cause (an *trt.IncompatibleError, or an error matching
	// ErrCorrupt); nil for artifacts ranked below the chosen one.
	Err error `json:"-"`
}

// Resolution is the artifact chosen for this node, verified and in the
// local cache.
type Resolution struct {
	Model    string
	Version  string
	Artifact Artifact // Artifact.Manifest describes a chosen plan
	// Path is the verified local copy (in the cache directory). Treat it
	// as read-only.
	Path string
	// Cached reports that the file came from the cache, not the broker.
	Cached bool
	// Skipped lists every other engine artifact (plan or ONNX model) of
	// the version, with the reason it was not chosen.
	Skipped []Skip
}

// Resolve picks the artifact of model's active version that this node
// should run (see ResolveVersion).
func (r *Repository) Resolve(ctx context.Context, model string, node Node) (Resolution, error) {
	a, err := r.Active(ctx, model)
	if err != nil {
		return Resolution{}, fmt.Errorf("resolving %s: %w", model, err)
	}
	return r.ResolveVersion(ctx, model, a.Version, node)
}

// ResolveVersion picks the artifact of model version this node should
// run, fetches it into the cache and verifies its SHA-256: the first
// plan whose manifest is compatible with node (trt.Manifest.CompatibleWith)
// and whose bytes are intact, preferring plans built for this exact GPU
// and TensorRT over hardware- or version-compatible ones (slower), else
// the ONNX model. An incompatible or corrupt artifact is skipped with its
// reason, logged; when nothing is usable the error matches ErrNoArtifact
// and lists every reason.
func (r *Repository) ResolveVersion(ctx context.Context, model, version string, node Node) (Resolution, error) {
	v, err := r.Version(ctx, model, version)
	if err != nil {
		return Resolution{}, fmt.Errorf("resolving %s %s: %w", model, version, err)
	}
	res := Resolution{Model: model, Version: version}
	skip := func(a Artifact, reason string, err error) {
		res.Skipped = append(res.Skipped, Skip{Artifact: a.Name, Kind: a.Kind, Reason: reason, Err: err})
		if err != nil {
			r.log.Info("model artifact skipped", "model", model, "version", version, "artifact", a.Name, "reason", reason)
		}
	}
	candidates := rank(v.Artifacts)
	chosen := -1
	for i, a := range candidates {
		if a.Kind == KindPlan {
			if a.Manifest == nil {
				skip(a, "plan has no manifest in the repository", fmt.Errorf("plan %s has no manifest: %w", a.Name, trt.ErrIncompatible))
				continue
			}
			if err := a.Manifest.CompatibleWith(node); err != nil {
				skip(a, err.Error(), err)
				continue
			}
			if a.Manifest.PlanSHA256 != a.SHA256 {
				err := fmt.Errorf("plan %s: manifest says sha256 %s, repository says %s: %w", a.Name, a.Manifest.PlanSHA256, a.SHA256, ErrCorrupt)
				skip(a, err.Error(), err)
				continue
			}
		}
		path, cached, err := r.Fetch(ctx, a)
		if err != nil {
			if ctx.Err() != nil {
				return Resolution{}, fmt.Errorf("resolving %s %s: %w", model, version, ctx.Err())
			}
			skip(a, err.Error(), err)
			continue
		}
		res.Artifact, res.Path, res.Cached = a, path, cached
		chosen = i
		break
	}
	if chosen < 0 {
		reasons := make([]string, len(res.Skipped))
		for i, s := range res.Skipped {
			reasons[i] = s.Artifact + ": " + s.Reason
		}
		if len(reasons) == 0 {
			reasons = []string{"the version has neither an ONNX model nor a plan"}
		}
		return res, fmt.Errorf("resolving %s %s: %w for this node: %s", model, version, ErrNoArtifact, strings.Join(reasons, "; "))
	}
	for _, a := range candidates[chosen+1:] {
		skip(a, "ranked below "+res.Artifact.Name, nil)
	}
	r.log.Info("model artifact chosen", "model", model, "version", version, "artifact", res.Artifact.Name,
		"kind", res.Artifact.Kind, "cached", res.Cached, "skipped", len(res.Skipped))
	return res, nil
}

// rank returns the engine artifacts in order of preference: plans built
// for one GPU and TensorRT version, then hardware- or version-compatible
// plans (they run slower), then ONNX models; push order breaks ties.
func rank(arts []Artifact) []Artifact {
	score := func(a Artifact) int {
		switch {
		case a.Kind == KindPlan && a.Manifest != nil && a.Manifest.Compatibility.Hardware == trt.HardwareCompatNone &&
			!a.Manifest.Compatibility.VersionCompatible:
			return 0
		case a.Kind == KindPlan:
			return 1
		default:
			return 2
		}
	}
	var out []Artifact
	for _, a := range arts {
		if a.Kind == KindPlan || a.Kind == KindONNX {
			out = append(out, a)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return score(out[i]) < score(out[j]) })
	return out
}

// Fetch returns a verified local copy of art: the cache entry named by its
// SHA-256 when present and intact, else the object fetched from the
// broker, verified and stored in the cache. A corrupt cache entry is
// removed and fetched again; a fetched object whose SHA-256 or size
// differs from the recorded one is an error matching ErrCorrupt and is
// not cached. Storing a new entry may evict others (see Pin); the entry
// returned is the most recently used one.
func (r *Repository) Fetch(ctx context.Context, art Artifact) (path string, cached bool, err error) {
	if _, err := hex.DecodeString(art.SHA256); err != nil || len(art.SHA256) != 2*sha256.Size {
		return "", false, fmt.Errorf("fetching %s: recorded sha256 %q is not a hex SHA-256: %w", art.Object, art.SHA256, ErrCorrupt)
	}
	dir := filepath.Join(r.cfg.CacheDir, "sha256")
	path = filepath.Join(dir, art.SHA256)
	switch sum, size, err := hashFile(path); {
	case err == nil && sum == art.SHA256 && size == art.Size:
		touch(path)
		return path, true, nil
	case err == nil:
		r.log.Warn("corrupt artifact cache entry; fetching again", "path", path, "sha256", sum, "size", size,
			"want_sha256", art.SHA256, "want_size", art.Size)
		if err := os.Remove(path); err != nil {
			return "", false, fmt.Errorf("removing corrupt cache entry %s: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return "", false, fmt.Errorf("reading cache entry: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", false, fmt.Errorf("creating artifact cache %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".fetch-*")
	if err != nil {
		return "", false, fmt.Errorf("creating artifact cache entry: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	ctx, cancel := transferContext(ctx, art.Size)
	defer cancel()
	obj, err := r.obj.Get(ctx, art.Object)
	if err != nil {
		return "", false, fmt.Errorf("fetching %s: %w", art.Object, err)
	}
	defer obj.Close()
	h := sha256.New()
	// The Object Store checks its own digest only at EOF; hash as we go
	// and compare with the digest recorded at push.
	n, err := io.Copy(io.MultiWriter(tmp, h), obj)
	if errors.Is(err, jetstream.ErrDigestMismatch) {
		return "", false, fmt.Errorf("fetching %s: %w: %w", art.Object, ErrCorrupt, err)
	}
	if err != nil {
		return "", false, fmt.Errorf("fetching %s: %w", art.Object, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != art.SHA256 || n != art.Size {
		return "", false, fmt.Errorf("fetching %s: expected %d bytes with sha256 %s, found %d bytes with sha256 %s: %w",
			art.Object, art.Size, art.SHA256, n, sum, ErrCorrupt)
	}
	if err = tmp.Sync(); err != nil {
		return "", false, fmt.Errorf("writing cache entry: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return "", false, fmt.Errorf("writing cache entry: %w", err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return "", false, fmt.Errorf("writing cache entry: %w", err)
	}
	r.evict(art.SHA256)
	return path, false, nil
}
