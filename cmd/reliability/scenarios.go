package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// scenarios run in this order.
var scenarios = []scenario{
	{"backlog-1m", "A stored backlog of 1M rows (64-row requests) before any worker runs, as a pool scaled from zero finds it; one worker at default settings drains it.", backlogScenario(1)},
	{"backlog-1m-3w", "The same 1M-row backlog drained by three workers at default settings.", backlogScenario(3)},
	{"flood-4mib", "A flood of 4 MiB requests (16,000 rows each) at default settings: 640 MiB (10x the worker's byte budget) stored before the worker starts, 160 MiB more published as fast as the producer can while it drains. No slow-consumer disconnect; RSS under the documented bound.", flood4MiB},
	{"result-outage", "The result side is unavailable while requests arrive: the result stream is full (DiscardNew) for 60 s, then no stream takes the result subjects for 15 s, then a plain subscriber takes them (PubAcks time out) for 15 s. Default settings: no request may be failed for it.", resultOutage},
	{"result-leader-change", "A 3-node cluster with R3 streams; the result stream's leader steps down three times while requests flow.", resultLeaderChange},
	{"bad-reply-to", "Requests whose Jetinfer-Reply-To has empty tokens, trailing dots, wildcards, whitespace or another model's prefix, mixed with valid and valid custom Reply-To requests.", badReplyTo},
	{"sigkill", "SIGKILL a worker process mid-batch, repeatedly, under load; a second worker carries on (killed requests come back after the default 30 s AckWait).", sigkill},
	{"nats-restart", "Restart the NATS server (file storage, same store and port) twice mid-run; workers and producers reconnect by themselves.", natsRestart},
	{"cluster-node-loss", "A 3-node JetStream cluster with R3 streams loses the request stream's leader mid-run.", clusterNodeLoss},
	{"engine-faults", "The engine fails transiently (first calls and 1% of calls at random: retried with backoff) and permanently for poison requests (INTERNAL after the default 5 failed attempts, then Term). Stand-in wrapper around the real ONNX Runtime engine.", engineFaults},
	{"deadlines", "Deadlines expire while requests are queued: a backlog whose deadlines pass before any worker runs, and requests with a 5 ms deadline behind a backlog.", deadlines},
	{"producer-retries", "Producers retry publishes with the same Nats-Msg-Id: concurrent duplicates, and late retries after the result exists (inside the 2 min window).", producerRetries},
	{"sigterm", "SIGTERM workers mid-run: stop pulling, finish or hand back in-flight work within the grace period, exit 0; once with a slow stand-in engine whose drain hits JETINFER_DRAIN_TIMEOUT=1s (set to force that path) and hands work back.", sigterm},
	{"consumer-deleted", "An operator deletes the model's durable consumer mid-run; supervised workers (restarted when they exit, as Kubernetes does) must recover: nothing may wait forever in the work queue.", consumerDeleted},
	{"secure-connection", "Worker processes configured only through JETINFER_NATS_TLS_CA/_CERT/_KEY, _USER/_PASSWORD and _NKEY_SEED_FILE serve a producer over TLS with client certificates, under the least-privilege permissions of docs/security.md.", secureConnection},
	{"flood", "Backpressure with 64-row requests at default settings: the real worker meets a 95 MiB backlog, then a worker whose stand-in engine takes 10 ms per batch is flooded at 10x its measured capacity for 5 s. RSS must stay under the documented bound, and throughput at capacity.", flood},
	{"hot-swap", "Three workers serve digits from the model repository (JETINFER_MODEL_SOURCE=repository) under load: five promotions and a rollback, one worker SIGKILLed while loading a version; requests pinned to each new version and to a version the repository lacks.", hotSwap},
	{"bad-input", "Generated malformed requests (random bytes, truncated IPC, wrong dtype, huge declared shapes, too many rows, missing and extra columns, NaN/Inf with JETINFER_REJECT_NON_FINITE=true, oversized headers) mixed into valid traffic.", badInput},
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
	var reqs []*request
	var st sendStats
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

func natsRestart(ctx context.Context, r *runner, rw *row) error {
	b, nc, js, err := r.single()
	if err != nil {
		return err
	}
	defer b.shutdown()
	defer nc.Close()
	env := r.env(b.url())
	rw.rssBound = boundOf(env)
	workers := make([]*proc, 2)
	for i := range workers {
		if workers[i], err = r.startWorker(realWorker, fmt.Sprintf("w%d", i+1), env); err != nil {
			return err
		}
	}
	reqs := r.okRequests("n", "restart", r.n(2000), 16, 3)
	var st sendStats
	wait := sendAsync(ctx, js, reqs, 4, float64(len(reqs))/10, &st)
	for i := range 2 {
		sleepCtx(ctx, 3*time.Second)
		b.stop(0)
		sleepCtx(ctx, time.Second)
		if err := b.start(0); err != nil {
			return fmt.Errorf("restarting the server (%d): %w", i+1, err)
		}
	}
	if err := wait(); err != nil {
		return err
	}
	if err := r.finish(ctx, rw, js, reqs, 90*time.Second); err != nil {
		return err
	}
	reconnects := 0
	for _, p := range workers {
		reconnects += p.countLog("NATS reconnected")
	}
	rw.note("2 server restarts, 1 s down each; %d worker reconnects logged; %d producer publish attempts failed and were retried with the same Nats-Msg-Id", reconnects, st.failures.Load())
	rw.check(reconnects >= 2*len(workers), "workers logged %d reconnects, want at least %d", reconnects, 2*len(workers))
	return nil
}

func clusterNodeLoss(ctx context.Context, r *runner, rw *row) error {
	b, err := startCluster(r.dir, 3)
	if err != nil {
		return err
	}
	defer b.shutdown()
	nc, js, err := r.client(b)
	if err != nil {
		return err
	}
	defer nc.Close()
	start := time.Now()
	if err := ensureStreams(ctx, js, 3); err != nil {
		return err
	}
	rw.note("cluster formed and R3 streams created in %.1f s", time.Since(start).Seconds())
	env := r.env(b.url(), "JETINFER_STREAM_REPLICAS", "3")
	rw.rssBound = boundOf(env)
	for i := range 2 {
		if _, err := r.startWorker(realWorker, fmt.Sprintf("w%d", i+1), env); err != nil {
			return err
		}
	}
	reqs := r.okRequests("c", "cluster", r.n(1500), 16, 4)
	var st sendStats
	wait := sendAsync(ctx, js, reqs, 4, float64(len(reqs))/10, &st)
	sleepCtx(ctx, 4*time.Second)
	var leader string
	if err := retry(ctx, "finding the request stream leader", func(ctx context.Context) (err error) {
		leader, err = streamLeader(ctx, js, reqStream)
		return err
	}); err != nil {
		return err
	}
	done, _ := countResults(ctx, js)
	b.stop(b.nodeIndex(leader))
	rw.note("stopped %s, the leader of %s, after %d results", leader, reqStream, done)
	if err := wait(); err != nil {
		return err
	}
	if err := r.finish(ctx, rw, js, reqs, 120*time.Second); err != nil {
		return err
	}
	if l, err := streamLeader(ctx, js, reqStream); err == nil {
		rw.note("new leader of %s: %s; %d producer publish attempts failed and were retried", reqStream, l, st.failures.Load())
	}
	return nil
}

// updateResults applies f to the result stream's configuration.
func updateResults(ctx context.Context, js jetstream.JetStream, f func(*jetstream.StreamConfig)) error {
	return retry(ctx, "updating the result stream", func(ctx context.Context) error {
		s, err := js.Stream(ctx, resStream)
		if err != nil {
			return err
		}
		cfg := s.CachedInfo().Config
		f(&cfg)
		_, err = js.UpdateStream(ctx, cfg)
		return err
	})
}

func engineFaults(ctx context.Context, r *runner, rw *row) error {
	b, nc, js, err := r.single()
	if err != nil {
		return err
	}
	defer b.shutdown()
	defer nc.Close()
	env := r.env(b.url(), envFailFirst, "5", envFailRate, "0.01", envPoison, "42")
	rw.rssBound = boundOf(env)
	w, err := r.startWorker(standInWorker, "stand-in", env)
	if err != nil {
		return err
	}
	reqs := r.okRequests("e", "engine", r.n(1000), 16, 6)
	g := rng(7)
	const poisoned = 5
	for i := range poisoned {
		q := reqs[g.IntN(len(reqs))]
		q.id = fmt.Sprintf("poison-%d", i)
		q.body = poison(q.body)
		q.want, q.mention = []codec.Code{codec.CodeInternal}, []string{"attempt 5 of 5"}
	}
	var st sendStats
	if err := send(ctx, js, reqs, 4, float64(len(reqs))/6, &st); err != nil {
		return err
	}
	if err := r.finish(ctx, rw, js, reqs, 90*time.Second); err != nil {
		return err
	}
	rw.note("stand-in engine: %s", lastLine(w, "stand-in engine:"))
	rw.check(rw.a.byCode[codec.CodeInternal] == poisoned, "%d INTERNAL results, want exactly the %d poison requests", rw.a.byCode[codec.CodeInternal], poisoned)
	return nil
}

func deadlines(ctx context.Context, r *runner, rw *row) error {
	b, nc, js, err := r.single()
	if err != nil {
		return err
	}
	defer b.shutdown()
	defer nc.Close()
	if err := ensureStreams(ctx, js, 1); err != nil {
		return err
	}
	env := r.env(b.url())
	rw.rssBound = boundOf(env)
	n := r.n(600)
	reqs := r.okRequests("q", "deadline", n, 16, 8)
	expireAt := time.Now().Add(500 * time.Millisecond)
	for i, q := range reqs {
		switch i % 3 {
		case 0: // expires while queued, before any worker runs
			q.header.Set(wire.HeaderDeadline, expireAt.UTC().Format(time.RFC3339Nano))
			q.want, q.mention = []codec.Code{codec.CodeDeadlineExceeded}, []string{"deadline"}
		case 1:
			q.header.Set(wire.HeaderDeadline, time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano))
		}
	}
	var st sendStats
	if err := send(ctx, js, reqs, 8, 0, &st); err != nil {
		return err
	}
	sleepCtx(ctx, time.Until(expireAt)+100*time.Millisecond)
	if _, err := r.startWorker(realWorker, "w1", env); err != nil {
		return err
	}
	// Behind the backlog: a deadline of 5 ms after publishing. Either
	// outcome is allowed, but exactly one.
	tight := r.okRequests("t", "deadline", r.n(300), 16, 9)
	for _, q := range tight {
		q.want, q.mention = []codec.Code{codec.CodeOK, codec.CodeDeadlineExceeded}, []string{"deadline"}
	}
	for _, q := range tight {
		q.header.Set(wire.HeaderDeadline, time.Now().Add(5*time.Millisecond).UTC().Format(time.RFC3339Nano))
		if err := publishRetry(ctx, js, q.msg(), &st); err != nil {
			return err
		}
	}
	reqs = append(reqs, tight...)
	if err := r.finish(ctx, rw, js, reqs, 60*time.Second); err != nil {
		return err
	}
	rw.note("%d requests expired in the backlog, %d far or no deadline, %d with a 5 ms deadline behind the backlog", (n+2)/3, n-(n+2)/3, len(tight))
	return nil
}

