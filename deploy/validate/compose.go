package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// checkCompose loads a compose file as `docker compose config` does
// (schema validation, interpolation, normalization; no engine needed) and
// checks that what it refers to on disk exists and that every service uses
// an image or a build of ours.
func checkCompose(ctx context.Context, file string) (*types.Project, error) {
	dir := filepath.Dir(file)
	details, err := loader.LoadConfigFiles(ctx, []string{file}, dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	details.Environment = types.Mapping{}
	p, err := loader.LoadWithContext(ctx, *details, func(o *loader.Options) {
		o.SetProjectName("jetinfer", true)
		o.ResolvePaths = true
	})
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", file, err)
	}
	var errs []error
	for name, s := range p.Services {
		if s.Image == "" && s.Build == nil {
			errs = append(errs, fmt.Errorf("service %s: neither image nor build", name))
		}
		if s.Build != nil {
			df := s.Build.Dockerfile
			if !filepath.IsAbs(df) {
				df = filepath.Join(s.Build.Context, df)
			}
			if _, err := os.Stat(df); err != nil {
				errs = append(errs, fmt.Errorf("service %s: Dockerfile: %w", name, err))
			}
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					errs = append(errs, fmt.Errorf("service %s: bind mount: %w", name, err))
				}
			}
		}
		for dep := range s.DependsOn {
			if _, ok := p.Services[dep]; !ok {
				errs = append(errs, fmt.Errorf("service %s depends on unknown %s", name, dep))
			}
		}
	}
	return p, errors.Join(errs...)
}
