// Command ceiling measures jetinfer's end-to-end request rate against the
// ceiling JetStream itself allows for jetinfer's message pattern, in one
// run against one in-process nats-server with jetinfer's stream settings
// (file storage, the worker's defaults).
//
// For each request size it measures, with the project's own Go code over
// nats.go:
//
//   - publish: requests published asynchronously with a Nats-Msg-Id,
//     every PubAck awaited;
//   - consume: the same requests pulled (fetches of at most 16 MiB, as the
//     worker pulls) and acked;
//   - result: result-sized messages published with a Nats-Msg-Id, every
//     PubAck awaited, and delivered to a reader on the result stream;
//
// and the ceiling per request, 1/(1/publish + 1/consume + 1/result): the
// broker's limit where the three legs share the same CPUs. Where cores
// are to spare the legs overlap, so it also measures a pass-through: the
// three legs at once, a minimal consumer publishing a result-sized message
// per request and acking the request once that result is stored (no
// decoding, batching or engine). Then a
// producer publishes the same requests while a worker at default settings
// (the real digits model on ONNX Runtime) serves them and a reader collects
// the results: jetinfer's requests/s, from the first publish to the last
// result read.
//
// Then the compute-bound case: an MLP (256-1536-1536-1536-10, random
// weights, generated in mlp.go; ~5 ms per 64-row batch on one core) served
// by a worker at default settings against the same engine alone at the
// worker's concurrency (its executors), alternating in rounds. The last
// lines are
//
//	passthrough: r4=<x> r64=<y> r1m=<z>
//	ceiling: r4=<x> r64=<y> r1m=<z> compute=<c>
//
// r* each jetinfer ÷ pass-through and jetinfer ÷ ceiling, compute the
// worker ÷ the engine alone (-compute-only runs just that). Run it from the repository root (`make
// bench-ceiling`); it needs the ONNX Runtime library (`make ort`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/backend"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// size is one request shape measured.
type size struct {
	name string // summary key
	rows int    // digits rows per request
	n    int    // requests per measurement
}

func main() {
	scale := flag.Float64("scale", 1, "multiply every request count")
	computeOnly := flag.Bool("compute-only", false, "measure only the compute-bound model (worker ÷ engine alone)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (server, producer and worker share the process) to this file")
	var set settings
	flag.IntVar(&set.executors, "executors", 0, "the worker's Executors (JETINFER_EXECUTORS); 0 keeps `jetinfer worker`'s default on ONNX Runtime (half the CPUs, at least 2). Other values are for experiments")
	flag.IntVar(&set.intraOp, "intra-op-threads", 1, "ONNX Runtime intra-op threads per session (JETINFER_ORT_INTRA_OP_THREADS, default 1). Non-default values are for experiments")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ceiling:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "ceiling:", err)
			os.Exit(1)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if err := run(*scale, *computeOnly, set); err != nil {
		fmt.Fprintln(os.Stderr, "ceiling:", err)
		os.Exit(1)
	}
}

// settings are the worker and engine settings measured; the zero value
// (with intraOp 1) is jetinfer's default.
type settings struct {
	executors int // worker.Config.Executors; 0: its default
	intraOp   int // ONNX Runtime intra-op threads per session
}

// workerConfig is the worker's configuration for model under set.
func (set settings) workerConfig(model string) worker.Config {
	return worker.Config{Model: model, Executors: set.concurrency()}
}

// concurrency is the number of batches the worker runs at once: by
// default what `jetinfer worker` runs on ONNX Runtime.
func (set settings) concurrency() int {
	if set.executors > 0 {
		return set.executors
	}
	return backend.Executors(backend.ONNXRuntime)
}

