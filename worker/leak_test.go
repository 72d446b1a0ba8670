package worker_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/jetinfer/jetinfer/worker"
)

// TestRunLeavesNoGoroutines serves requests, shuts the worker down and
// checks that every goroutine Run started has ended. The check is
// registered first, so it runs after every other cleanup (worker stop,
// connection close, server shutdown).
func TestRunLeavesNoGoroutines(t *testing.T) {
	eng := newTestEngine(t)
	before := goleak.IgnoreCurrent() // goroutines of other tests
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	ns := startServer(t)
	nc := connect(t, ns)
	js := mustJS(t, nc)
	w := startWorker(t, nc, eng, worker.Config{Model: "digits"})
	reqs := okRequests("lk", "leak", 50)
	publishAll(t, js, reqs)
	assertExactlyOnce(t, js, reqs)
	if !w.Ready() {
		t.Error("worker not ready while serving")
	}
}
