package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt/testengine"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/traffic"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// TestQueuedRowsAreCoalesced holds the engine on its first batch while
// 64 one-row requests queue behind it: once released, their rows must run
// in shared batches of at most MaxBatchRows rows (fewer engine calls than
// requests), and each request must still get exactly its own row back.
func TestQueuedRowsAreCoalesced(t *testing.T) {
	ns := startServer(t)
	nc := connect(t, ns)
	js := mustJS(t, nc)
	// A fixed cost per engine call, as a GPU's launch and transfer
	// overheads give: batching then pays whatever the warm-up measures.
	// Without it the stand-in's cost is a few µs per row, and on a loaded
	// machine the measured model can price one-row batches as well as
	// larger ones (this test once saw 64 one-row calls in CI).
	eng, err := testengine.New(testengine.Config{Latency: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	cfg := worker.Config{Model: "digits", MaxBatchRows: 16, Executors: 1}
	startWorker(t, nc, eng, cfg)
	eng.ResetStats()
	release := make(chan struct{})
	eng.SetFault(testengine.Block(release))

	const n = 64
	reqs := make([]*traffic.Request, n)
	for i := range reqs {
		reqs[i] = traffic.NewRequest(synth, fmt.Sprintf("q-%d", i), "coalesce", 7*i, 1)
	}
	publishAll(t, js, reqs)
	cons, err := js.Consumer(context.Background(), wire.DefaultRequestStream, "digits")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		ci, err := cons.Info(context.Background())
		return err == nil && ci.NumAckPending == n && eng.Stats().Running == 1
	}, "every request taken in while the engine holds the first batch")
	close(release)

	a := assertExactlyOnce(t, js, reqs)
	if a.ByCode[codec.CodeOK] != n {
		t.Errorf("statuses %v, want %d OK", a.ByCode, n)
	}
	st := eng.Stats()
	t.Logf("engine: %d calls, largest batch %d rows", st.Calls, st.MaxBatchRows)
	if st.Calls >= n || st.MaxBatchRows < 2 || st.MaxBatchRows > int64(cfg.MaxBatchRows) {
		t.Errorf("engine stats %+v for %d one-row requests queued together: want fewer calls than requests and batches of 2 to %d rows",
			st, n, cfg.MaxBatchRows)
	}
}