func run(scale float64, computeOnly bool, set settings) error {
	codec.RegisterTensorExtension()
	lib, err := onnxrt.FindLibrary(os.Getenv("JETINFER_ORT_LIBRARY"))
	if err != nil {
		return fmt.Errorf("finding the ONNX Runtime library (make ort): %w", err)
	}
	rt, err := onnxrt.NewRuntime(lib)
	if err != nil {
		return err
	}
	defer rt.Close()
	eng, err := rt.LoadFile(context.Background(), filepath.Join("testdata", "models", "digits.onnx"), onnxrt.Options{IntraOpThreads: set.intraOp})
	if err != nil {
		return fmt.Errorf("loading the digits model: %w", err)
	}
	defer eng.Close()
	pixels, err := loadPixels(filepath.Join("testdata", "digits_test.arrow"))
	if err != nil {
		return err
	}
	sizes := []size{{"r4", 4, 20000}, {"r64", 64, 8000}, {"r1m", 4096, 300}}
	var summary, passSummary []string
	if computeOnly {
		sizes = nil
	}
	for _, s := range sizes {
		s.n = max(10, int(float64(s.n)*scale))
		ratio, passRatio, err := measure(s, eng, pixels, set)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		summary = append(summary, fmt.Sprintf("%s=%.2f", s.name, ratio))
		passSummary = append(passSummary, fmt.Sprintf("%s=%.2f", s.name, passRatio))
	}
	if len(passSummary) > 0 {
		fmt.Println("passthrough: " + strings.Join(passSummary, " "))
	}
	computeRatio, err := measureCompute(rt, max(20, int(400*scale)), set)
	if err != nil {
		return fmt.Errorf("compute-bound model: %w", err)
	}
	summary = append(summary, fmt.Sprintf("compute=%.2f", computeRatio))
	fmt.Println("ceiling: " + strings.Join(summary, " "))
	return nil
}

// loadPixels returns the digits test split's pixel rows (256 bytes each).
func loadPixels(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	req, err := codec.DecodeRequest(b, codec.Limits{MaxBodyBytes: len(b) + 1})
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	defer req.Release()
	col, ok := req.Column("pixels")
	if !ok {
		return nil, errors.New("digits test split has no pixels column")
	}
	return append([]byte(nil), col.Data...), nil
}

// body encodes a request of rows digits rows starting at row lo.
func body(pixels []byte, lo, rows int) ([]byte, error) {
	n := len(pixels) / 256
	px := make([]byte, 0, rows*256)
	ids := array.NewInt64Builder(memory.DefaultAllocator)
	defer ids.Release()
	for i := range rows {
		r := (lo + i) % n
		px = append(px, pixels[r*256:(r+1)*256]...)
		ids.Append(int64(r))
	}
	idArr := ids.NewInt64Array()
	defer idArr.Release()
	w := &byteWriter{}
	err := codec.EncodeRequest(w, []trt.Tensor{{Name: "pixels", DType: trt.Float32, Shape: trt.Shape{int64(rows), 8, 8}, Data: px}}, idArr)
	return w.b, err
}

type byteWriter struct{ b []byte }

func (w *byteWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }

// openBroker starts a fresh in-process JetStream server with file storage
// in a temporary directory and connects to it; closeBroker stops both and
// removes the directory.
func openBroker() (nc *nats.Conn, js jetstream.JetStream, closeBroker func(), err error) {
	dir, err := os.MkdirTemp("", "jetinfer-ceiling-")
	if err != nil {
		return nil, nil, nil, err
	}
	ns, err := startServer(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, nil, err
	}
	closeBroker = func() {
		if nc != nil {
			nc.Close()
		}
		ns.Shutdown()
		os.RemoveAll(dir)
	}
	if nc, err = nats.Connect(ns.ClientURL()); err != nil {
		closeBroker()
		return nil, nil, nil, err
	}
	if js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256)); err != nil {
		closeBroker()
		return nil, nil, nil, err
	}
	return nc, js, closeBroker, nil
}

// startServer starts a fresh in-process JetStream server with file storage.
func startServer(dir string) (*server.Server, error) {
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir,
		MaxPayload: 8 << 20, NoSigs: true, NoLog: true,
	})
	if err != nil {
		return nil, err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return nil, errors.New("server not ready")
	}
	return ns, nil
}

