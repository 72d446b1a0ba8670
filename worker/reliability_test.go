package worker_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/traffic"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// The tests in this file check jetinfer's delivery invariant under faults
// against real in-process JetStream servers: every request ends in exactly
// one visible result in the result stream (none lost, none duplicated,
// each with its own rows) and nothing is left in the work queue. They run
// the pure-Go test engine and share their traffic and audit code
// (worker/traffic) with cmd/reliability, which runs the faults that need
// separate processes (SIGKILL, SIGTERM, memory bounds, configuration from
// the environment) against `jetinfer worker` processes.

func TestReliabilityProducerRetriesYieldOneResult(t *testing.T) {
	eng := newTestEngine(t)
	ns := startServer(t)
	nc := connect(t, ns)
	js := mustJS(t, nc)
	startWorker(t, nc, eng, worker.Config{Model: "digits"})
	reqs := okRequests("retry", "retry", 200)
	// Each request three times at once (a producer retrying after a lost
	// PubAck races its first attempt) ...
	var all []*traffic.Request
	for range 3 {
		all = append(all, reqs...)
	}
	if dups := publishAll(t, js, all); dups != 2*len(reqs) {
		t.Errorf("%d publishes acknowledged as duplicates, want %d", dups, 2*len(reqs))
	}
	assertExactlyOnce(t, js, reqs)
	// ... and once more after its result exists and the work queue has
	// removed it, inside the duplicate window.
	if dups := publishAll(t, js, reqs); dups != len(reqs) {
		t.Errorf("%d of %d late retries were stored again", len(reqs)-dups, len(reqs))
	}
	assertExactlyOnce(t, js, reqs)
	if n := redeliveries(t, js); n != 0 {
		t.Errorf("%d redeliveries; every request should have run once", n)
	}
}

// updateResultStream applies f to the result stream's configuration.
func updateResultStream(t *testing.T, js jetstream.JetStream, f func(*jetstream.StreamConfig)) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, wire.DefaultResultStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	f(&cfg)
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("updating the result stream: %v", err)
	}
}

// TestReliabilityResultSideOutage makes the result side unavailable twice
// while requests arrive: first the result stream refuses every result
// (full, DiscardNew), then no stream listens on the result subjects at all
// (PubAcks time out). Both outages last longer than the consumer's AckWait.
// Every request must still get exactly one OK result: an outage is not the
// requests' fault, so it costs them no attempt, and the worker keeps them
// in progress instead of letting them be redelivered.
func TestReliabilityResultSideOutage(t *testing.T) {
	eng := newTestEngine(t)
	ns := startServer(t)
	nc := connect(t, ns)
	js := mustJS(t, nc)
	// Non-default: AckWait 1s (the minimum) so that a 3s outage outlasts
	// it; PublishTimeout 500ms so that the second outage's PubAck
	// timeouts come quickly.
	w := startWorker(t, nc, eng, worker.Config{Model: "digits", AckWait: time.Second, PublishTimeout: 500 * time.Millisecond})
	reqs := okRequests("pf", "pubfail", 300)
	publishAll(t, js, reqs[:100])
	notReady := func() bool { return !w.Ready() }

	updateResultStream(t, js, func(c *jetstream.StreamConfig) { c.MaxMsgs, c.Discard = 1, jetstream.DiscardNew })
	publishAll(t, js, reqs[100:200])
	waitFor(t, notReady, "the worker to report not ready while results are refused")
	time.Sleep(3 * time.Second)
	updateResultStream(t, js, func(c *jetstream.StreamConfig) { c.MaxMsgs, c.Discard = -1, jetstream.DiscardOld })
	waitFor(t, w.Ready, "the worker to be ready again once results are stored")

	sub, err := nc.Subscribe("jetinfer.res.>", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	updateResultStream(t, js, func(c *jetstream.StreamConfig) { c.Subjects = []string{"jetinfer.parked.>"} })
	publishAll(t, js, reqs[200:])
	waitFor(t, notReady, "the worker to report not ready while no stream stores results")
	time.Sleep(3 * time.Second)
	updateResultStream(t, js, func(c *jetstream.StreamConfig) { c.Subjects = []string{"jetinfer.res.>"} })
	_ = sub.Unsubscribe()

	if a := assertExactlyOnce(t, js, reqs); a.ByCode[codec.CodeOK] != len(reqs) {
		t.Errorf("statuses %v: every request should be answered OK", a.ByCode)
	}
	if n := redeliveries(t, js); n != 0 {
		t.Errorf("%d redeliveries: requests held through an outage must stay in progress", n)
	}
}

// restartable is an in-process JetStream server that can be restarted on
// the same port with the same file store.
type restartable struct {
	opts server.Options
	ns   *server.Server
}

func startRestartable(t *testing.T) *restartable {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &restartable{opts: server.Options{Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: filepath.Join(t.TempDir(), "js"), MaxPayload: 8 << 20, NoSigs: true, NoLog: true}}
	r.start(t)
	t.Cleanup(r.stop)
	return r
}

func (r *restartable) start(t *testing.T) {
	t.Helper()
	o := r.opts
	ns, err := server.NewServer(&o)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	r.ns = ns
}

func (r *restartable) stop() {
	if r.ns != nil {
		r.ns.Shutdown()
		r.ns.WaitForShutdown()
		r.ns = nil
	}
}

// reconnecting connects to urls and reconnects forever, as the jetinfer
// commands do.
func reconnecting(t *testing.T, urls string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestReliabilityServerRestart(t *testing.T) {
	eng := newTestEngine(t)
	srv := startRestartable(t)
	url := srv.ns.ClientURL()
	wnc := reconnecting(t, url)
	startWorker(t, wnc, eng, worker.Config{Model: "digits", AckWait: 2 * time.Second})
	js := mustJS(t, reconnecting(t, url))
	reqs := okRequests("rs", "restart", 600)
	publishAll(t, js, reqs[:200])
	srv.stop()
	time.Sleep(300 * time.Millisecond)
	srv.start(t)
	publishAll(t, js, reqs[200:400])
	srv.stop()
	srv.start(t)
	publishAll(t, js, reqs[400:])
	assertExactlyOnce(t, js, reqs)
}

// startJSCluster starts an n-node JetStream cluster and returns its nodes
// and a comma-separated client URL list.
func startJSCluster(t *testing.T, n int) ([]*server.Server, string) {
	t.Helper()
	free := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	routes := make([]string, n)
	routePorts := make([]int, n)
	for i := range n {
		routePorts[i] = free()
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[i])
	}
	dir := t.TempDir()
	nodes := make([]*server.Server, n)
	var urls []string
	for i := range n {
		ns, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			Cluster: server.ClusterOpts{Name: "rel", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
			NoSigs:  true, NoLog: true, MaxPayload: 8 << 20,
		})
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatal("cluster node not ready")
		}
		nodes[i] = ns
		urls = append(urls, ns.ClientURL())
		t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	}
	return nodes, strings.Join(urls, ",")
}

func TestReliabilityClusterNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster takes about 5 s to elect its first leader")
	}
	eng := newTestEngine(t)
	nodes, urls := startJSCluster(t, 3)
	cfg := worker.Config{Model: "digits", Replicas: 3, AckWait: 2 * time.Second}
	js := mustJS(t, reconnecting(t, urls))
	waitFor(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := worker.EnsureStreams(ctx, js, cfg)
		return err == nil
	}, "the cluster to create the R3 streams")
	startWorker(t, reconnecting(t, urls), eng, cfg)
	startWorker(t, reconnecting(t, urls), newTestEngine(t), cfg)
	reqs := okRequests("cl", "cluster", 400)
	publishAll(t, js, reqs[:200])
	s, err := js.Stream(context.Background(), wire.DefaultRequestStream)
	if err != nil {
		t.Fatal(err)
	}
	leader := s.CachedInfo().Cluster.Leader
	for _, ns := range nodes {
		if ns.Name() == leader {
			ns.Shutdown()
			ns.WaitForShutdown()
		}
	}
	t.Logf("stopped %s, the request stream's leader", leader)
	publishAll(t, js, reqs[200:])
	assertExactlyOnce(t, js, reqs)
}

// TestReliabilityLongIDsSharingAPrefix sends requests whose ids exceed
// the 1024-byte limit and differ only after it: each must still get its
// own (error) result.
func TestReliabilityLongIDsSharingAPrefix(t *testing.T) {
	eng := newTestEngine(t)
	ns := startServer(t)
	nc := connect(t, ns)
	js := mustJS(t, nc)
	startWorker(t, nc, eng, worker.Config{Model: "digits"})
	prefix := strings.Repeat("x", 1024)
	var reqs []*traffic.Request
	for _, suffix := range []string{"a", "b", "c"} {
		q := traffic.NewRequest(synth, prefix+suffix, "long", 0, 1)
		q.Want, q.Mention = []codec.Code{codec.CodeInvalidArgument}, []string{wire.HeaderMsgID}
		reqs = append(reqs, q)
	}
	publishAll(t, js, reqs)
	// Each is answered under its own sha256-<hex> id (traffic.ResultIDFor):
	// had the result stream dropped two as duplicates, two would be lost.
	a := assertExactlyOnce(t, js, reqs)
	if a.ByCode[codec.CodeInvalidArgument] != 3 {
		t.Errorf("statuses %v, want 3 INVALID_ARGUMENT", a.ByCode)
	}
}

