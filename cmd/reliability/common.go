package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/traffic"
)

// env returns a worker process environment for the broker at url: the
// worker's defaults, but for what a test harness must set (where the
// broker, model and library are; an HTTP port of its own per process, since
// several workers share this machine; no trace export). extra holds KEY,
// VALUE pairs that a scenario overrides, each with its reason.
func (r *runner) env(url string, extra ...string) map[string]string {
	e := map[string]string{
		"JETINFER_NATS_URL":    url,
		"JETINFER_MODEL":       model,
		"JETINFER_MODEL_PATH":  filepath.Join(r.root, "testdata", "models", "digits.onnx"),
		"JETINFER_ORT_LIBRARY": r.ortLib,
		"JETINFER_LOG_LEVEL":   "info",
		"OTEL_TRACES_EXPORTER": "none",
		"JETINFER_HTTP_LISTEN": "127.0.0.1:0",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		e[extra[i]] = extra[i+1]
	}
	return e
}

// boundOf is the documented RSS bound (worker.MemoryBound) of workers
// started with env.
func boundOf(env map[string]string) int64 {
	var c worker.Config
	if v, err := strconv.Atoi(env["JETINFER_MAX_PULL_BYTES"]); err == nil {
		c.MaxPullBytes = worker.ByteSize(v)
	}
	return worker.MemoryBound(c)
}

// workerConfig is the worker.Config the processes of env use, for
// creating streams from the runner before any worker runs.
func workerConfig() worker.Config {
	return worker.Config{Model: model}
}

// single starts a one-node broker and connects the runner's client.
func (r *runner) single() (*broker, *nats.Conn, jetstream.JetStream, error) {
	b, err := startSingle(r.dir)
	if err != nil {
		return nil, nil, nil, err
	}
	nc, js, err := r.client(b)
	if err != nil {
		b.shutdown()
		return nil, nil, nil, err
	}
	return b, nc, js, nil
}

func (r *runner) client(b *broker) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := b.connect("reliability " + r.scenario)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// ensureStreams creates the streams as the workers will, retrying while
// the server starts up.
func ensureStreams(ctx context.Context, js jetstream.JetStream) error {
	return retry(ctx, "creating streams", func(ctx context.Context) error {
		_, err := worker.EnsureStreams(ctx, js, workerConfig())
		return err
	})
}

// finish waits for the work to settle, stops the workers (SIGTERM, which
// must exit 0), and audits the result stream into rw.
func (r *runner) finish(ctx context.Context, rw *row, js jetstream.JetStream, reqs []*traffic.Request, timeout time.Duration) error {
	q, err := target.Settle(ctx, js, len(reqs), timeout)
	if err != nil {
		rw.note("not settled: %v", err)
	}
	rw.queue = q
	if d, err := target.Deliveries(ctx, js); err == nil {
		if n, ok := d.Redelivered(); ok {
			rw.redelivered = n
			rw.note("%d deliveries of %d stored requests: %d redeliveries", d.Delivered, d.Stored, n)
		} else {
			rw.redelivered = -1
			rw.note("%d stored requests; the consumer was recreated, so its delivery count (%d) covers only its own life", d.Stored, d.Delivered)
		}
	}
	if err := r.stopWorkers(); err != nil {
		rw.failures = append(rw.failures, err.Error())
	}
	a, err := target.Audit(ctx, js, reqs)
	if err != nil {
		return fmt.Errorf("auditing results: %w", err)
	}
	rw.a = a
	return nil
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// okRequests returns n valid requests of 1 to maxRows rows, ids
// <prefix>-<i>, in job job.
func (r *runner) okRequests(prefix, job string, n, maxRows int, seed uint64) []*traffic.Request {
	g := rng(seed)
	reqs := make([]*traffic.Request, n)
	for i := range reqs {
		reqs[i] = traffic.NewRequest(r.d, fmt.Sprintf("%s-%d", prefix, i), job, g.IntN(r.d.Rows()), 1+g.IntN(maxRows))
	}
	return reqs
}

// send publishes reqs from conc goroutines, at about rate per second
// (0: as fast as the server acknowledges).
func send(ctx context.Context, js jetstream.JetStream, reqs []*traffic.Request, conc int, rate float64, st *traffic.SendStats) error {
	return target.Send(ctx, js, reqs, traffic.SendOptions{Concurrency: conc, Rate: rate}, st)
}

// sendAsync publishes reqs in the background; wait returns send's error.
func sendAsync(ctx context.Context, js jetstream.JetStream, reqs []*traffic.Request, conc int, rate float64, st *traffic.SendStats) (wait func() error) {
	return target.SendAsync(ctx, js, reqs, traffic.SendOptions{Concurrency: conc, Rate: rate}, st)
}
