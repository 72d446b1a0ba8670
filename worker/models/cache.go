package models

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// DefaultCacheMaxBytes bounds a node's artifact cache when
// Config.CacheMaxBytes is 0: room for a few versions of a model with
// multi-gigabyte plans.
const DefaultCacheMaxBytes = 10 << 30

// This file bounds the node's artifact cache. Every entry's modification
// time is its last use (set when it is fetched and whenever Fetch finds
// it intact); after Fetch stores a new entry, the least recently used
// entries are removed until the cache fits Config.CacheMaxBytes. Entries
// pinned by this process (Pin: the engines a worker serves or is
// retiring) and the entry just stored are never removed, so the cache may
// stay above the bound while they alone exceed it.

// cachePins counts the pins on each cache entry, by digest.
type cachePins struct {
	mu   sync.Mutex
	pins map[string]int
	// evicting serializes evictions, so that two fetches finishing at
	// once do not both count the same entries.
	evicting sync.Mutex
}

func (p *cachePins) pinned(sha string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pins[sha] > 0
}

// Pin keeps the cache entry of the artifact with digest sha from
// eviction until the returned function is called (once; later calls do
// nothing). Pins count: an entry stays while any pin on it is held. A
// worker pins the artifact of every engine it has open, from just after
// it is resolved until the engine is closed. Pins are this process's
// only: a cache directory shared by several processes may lose an entry
// another one serves, which costs that process a fetch if it needs the
// entry again (a loaded engine no longer reads its file).
func (r *Repository) Pin(sha string) (unpin func()) {
	p := &r.pins
	p.mu.Lock()
	if p.pins == nil {
		p.pins = map[string]int{}
	}
	p.pins[sha]++
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.pins[sha]--; p.pins[sha] <= 0 {
				delete(p.pins, sha)
			}
		})
	}
}

// CacheMaxBytes returns the bound of this node's artifact cache.
func (r *Repository) CacheMaxBytes() int64 { return r.cfg.CacheMaxBytes }

// touch marks a cache entry as used now.
func touch(path string) {
	now := time.Now()
	_ = os.Chtimes(path, now, now) // best effort: a failure only ages the entry
}

// cacheEntry is one file of the cache directory.
type cacheEntry struct {
	sha  string
	size int64
	used time.Time
}

// evict removes the least recently used entries, other than keep and the
// pinned ones, until the cache fits its bound, and returns what it
// removed. Leftover temporary files of fetches that did not finish (a
// killed process) are removed when older than an hour.
func (r *Repository) evict(keep string) []cacheEntry {
	r.pins.evicting.Lock()
	defer r.pins.evicting.Unlock()
	dir := filepath.Join(r.cfg.CacheDir, "sha256")
	des, err := os.ReadDir(dir)
	if err != nil {
		r.log.Warn("reading the artifact cache to bound it", "dir", dir, "err", err)
		return nil
	}
	var entries []cacheEntry
	var total int64
	for _, de := range des {
		info, err := de.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		if strings.HasPrefix(de.Name(), ".fetch-") {
			if time.Since(info.ModTime()) > time.Hour {
				_ = os.Remove(filepath.Join(dir, de.Name()))
			}
			continue
		}
		total += info.Size()
		entries = append(entries, cacheEntry{sha: de.Name(), size: info.Size(), used: info.ModTime()})
	}
	if total <= r.cfg.CacheMaxBytes {
		return nil
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].used.Before(entries[j].used) })
	var removed []cacheEntry
	for _, e := range entries {
		if total <= r.cfg.CacheMaxBytes {
			break
		}
		if e.sha == keep || r.pins.pinned(e.sha) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.sha)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("evicting an artifact cache entry", "sha256", e.sha, "err", err)
			continue
		}
		total -= e.size
		removed = append(removed, e)
		r.log.Info("artifact cache entry evicted", "sha256", e.sha, "size", e.size, "last_used", e.used.UTC().Format(time.RFC3339))
	}
	if total > r.cfg.CacheMaxBytes {
		r.log.Warn("artifact cache above its bound: the entries left are in use", "bytes", total, "max_bytes", r.cfg.CacheMaxBytes)
	}
	return removed
}