// TestReliabilityConsumerDeleted deletes the model's consumer under a
// running worker: the worker must not keep running without pulling (its
// Run returns an error, so that its process restarts), and a new worker
// recreates the consumer and serves everything.
func TestReliabilityConsumerDeleted(t *testing.T) {
	eng := newTestEngine(t)
	ns := startServer(t)
	nc := connect(t, ns)
	js := mustJS(t, nc)
	cfg := worker.Config{Model: "digits", AckWait: 2 * time.Second}
	w, err := worker.New(nc, eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	waitFor(t, w.Ready, "the worker to pull")
	reqs := okRequests("cd", "deleted", 200)
	publishAll(t, js, reqs[:100])
	if err := js.DeleteConsumer(context.Background(), wire.DefaultRequestStream, "digits"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run returned nil after its consumer was deleted")
		}
		t.Logf("Run: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		<-done
		t.Fatal("the worker kept running for 20s without a consumer; its requests would wait forever")
	}
	startWorker(t, connect(t, ns), eng, cfg)
	publishAll(t, js, reqs[100:])
	assertExactlyOnce(t, js, reqs)
}

// TestReliabilityStoredBacklogAtDefaults stores more rows than a worker
// admits at once (its default row budget is 65,536) before the worker
// starts, as a pool scaled from zero finds its queue, and drains it at
// default settings: every request runs once, none is handed back or
// redelivered, none is answered INTERNAL.
func TestReliabilityStoredBacklogAtDefaults(t *testing.T) {
	eng := newTestEngine(t)
	ns := startServer(t)
	nc := connect(t, ns)
	js := mustJS(t, nc)
	cfg := worker.Config{Model: "digits"}
	if _, err := worker.EnsureStreams(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}
	const n, rows = 1500, 64 // 96,000 rows
	reqs := make([]*traffic.Request, n)
	for i := range reqs {
		reqs[i] = traffic.NewRequest(synth, fmt.Sprintf("bl-%d", i), "backlog", i*13, rows)
	}
	publishAll(t, js, reqs)
	startWorker(t, nc, eng, cfg)
	if a := assertExactlyOnce(t, js, reqs); a.ByCode[codec.CodeOK] != n {
		t.Errorf("statuses %v: every request of the backlog should be answered OK", a.ByCode)
	}
	if r := redeliveries(t, js); r != 0 {
		t.Errorf("%d redeliveries: a busy worker must stop pulling, not hand requests back", r)
	}
}

// TestReliabilityResultLeaderChange moves the result stream's leader
// (stepdowns) three times in a 3-node cluster while requests flow.
func TestReliabilityResultLeaderChange(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster takes about 5 s to elect its first leader")
	}
	_, urls := startJSCluster(t, 3)
	cfg := worker.Config{Model: "digits", Replicas: 3}
	nc := reconnecting(t, urls)
	js := mustJS(t, nc)
	waitFor(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := worker.EnsureStreams(ctx, js, cfg)
		return err == nil
	}, "the cluster to create the R3 streams")
	startWorker(t, reconnecting(t, urls), newTestEngine(t), cfg)
	startWorker(t, reconnecting(t, urls), newTestEngine(t), cfg)
	reqs := okRequests("ld", "leader", 900)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wait := model.SendAsync(ctx, js, reqs, traffic.SendOptions{Concurrency: 4, Rate: 150}, nil)
	leader := func() string {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second) // no answer while no leader
		defer cancel()
		s, err := js.Stream(ctx, wire.DefaultResultStream)
		if err != nil || s.CachedInfo().Cluster == nil {
			return ""
		}
		return s.CachedInfo().Cluster.Leader
	}
	for i := range 3 {
		var old string
		waitFor(t, func() bool { old = leader(); return old != "" }, "a result stream leader")
		// A stepdown may elect the same node again (its peers were behind):
		// step down again, at most once a second, until the leader moved.
		var stepped time.Time
		waitFor(t, func() bool {
			if l := leader(); l != "" && l != old {
				return true
			}
			if time.Since(stepped) > time.Second {
				stepped = time.Now()
				_, _ = nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+wire.DefaultResultStream, nil, 2*time.Second)
			}
			return false
		}, "the result stream's leader to move")
		t.Logf("stepdown %d: leader was %s", i+1, old)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if a := assertExactlyOnce(t, js, reqs); a.Internal > 0 {
		t.Errorf("%d requests answered INTERNAL: a leader change must not fail requests", a.Internal)
	}
}

