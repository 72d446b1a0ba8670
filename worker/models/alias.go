package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// ActiveAlias is the reserved alias that names the active version.
const ActiveAlias = "active"

// Alias names for a version besides the active one (e.g. "stable",
// "canary"); a request or worker may ask for a model by alias. Lengths
// are checked apart: a bounded repeat such as {0,63} compiles into that
// many copies, which every jetinfer command would pay for at start.
var aliasRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// aliasRecord is the value of <model>.alias.<alias>.
type aliasRecord struct {
	Version string `json:"version"`
}

func aliasKey(model, alias string) string { return model + ".alias." + alias }

// CheckAlias validates an alias name: 1-64 of a-z 0-9 _ -, starting with
// a letter. "active" is valid and means the active version.
func CheckAlias(alias string) error {
	if len(alias) > 64 || !aliasRE.MatchString(alias) {
		return fmt.Errorf("alias %q: want a lower-case name of a-z 0-9 _ -, starting with a letter", alias)
	}
	return nil
}

// SetAlias points alias of model at version, which must exist. Aliases
// are lower-case names such as "stable" or "canary"; "active" is reserved
// for the active version.
func (r *Repository) SetAlias(ctx context.Context, model, alias, version string) error {
	if err := CheckName(model, version); err != nil {
		return err
	}
	if err := CheckAlias(alias); err != nil {
		return err
	}
	if alias == ActiveAlias {
		return fmt.Errorf("alias %q is reserved for the active version", alias)
	}
	if _, _, err := r.version(ctx, model, version); err != nil {
		return fmt.Errorf("setting alias %s: %w", alias, err)
	}
	b, err := json.Marshal(aliasRecord{Version: version})
	if err != nil {
		return fmt.Errorf("encoding alias %s: %w", alias, err)
	}
	if _, err := r.meta.Put(ctx, aliasKey(model, alias), b); err != nil {
		return fmt.Errorf("setting alias %s of %s: %w", alias, model, err)
	}
	r.log.Info("model alias set", "model", model, "alias", alias, "version", version)
	return nil
}

// DeleteAlias removes alias of model.
func (r *Repository) DeleteAlias(ctx context.Context, model, alias string) error {
	if err := CheckName(model, ""); err != nil {
		return err
	}
	if err := r.meta.Delete(ctx, aliasKey(model, alias)); err != nil {
		return fmt.Errorf("deleting alias %s of %s: %w", alias, model, err)
	}
	return nil
}

// Aliases returns model's aliases and the versions they name.
func (r *Repository) Aliases(ctx context.Context, model string) (map[string]string, error) {
	if err := CheckName(model, ""); err != nil {
		return nil, err
	}
	keys, err := r.keys(ctx, model+".alias.*")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, k := range keys {
		alias := strings.TrimPrefix(k, model+".alias.")
		v, err := r.alias(ctx, model, alias)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[alias] = v
	}
	return out, nil
}

func (r *Repository) alias(ctx context.Context, model, alias string) (string, error) {
	e, err := r.meta.Get(ctx, aliasKey(model, alias))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", fmt.Errorf("reading alias %s of %s: %w", alias, model, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("reading alias %s of %s: %w", alias, model, err)
	}
	var a aliasRecord
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		return "", fmt.Errorf("decoding alias %s of %s: %w", alias, model, err)
	}
	return a.Version, nil
}

// aliasesOf returns the sorted aliases naming version.
func aliasesOf(aliases map[string]string, version string) []string {
	var out []string
	for a, v := range aliases {
		if v == version {
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out
}

// ResolveAlias is ResolveVersion for the version alias names; the alias
// "active" is the active version.
func (r *Repository) ResolveAlias(ctx context.Context, model, alias string, node Node) (Resolution, error) {
	if alias == ActiveAlias {
		return r.Resolve(ctx, model, node)
	}
	if err := CheckName(model, ""); err != nil {
		return Resolution{}, err
	}
	v, err := r.alias(ctx, model, alias)
	if err != nil {
		return Resolution{}, fmt.Errorf("resolving %s@%s: %w", model, alias, err)
	}
	return r.ResolveVersion(ctx, model, v, node)
}

// Target returns the version alias names, as an Active record: the
// active version's record for "" or ActiveAlias; for another alias its
// version, when it was set (At), and in Previous the versions it named
// before, most recent last, from the key's history (at most 16 values,
// the bucket's history). ErrNotFound when the alias is not set.
func (r *Repository) Target(ctx context.Context, model, alias string) (Active, error) {
	if alias == "" || alias == ActiveAlias {
		return r.Active(ctx, model)
	}
	if err := CheckName(model, ""); err != nil {
		return Active{}, err
	}
	if err := CheckAlias(alias); err != nil {
		return Active{}, err
	}
	hist, err := r.meta.History(ctx, aliasKey(model, alias))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Active{}, fmt.Errorf("reading alias %s of %s: not set: %w", alias, model, ErrNotFound)
	}
	if err != nil {
		return Active{}, fmt.Errorf("reading alias %s of %s: %w", alias, model, err)
	}
	last := hist[len(hist)-1]
	if last.Operation() != jetstream.KeyValuePut {
		return Active{}, fmt.Errorf("reading alias %s of %s: deleted: %w", alias, model, ErrNotFound)
	}
	decode := func(e jetstream.KeyValueEntry) (string, bool) {
		var a aliasRecord
		if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &a) != nil {
			return "", false
		}
		return a.Version, true
	}
	cur, ok := decode(last)
	if !ok {
		return Active{}, fmt.Errorf("decoding alias %s of %s: %q is not an alias record", alias, model, last.Value())
	}
	t := Active{Version: cur, At: last.Created()}
	for i := len(hist) - 2; i >= 0; i-- { // most recent first, each version once
		if v, ok := decode(hist[i]); ok && v != cur && !slices.Contains(t.Previous, v) {
			t.Previous = append(t.Previous, v)
		}
	}
	slices.Reverse(t.Previous) // most recent last, as in Active
	return t, nil
}

// WatchAlias is WatchActive for the version alias names ("" or
// ActiveAlias: the active version): it sends the current target now (when
// the alias is set) and again whenever the alias is moved, as Active
// records without Previous. Deleting the alias sends nothing (it is
// logged): a worker following it keeps serving what it serves.
func (r *Repository) WatchAlias(ctx context.Context, model, alias string) (<-chan Active, error) {
	if alias == "" || alias == ActiveAlias {
		return r.WatchActive(ctx, model)
	}
	if err := CheckName(model, ""); err != nil {
		return nil, err
	}
	if err := CheckAlias(alias); err != nil {
		return nil, err
	}
	return r.watchKey(ctx, aliasKey(model, alias), func(e jetstream.KeyValueEntry) (Active, bool) {
		if e.Operation() != jetstream.KeyValuePut {
			r.log.Warn("model alias deleted; workers following it keep their version until it is set again", "model", model, "alias", alias)
			return Active{}, false
		}
		var a aliasRecord
		if err := json.Unmarshal(e.Value(), &a); err != nil {
			r.log.Warn("ignoring an undecodable alias record", "model", model, "alias", alias, "err", err)
			return Active{}, false
		}
		return Active{Version: a.Version, At: e.Created()}, true
	})
}