// measure runs the broker baselines and jetinfer for one size and returns
// jetinfer ÷ ceiling and jetinfer ÷ pass-through.
func measure(s size, eng *onnxrt.Engine, pixels []byte, set settings) (ratio, passRatio float64, err error) {
	bodies := make([][]byte, 16)
	for i := range bodies {
		b, err := body(pixels, i*17, s.rows)
		if err != nil {
			return 0, 0, err
		}
		bodies[i] = b
	}
	nc, js, closeBroker, err := openBroker()
	if err != nil {
		return 0, 0, err
	}
	defer closeBroker()
	ctx := context.Background()
	cfg := set.workerConfig("digits")
	cons, err := worker.EnsureStreams(ctx, js, cfg)
	if err != nil {
		return 0, 0, err
	}
	reqSubject := wire.RequestSubject(wire.DefaultPrefix, "digits")

	// publish
	pub := func(prefix string) error {
		p := newPublisher(js, s.name+" publish")
		for i := range s.n {
			if err := p.publish(&nats.Msg{Subject: reqSubject, Data: bodies[i%len(bodies)]}, fmt.Sprintf("%s-%d", prefix, i)); err != nil {
				return err
			}
		}
		return p.close()
	}
	start := time.Now()
	if err := pub("base"); err != nil {
		return 0, 0, fmt.Errorf("publishing: %w", err)
	}
	publish := float64(s.n) / time.Since(start).Seconds()

	// consume and ack: nats.go's fastest pull pattern (a continuous
	// message stream with a 16 MiB buffer) and fire-and-forget acks, as
	// the worker acks.
	start = time.Now()
	ps := &pullStream{cons: cons}
	for range s.n {
		m, err := ps.next()
		if err != nil {
			return 0, 0, fmt.Errorf("pulling: %w", err)
		}
		if err := m.Ack(); err != nil {
			return 0, 0, err
		}
	}
	ps.stop()
	consume := float64(s.n) / (time.Since(start) - ps.lost).Seconds()

	// result publish with PubAck, delivered to a reader
	result := make([]byte, s.rows*40+600) // logits + ids + IPC framing
	resSubject := wire.ResultSubject(wire.DefaultPrefix, "digits", "base")
	read, err := reader(ctx, js, resSubject, s.n)
	if err != nil {
		return 0, 0, err
	}
	start = time.Now()
	rp := newPublisher(js, s.name+" result publish")
	for i := range s.n {
		if err := rp.publish(&nats.Msg{Subject: resSubject, Data: result}, fmt.Sprintf("base-%d/result", i)); err != nil {
			return 0, 0, err
		}
	}
	if err := rp.close(); err != nil {
		return 0, 0, err
	}
	if err := read(); err != nil {
		return 0, 0, err
	}
	results := float64(s.n) / time.Since(start).Seconds()
	ceiling := 1 / (1/publish + 1/consume + 1/results)

	// the three legs at once, through the least code that keeps
	// jetinfer's guarantees
	pass, err := passThrough(ctx, nc, js, cons, reqSubject, bodies, result, s.n)
	if err != nil {
		return 0, 0, fmt.Errorf("pass-through: %w", err)
	}

	// jetinfer: a worker at default settings, a producer and a reader.
	stop, err := startWorker(ctx, nc, eng, cfg)
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	read, err = reader(ctx, js, wire.ResultSubject(wire.DefaultPrefix, "digits", "e2e"), s.n)
	if err != nil {
		return 0, 0, err
	}
	start = time.Now()
	go func() {
		p := newPublisher(js, s.name+" jetinfer")
		for i := range s.n {
			h := nats.Header{}
			h.Set(wire.HeaderJob, "e2e")
			if err := p.publish(&nats.Msg{Subject: reqSubject, Header: h, Data: bodies[i%len(bodies)]}, fmt.Sprintf("e2e-%d", i)); err != nil {
				fmt.Fprintln(os.Stderr, "ceiling:", err)
				break
			}
		}
		if err := p.close(); err != nil {
			fmt.Fprintln(os.Stderr, "ceiling:", err)
		}
	}()
	if err := read(); err != nil {
		return 0, 0, err
	}
	e2e := float64(s.n) / time.Since(start).Seconds()
	if err := stop(); err != nil {
		return 0, 0, err
	}
	fmt.Printf("%s: %d rows, %d-byte requests, n=%d: publish %.0f/s, consume+ack %.0f/s, result publish+deliver %.0f/s => ceiling %.0f req/s; pass-through %.0f req/s; jetinfer %.0f req/s (%.0f rows/s) = %.2f of the ceiling, %.2f of the pass-through\n",
		s.name, s.rows, len(bodies[0]), s.n, publish, consume, results, ceiling, pass, e2e, e2e*float64(s.rows), e2e/ceiling, e2e/pass)
	return e2e / ceiling, e2e / pass, nil
}

// startWorker runs a worker on eng and returns once it is ready (its
// warm-up done). stop ends it and returns Run's error; calling it again
// returns nil.
func startWorker(ctx context.Context, nc *nats.Conn, eng worker.Engine, cfg worker.Config) (stop func() error, err error) {
	w, err := worker.New(nc, eng, cfg, worker.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(wctx) }()
	var once sync.Once
	var stopErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			stopErr = <-runErr
		})
		return stopErr
	}
	for !w.Ready() {
		select {
		case err := <-runErr:
			runErr <- err
			_ = stop()
			return nil, fmt.Errorf("worker stopped: %w", err)
		case <-time.After(time.Millisecond):
		}
	}
	return stop, nil
}