// TestReliabilityMalformedTrafficMixedIntoValid mixes every kind of
// malformed request traffic.Malformed generates (random bytes, truncated
// IPC, wrong dtypes and shapes, huge declared shapes, too many rows,
// missing and extra columns, NaN and Inf, oversized headers) and
// unusable Reply-To subjects into valid traffic, some of it with a valid
// custom Reply-To: each malformed request gets one error result that
// names what was wrong, each valid one its own rows.
func TestReliabilityMalformedTrafficMixedIntoValid(t *testing.T) {
	eng := newTestEngine(t)
	ns := startServer(t)
	nc := connect(t, ns)
	js := mustJS(t, nc)
	startWorker(t, nc, eng, worker.Config{Model: "digits", RejectNonFinite: true, MaxRequestRows: traffic.MalformedMaxRows})
	reqs := traffic.MixMalformed(synth, 4*len(traffic.Malformed), 31)
	badReplyTo := []struct{ subject, mention string }{
		{"jetinfer.res.digits..x", "empty token"},
		{"jetinfer.res.digits.x.", "empty token"},
		{".jetinfer.res.digits.x", "empty token"},
		{"jetinfer.res.digits.*", "wildcard"},
		{"jetinfer.res.digits.>", "wildcard"},
		{"jetinfer.res.digits.a b", "whitespace"},
		{"jetinfer.res.other.x", "not under"},
		{"elsewhere.x", "not under"},
	}
	for i, c := range badReplyTo {
		q := traffic.NewRequest(synth, fmt.Sprintf("reply-to-%d", i), "replyto", i, 2)
		q.Header.Set(wire.HeaderReplyTo, c.subject)
		q.Want, q.Mention, q.Kind = []codec.Code{codec.CodeInvalidArgument}, []string{wire.HeaderReplyTo, c.mention}, "reply-to "+c.mention
		custom := traffic.NewRequest(synth, fmt.Sprintf("custom-%d", i), "replyto", 100+i, 3)
		custom.Header.Set(wire.HeaderReplyTo, "jetinfer.res.digits.replyto.custom")
		reqs = append(reqs, q, custom)
	}
	publishAll(t, js, reqs)
	a := assertExactlyOnce(t, js, reqs)
	kinds := traffic.Kinds(reqs)
	for _, k := range traffic.Malformed {
		if kinds[k.Name] == 0 {
			t.Errorf("kind %s was not sent", k.Name)
		}
	}
	if a.Internal > 0 {
		t.Errorf("%d requests answered INTERNAL: malformed input is the request's fault", a.Internal)
	}
	if st := eng.Stats(); st.Failed > 0 {
		t.Errorf("the engine failed %d calls: malformed requests must be rejected before the engine", st.Failed)
	}
}

// TestReliabilityDeadlines publishes a backlog in which a third of the
// requests have deadlines that pass before any worker runs (each must be
// answered DEADLINE_EXCEEDED), then requests with a 5 ms deadline behind
// that backlog (either outcome is allowed, but exactly one).
func TestReliabilityDeadlines(t *testing.T) {
	eng := newTestEngine(t)
	ns := startServer(t)
	nc := connect(t, ns)
	js := mustJS(t, nc)
	cfg := worker.Config{Model: "digits"}
	if _, err := worker.EnsureStreams(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}
	reqs := okRequests("q", "deadline", 300)
	expired := time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)
	for i, q := range reqs {
		switch i % 3 {
		case 0: // passed while queued
			q.Header.Set(wire.HeaderDeadline, expired)
			q.Want, q.Mention = []codec.Code{codec.CodeDeadlineExceeded}, []string{"deadline"}
		case 1:
			q.Header.Set(wire.HeaderDeadline, time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano))
		}
	}
	publishAll(t, js, reqs)
	startWorker(t, nc, eng, cfg)
	tight := okRequests("t", "deadline", 150)
	for _, q := range tight {
		q.Want, q.Mention = []codec.Code{codec.CodeOK, codec.CodeDeadlineExceeded}, []string{"deadline"}
		q.Header.Set(wire.HeaderDeadline, time.Now().Add(5*time.Millisecond).UTC().Format(time.RFC3339Nano))
		if err := traffic.Publish(context.Background(), js, q.Msg(model.RequestSubject()), nil); err != nil {
			t.Fatal(err)
		}
	}
	a := assertExactlyOnce(t, js, append(reqs, tight...))
	if a.ByCode[codec.CodeDeadlineExceeded] < 100 {
		t.Errorf("statuses %v: the 100 expired requests must be answered DEADLINE_EXCEEDED", a.ByCode)
	}
}
