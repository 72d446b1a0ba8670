package worker_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/trt/trttest"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
	"github.com/jetinfer/jetinfer/worker/models"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// rssTrace formats RSS samples in KiB as MiB with one decimal.
func rssTrace(kib []int64) string {
	s := make([]string, len(kib))
	for i, k := range kib {
		s[i] = fmt.Sprintf("%.1f", float64(k)/1024)
	}
	return strings.Join(s, " ")
}

// swapGrowthBound is the RSS growth allowed over ten swaps between models
// whose larger file has modelBytes: 8 MiB plus one and a half times the
// model per swap. Measured on this test (tagger.onnx, 2.6 MB; glibc's
// default allocator, with and without -race): 4-27 MiB over swaps 11-20
// when every engine is closed (the allocator's per-thread arenas still
// settling: with MALLOC_ARENA_MAX=2 it was 2-11 MiB), 66-70 MiB when no
// engine is closed (a tagger session keeps about 2.6 times its file). The
// bound, 46 MiB here, sits between the two.
func swapGrowthBound(modelBytes int64) int64 {
	return 8<<20 + 10*modelBytes*3/2
}

// TestSwapMemoryIsBounded measures the worker's resident set across 20
// swaps between two versions of the transformer tagger (2.6 MB; version 2
// has one weight tensor scaled) promoted alternately under light load (a
// 2-row request every 20 ms), on ONNX Runtime. RSS is read after each
// swap, once the replaced engine is closed and freed Go memory is
// returned to the OS. The first swaps grow it (the allocator's arenas,
// the second model's first session, cost models); the assertion is that
// swaps 11-20 add at most swapGrowthBound. Results are read only at the
// end: each read is an ordered consumer that the in-process server keeps
// for 5 minutes, which would otherwise show as growth per swap.
func TestSwapMemoryIsBounded(t *testing.T) {
	_, ref := loadSeqCase(t, taggerCase)
	ns := startServer(t)
	nc := connect(t, ns)
	repo := openRepo(t, nc)
	orig := repoFile("testdata", "models", "tagger.onnx")
	b, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	pb, _, err := trttest.PerturbONNX(b, 1.1)
	if err != nil {
		t.Fatal(err)
	}
	perturbed := filepath.Join(t.TempDir(), "tagger_perturbed.onnx")
	if err := os.WriteFile(perturbed, pb, 0o644); err != nil {
		t.Fatal(err)
	}
	for v, path := range map[string]string{"1": orig, "2": perturbed} {
		if _, err := repo.Push(context.Background(), "tagger", v, []models.Upload{{Kind: models.KindONNX, Path: path}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := repo.Promote(context.Background(), "tagger", "1"); err != nil {
		t.Fatal(err)
	}
	wnc := connect(t, ns)
	src := worker.Source{Repository: openRepo(t, wnc), Node: cpuNode,
		Open: func(ctx context.Context, res models.Resolution) (worker.Engine, func() error, error) {
			eng, err := ortRuntime.LoadFile(ctx, res.Path, onnxrt.Options{IntraOpThreads: 1, MaxBatch: 16,
				DimRanges: map[string]onnxrt.DimRange{"seq": {Min: 1, Max: taggerSeqMax}}})
			if err != nil {
				return nil, nil, err
			}
			return eng, eng.Close, nil
		}}
	// Cost models are measured once per artifact and then read back, so
	// that swaps are quick.
	cfg := worker.Config{Model: "tagger", MaxDelay: 5 * time.Millisecond, MaxBatchRows: 8,
		CostModelPath: filepath.Join(t.TempDir(), "cost.json")}
	w := startWorker(t, wnc, nil, cfg, worker.WithSource(src))
	c, err := client.New(nc, client.Config{Model: "tagger"})
	if err != nil {
		t.Fatal(err)
	}

	var loaded sync.WaitGroup
	stopLoad := make(chan struct{})
	var sent atomic.Int64
	loaded.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		n := len(ref.ids)
		for i := 0; ; i++ {
			select {
			case <-stopLoad:
				return
			case <-tick.C:
			}
			body := taggerCase.request(t, ref, []int{i % n, (i + 1) % n})
			if _, err := c.Publish(context.Background(), client.Request{ID: fmt.Sprintf("load-%d", i), Job: "load", Body: body}); err != nil {
				t.Error(err)
				return
			}
			sent.Add(1)
		}
	})

	rss := func() int64 { debug.FreeOSMemory(); return rssKiB() }
	rssAt := []int64{rss()}
	const swaps = 20
	start := time.Now()
	for i := range swaps {
		v := []string{"2", "1"}[i%2]
		if _, err := repo.Promote(context.Background(), "tagger", v); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { s := w.Serving(); return s.Version == v && s.EnginesClosed == int64(i+1) },
			"the switch to version "+v+" and the old engine closed")
		rssAt = append(rssAt, rss())
	}
	took := time.Since(start)
	close(stopLoad)
	loaded.Wait()
	byVersion := map[string]int{}
	for id, r := range collect(t, c, "load", int(sent.Load())) {
		v := r.Header.Get(wire.HeaderModelVersion)
		if r.Status != codec.CodeOK || (v != "1" && v != "2") {
			t.Fatalf("%s: %s from version %q (%s)", id, r.Status, v, r.Error)
		}
		byVersion[v]++
	}
	s := w.Serving()
	if s.EnginesOpened != swaps+1 || s.EnginesClosed != swaps {
		t.Fatalf("%+v: want %d engines opened, %d closed", s, swaps+1, swaps)
	}
	fi, err := os.Stat(orig)
	if err != nil {
		t.Fatal(err)
	}
	modelBytes := max(fi.Size(), int64(len(pb)))
	bound := swapGrowthBound(modelBytes)
	first, second := rssAt[swaps/2]-rssAt[0], rssAt[swaps]-rssAt[swaps/2]
	t.Logf("%d swaps of a %d-byte model in %v, %d load requests %v: RSS (MiB) after the first load and each swap: %s; "+
		"swaps 1-10 %+d KiB, swaps 11-20 %+d KiB (bound %d KiB)", swaps, modelBytes, took.Round(time.Millisecond), sent.Load(),
		byVersion, rssTrace(rssAt), first, second, bound>>10)
	if second<<10 > bound {
		t.Fatalf("RSS grew %d KiB over swaps 11-20, more than %d KiB: memory is not returned after swaps", second, bound>>10)
	}
}
