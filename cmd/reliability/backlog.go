package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jetinfer/jetinfer/worker/traffic"
	"github.com/nats-io/nats-server/v2/server"
)

// backlogRows is the size of the stored backlog scenarios' queue.
const backlogRows = 1_000_000

// backlogScenario returns a scenario that stores backlogRows rows of
// 64-row requests before any worker runs, as a pool scaled from zero
// finds its queue, and drains them with n workers at default settings.
func backlogScenario(n int) func(context.Context, *runner, *row) error {
	return func(ctx context.Context, r *runner, rw *row) error {
		b, nc, js, err := r.single()
		if err != nil {
			return err
		}
		defer b.shutdown()
		defer nc.Close()
		if err := ensureStreams(ctx, js); err != nil {
			return err
		}
		reqs := make([]*traffic.Request, r.n(backlogRows/64))
		for i := range reqs {
			reqs[i] = traffic.NewRequest(r.d, fmt.Sprintf("b%d-%d", n, i), "backlog", i*7, 64)
		}
		var st traffic.SendStats
		start := time.Now()
		if err := send(ctx, js, reqs, 8, 0, &st); err != nil {
			return err
		}
		rw.note("stored %d requests (%d rows, %.0f MiB) in %.1f s before any worker ran",
			len(reqs), 64*len(reqs), float64(len(reqs)*len(reqs[0].Body))/(1<<20), time.Since(start).Seconds())
		env := r.env(b.url())
		rw.rssBound = boundOf(env)
		start = time.Now()
		for i := range n {
			if _, err := r.startWorker(realWorker, fmt.Sprintf("w%d", i+1), env); err != nil {
				return err
			}
		}
		if _, err := target.Settle(ctx, js, len(reqs), 3*time.Minute); err != nil {
			rw.note("not settled: %v", err)
		}
		took := time.Since(start)
		if err := r.finish(ctx, rw, js, reqs, 30*time.Second); err != nil {
			return err
		}
		rw.note("%d worker(s) at default settings drained it in %.1f s: %.0f rows/s including start-up and warm-up",
			n, took.Seconds(), float64(64*len(reqs))/took.Seconds())
		rw.check(rw.redelivered == 0, "%d redeliveries: a busy worker must stop pulling, not hand requests back", rw.redelivered)
		return nil
	}
}

// bigRows is the rows of a flood-4mib request: 16,000 rows of 8×8 float32
// pixels make a 4 MiB body (with its id column).
const bigRows = 16_000

func flood4MiB(ctx context.Context, r *runner, rw *row) error {
	b, nc, js, err := r.single()
	if err != nil {
		return err
	}
	defer b.shutdown()
	defer nc.Close()
	if err := ensureStreams(ctx, js); err != nil {
		return err
	}
	env := r.env(b.url())
	rw.rssBound = boundOf(env)
	big := func(prefix string, n int) []*traffic.Request {
		out := make([]*traffic.Request, n)
		for i := range out {
			out[i] = traffic.NewRequest(r.d, fmt.Sprintf("%s-%d", prefix, i), "big", i*13, bigRows)
		}
		return out
	}
	// The flood arrives faster than any producer on this machine can
	// publish: ten times the worker's byte budget is stored before the
	// worker starts (arriving at once, as for a pool scaled from zero),
	// and more is published as fast as possible while it drains.
	stored, live := big("st", r.n(160)), big("lv", r.n(40))
	all := append(append([]*traffic.Request{}, stored...), live...)
	var st traffic.SendStats
	start := time.Now()
	if err := send(ctx, js, stored, 8, 0, &st); err != nil {
		return err
	}
	rw.note("stored %d requests of %.2f MiB (%.0f MiB) in %.1f s before the worker started",
		len(stored), float64(len(stored[0].Body))/(1<<20), float64(len(stored)*len(stored[0].Body))/(1<<20), time.Since(start).Seconds())
	w, err := r.startWorker(realWorker, "w1", env)
	if err != nil {
		return err
	}
	start = time.Now()
	wait := sendAsync(ctx, js, live, 8, 0, &st)
	if err := wait(); err != nil {
		return err
	}
	published := time.Since(start)
	if _, err := target.Settle(ctx, js, len(all), 3*time.Minute); err != nil {
		rw.note("not settled: %v", err)
	}
	took := time.Since(start)
	if err := r.finish(ctx, rw, js, all, 30*time.Second); err != nil {
		return err
	}
	cut := slowConsumers(b, "jetinfer worker")
	disconnects := w.countLog("NATS disconnected")
	rw.note("%d more published while it ran (in %.1f s); the worker answered all %d in %.1f s: %.2f requests/s, %.0f rows/s",
		len(live), published.Seconds(), len(all), took.Seconds(), float64(len(all))/took.Seconds(), float64(len(all)*bigRows)/took.Seconds())
	rw.note("worker connections the server cut as slow consumers: %d; worker disconnects logged: %d; bound = 128 MiB + 2 x JETINFER_MAX_PULL_BYTES (default 64 MiB)", cut, disconnects)
	rw.check(cut == 0, "the server cut %d worker connections as slow consumers", cut)
	rw.check(disconnects == 0, "the worker logged %d disconnects", disconnects)
	return nil
}

// slowConsumers counts the closed connections whose name starts with
// name that the server cut as slow consumers.
func slowConsumers(b *broker, name string) int {
	n := 0
	for _, ns := range b.nodes {
		if ns == nil {
			continue
		}
		cz, err := ns.Connz(&server.ConnzOptions{State: server.ConnClosed, Limit: 10000})
		if err != nil {
			continue
		}
		for _, c := range cz.Conns {
			if strings.HasPrefix(c.Name, name) && strings.Contains(c.Reason, "Slow Consumer") {
				n++
			}
		}
	}
	return n
}