// publisher publishes asynchronously with a Nats-Msg-Id and checks every
// PubAck in order, as jetinfer's client does: at most 256 messages and
// client.DefaultUnackedBytes (16 MiB) of bodies await their PubAck, and a
// message the server refused or did not acknowledge is published again
// under the same id until it is stored. The server refuses publishes (429,
// too many requests) while a stream's ingest queue is full, which 256
// outstanding 1 MiB requests did on two cores: those requests were lost and
// the legs that waited for them never ended. Retries count in the leg's
// time, and refusals are reported.
type publisher struct {
	js      jetstream.JetStream
	name    string
	unacked *semaphore.Weighted
	sent    chan sentMsg
	done    chan error
	refused int // written by confirm, read by close once confirm is done
}

type sentMsg struct {
	fut jetstream.PubAckFuture
	msg *nats.Msg
	id  string
}

func newPublisher(js jetstream.JetStream, name string) *publisher {
	p := &publisher{js: js, name: name, unacked: semaphore.NewWeighted(unackedBytes),
		sent: make(chan sentMsg, 1024), done: make(chan error, 1)}
	go p.confirm()
	return p
}

// unackedBytes bounds the bodies awaiting their PubAck, as in jetinfer's
// client.
const unackedBytes = client.DefaultUnackedBytes

// weight is what msg takes of unackedBytes (a larger body goes alone).
func weight(msg *nats.Msg) int64 { return min(int64(len(msg.Data)), unackedBytes) }

// publish sends msg, waiting while too many PubAcks are outstanding.
func (p *publisher) publish(msg *nats.Msg, id string) error {
	if err := p.unacked.Acquire(context.Background(), weight(msg)); err != nil {
		return err
	}
	for {
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithMsgID(id))
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			return fmt.Errorf("publishing %s: %w", id, err)
		}
		p.sent <- sentMsg{f, msg, id}
		return nil
	}
}

// confirm waits for each PubAck and publishes a refused message again.
func (p *publisher) confirm() {
	var first error
	for m := range p.sent {
		var err error
		select {
		case <-m.fut.Ok():
		case err = <-m.fut.Err():
		}
		if err == nil {
			p.unacked.Release(weight(m.msg))
			continue
		}
		p.refused++
		for attempt := 0; err != nil && first == nil; attempt++ {
			if attempt == 20 {
				first = fmt.Errorf("publishing %s: %w", m.id, err)
				break
			}
			time.Sleep(time.Duration(1<<min(attempt, 6)) * time.Millisecond)
			_, err = p.js.PublishMsg(context.Background(), m.msg, jetstream.WithMsgID(m.id))
		}
		p.unacked.Release(weight(m.msg))
	}
	p.done <- first
}

// close waits until every message published is stored and returns the
// first message that could not be.
func (p *publisher) close() error {
	close(p.sent)
	err := <-p.done
	if n := p.refused; n > 0 {
		fmt.Fprintf(os.Stderr, "ceiling: %s: the server refused %d publishes (first answer, e.g. 429 too many requests); each was sent again until stored\n", p.name, n)
	}
	return err
}