func producerRetries(ctx context.Context, r *runner, rw *row) error {
	b, nc, js, err := r.single()
	if err != nil {
		return err
	}
	defer b.shutdown()
	defer nc.Close()
	env := r.env(b.url())
	rw.rssBound = boundOf(env)
	if _, err := r.startWorker(realWorker, "w1", env); err != nil {
		return err
	}
	reqs := r.okRequests("d", "dedup", r.n(1000), 16, 10)
	// Every request is published three times at once from different
	// goroutines (a producer retrying on a lost PubAck races its own first
	// attempt), ...
	var all []*request
	for range 3 {
		all = append(all, reqs...)
	}
	g := rng(11)
	g.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	var st sendStats
	if err := send(ctx, js, all, 8, 0, &st); err != nil {
		return err
	}
	if _, err := settle(ctx, js, len(reqs), 60*time.Second); err != nil {
		return err
	}
	// ... and once more after its result exists and the work queue has
	// removed it.
	var late sendStats
	if err := send(ctx, js, reqs, 8, 0, &late); err != nil {
		return err
	}
	stored := uint64(0)
	if s, err := js.Stream(ctx, reqStream); err == nil {
		stored = s.CachedInfo().State.LastSeq
	}
	var delivered uint64
	if c, err := js.Consumer(ctx, reqStream, model); err == nil {
		delivered = c.CachedInfo().Delivered.Consumer
	}
	if err := r.finish(ctx, rw, js, reqs, 60*time.Second); err != nil {
		return err
	}
	rw.note("%d publishes, %d acknowledged as duplicates; %d late retries, %d as duplicates; the request stream stored %d messages and delivered %d",
		st.published.Load(), st.duplicates.Load(), late.published.Load(), late.duplicates.Load(), stored, delivered)
	rw.check(stored == uint64(len(reqs)), "request stream stored %d messages for %d distinct requests", stored, len(reqs))
	rw.check(late.duplicates.Load() == int64(len(reqs)), "%d of %d late retries were stored again", int64(len(reqs))-late.duplicates.Load(), len(reqs))
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
	var all []*request
	var st sendStats
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
	var reqs []*request
	var st sendStats
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
	q, err := settle(ctx, js, len(reqs), 20*time.Second)
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
	if err != nil && q.noConsumer {
		rw.check(false, "the consumer was never recreated; %d requests wait in the stream forever", q.stored)
		rw.queue = q
		if err := r.stopWorkers(); err != nil {
			rw.check(false, "%v", err)
		}
		a, err := auditResults(ctx, js, r.d, reqs)
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
func busyWith(ctx context.Context, js jetstream.JetStream, reqs []*request, st *sendStats) (wait func() error) {
	before, _ := countResults(ctx, js)
	wait = sendAsync(ctx, js, reqs, 8, 0, st)
	for t := time.Now(); time.Since(t) < 2*time.Second; {
		if n, _ := countResults(ctx, js); n >= before+50 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return wait
}

// lastLine returns the text after prefix on the last log line holding it.
func lastLine(p *proc, prefix string) string {
	out := "(no summary logged)"
	for _, l := range strings.Split(p.tail(50), "\n") {
		if _, after, ok := strings.Cut(l, prefix); ok {
			out = strings.TrimSpace(after)
		}
	}
	return out
}
