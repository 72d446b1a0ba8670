package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jetinfer/jetinfer/worker/traffic"
	"github.com/nats-io/nats.go/jetstream"
)

// floodRequests returns n requests of 64 rows (16.6 KB bodies).
func (r *runner) floodRequests(prefix string, n int) []*traffic.Request {
	reqs := make([]*traffic.Request, n)
	for i := range reqs {
		reqs[i] = traffic.NewRequest(r.d, fmt.Sprintf("%s-%d", prefix, i), "flood", i*7, 64)
	}
	return reqs
}

// drainRate publishes reqs as a backlog, then measures how fast the
// running workers answer them: results per second from the first result
// to the last.
func drainRate(ctx context.Context, js jetstream.JetStream, reqs []*traffic.Request, total int) (float64, error) {
	var st traffic.SendStats
	before, err := target.CountResults(ctx, js)
	if err != nil {
		return 0, err
	}
	if err := send(ctx, js, reqs, 8, 0, &st); err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := target.Settle(ctx, js, total, 2*time.Minute); err != nil {
		return 0, err
	}
	after, _ := target.CountResults(ctx, js)
	return float64(after-before) / time.Since(start).Seconds(), nil
}

func flood(ctx context.Context, r *runner, rw *row) error {
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
	var all []*traffic.Request

	// Phase A: the real worker meets a backlog twelve times its in-flight
	// budget (this machine's producer cannot outpace the real worker on
	// the digits model, so the flood arrives before the worker starts).
	backlog := r.floodRequests("fa", r.n(6000))
	all = append(all, backlog...)
	var st traffic.SendStats
	if err := send(ctx, js, backlog, 8, 0, &st); err != nil {
		return err
	}
	w1, err := r.startWorker(realWorker, "real", env)
	if err != nil {
		return err
	}
	w1.sampleRSS()
	idle := w1.peakRSS()
	start := time.Now()
	if _, err := target.Settle(ctx, js, len(all), 2*time.Minute); err != nil {
		return err
	}
	capReal := float64(len(backlog)) / time.Since(start).Seconds()
	if code, _ := w1.terminate(20 * time.Second); code != 0 {
		rw.check(false, "real worker exited %d", code)
	}
	rw.note("real worker: backlog of %d requests (%.0f MiB) served at %.0f requests/s (%.0f rows/s); RSS %s MiB idle, %s MiB peak",
		len(backlog), float64(len(backlog))*16.6e3/(1<<20), capReal, capReal*64, mib(idle), mib(w1.peakRSS()))

	// Phase B: a worker whose engine takes 10 ms per batch (stand-in
	// wrapper around the real engine) flooded at 10x its capacity.
	slowEnv := r.env(b.url(), envDelay, "10ms")
	slow, err := r.startWorker(standInWorker, "slow", slowEnv)
	if err != nil {
		return err
	}
	calib := r.floodRequests("cb", r.n(200))
	all = append(all, calib...)
	capSlow, err := drainRate(ctx, js, calib, len(all))
	if err != nil {
		return err
	}
	const window = 5 * time.Second
	fl := r.floodRequests("fb", int(10*capSlow*window.Seconds()))
	all = append(all, fl...)
	before, _ := target.CountResults(ctx, js)
	start = time.Now()
	if err := send(ctx, js, fl, 8, 10*capSlow, &st); err != nil {
		return err
	}
	took := time.Since(start)
	after, _ := target.CountResults(ctx, js)
	thr := float64(after-before) / took.Seconds()
	q, _ := target.Queue(ctx, js)
	slow.sampleRSS()
	rw.note("slow stand-in worker: capacity %.0f requests/s; flood of %d requests (%.0f MiB) at %.0f/s = 10x for %.1f s; served %.0f/s = %.2fx capacity meanwhile; %d requests waiting in the stream, %d held by the worker (its byte budget); peak RSS %s MiB",
		capSlow, len(fl), float64(len(fl))*16.6e3/(1<<20), float64(len(fl))/took.Seconds(), took.Seconds(), thr, thr/capSlow, q.Pending, q.AckPending, mib(slow.peakRSS()))
	rw.check(thr >= 0.7*capSlow, "slow worker served the flood at %.2fx its capacity", thr/capSlow)
	// The worker holds up to its byte budget itself (ack pending); the
	// rest waits in the stream.
	rw.check(q.Pending+q.AckPending > uint64(len(fl)/2), "only %d requests waited (%d in the stream, %d held by the worker): the flood did not exceed the worker's capacity",
		q.Pending+q.AckPending, q.Pending, q.AckPending)
	// Drain the backlog with real workers.
	for i := range 2 {
		if _, err := r.startWorker(realWorker, fmt.Sprintf("drain%d", i+1), env); err != nil {
			return err
		}
	}
	rw.note("default settings; RSS bound = 128 MiB + 2 x JETINFER_MAX_PULL_BYTES (64 MiB)")
	return r.finish(ctx, rw, js, all, 2*time.Minute)
}
