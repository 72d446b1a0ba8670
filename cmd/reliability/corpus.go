package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/jetinfer/jetinfer/worker/traffic"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// writeCorpus writes one body of each malformed kind of traffic.Malformed
// to the codec's fuzz corpus (codec/testdata/fuzz/FuzzDecodeRequest/bad-<kind>).
// The worker's tests send the same kinds through a worker
// (TestReliabilityMalformedTrafficMixedIntoValid).
func (r *runner) writeCorpus() error {
	dir := filepath.Join(r.root, "codec", "testdata", "fuzz", "FuzzDecodeRequest")
	g := rng(47)
	for _, k := range traffic.Malformed {
		q := k.New(g, r.d)
		if len(q.Body) == 0 || slices.ContainsFunc(q.Mention, func(s string) bool { return strings.HasPrefix(s, "Jetinfer-") || s == wire.HeaderMsgID }) {
			continue // the body is fine or empty; the headers are what is wrong
		}
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", q.Body)
		if err := os.WriteFile(filepath.Join(dir, "bad-"+k.Name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("writing the fuzz corpus: %w", err)
		}
	}
	return nil
}
