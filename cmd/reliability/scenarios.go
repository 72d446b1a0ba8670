package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jetinfer/jetinfer/worker/traffic"
	"github.com/nats-io/nats.go/jetstream"
)

// scenarios run in this order.
var scenarios = []scenario{
	{"backlog-1m", "A stored backlog of 1M rows (64-row requests) before any worker runs, as a pool scaled from zero finds it; one worker at default settings drains it.", backlogScenario(1)},
	{"backlog-1m-3w", "The same 1M-row backlog drained by three workers at default settings.", backlogScenario(3)},
	{"flood-4mib", "A flood of 4 MiB requests (16,000 rows each) at default settings: 640 MiB (10x the worker's byte budget) stored before the worker starts, 160 MiB more published as fast as the producer can while it drains. No slow-consumer disconnect; RSS under the documented bound.", flood4MiB},
	{"sigkill", "SIGKILL a worker process mid-batch, repeatedly, under load; a second worker carries on (killed requests come back after the default 30 s AckWait).", sigkill},
	{"sigterm", "SIGTERM workers mid-run: stop pulling, finish or hand back in-flight work within the grace period, exit 0; once with a slow stand-in engine whose drain hits JETINFER_DRAIN_TIMEOUT=1s (set to force that path) and hands work back.", sigterm},
	{"consumer-deleted", "An operator deletes the model's durable consumer mid-run; supervised workers (restarted when they exit, as Kubernetes does) must recover: nothing may wait forever in the work queue.", consumerDeleted},
	{"secure-connection", "Worker processes configured only through JETINFER_NATS_TLS_CA/_CERT/_KEY, _USER/_PASSWORD and _NKEY_SEED_FILE serve a producer over TLS with client certificates, under the least-privilege permissions of docs/security.md.", secureConnection},
	{"flood", "Backpressure with 64-row requests at default settings: the real worker meets a 95 MiB backlog, then a worker whose stand-in engine takes 10 ms per batch is flooded at 10x its measured capacity for 5 s. RSS must stay under the documented bound, and throughput at capacity.", flood},
	{"hot-swap", "Three workers serve digits from the model repository (JETINFER_MODEL_SOURCE=repository) under load: five promotions and a rollback, one worker SIGKILLed while loading a version; requests pinned to each new version and to a version the repository lacks.", hotSwap},
}

func sigkill(ctx context.Context, r *runner, rw *row) error {
	b, nc, js, err := r.single()
	if err != nil {
		return err
	}
	defer b.shutdown()
	defer nc.Close()
	env := r.env(b.url())
	rw.rssBound = boundOf(env)
	if _, err := r.startWorker(realWorker, "steady", env); err != nil {
		return err
	}
	victim, err := r.startWorker(realWorker, "victim", env)
	if err != nil {
		return err
	}
	// Six bursts; each time the workers are busy with one, the victim is
	// killed and restarted.
	var reqs []*traffic.Request
	var st traffic.SendStats
	kills := 0
	for i := range 6 {
		burst := r.okRequests(fmt.Sprintf("k%d", i), "kill", r.n(1200), 32, uint64(1+i))
		reqs = append(reqs, burst...)
		wait := busyWith(ctx, js, burst, &st)
		victim.kill()
		kills++
		if err := wait(); err != nil {
			return err
		}
		if victim, err = r.startWorker(realWorker, "victim", env); err != nil {
			return err
		}
	}
	if err := r.finish(ctx, rw, js, reqs, 150*time.Second); err != nil {
		return err
	}
	rw.note("%d SIGKILLs of the victim worker under load (restarted each time)", kills)
	rw.check(rw.redelivered > 0, "no request was redelivered: no kill hit a request in flight")
	return nil
}

