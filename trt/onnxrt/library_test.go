package onnxrt

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/jetinfer/jetinfer/trt"
)

func TestFindLibrary(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "custom", "libonnxruntime.so.1")
	if err := os.MkdirAll(filepath.Dir(lib), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lib, []byte("not really a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		candidates []string
	}{
		{"file", []string{"", filepath.Join(dir, "missing.so"), lib}},
		{"directory", []string{filepath.Dir(lib)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := FindLibrary(c.candidates...)
			if err != nil || got != lib {
				t.Errorf("FindLibrary(%q) = %q, %v; want %q", c.candidates, got, err, lib)
			}
		})
	}

	t.Run("cache in a parent directory", func(t *testing.T) {
		root := t.TempDir()
		cached := filepath.Join(root, ".cache", "onnxruntime", "lib", LibraryName)
		if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cached, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		deep := filepath.Join(root, "a", "b")
		if err := os.MkdirAll(deep, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Chdir(deep)
		got, err := FindLibrary(filepath.Join(root, "nothing-here"))
		if err != nil {
			t.Fatal(err)
		}
		if resolved, _ := filepath.EvalSymlinks(got); got != cached && resolved != cached {
			t.Errorf("FindLibrary = %q, want %q", got, cached)
		}
	})

	t.Run("user cache, where make ort installs", func(t *testing.T) {
		cache := t.TempDir()
		t.Setenv("XDG_CACHE_HOME", cache)
		t.Chdir(t.TempDir())
		cached := filepath.Join(cache, "jetinfer", "onnxruntime-"+InstalledVersion, "lib", LibraryName)
		if err := os.MkdirAll(filepath.Dir(cached), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cached, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := FindLibrary("")
		if err != nil || got != cached {
			t.Errorf("FindLibrary() = %q, %v; want %q", got, err, cached)
		}
	})

	t.Run("not found", func(t *testing.T) {
		t.Setenv("XDG_CACHE_HOME", t.TempDir())
		t.Chdir(t.TempDir())
		got, err := FindLibrary(filepath.Join(dir, "missing"))
		if err == nil {
			for _, d := range systemLibraryDirs {
				if filepath.Dir(got) == d {
					t.Skipf("a system copy exists at %s", got)
				}
			}
			t.Fatalf("FindLibrary = %q, want an error", got)
		}
		if !errors.Is(err, trt.ErrUnavailable) {
			t.Errorf("error %v does not wrap trt.ErrUnavailable", err)
		}
	})
}

func TestOptionsDimRange(t *testing.T) {
	o, err := Options{DimRanges: map[string]DimRange{
		"seq":    {Min: 2, Max: 300},
		"mask:1": {Min: 3, Opt: 5, Max: 9},
	}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.IntraOpThreads != 1 || o.InterOpThreads != 1 || o.MaxBatch != 64 {
		t.Errorf("defaults = %+v", o)
	}
	for _, c := range []struct {
		input string
		index int
		param string
		want  DimRange
	}{
		{"x", 1, "seq", DimRange{2, 300, 300}},
		{"mask", 1, "seq", DimRange{3, 5, 9}},
		{"x", 1, "", DimRange{1, 4096, 4096}},
		{"x", 2, "other", DimRange{1, 4096, 4096}},
	} {
		if got := o.dimRange(c.input, c.index, c.param); got != c.want {
			t.Errorf("dimRange(%s:%d %q) = %+v, want %+v", c.input, c.index, c.param, got, c.want)
		}
	}
	for _, bad := range []Options{
		{IntraOpThreads: -1}, {InterOpThreads: -1}, {MaxBatch: -1},
		{DimRanges: map[string]DimRange{"a": {Min: 0, Max: 3}}},
		{DimRanges: map[string]DimRange{"a": {Min: 4, Max: 3}}},
		{DimRanges: map[string]DimRange{"a": {Min: 1, Opt: 5, Max: 3}}},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("withDefaults(%+v) succeeded", bad)
		}
	}
}
