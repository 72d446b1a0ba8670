package worker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// The tests in this file check jetinfer's delivery invariant under faults
// against real in-process JetStream servers: every request ends in exactly
// one visible result in the result stream (none lost, none duplicated) and
// nothing is left in the work queue. cmd/reliability runs the same faults,
// and the ones that need separate processes (SIGKILL, SIGTERM, memory), at
// a larger scale.

// relRequest is one request a test sends and the statuses it accepts.
type relRequest struct {
	id   string
	job  string
	body []byte
	rows int
	want []codec.Code
}

func (q relRequest) msg() *nats.Msg {
	h := nats.Header{}
	h.Set(wire.HeaderJob, q.job)
	return &nats.Msg{Subject: wire.RequestSubject("jetinfer", "digits"), Header: h, Data: q.body}
}

// relRequests returns n valid requests of 1 to 8 rows.
func relRequests(t testing.TB, d *digits, prefix, job string, n int) []relRequest {
	reqs := make([]relRequest, n)
	for i := range reqs {
		lo, rows := (i*7)%(d.rows-8), 1+i%8
		reqs[i] = relRequest{id: fmt.Sprintf("%s-%d", prefix, i), job: job, body: d.request(t, lo, lo+rows),
			rows: rows, want: []codec.Code{codec.CodeOK}}
	}
	return reqs
}

// publishStored publishes q until the server acknowledges it, always with
// the same Nats-Msg-Id, as a producer that must store each request once
// does. It reports whether the acknowledgement said duplicate.
func publishStored(t testing.TB, js jetstream.JetStream, q relRequest) bool {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ack, err := js.PublishMsg(ctx, q.msg(), jetstream.WithMsgID(q.id))
		cancel()
		if err == nil {
			return ack.Duplicate
		}
		if time.Now().After(deadline) {
			t.Fatalf("publishing %s: %v", q.id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// publishAll publishes reqs from 4 goroutines with publishStored.
func publishAll(t testing.TB, js jetstream.JetStream, reqs []relRequest) (duplicates int) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan relRequest)
	for range 4 {
		wg.Go(func() {
			for q := range next {
				if publishStored(t, js, q) {
					mu.Lock()
					duplicates++
					mu.Unlock()
				}
			}
		})
	}
	for _, q := range reqs {
		next <- q
	}
	close(next)
	wg.Wait()
	return duplicates
}

// queueEmpty reports whether the request stream holds nothing and the
// model's consumer has nothing pending or unacknowledged.
func queueEmpty(js jetstream.JetStream) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, wire.DefaultRequestStream)
	if err != nil || s.CachedInfo().State.Msgs != 0 {
		return false
	}
	c, err := s.Consumer(ctx, "digits")
	if err != nil {
		return false
	}
	ci := c.CachedInfo()
	return ci.NumPending == 0 && ci.NumAckPending == 0
}

// resultCounts reads every message of the result stream and returns the
// results per request id, and per id the first result. A read that fails
// (a cluster electing a leader) starts over.
func resultCounts(t testing.TB, js jetstream.JetStream) (map[string]int, map[string]client.Result) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		counts, first, err := readResults(js)
		if err == nil {
			return counts, first
		}
		if time.Now().After(deadline) {
			t.Fatalf("reading the result stream: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readResults(js jetstream.JetStream) (map[string]int, map[string]client.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	counts, first := map[string]int{}, map[string]client.Result{}
	s, err := js.Stream(ctx, wire.DefaultResultStream)
	if err != nil {
		return nil, nil, err
	}
	last := s.CachedInfo().State.LastSeq
	if last == 0 {
		return counts, first, nil
	}
	add := func(h nats.Header, body []byte) {
		id := h.Get(wire.HeaderRequestID)
		if counts[id]++; counts[id] == 1 {
			first[id] = client.Result{RequestID: id, Status: codec.Code(h.Get(wire.HeaderStatus)), Error: h.Get(wire.HeaderError), Body: body}
		}
	}
	cons, err := js.OrderedConsumer(ctx, wire.DefaultResultStream, jetstream.OrderedConsumerConfig{})
	for err == nil {
		var m jetstream.Msg
		if m, err = cons.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
			break
		}
		add(m.Headers(), m.Data())
		if md, err := m.Metadata(); err == nil && md.Sequence.Stream >= last {
			return counts, first, nil
		}
	}
	if !errors.Is(err, nats.ErrNoResponders) {
		return nil, nil, fmt.Errorf("reading before sequence %d: %w", last, err)
	}
	// After a node loss the server may place the ordered consumer on the
	// lost node (no responders): read message by message from the
	// stream's leader instead.
	clear(counts)
	clear(first)
	for seq := uint64(1); seq <= last; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading sequence %d: %w", seq, err)
		}
		add(m.Header, m.Data)
	}
	return counts, first, nil
}

