package models

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// ChunkSize is the Object Store chunk size artifacts are written with:
// reading 300 MiB takes 0.37 s with 4 MiB chunks and 3.97 s with the
// client's default 128 KiB. A server whose max_payload is smaller gets
// chunks that fit it (see chunkSize).
const ChunkSize = 4 << 20

// maxHistory bounds the previously active versions kept for rollback.
const maxHistory = 16

// Errors callers match with errors.Is.
var (
	// ErrNotFound: the model, version or artifact is not in the repository.
	ErrNotFound = errors.New("not in the model repository")
	// ErrExists: the version or artifact is already there; versions are
	// immutable except for adding artifacts.
	ErrExists = errors.New("already in the model repository")
	// ErrActive: the version is active (or named by an alias) and cannot
	// be removed.
	ErrActive = errors.New("version is active")
	// ErrCorrupt: an artifact's bytes do not match its recorded SHA-256.
	ErrCorrupt = errors.New("artifact corrupt")
	// ErrNoArtifact: no artifact of the version can run on this node.
	ErrNoArtifact = errors.New("no usable artifact")
)

// Kind is the kind of an artifact.
type Kind string

// Artifact kinds.
const (
	KindONNX      Kind = "onnx"      // an ONNX model, run by ONNX Runtime or built into plans
	KindPlan      Kind = "plan"      // a serialized TensorRT plan; Artifact.Manifest describes it
	KindManifest  Kind = "manifest"  // a plan's manifest as JSON (Artifact.For names the plan)
	KindReference Kind = "reference" // reference inputs/outputs as Arrow IPC
)

// Artifact is one stored file of a model version.
type Artifact struct {
	Name   string `json:"name"`   // file name inside the version, e.g. "model.onnx"
	Kind   Kind   `json:"kind"`   //
	Object string `json:"object"` // Object Store name: <model>/<version>/<name>
	SHA256 string `json:"sha256"` // lower-case hex; verified before every use
	Size   int64  `json:"size"`   // bytes
	// Manifest describes a plan (KindPlan only).
	Manifest *trt.Manifest `json:"manifest,omitempty"`
	// For names the plan a manifest belongs to (KindManifest only).
	For string `json:"for,omitempty"`
	// Added is when the artifact was pushed.
	Added time.Time `json:"added"`
}

// Version is the metadata of one model version, stored in the KV bucket
// under <model>.versions.<version>.
type Version struct {
	Model     string     `json:"model"`
	Version   string     `json:"version"`
	Artifacts []Artifact `json:"artifacts"`
	Pushed    time.Time  `json:"pushed"`
}

// Artifact returns the artifact called name.
func (v Version) Artifact(name string) (Artifact, bool) {
	for _, a := range v.Artifacts {
		if a.Name == name {
			return a, true
		}
	}
	return Artifact{}, false
}

// Active is the active version of a model, stored under <model>.active.
type Active struct {
	Version string `json:"version"`
	// Previous lists the versions active before, most recent last; a
	// rollback returns to the last one that still exists.
	Previous []string  `json:"previous,omitempty"`
	At       time.Time `json:"at"`
}

// Config names the repository's buckets and the node's cache.
type Config struct {
	// MetaBucket is the KV bucket (default wire.DefaultModelBucket).
	MetaBucket string
	// ArtifactBucket is the Object Store bucket (default
	// wire.DefaultArtifactBucket).
	ArtifactBucket string
	// CacheDir is this node's artifact cache (default
	// <user cache dir>/jetinfer/artifacts).
	CacheDir string
	// Replicas of both buckets when they are created (default 1).
	Replicas int
	// CacheMaxBytes bounds the cache: after a fetch, least recently used
	// entries not pinned (Repository.Pin) are removed until it fits
	// (default DefaultCacheMaxBytes).
	CacheMaxBytes int64
	// ChunkSize overrides the chunk size artifacts are written with
	// (default ChunkSize, or less where the server's max_payload is
	// smaller). Benchmarks compare chunk sizes with it.
	ChunkSize uint32
}