func sigterm(ctx context.Context, r *runner, rw *row) error {
	b, nc, js, err := r.single()
	if err != nil {
		return err
	}
	defer b.shutdown()
	defer nc.Close()
	env := r.env(b.url())
	rw.rssBound = boundOf(env)
	steady, err := r.startWorker(realWorker, "steady", env)
	if err != nil {
		return err
	}
	var all []*traffic.Request
	var st traffic.SendStats
	burst := func(i, n int) (wait func() error) {
		reqs := r.okRequests(fmt.Sprintf("s%d", i), "term", n, 32, uint64(20+i))
		all = append(all, reqs...)
		return busyWith(ctx, js, reqs, &st)
	}
	const grace = 25*time.Second + 5*time.Second // default drain timeout + exit
	var worst time.Duration
	for i := range 3 {
		p, err := r.startWorker(realWorker, fmt.Sprintf("term%d", i+1), env)
		if err != nil {
			return err
		}
		wait := burst(i, r.n(2000))
		code, took := p.terminate(grace)
		worst = max(worst, took)
		rw.check(code == 0, "worker %s exited %d after SIGTERM (took %v): %s", p.name, code, took, p.tail(3))
		rw.check(p.countLog("worker stopped") == 1, "worker %s did not log a clean stop", p.name)
		if err := wait(); err != nil {
			return err
		}
	}
	// A slow engine with a full buffer, alone: its drain times out and it
	// hands the rest back, which a fresh worker then serves.
	if code, _ := steady.terminate(grace); code != 0 {
		rw.check(false, "steady worker exited %d after SIGTERM", code)
	}
	slowEnv := r.env(b.url(), "JETINFER_DRAIN_TIMEOUT", "1s", envDelay, "20ms")
	p, err := r.startWorker(standInWorker, "slow", slowEnv)
	if err != nil {
		return err
	}
	wait := burst(3, r.n(1500))
	code, took := p.terminate(time.Second + 5*time.Second)
	if err := wait(); err != nil {
		return err
	}
	rw.check(code == 0, "slow stand-in worker exited %d after SIGTERM (took %v): %s", code, took, p.tail(3))
	rw.check(p.countLog("drain timeout reached") == 1, "slow worker did not reach its drain timeout")
	if _, err := r.startWorker(realWorker, "after", env); err != nil {
		return err
	}
	if err := r.finish(ctx, rw, js, all, 90*time.Second); err != nil {
		return err
	}
	rw.note("3 real workers SIGTERMed while a burst was being served: exit 0, slowest exit %.2f s (grace %v); a slow stand-in worker (20 ms per batch) exited %d after %.2f s: its 1 s drain timeout passed and it handed the rest back",
		worst.Seconds(), grace, code, took.Seconds())
	return nil
}

func consumerDeleted(ctx context.Context, r *runner, rw *row) error {
	b, nc, js, err := r.single()
	if err != nil {
		return err
	}
	defer b.shutdown()
	defer nc.Close()
	env := r.env(b.url())
	rw.rssBound = boundOf(env)
	sups := make([]*supervisor, 2)
	for i := range sups {
		if sups[i], err = r.supervise(realWorker, fmt.Sprintf("w%d", i+1), env); err != nil {
			return err
		}
	}
	var reqs []*traffic.Request
	var st traffic.SendStats
	for i := range 2 {
		burst := r.okRequests(fmt.Sprintf("x%d", i), "deleted", r.n(1000), 16, uint64(40+i))
		reqs = append(reqs, burst...)
		wait := busyWith(ctx, js, burst, &st)
		if i == 0 {
			if err := js.DeleteConsumer(ctx, reqStream, model); err != nil {
				return fmt.Errorf("deleting the consumer: %w", err)
			}
		}
		if err := wait(); err != nil {
			return err
		}
		sleepCtx(ctx, time.Second)
	}
	q, err := target.Settle(ctx, js, len(reqs), 20*time.Second)
	restarts := 0
	var exits []string
	for _, s := range sups {
		s.mu.Lock()
		restarts += s.restarts
		exits = append(exits, s.exits...)
		s.mu.Unlock()
	}
	rw.note("consumer deleted while the first of two bursts was served; %d worker restarts by the supervisor", restarts)
	for _, e := range exits {
		rw.note("worker %s", e)
	}
	if err != nil && q.NoConsumer {
		rw.check(false, "the consumer was never recreated; %d requests wait in the stream forever", q.Stored)
		rw.queue = q
		if err := r.stopWorkers(); err != nil {
			rw.check(false, "%v", err)
		}
		a, err := target.Audit(ctx, js, reqs)
		if err != nil {
			return err
		}
		rw.a = a
		return nil
	}
	return r.finish(ctx, rw, js, reqs, 30*time.Second)
}

// busyWith publishes reqs in the background and returns once the workers
// have answered 50 of them (or 2 s passed), so that the caller can strike
// while they are busy; wait waits for the rest of the publishes.
func busyWith(ctx context.Context, js jetstream.JetStream, reqs []*traffic.Request, st *traffic.SendStats) (wait func() error) {
	before, _ := target.CountResults(ctx, js)
	wait = sendAsync(ctx, js, reqs, 8, 0, st)
	for t := time.Now(); time.Since(t) < 2*time.Second; {
		if n, _ := target.CountResults(ctx, js); n >= before+50 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return wait
}