// assertExactlyOnce waits until the work queue is empty and the result
// stream holds a result for every request, then checks the invariant:
// exactly one result per request, with an accepted status (and the
// reference logits when OK), and no result for anything else.
func assertExactlyOnce(t *testing.T, js jetstream.JetStream, d *digits, reqs []relRequest) map[codec.Code]int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		counts, _ := resultCounts(t, js)
		if queueEmpty(js) && len(counts) >= len(reqs) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("work did not settle within 60s: queue empty %v, %d of %d requests answered", queueEmpty(js), len(counts), len(reqs))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	counts, first := resultCounts(t, js)
	codes := map[codec.Code]int{}
	lost, dup := 0, 0
	for _, q := range reqs {
		n := counts[q.id]
		switch {
		case n == 0:
			lost++
			continue
		case n > 1:
			dup += n - 1
		}
		r := first[q.id]
		codes[r.Status]++
		ok := false
		for _, c := range q.want {
			ok = ok || c == r.Status
		}
		if !ok {
			t.Errorf("request %s: status %s (%s), want one of %v", q.id, r.Status, r.Error, q.want)
		} else if r.Status == codec.CodeOK {
			d.checkLogits(t, r.Body, q.rows)
		}
		delete(counts, q.id)
	}
	if lost > 0 || dup > 0 || len(counts) > 0 {
		t.Errorf("%d requests: %d lost, %d duplicate results, %d results for unknown ids", len(reqs), lost, dup, len(counts))
	}
	if !queueEmpty(js) {
		t.Error("requests left in the work queue")
	}
	return codes
}

// redeliveries is the consumer's deliveries minus the requests stored.
func redeliveries(t testing.TB, js jetstream.JetStream) int64 {
	t.Helper()
	ctx := context.Background()
	c, err := js.Consumer(ctx, wire.DefaultRequestStream, "digits")
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, wire.DefaultRequestStream)
	if err != nil {
		t.Fatal(err)
	}
	return int64(c.CachedInfo().Delivered.Consumer) - int64(s.CachedInfo().State.LastSeq)
}

func TestReliabilityProducerRetriesYieldOneResult(t *testing.T) {
	eng := loadEngine(t, "digits.onnx")
	d := loadDigits(t)
	ns := startServer(t)
	nc := connect(t, ns)
	js := mustJS(t, nc)
	startWorker(t, nc, eng, worker.Config{Model: "digits"})
	reqs := relRequests(t, d, "retry", "retry", 200)
	// Each request three times at once (a producer retrying after a lost
	// PubAck races its first attempt) ...
	var all []relRequest
	for range 3 {
		all = append(all, reqs...)
	}
	if dups := publishAll(t, js, all); dups != 2*len(reqs) {
		t.Errorf("%d publishes acknowledged as duplicates, want %d", dups, 2*len(reqs))
	}
	assertExactlyOnce(t, js, d, reqs)
	// ... and once more after its result exists and the work queue has
	// removed it, inside the duplicate window.
	if dups := publishAll(t, js, reqs); dups != len(reqs) {
		t.Errorf("%d of %d late retries were stored again", len(reqs)-dups, len(reqs))
	}
	assertExactlyOnce(t, js, d, reqs)
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
	eng := loadEngine(t, "digits.onnx")
	d := loadDigits(t)
	ns := startServer(t)
	nc := connect(t, ns)
	js := mustJS(t, nc)
	// Non-default: AckWait 1s (the minimum) so that a 3s outage outlasts
	// it; PublishTimeout 500ms so that the second outage's PubAck
	// timeouts come quickly.
	w := startWorker(t, nc, eng, worker.Config{Model: "digits", AckWait: time.Second, PublishTimeout: 500 * time.Millisecond})
	reqs := relRequests(t, d, "pf", "pubfail", 300)
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

	codes := assertExactlyOnce(t, js, d, reqs)
	if codes[codec.CodeOK] != len(reqs) {
		t.Errorf("statuses %v: every request should be answered OK", codes)
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
	eng := loadEngine(t, "digits.onnx")
	d := loadDigits(t)
	srv := startRestartable(t)
	url := srv.ns.ClientURL()
	wnc := reconnecting(t, url)
	startWorker(t, wnc, eng, worker.Config{Model: "digits", AckWait: 2 * time.Second})
	js := mustJS(t, reconnecting(t, url))
	reqs := relRequests(t, d, "rs", "restart", 600)
	publishAll(t, js, reqs[:200])
	srv.stop()
	time.Sleep(300 * time.Millisecond)
	srv.start(t)
	publishAll(t, js, reqs[200:400])
	srv.stop()
	srv.start(t)
	publishAll(t, js, reqs[400:])
	assertExactlyOnce(t, js, d, reqs)
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
	eng := loadEngine(t, "digits.onnx")
	d := loadDigits(t)
	nodes, urls := startJSCluster(t, 3)
	cfg := worker.Config{Model: "digits", Replicas: 3, AckWait: 2 * time.Second}
	js := mustJS(t, reconnecting(t, urls))
	waitFor(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := worker.EnsureStreams(ctx, js, cfg)
		return err == nil
	}, "the cluster to create the R3 streams")
	for range 2 {
		startWorker(t, reconnecting(t, urls), eng, cfg)
	}
	reqs := relRequests(t, d, "cl", "cluster", 400)
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
	assertExactlyOnce(t, js, d, reqs)
}