// Repository is a model repository. Its methods are safe for concurrent use.
type Repository struct {
	cfg   Config
	meta  jetstream.KeyValue
	obj   jetstream.ObjectStore
	chunk uint32
	log   *slog.Logger
	now   func() time.Time
	pins  cachePins
}

// Option configures a Repository.
type Option func(*Repository)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(r *Repository) { r.log = l } }

// Open opens the repository's buckets, creating them when missing.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config, opts ...Option) (*Repository, error) {
	if cfg.MetaBucket == "" {
		cfg.MetaBucket = wire.DefaultModelBucket
	}
	if cfg.ArtifactBucket == "" {
		cfg.ArtifactBucket = wire.DefaultArtifactBucket
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.CacheMaxBytes <= 0 {
		cfg.CacheMaxBytes = DefaultCacheMaxBytes
	}
	if cfg.CacheDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("finding the artifact cache directory (set a cache dir): %w", err)
		}
		cfg.CacheDir = filepath.Join(dir, "jetinfer", "artifacts")
	}
	r := &Repository{cfg: cfg, chunk: chunkSize(js), log: slog.New(slog.DiscardHandler), now: time.Now}
	if cfg.ChunkSize > 0 {
		r.chunk = cfg.ChunkSize
	}
	for _, o := range opts {
		o(r)
	}
	var err error
	r.meta, err = js.KeyValue(ctx, cfg.MetaBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		r.meta, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      cfg.MetaBucket,
			Description: "jetinfer model repository: <model>.versions.<version>, <model>.active, <model>.alias.<alias>",
			History:     maxHistory,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("opening model bucket %s: %w", cfg.MetaBucket, err)
	}
	r.obj, err = js.ObjectStore(ctx, cfg.ArtifactBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		r.obj, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      cfg.ArtifactBucket,
			Description: "jetinfer model artifacts: <model>/<version>/<artifact>",
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("opening artifact bucket %s: %w", cfg.ArtifactBucket, err)
	}
	return r, nil
}

// chunkSize is ChunkSize, or the largest multiple of 64 KiB that fits the
// server's max_payload with room for the chunk's headers.
func chunkSize(js jetstream.JetStream) uint32 {
	c := uint32(ChunkSize)
	if nc := js.Conn(); nc != nil {
		if mp := nc.MaxPayload(); mp > 0 && mp-4096 < int64(c) {
			c = uint32(max(64<<10, (mp-4096)/(64<<10)*(64<<10)))
		}
	}
	return c
}

// ChunkSize returns the chunk size this repository writes artifacts with.
func (r *Repository) ChunkSize() uint32 { return r.chunk }

// CacheDir returns this node's artifact cache directory.
func (r *Repository) CacheDir() string { return r.cfg.CacheDir }

