package models_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/worker/models"
)

// BenchmarkFetch measures fetching and verifying a 64 MiB artifact from
// the broker into an empty cache, with the repository's 4 MiB chunks and
// with the Object Store client's default 128 KiB, on one server in one
// run. Compare the two ns/op (MB/s).
func BenchmarkFetch(b *testing.B) {
	const size = 64 << 20
	ns := startServer(b, 8<<20)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, size)
	_, _ = rand.Read(data)
	path := filepath.Join(b.TempDir(), "big.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	onnx := repoFile("testdata", "models", "digits.onnx")
	for _, chunk := range []uint32{models.ChunkSize, 128 << 10} {
		b.Run(fmt.Sprintf("chunk=%dKiB", chunk>>10), func(b *testing.B) {
			cache := b.TempDir()
			repo, err := models.Open(b.Context(), js, models.Config{CacheDir: cache, ChunkSize: chunk,
				MetaBucket: fmt.Sprintf("m%d", chunk), ArtifactBucket: fmt.Sprintf("a%d", chunk)})
			if err != nil {
				b.Fatal(err)
			}
			v, err := repo.Version(b.Context(), "big", "1") // pushed by an earlier -count round
			if errors.Is(err, models.ErrNotFound) {
				v, err = repo.Push(b.Context(), "big", "1", []models.Upload{{Kind: models.KindONNX, Path: onnx}, {Kind: models.KindReference, Path: path}})
			}
			if err != nil {
				b.Fatal(err)
			}
			art, _ := v.Artifact("big.bin")
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				if err := os.RemoveAll(cache); err != nil {
					b.Fatal(err)
				}
				if _, cached, err := repo.Fetch(b.Context(), art); err != nil || cached {
					b.Fatalf("fetch: cached %v, %v", cached, err)
				}
			}
		})
	}
}