// TestReliabilityLongIDsSharingAPrefix sends requests whose ids exceed
// the 1024-byte limit and differ only after it: each must still get its
// own (error) result.
func TestReliabilityLongIDsSharingAPrefix(t *testing.T) {
	eng := loadEngine(t, "digits.onnx")
	d := loadDigits(t)
	ns := startServer(t)
	nc := connect(t, ns)
	js := mustJS(t, nc)
	startWorker(t, nc, eng, worker.Config{Model: "digits"})
	prefix := strings.Repeat("x", 1024)
	for _, suffix := range []string{"a", "b", "c"} {
		h := nats.Header{}
		h.Set(wire.HeaderJob, "long")
		msg := &nats.Msg{Subject: wire.RequestSubject("jetinfer", "digits"), Header: h, Data: d.request(t, 0, 1)}
		if _, err := js.PublishMsg(context.Background(), msg, jetstream.WithMsgID(prefix+suffix)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return queueEmpty(js) }, "the work queue to empty")
	counts, first := resultCounts(t, js)
	if len(counts) != 3 {
		t.Fatalf("3 requests with distinct ids got results under %d distinct ids: the results stream dropped the others as duplicates", len(counts))
	}
	for _, suffix := range []string{"a", "b", "c"} {
		// An over-long id is answered under sha256-<hex of the id>.
		sum := sha256.Sum256([]byte(prefix + suffix))
		id := "sha256-" + hex.EncodeToString(sum[:])
		if n := counts[id]; n != 1 || first[id].Status != codec.CodeInvalidArgument || !strings.Contains(first[id].Error, wire.HeaderMsgID) {
			t.Errorf("id …%s (result id %s): %d results, first %s (%s)", suffix, id, n, first[id].Status, first[id].Error)
		}
	}
}

// TestReliabilityConsumerDeleted deletes the model's consumer under a
// running worker: the worker must not keep running without pulling (its
// Run returns an error, so that its process restarts), and a new worker
// recreates the consumer and serves everything.
func TestReliabilityConsumerDeleted(t *testing.T) {
	eng := loadEngine(t, "digits.onnx")
	d := loadDigits(t)
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
	reqs := relRequests(t, d, "cd", "deleted", 200)
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
	assertExactlyOnce(t, js, d, reqs)
}

// TestReliabilityStoredBacklogAtDefaults stores more rows than a worker
// admits at once (its default row budget is 65,536) before the worker
// starts, as a pool scaled from zero finds its queue, and drains it at
// default settings: every request runs once, none is handed back or
// redelivered, none is answered INTERNAL.
func TestReliabilityStoredBacklogAtDefaults(t *testing.T) {
	eng := loadEngine(t, "digits.onnx")
	d := loadDigits(t)
	ns := startServer(t)
	nc := connect(t, ns)
	js := mustJS(t, nc)
	cfg := worker.Config{Model: "digits"}
	if _, err := worker.EnsureStreams(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}
	const n, rows = 1500, 64 // 96,000 rows
	reqs := make([]relRequest, n)
	for i := range reqs {
		lo := (i * 13) % (d.rows - rows)
		reqs[i] = relRequest{id: fmt.Sprintf("bl-%d", i), job: "backlog", body: d.request(t, lo, lo+rows),
			rows: rows, want: []codec.Code{codec.CodeOK}}
	}
	publishAll(t, js, reqs)
	startWorker(t, nc, eng, cfg)
	codes := assertExactlyOnce(t, js, d, reqs)
	if codes[codec.CodeOK] != n {
		t.Errorf("statuses %v: every request of the backlog should be answered OK", codes)
	}
	if r := redeliveries(t, js); r != 0 {
		t.Errorf("%d redeliveries: a busy worker must stop pulling, not hand requests back", r)
	}
}