// Name patterns; their lengths are checked apart (see aliasRE).
var (
	modelRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	// Versions may hold dots ("1.2.0") but not empty tokens.
	versionRE  = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	artifactRE = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]*$`)
)

// CheckName validates a model name and, when version is not empty, a
// version: they become KV keys and object names.
func CheckName(model, version string) error {
	if len(model) > 128 || !modelRE.MatchString(model) {
		return fmt.Errorf("model name %q: want 1-128 of A-Z a-z 0-9 _ -", model)
	}
	if version != "" && (len(version) > 128 || !versionRE.MatchString(version)) {
		return fmt.Errorf("version %q: want up to 128 of A-Z a-z 0-9 _ - and single dots between them", version)
	}
	return nil
}

func versionKey(model, version string) string { return model + ".versions." + version }
func activeKey(model string) string           { return model + ".active" }
func objectName(model, version, name string) string {
	return model + "/" + version + "/" + name
}

// Upload is one file to push.
type Upload struct {
	// Name is the artifact name (default: the base name of Path).
	Name string
	Kind Kind
	Path string
	// Manifest is required for KindPlan; the plan must be the one it
	// describes. It is stored beside the plan as <name>.json.
	Manifest *trt.Manifest
}

// Push stores the uploads as artifacts of model version. A new version
// needs at least one ONNX model or plan. Pushing to an existing version
// adds artifacts (a plan built later for another GPU); an artifact name
// already there is refused with ErrExists. Nothing becomes visible until
// every artifact is stored.
func (r *Repository) Push(ctx context.Context, model, version string, uploads []Upload) (Version, error) {
	if err := CheckName(model, version); err != nil {
		return Version{}, err
	}
	v, rev, err := r.version(ctx, model, version)
	exists := err == nil
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Version{}, err
	}
	if !exists {
		v = Version{Model: model, Version: version, Pushed: r.now().UTC()}
		engine := slices.ContainsFunc(uploads, func(u Upload) bool { return u.Kind == KindONNX || u.Kind == KindPlan })
		if !engine {
			return Version{}, fmt.Errorf("pushing %s %s: a new version needs an ONNX model or a plan", model, version)
		}
	}
	// Hash every file first, so that a bad push stores nothing.
	type item struct {
		up   Upload
		art  Artifact
		data []byte // manifests: the bytes to store; nil for files
	}
	var items []item
	names := map[string]bool{}
	for _, a := range v.Artifacts {
		names[a.Name] = true
	}
	add := func(it item) error {
		if len(it.art.Name) > 255 || !artifactRE.MatchString(it.art.Name) {
			return fmt.Errorf("artifact name %q: want a file name of A-Z a-z 0-9 _ . -", it.art.Name)
		}
		if names[it.art.Name] {
			return fmt.Errorf("pushing %s %s artifact %s: %w", model, version, it.art.Name, ErrExists)
		}
		names[it.art.Name] = true
		it.art.Object = objectName(model, version, it.art.Name)
		it.art.Added = r.now().UTC()
		items = append(items, it)
		return nil
	}
	for _, u := range uploads {
		if u.Name == "" {
			u.Name = filepath.Base(u.Path)
		}
		sum, size, err := hashFile(u.Path)
		if err != nil {
			return Version{}, err
		}
		art := Artifact{Name: u.Name, Kind: u.Kind, SHA256: sum, Size: size}
		switch u.Kind {
		case KindONNX, KindReference:
		case KindPlan:
			if u.Manifest == nil {
				return Version{}, fmt.Errorf("pushing plan %s: a plan needs its manifest", u.Path)
			}
			if err := u.Manifest.Validate(); err != nil {
				return Version{}, fmt.Errorf("pushing plan %s: %w", u.Path, err)
			}
			if u.Manifest.PlanSHA256 != sum || u.Manifest.PlanBytes != size {
				return Version{}, fmt.Errorf("pushing plan %s: manifest describes a plan of %d bytes, sha256 %s; the file has %d bytes, sha256 %s",
					u.Path, u.Manifest.PlanBytes, u.Manifest.PlanSHA256, size, sum)
			}
			m := *u.Manifest
			art.Manifest = &m
		default:
			return Version{}, fmt.Errorf("pushing %s: unknown artifact kind %q", u.Path, u.Kind)
		}
		if err := add(item{up: u, art: art}); err != nil {
			return Version{}, err
		}
		if u.Kind == KindPlan {
			b, err := u.Manifest.Marshal()
			if err != nil {
				return Version{}, err
			}
			sum := sha256.Sum256(b)
			if err := add(item{art: Artifact{Name: u.Name + ".json", Kind: KindManifest, For: u.Name,
				SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b))}, data: b}); err != nil {
				return Version{}, err
			}
		}
	}
	// A plan must be built from this version's ONNX model, when both say.
	var onnx []string
	for _, a := range v.Artifacts {
		if a.Kind == KindONNX {
			onnx = append(onnx, a.SHA256)
		}
	}
	for _, it := range items {
		if it.art.Kind == KindONNX {
			onnx = append(onnx, it.art.SHA256)
		}
	}
	for _, it := range items {
		if m := it.art.Manifest; m != nil && m.ONNXSHA256 != "" && len(onnx) > 0 && !slices.Contains(onnx, m.ONNXSHA256) {
			return Version{}, fmt.Errorf("pushing plan %s: it was built from ONNX sha256 %s, which is not this version's ONNX model", it.art.Name, m.ONNXSHA256)
		}
	}

	var stored []string
	cleanup := func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		for _, name := range stored {
			if err := r.obj.Delete(dctx, name); err != nil {
				r.log.Warn("removing artifact of a failed push", "object", name, "err", err)
			}
		}
	}
	for _, it := range items {
		if err := r.put(ctx, it.art, it.up.Path, it.data); err != nil {
			cleanup()
			return Version{}, err
		}
		stored = append(stored, it.art.Object)
		v.Artifacts = append(v.Artifacts, it.art)
	}
	b, err := json.Marshal(v)
	if err != nil {
		cleanup()
		return Version{}, fmt.Errorf("encoding version %s %s: %w", model, version, err)
	}
	if exists {
		_, err = r.meta.Update(ctx, versionKey(model, version), b, rev)
	} else {
		_, err = r.meta.Create(ctx, versionKey(model, version), b)
	}
	if err != nil {
		cleanup()
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Version{}, fmt.Errorf("recording %s %s: changed by another push meanwhile: %w", model, version, ErrExists)
		}
		return Version{}, fmt.Errorf("recording %s %s: %w", model, version, err)
	}
	r.log.Info("model version pushed", "model", model, "version", version, "artifacts", len(items))
	return v, nil
}

// put stores one artifact from path (or data) and checks that the Object
// Store's digest is the one hashed before.
func (r *Repository) put(ctx context.Context, art Artifact, path string, data []byte) error {
	var src io.Reader
	if data != nil {
		src = bytes.NewReader(data)
	} else {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("opening %s: %w", path, err)
		}
		defer f.Close()
		src = f
	}
	ctx, cancel := transferContext(ctx, art.Size)
	defer cancel()
	info, err := r.obj.Put(ctx, jetstream.ObjectMeta{
		Name:        art.Object,
		Description: string(art.Kind),
		Opts:        &jetstream.ObjectMetaOptions{ChunkSize: r.chunk},
	}, src)
	if err != nil {
		return fmt.Errorf("storing artifact %s: %w", art.Object, err)
	}
	got, err := jetstream.DecodeObjectDigest(info.Digest)
	if err != nil || hex.EncodeToString(got) != art.SHA256 || int64(info.Size) != art.Size {
		return fmt.Errorf("storing artifact %s: stored %d bytes with digest %s, hashed %d bytes, sha256 %s (file changed while pushing?): %w",
			art.Object, info.Size, info.Digest, art.Size, art.SHA256, ErrCorrupt)
	}
	return nil
}

// transferContext bounds one artifact transfer when ctx has no deadline.
// The jetstream client otherwise applies its default timeout (5 s) to the
// whole Object Store Get or Put, which a large plan does not meet: the
// bound here is 30 s plus size at 4 MiB/s.
func transferContext(ctx context.Context, size int64) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, 30*time.Second+time.Duration(size/(4<<20))*time.Second)
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// version reads a version's metadata and its KV revision.
func (r *Repository) version(ctx context.Context, model, version string) (Version, uint64, error) {
	e, err := r.meta.Get(ctx, versionKey(model, version))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Version{}, 0, fmt.Errorf("reading %s %s: %w", model, version, ErrNotFound)
	}
	if err != nil {
		return Version{}, 0, fmt.Errorf("reading %s %s: %w", model, version, err)
	}
	var v Version
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return Version{}, 0, fmt.Errorf("decoding %s %s: %w", model, version, err)
	}
	return v, e.Revision(), nil
}

// Version returns the metadata of model version.
func (r *Repository) Version(ctx context.Context, model, version string) (Version, error) {
	if err := CheckName(model, version); err != nil {
		return Version{}, err
	}
	v, _, err := r.version(ctx, model, version)
	return v, err
}

// Versions returns every version of model, oldest push first.
func (r *Repository) Versions(ctx context.Context, model string) ([]Version, error) {
	if err := CheckName(model, ""); err != nil {
		return nil, err
	}
	keys, err := r.keys(ctx, model+".versions.>")
	if err != nil {
		return nil, err
	}
	var out []Version
	for _, k := range keys {
		v, _, err := r.version(ctx, model, strings.TrimPrefix(k, model+".versions."))
		if errors.Is(err, ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Pushed.Equal(out[j].Pushed) {
			return out[i].Pushed.Before(out[j].Pushed)
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// Models returns the names of every model with a version or an active
// version, sorted.
func (r *Repository) Models(ctx context.Context) ([]string, error) {
	keys, err := r.keys(ctx, ">")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, k := range keys {
		if m, _, ok := strings.Cut(k, "."); ok {
			seen[m] = true
		}
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out, nil
}

func (r *Repository) keys(ctx context.Context, filter string) ([]string, error) {
	l, err := r.meta.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("listing keys %s of %s: %w", filter, r.cfg.MetaBucket, err)
	}
	defer func() { _ = l.Stop() }()
	var out []string
	seen := map[string]bool{}
	for k := range l.Keys() {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out, nil
}

// Active returns model's active version record, and ErrNotFound when none
// was promoted.
func (r *Repository) Active(ctx context.Context, model string) (Active, error) {
	if err := CheckName(model, ""); err != nil {
		return Active{}, err
	}
	a, _, err := r.active(ctx, model)
	return a, err
}

func (r *Repository) active(ctx context.Context, model string) (Active, uint64, error) {
	e, err := r.meta.Get(ctx, activeKey(model))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Active{}, 0, fmt.Errorf("reading active version of %s: none promoted: %w", model, ErrNotFound)
	}
	if err != nil {
		return Active{}, 0, fmt.Errorf("reading active version of %s: %w", model, err)
	}
	var a Active
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		return Active{}, 0, fmt.Errorf("decoding active version of %s: %w", model, err)
	}
	return a, e.Revision(), nil
}

// setActive writes next as model's active record, compare-and-set against
// rev (0: the key must not exist).
func (r *Repository) setActive(ctx context.Context, model string, next Active, rev uint64) error {
	b, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("encoding active version of %s: %w", model, err)
	}
	if rev == 0 {
		_, err = r.meta.Create(ctx, activeKey(model), b)
	} else {
		_, err = r.meta.Update(ctx, activeKey(model), b, rev)
	}
	return err
}

// update runs change on the current active record and writes its result,
// retrying when another writer changed the record meanwhile.
func (r *Repository) update(ctx context.Context, model string, change func(cur Active, found bool) (Active, error)) (Active, error) {
	for attempt := 0; ; attempt++ {
		cur, rev, err := r.active(ctx, model)
		found := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Active{}, err
		}
		next, err := change(cur, found)
		if err != nil {
			return Active{}, err
		}
		if found && next.Version == cur.Version && slices.Equal(next.Previous, cur.Previous) {
			return cur, nil // nothing to write
		}
		next.At = r.now().UTC()
		err = r.setActive(ctx, model, next, rev)
		if err == nil {
			return next, nil
		}
		if attempt >= 5 || !(errors.Is(err, jetstream.ErrKeyExists) || isWrongSequence(err)) {
			return Active{}, fmt.Errorf("writing active version of %s: %w", model, err)
		}
	}
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Promote makes version the active version of model. The version must
// exist. Promoting the active version changes nothing.
func (r *Repository) Promote(ctx context.Context, model, version string) (Active, error) {
	if err := CheckName(model, version); err != nil {
		return Active{}, err
	}
	if _, _, err := r.version(ctx, model, version); err != nil {
		return Active{}, fmt.Errorf("promoting: %w", err)
	}
	a, err := r.update(ctx, model, func(cur Active, found bool) (Active, error) {
		if found && cur.Version == version {
			return cur, nil
		}
		next := Active{Version: version}
		if found {
			next.Previous = append(slices.Clone(cur.Previous), cur.Version)
			if n := len(next.Previous); n > maxHistory {
				next.Previous = next.Previous[n-maxHistory:]
			}
		}
		return next, nil
	})
	if err == nil {
		r.log.Info("model version promoted", "model", model, "version", version)
	}
	return a, err
}

// Rollback makes the previously active version of model active again,
// skipping previous versions removed since. It fails when there is none.
func (r *Repository) Rollback(ctx context.Context, model string) (Active, error) {
	if err := CheckName(model, ""); err != nil {
		return Active{}, err
	}
	a, err := r.update(ctx, model, func(cur Active, found bool) (Active, error) {
		if !found {
			return Active{}, fmt.Errorf("rolling back %s: no version was ever promoted: %w", model, ErrNotFound)
		}
		prev := slices.Clone(cur.Previous)
		for len(prev) > 0 {
			v := prev[len(prev)-1]
			prev = prev[:len(prev)-1]
			if v == cur.Version {
				continue
			}
			_, _, err := r.version(ctx, model, v)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return Active{}, err
			}
			return Active{Version: v, Previous: prev}, nil
		}
		return Active{}, fmt.Errorf("rolling back %s from %s: no previously active version left: %w", model, cur.Version, ErrNotFound)
	})
	if err == nil {
		r.log.Info("model version rolled back", "model", model, "version", a.Version)
	}
	return a, err
}

// Remove deletes model version and its artifacts. The active version, or
// one an alias names, is refused with ErrActive: promote, roll back or
// move the alias first.
func (r *Repository) Remove(ctx context.Context, model, version string) error {
	if err := CheckName(model, version); err != nil {
		return err
	}
	v, rev, err := r.version(ctx, model, version)
	if err != nil {
		return fmt.Errorf("removing: %w", err)
	}
	a, _, err := r.active(ctx, model)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if err == nil && a.Version == version {
		return fmt.Errorf("removing %s %s: %w; promote another version or roll back first", model, version, ErrActive)
	}
	aliases, err := r.Aliases(ctx, model)
	if err != nil {
		return err
	}
	if names := aliasesOf(aliases, version); len(names) > 0 {
		return fmt.Errorf("removing %s %s: aliased as %s: %w; move or delete the alias first", model, version, strings.Join(names, ", "), ErrActive)
	}
	// The key goes first, so that nobody resolves a half-removed version.
	if err := r.meta.Delete(ctx, versionKey(model, version), jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("removing %s %s: %w", model, version, err)
	}
	var errs []error
	for _, art := range v.Artifacts {
		if err := r.obj.Delete(ctx, art.Object); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			errs = append(errs, fmt.Errorf("removing artifact %s: %w", art.Object, err))
		}
	}
	r.log.Info("model version removed", "model", model, "version", version)
	return errors.Join(errs...)
}

// WatchActive sends model's active version record now (when one exists)
// and after every promotion or rollback, until ctx ends; the channel is
// then closed. It keeps only the latest record: a reader that falls
// behind skips the records superseded meanwhile.
func (r *Repository) WatchActive(ctx context.Context, model string) (<-chan Active, error) {
	if err := CheckName(model, ""); err != nil {
		return nil, err
	}
	return r.watchKey(ctx, activeKey(model), func(e jetstream.KeyValueEntry) (Active, bool) {
		if e.Operation() != jetstream.KeyValuePut {
			return Active{}, false
		}
		var a Active
		if err := json.Unmarshal(e.Value(), &a); err != nil {
			r.log.Warn("ignoring an undecodable active version record", "model", model, "err", err)
			return Active{}, false
		}
		return a, true
	})
}

// watchKey sends decode's record of key's current value and of every
// change until ctx ends, keeping only the latest (see WatchActive);
// records decode declines are skipped.
func (r *Repository) watchKey(ctx context.Context, key string, decode func(jetstream.KeyValueEntry) (Active, bool)) (<-chan Active, error) {
	w, err := r.meta.Watch(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", key, err)
	}
	out := make(chan Active, 1)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		for {
			var e jetstream.KeyValueEntry
			var ok bool
			select {
			case <-ctx.Done():
				return
			case e, ok = <-w.Updates():
				if !ok {
					return
				}
			}
			if e == nil {
				continue // the end of the current values
			}
			a, ok := decode(e)
			if !ok {
				continue
			}
			for sent := false; !sent; {
				select {
				case out <- a:
					sent = true
				default:
					select { // replace the record nobody read yet
					case <-out:
					default:
					}
				}
			}
		}
	}()
	return out, nil
}