// passThrough measures the three legs running at once: a producer
// publishes n requests (Nats-Msg-Id, PubAcks awaited), a pass-through
// consumer pulls them as the ceiling's consume leg does and, for each,
// publishes a result-sized message with a PubAck and acks the request
// once that result is stored — jetinfer's guarantee with no decoding,
// batching or engine — and a reader collects the results. It returns
// requests/s from the first publish to the last result read. On a machine
// with cores to spare the legs overlap, so this can exceed the ceiling
// computed from the legs measured one at a time.
func passThrough(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, cons jetstream.Consumer, reqSubject string, bodies [][]byte, result []byte, n int) (float64, error) {
	resSubject := wire.ResultSubject(wire.DefaultPrefix, "digits", "pass")
	read, err := reader(ctx, js, resSubject, n)
	if err != nil {
		return 0, err
	}
	// The pass-through publishes through its own context, as the worker
	// does, so that its PubAck window is not the producer's.
	rjs, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
	if err != nil {
		return 0, err
	}
	ps := &pullStream{cons: cons}
	defer ps.stop()
	type stored struct {
		result jetstream.PubAckFuture
		req    jetstream.Msg
	}
	pending := make(chan stored, 256)
	failed := make(chan error, 3)
	fail := func(err error) {
		select {
		case failed <- err:
		default:
		}
	}
	go func() {
		defer close(pending)
		for i := range n {
			m, err := ps.next()
			if err != nil {
				fail(fmt.Errorf("pulling: %w", err))
				return
			}
			for {
				f, err := rjs.PublishMsgAsync(&nats.Msg{Subject: resSubject, Data: result}, jetstream.WithMsgID(fmt.Sprintf("pass-%d/result", i)))
				if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
					time.Sleep(time.Millisecond)
					continue
				}
				if err != nil {
					fail(err)
					return
				}
				pending <- stored{f, m}
				break
			}
		}
	}()
	go func() {
		for p := range pending {
			select {
			case <-p.result.Ok():
				if err := p.req.Ack(); err != nil {
					fail(err)
				}
			case err := <-p.result.Err():
				fail(err)
			}
		}
	}()
	start := time.Now()
	go func() {
		p := newPublisher(js, "pass-through")
		for i := range n {
			if err := p.publish(&nats.Msg{Subject: reqSubject, Data: bodies[i%len(bodies)]}, fmt.Sprintf("pass-%d", i)); err != nil {
				fail(err)
				break
			}
		}
		if err := p.close(); err != nil {
			fail(err)
		}
	}()
	readErr := make(chan error, 1)
	go func() { readErr <- read() }()
	select {
	case err := <-readErr:
		if err != nil {
			return 0, err
		}
	case err := <-failed:
		return 0, err
	}
	return float64(n) / (time.Since(start) - ps.lost).Seconds(), nil
}

// pullStream is nats.go's continuous pull (Consumer.Messages with a
// 16 MiB buffer, its fastest pull pattern), restarted when it stalls: on
// the 2-core VM such a stream once stopped delivering 1 MiB messages with
// messages still pending (nats.go 1.55). The time lost waiting is left out
// of the baselines, so that a stall does not lower them, and each stall is
// reported.
type pullStream struct {
	cons jetstream.Consumer
	it   jetstream.MessagesContext
	lost time.Duration // waited in stalls
}

// stallAfter is how long pullStream waits for a message before it
// restarts the pull: far longer than any gap between messages here.
const stallAfter = 5 * time.Second

func (p *pullStream) next() (jetstream.Msg, error) {
	for {
		if p.it == nil {
			it, err := p.cons.Messages(jetstream.PullMaxBytes(16 << 20))
			if err != nil {
				return nil, err
			}
			p.it = it
		}
		m, err := p.it.Next(jetstream.NextMaxWait(stallAfter))
		if !errors.Is(err, nats.ErrTimeout) {
			return m, err
		}
		state := ""
		if ci, err := p.cons.Info(context.Background()); err == nil {
			state = fmt.Sprintf(" (consumer: %d pending, %d ack-pending, %d delivered)", ci.NumPending, ci.NumAckPending, ci.Delivered.Consumer)
		}
		fmt.Fprintf(os.Stderr, "ceiling: the continuous pull delivered nothing for %s%s; restarting it (the wait is not counted)\n", stallAfter, state)
		p.it.Stop()
		p.it = nil
		p.lost += stallAfter
	}
}

func (p *pullStream) stop() {
	if p.it != nil {
		p.it.Stop()
	}
}

// reader starts an ordered consumer on subject and returns a function that
// waits until n messages were read, all of them OK where they carry a
// status.
func reader(ctx context.Context, js jetstream.JetStream, subject string, n int) (func() error, error) {
	c, err := js.OrderedConsumer(ctx, wire.DefaultResultStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, err
	}
	var got atomic.Int64
	done := make(chan error, 1)
	cc, err := c.Consume(func(m jetstream.Msg) {
		if st := m.Headers().Get(wire.HeaderStatus); st != "" && st != string(codec.CodeOK) {
			select {
			case done <- fmt.Errorf("result %s: %s", st, m.Headers().Get(wire.HeaderError)):
			default:
			}
		}
		if got.Add(1) == int64(n) {
			done <- nil
		}
	}, jetstream.PullMaxBytes(16<<20))
	if err != nil {
		return nil, err
	}
	return func() error {
		defer cc.Stop()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Minute):
			return fmt.Errorf("%d of %d messages read after 10 min", got.Load(), n)
		}
	}, nil
}
