package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/worker/wire"
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
		if err := ensureStreams(ctx, js, 1); err != nil {
			return err
		}
		reqs := make([]*request, r.n(backlogRows/64))
		for i := range reqs {
			reqs[i] = okRequest(fmt.Sprintf("b%d-%d", n, i), "backlog", r.d, i*7, 64)
		}
		var st sendStats
		start := time.Now()
		if err := send(ctx, js, reqs, 8, 0, &st); err != nil {
			return err
		}
		rw.note("stored %d requests (%d rows, %.0f MiB) in %.1f s before any worker ran",
			len(reqs), 64*len(reqs), float64(len(reqs)*len(reqs[0].body))/(1<<20), time.Since(start).Seconds())
		env := r.env(b.url())
		rw.rssBound = boundOf(env)
		start = time.Now()
		for i := range n {
			if _, err := r.startWorker(realWorker, fmt.Sprintf("w%d", i+1), env); err != nil {
				return err
			}
		}
		if _, err := settle(ctx, js, len(reqs), 3*time.Minute); err != nil {
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
	if err := ensureStreams(ctx, js, 1); err != nil {
		return err
	}
	env := r.env(b.url())
	rw.rssBound = boundOf(env)
	big := func(prefix string, n int) []*request {
		out := make([]*request, n)
		for i := range out {
			out[i] = okRequest(fmt.Sprintf("%s-%d", prefix, i), "big", r.d, i*13, bigRows)
		}
		return out
	}
	// The flood arrives faster than any producer on this machine can
	// publish: ten times the worker's byte budget is stored before the
	// worker starts (arriving at once, as for a pool scaled from zero),
	// and more is published as fast as possible while it drains.
	stored, live := big("st", r.n(160)), big("lv", r.n(40))
	all := append(append([]*request{}, stored...), live...)
	var st sendStats
	start := time.Now()
	if err := send(ctx, js, stored, 8, 0, &st); err != nil {
		return err
	}
	rw.note("stored %d requests of %.2f MiB (%.0f MiB) in %.1f s before the worker started",
		len(stored), float64(len(stored[0].body))/(1<<20), float64(len(stored)*len(stored[0].body))/(1<<20), time.Since(start).Seconds())
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
	if _, err := settle(ctx, js, len(all), 3*time.Minute); err != nil {
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

// resultOutage makes the result side unavailable for a minute while
// requests arrive, then twice more in other ways, at default settings.
func resultOutage(ctx context.Context, r *runner, rw *row) error {
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
	reqs := r.okRequests("p", "outage", r.n(3000), 16, 5)
	var st sendStats
	wait := sendAsync(ctx, js, reqs, 4, float64(len(reqs))/100, &st)
	type phase struct {
		name        string
		window      time.Duration
		block, undo func(*jetstream.StreamConfig)
		capture     bool
	}
	subjects := []string{wire.ResultSubjects("jetinfer")}
	phases := []phase{
		{name: "the result stream is full (max_msgs reached, DiscardNew)", window: time.Minute,
			block: func(c *jetstream.StreamConfig) { c.MaxMsgs, c.Discard = 1, jetstream.DiscardNew },
			undo:  func(c *jetstream.StreamConfig) { c.MaxMsgs, c.Discard = -1, jetstream.DiscardOld }},
		{name: "no stream takes the result subjects (no responders)", window: 15 * time.Second,
			block: func(c *jetstream.StreamConfig) { c.Subjects = []string{"jetinfer.parked.>"} },
			undo:  func(c *jetstream.StreamConfig) { c.Subjects = subjects }},
		{name: "a plain subscriber takes them (no PubAck: 10 s timeouts)", window: 15 * time.Second, capture: true,
			block: func(c *jetstream.StreamConfig) { c.Subjects = []string{"jetinfer.parked.>"} },
			undo:  func(c *jetstream.StreamConfig) { c.Subjects = subjects }},
	}
	for _, p := range phases {
		sleepCtx(ctx, 2*time.Second)
		var sub *nats.Subscription
		if p.capture {
			if sub, err = nc.Subscribe(wire.ResultSubjects("jetinfer"), func(*nats.Msg) {}); err != nil {
				return err
			}
		}
		if err := updateResults(ctx, js, p.block); err != nil {
			return err
		}
		before, _ := countResults(ctx, js)
		sleepCtx(ctx, p.window)
		notReady := 0
		for _, w := range workers {
			notReady += w.countLog("result side unavailable")
		}
		if err := updateResults(ctx, js, p.undo); err != nil {
			return err
		}
		if sub != nil {
			_ = sub.Unsubscribe()
		}
		after, _ := countResults(ctx, js)
		rw.note("%v: %s; %d results stored meanwhile, outages logged so far %d", p.window, p.name, after-before, notReady)
	}
	if err := wait(); err != nil {
		return err
	}
	if err := r.finish(ctx, rw, js, reqs, 2*time.Minute); err != nil {
		return err
	}
	outages, back := 0, 0
	for _, p := range workers {
		outages += p.countLog("result side unavailable")
		back += p.countLog("result side back")
	}
	rw.note("workers logged %d outages and %d recoveries; %d redeliveries", outages, back, rw.redelivered)
	rw.check(outages > 0, "no worker saw the result side go down: the scenario did not inject what it claims")
	rw.check(rw.a.byCode[codec.CodeInternal] == 0, "%d requests answered INTERNAL: an outage must not fail requests", rw.a.byCode[codec.CodeInternal])
	return nil
}

// resultLeaderChange moves the result stream's leader (stepdowns) in a
// 3-node cluster while requests flow, at default settings.
func resultLeaderChange(ctx context.Context, r *runner, rw *row) error {
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
	if err := ensureStreams(ctx, js, 3); err != nil {
		return err
	}
	env := r.env(b.url(), "JETINFER_STREAM_REPLICAS", "3")
	rw.rssBound = boundOf(env)
	for i := range 2 {
		if _, err := r.startWorker(realWorker, fmt.Sprintf("w%d", i+1), env); err != nil {
			return err
		}
	}
	reqs := r.okRequests("l", "leader", r.n(3000), 16, 12)
	var st sendStats
	wait := sendAsync(ctx, js, reqs, 4, float64(len(reqs))/15, &st)
	var leaders []string
	for range 3 {
		sleepCtx(ctx, 3*time.Second)
		old, err := streamLeader(ctx, js, resStream)
		if err != nil {
			return err
		}
		if err := retry(ctx, "stepping down the result stream's leader", func(ctx context.Context) error {
			resp, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+resStream, nil)
			if err != nil {
				return err
			}
			if string(resp.Data) == "" {
				return fmt.Errorf("empty stepdown response")
			}
			return nil
		}); err != nil {
			return err
		}
		var now string
		_ = retry(ctx, "waiting for the new leader", func(ctx context.Context) (err error) {
			if now, err = streamLeader(ctx, js, resStream); err == nil && now == old {
				err = fmt.Errorf("leader still %s", old)
			}
			return err
		})
		leaders = append(leaders, old+"→"+now)
	}
	if err := wait(); err != nil {
		return err
	}
	if err := r.finish(ctx, rw, js, reqs, 2*time.Minute); err != nil {
		return err
	}
	rw.note("result stream leader changes: %v; %d producer publish attempts failed and were retried", leaders, st.failures.Load())
	rw.check(len(leaders) == 3, "only %d leader changes", len(leaders))
	rw.check(rw.a.byCode[codec.CodeInternal] == 0, "%d requests answered INTERNAL", rw.a.byCode[codec.CodeInternal])
	return nil
}

// badReplyTo mixes requests whose Jetinfer-Reply-To cannot be published
// to into valid traffic: each is answered INVALID_ARGUMENT on its job's
// default subject, and the queue drains.
func badReplyTo(ctx context.Context, r *runner, rw *row) error {
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
	bad := []struct{ subject, mention string }{
		{"jetinfer.res.digits..x", "empty token"},
		{"jetinfer.res.digits.x.", "empty token"},
		{".jetinfer.res.digits.x", "empty token"},
		{"jetinfer.res.digits.*", "wildcard"},
		{"jetinfer.res.digits.>", "wildcard"},
		{"jetinfer.res.digits.a b", "whitespace"},
		{"jetinfer.res.other.x", "not under"},
		{"elsewhere.x", "not under"},
	}
	reqs := r.okRequests("r", "replyto", r.n(800), 16, 13)
	for i, q := range reqs {
		if i%4 != 0 {
			if i%4 == 1 { // a valid custom reply subject
				q.header.Set(wire.HeaderReplyTo, "jetinfer.res.digits.replyto.custom")
			}
			continue
		}
		c := bad[(i/4)%len(bad)]
		q.header.Set(wire.HeaderReplyTo, c.subject)
		q.want, q.mention, q.kind = []codec.Code{codec.CodeInvalidArgument}, []string{wire.HeaderReplyTo, c.mention}, "reply-to "+c.mention
	}
	var st sendStats
	if err := send(ctx, js, reqs, 4, 0, &st); err != nil {
		return err
	}
	if err := r.finish(ctx, rw, js, reqs, time.Minute); err != nil {
		return err
	}
	rw.note("%d bad Reply-To subjects of %d kinds mixed into %d requests (a quarter of the rest with a valid custom Reply-To)",
		(len(reqs)+3)/4, len(bad), len(reqs))
	return nil
}
