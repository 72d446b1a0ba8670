package models

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Alias names for a version besides the active one (e.g. "stable",
// "canary"); a request or worker may ask for a model by alias.
var aliasRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)

// aliasRecord is the value of <model>.alias.<alias>.
type aliasRecord struct {
	Version string `json:"version"`
}

func aliasKey(model, alias string) string { return model + ".alias." + alias }

// SetAlias points alias of model at version, which must exist. Aliases
// are lower-case names such as "stable" or "canary"; "active" is reserved
// for the active version.
func (r *Repository) SetAlias(ctx context.Context, model, alias, version string) error {
	if err := CheckName(model, version); err != nil {
		return err
	}
	if !aliasRE.MatchString(alias) || alias == "active" {
		return fmt.Errorf("alias %q: want a lower-case name of a-z 0-9 _ - other than \"active\"", alias)
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
	if alias == "active" {
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
