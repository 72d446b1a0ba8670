package client_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/trt"
	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
	"github.com/jetinfer/jetinfer/worker/wire"
)

func startServer(t testing.TB, port int, dir string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
		NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestPublishRetriesAcrossRestart publishes while the server is down:
// Publish retries under the same Nats-Msg-Id until the restarted server
// stores the request, once.
func TestPublishRetriesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	ns := startServer(t, -1, dir)
	addr := ns.ClientURL()
	nc := connect(t, addr)
	js, _ := jetstream.New(nc)
	if _, err := worker.EnsureStreams(context.Background(), js, worker.Config{Model: "m"}); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(nc, client.Config{Model: "m", Backoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Timeout: 200 * time.Millisecond, Retries: 100})
	if err != nil {
		t.Fatal(err)
	}
	req := client.Request{ID: "r1", Job: "j", Body: []byte("x")}
	if _, err := c.Publish(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	tcpPort := ns.Addr().(*net.TCPAddr).Port
	ns.Shutdown()
	ns.WaitForShutdown()
	done := make(chan error, 1)
	go func() {
		_, err := c.Publish(context.Background(), client.Request{ID: "r2", Job: "j", Body: []byte("y")})
		done <- err
	}()
	startServer(t, tcpPort, dir)
	if err := <-done; err != nil {
		t.Fatalf("Publish across a restart: %v", err)
	}
	// Publishing r1 again is a duplicate: the id is the dedup key.
	ack, err := c.Publish(context.Background(), req)
	if err != nil || !ack.Duplicate {
		t.Fatalf("republishing r1 = %+v, %v; want a duplicate", ack, err)
	}
	s, err := js.Stream(context.Background(), wire.DefaultRequestStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil || info.State.Msgs != 2 {
		t.Fatalf("stream holds %d requests (%v), want 2", info.State.Msgs, err)
	}
}

func TestPublishRejectsBadReplyTo(t *testing.T) {
	ns := startServer(t, -1, t.TempDir())
	c, _ := client.New(connect(t, ns.ClientURL()), client.Config{Model: "m"})
	_, err := c.Publish(context.Background(), client.Request{ID: "a", ReplyTo: "elsewhere.x"})
	if !errors.Is(err, wire.ErrBadSubject) {
		t.Fatalf("Publish with a foreign Reply-To = %v, want ErrBadSubject", err)
	}
	if _, err := client.New(nil, client.Config{Model: "a.b"}); err == nil {
		t.Fatal("New accepted a model that is not a subject token")
	}
}

// digitsBodies encodes the digits test split as requests of n rows and
// returns them with the PyTorch reference logits by id.
func digitsBodies(t testing.TB, n int) ([][]byte, []int64, map[int64][]float32) {
	t.Helper()
	read := func(name string) *codec.Request {
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		r, err := codec.DecodeRequest(b, codec.Limits{MaxBodyBytes: len(b) + 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Release)
		return r
	}
	test, ref := read("digits_test.arrow"), read("digits_ref.arrow")
	px, _ := test.Column("pixels")
	ids := test.IDs.(*array.Int64).Int64Values()
	var bodies [][]byte
	for lo := 0; lo < test.Rows; lo += n {
		hi := min(test.Rows, lo+n)
		b := array.NewInt64Builder(memory.DefaultAllocator)
		b.AppendValues(ids[lo:hi], nil)
		idArr := b.NewArray()
		var buf bytes.Buffer
		err := codec.EncodeRequest(&buf, []trt.Tensor{{Name: "pixels", DType: trt.Float32,
			Shape: trt.Shape{int64(hi - lo), 8, 8}, Data: px.Data[lo*px.RowBytes() : hi*px.RowBytes()]}}, idArr)
		idArr.Release()
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, buf.Bytes())
	}
	refs := map[int64][]float32{}
	logits, _ := ref.Column("logits")
	for i, id := range ref.IDs.(*array.Int64).Int64Values() {
		refs[id] = floats(logits.Row(i))
	}
	return bodies, ids, refs
}

func floats(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// startWorker runs a digits worker on ONNX Runtime in this process.
func startWorker(t testing.TB, nc *nats.Conn) {
	t.Helper()
	startWorkerWith(t, nc, worker.Config{Model: "digits"})
}

// startWorkerWith starts a worker of the digits model with cfg.
func startWorkerWith(t testing.TB, nc *nats.Conn, cfg worker.Config) {
	t.Helper()
	lib, err := onnxrt.FindLibrary(os.Getenv("JETINFER_ORT_LIBRARY"))
	if err != nil {
		t.Skipf("ONNX Runtime library not available (%v); run `make ort`", err)
	}
	rt, err := onnxrt.NewRuntime(lib)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := rt.LoadFile(context.Background(), filepath.Join("..", "..", "testdata", "models", "digits.onnx"), onnxrt.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(nc, eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		_ = eng.Close()
		_ = rt.Close()
	})
}

// TestSubmitCollectsInOrder submits a job to a real worker and checks
// that every result comes back once, in request order, equal to the
// references; submitting again publishes nothing.
func TestSubmitCollectsInOrder(t *testing.T) {
	ns := startServer(t, -1, t.TempDir())
	nc := connect(t, ns.ClientURL())
	startWorker(t, nc)
	bodies, ids, refs := digitsBodies(t, 7)
	c, err := client.New(nc, client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckWorker(context.Background(), 10*time.Second, false, nil); err != nil {
		t.Fatal(err)
	}
	results, err := c.Submit(context.Background(), "order", bodies)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(bodies) {
		t.Fatalf("%d results for %d requests", len(results), len(bodies))
	}
	row := 0
	for i, r := range results {
		if r.RequestID != client.RequestID("order", i) {
			t.Fatalf("result %d is of request %s", i, r.RequestID)
		}
		res, err := r.Decode(codec.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		logits, _ := res.Column("logits")
		for k, id := range res.IDs.(*array.Int64).Int64Values() {
			if id != ids[row] {
				t.Fatalf("row %d: id %d, want %d", row, id, ids[row])
			}
			got, want := floats(logits.Row(k)), refs[id]
			for j := range want {
				if math.Abs(float64(got[j]-want[j])) > 1e-4*math.Max(1, math.Abs(float64(want[j]))) {
					t.Fatalf("id %d logit %d = %v, reference %v", id, j, got[j], want[j])
				}
			}
			row++
		}
		res.Release()
	}
	if row != len(ids) {
		t.Fatalf("%d rows back, want %d", row, len(ids))
	}
	// Again: every result is stored, nothing is published. The results
	// are read through consumers the server drops within 30 s of the last
	// pull, not nats.go's default of five minutes.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	checked := false
	st, err := c.Run(context.Background(), client.Job{Name: "order", Fingerprint: fingerprintOf(t, c, "order")},
		client.Bodies(bodies, nil), func(int, client.Part, client.Result) error {
			if checked {
				return nil
			}
			checked = true
			s, err := js.Stream(context.Background(), wire.DefaultResultStream)
			if err != nil {
				return err
			}
			list := s.ListConsumers(context.Background())
			n := 0
			for ci := range list.Info() {
				n++
				if ci.Config.InactiveThreshold <= 0 || ci.Config.InactiveThreshold > 30*time.Second {
					t.Errorf("consumer %s on the result stream idles %v before the server drops it, want ≤ 30s", ci.Name, ci.Config.InactiveThreshold)
				}
			}
			if n == 0 {
				t.Error("no consumer on the result stream while results are read")
			}
			return list.Err()
		})
	if !checked {
		t.Error("the re-run handed no result")
	}
	if err != nil || st.Published != 0 || st.Requests != len(bodies) {
		t.Fatalf("re-run: %+v, %v; want %d requests, none published", st, err, len(bodies))
	}
	jobs, err := c.Jobs(context.Background())
	if err != nil || len(jobs) != 1 || jobs[0].State != client.StateDone || jobs[0].Requests != len(bodies) {
		t.Fatalf("Jobs = %+v, %v; want one done job of %d requests", jobs, err, len(bodies))
	}
}

func fingerprintOf(t testing.TB, c *client.Client, job string) string {
	rec, err := c.LoadJob(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Fingerprint
}

// TestCancelJobRemovesPending publishes requests no worker takes and
// cancels one job: its requests go, the other job's stay.
func TestCancelJobRemovesPending(t *testing.T) {
	ns := startServer(t, -1, t.TempDir())
	nc := connect(t, ns.ClientURL())
	js, _ := jetstream.New(nc)
	if _, err := worker.EnsureStreams(context.Background(), js, worker.Config{Model: "digits"}); err != nil {
		t.Fatal(err)
	}
	c, _ := client.New(nc, client.Config{Model: "digits"})
	for i := range 5 {
		if _, err := c.Publish(context.Background(), client.Request{ID: fmt.Sprint("gone-", i), Job: "gone", Body: []byte("b")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Publish(context.Background(), client.Request{ID: "other-0", Job: "other", Body: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	n, err := c.CancelJob(context.Background(), "gone")
	if err != nil || n != 5 {
		t.Fatalf("CancelJob = %d, %v; want 5 removed", n, err)
	}
	s, _ := js.Stream(context.Background(), wire.DefaultRequestStream)
	info, err := s.Info(context.Background())
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("request stream holds %d (%v), want the other job's 1", info.State.Msgs, err)
	}
}

// TestRunReadsStoredResultsOutOfOrder resumes jobs whose stored results
// lie in the result stream out of request order, some of them twice (an
// error result, then the one that counts), with a window of two requests:
// every result reaches the sink once, in request order, the last stored
// one for stored requests and the worker's for the others.
func TestRunReadsStoredResultsOutOfOrder(t *testing.T) {
	ns := startServer(t, -1, t.TempDir())
	nc := connect(t, ns.ClientURL())
	startWorker(t, nc)
	bodies, _, _ := digitsBodies(t, 7)
	c, err := client.New(nc, client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	n := len(bodies)
	for _, tc := range []struct {
		name   string
		stored func(seq int) bool
		order  []int // of the stored results
	}{
		// Every stored result arrives too far ahead: each is read again by subject.
		{"reversed", func(seq int) bool { return seq%5 != 0 }, descending(n)},
		// Request 1's result arrives last, behind results parked ahead of their turn.
		{"one late", func(seq int) bool { return seq < n-3 }, append(append([]int{0}, ascending(2, n)...), 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := strings.ReplaceAll(tc.name, " ", "-")
			store := func(seq int, status codec.Code, body string) {
				m := nats.NewMsg(wire.ModelResultPrefix(wire.DefaultPrefix, "digits") + job + "." + fmt.Sprint(seq))
				m.Header.Set(wire.HeaderRequestID, client.RequestID(job, seq))
				m.Header.Set(wire.HeaderStatus, string(status))
				m.Data = []byte(body)
				if _, err := js.PublishMsg(context.Background(), m); err != nil {
					t.Fatal(err)
				}
			}
			stored := 0
			for _, seq := range tc.order {
				if tc.stored(seq) && seq%3 == 0 {
					store(seq, codec.CodeInternal, "")
				}
			}
			for _, seq := range tc.order {
				if tc.stored(seq) {
					store(seq, codec.CodeOK, fmt.Sprint("stored-", seq))
					stored++
				}
			}
			next := 0
			st, err := c.Run(context.Background(), client.Job{Name: job, Fingerprint: "f", Window: 2, Rows: -1},
				client.Bodies(bodies, nil), func(seq int, _ client.Part, r client.Result) error {
					if seq != next {
						return fmt.Errorf("result of request %d handed on in the turn of %d", seq, next)
					}
					next++
					if tc.stored(seq) {
						if !r.OK() || string(r.Body) != fmt.Sprint("stored-", seq) {
							return fmt.Errorf("request %d: %s %q, want its last stored result", seq, r.Status, r.Body)
						}
						return nil
					}
					res, err := r.Decode(codec.DefaultLimits())
					if err != nil {
						return fmt.Errorf("request %d: %w", seq, err)
					}
					res.Release()
					return nil
				})
			if err != nil {
				t.Fatal(err)
			}
			if next != n || st.Requests != n || st.Published != n-stored {
				t.Fatalf("%d results handed on, stats %+v; want %d requests, %d published", next, st, n, n-stored)
			}
		})
	}
}

func ascending(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func descending(n int) []int {
	out := ascending(0, n)
	slices.Reverse(out)
	return out
}

// TestRunWithinTinyByteBounds runs a job whose byte bounds hold less than
// one body: requests are published one at a time, and every result that
// arrives ahead of its turn is dropped and read by subject at its turn.
// Results still reach the sink once, in order, equal to the references.
func TestRunWithinTinyByteBounds(t *testing.T) {
	ns := startServer(t, -1, t.TempDir())
	nc := connect(t, ns.ClientURL())
	startWorker(t, nc)
	bodies, ids, refs := digitsBodies(t, 7)
	c, err := client.New(nc, client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	next, row := 0, 0
	st, err := c.Run(context.Background(), client.Job{Name: "tiny", Fingerprint: "f", Window: 8, UnackedBytes: 1, ReadyBytes: 1, Rows: -1},
		client.Bodies(bodies, nil), func(seq int, _ client.Part, r client.Result) error {
			if seq != next {
				return fmt.Errorf("result of request %d handed on in the turn of %d", seq, next)
			}
			next++
			res, err := r.Decode(codec.DefaultLimits())
			if err != nil {
				return err
			}
			defer res.Release()
			logits, _ := res.Column("logits")
			for k, id := range res.IDs.(*array.Int64).Int64Values() {
				if id != ids[row] {
					return fmt.Errorf("row %d: id %d, want %d", row, id, ids[row])
				}
				if got, want := floats(logits.Row(k)), refs[id]; math.Abs(float64(got[0]-want[0])) > 1e-4*math.Max(1, math.Abs(float64(want[0]))) {
					return fmt.Errorf("id %d logit 0 = %v, reference %v", id, got[0], want[0])
				}
				row++
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if next != len(bodies) || row != len(ids) || st.Published != len(bodies) {
		t.Fatalf("%d results, %d rows, stats %+v; want %d results, %d rows", next, row, st, len(bodies), len(ids))
	}
}

// heldSource yields bodies whose parts each hold held bytes, counting
// the parts between the source and the sink.
type heldSource struct {
	bodies   [][]byte
	held     int
	i        int
	out, max atomic.Int64
}

func (s *heldSource) Next(context.Context) (client.Part, error) {
	if s.i >= len(s.bodies) {
		return client.Part{}, io.EOF
	}
	s.i++
	if n := s.out.Add(1); n > s.max.Load() {
		s.max.Store(n)
	}
	return client.Part{Body: s.bodies[s.i-1], Held: s.held}, nil
}

// TestRunBoundsHeldBytes runs a job whose parts each hold more than
// Job.HeldBytes: however wide the window, one part at a time is between
// the source and the sink, besides the one just read and waiting for room
// (its size is known only once read), and every result still arrives
// once, in order.
func TestRunBoundsHeldBytes(t *testing.T) {
	ns := startServer(t, -1, t.TempDir())
	nc := connect(t, ns.ClientURL())
	startWorker(t, nc)
	bodies, _, _ := digitsBodies(t, 6)
	c, err := client.New(nc, client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	src := &heldSource{bodies: bodies, held: 1 << 20}
	next := 0
	_, err = c.Run(context.Background(), client.Job{Name: "held", Fingerprint: "f", Window: 64, HeldBytes: 1 << 10, Rows: -1},
		src, func(seq int, _ client.Part, r client.Result) error {
			if seq != next {
				return fmt.Errorf("result of request %d handed on in the turn of %d", seq, next)
			}
			if !r.OK() {
				return fmt.Errorf("request %d: %s %s", seq, r.Status, r.Error)
			}
			next++
			src.out.Add(-1)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if next != len(bodies) {
		t.Fatalf("%d results, want %d", next, len(bodies))
	}
	if m := src.max.Load(); m > 2 {
		t.Fatalf("up to %d parts out of the source at once; HeldBytes allows one, plus one waiting", m)
	}
}

// TestRunLeavesCarriedRequestsOut runs a job whose first requests an
// earlier run finished (their results stored, one of them an error) with
// Job.Carried: the Source yields only the rest, the Sink gets only their
// results (computed by a real worker), and the totals count the carried
// requests as resumed.
func TestRunLeavesCarriedRequestsOut(t *testing.T) {
	ns := startServer(t, -1, t.TempDir())
	nc := connect(t, ns.ClientURL())
	startWorker(t, nc)
	bodies, _, _ := digitsBodies(t, 7)
	c, err := client.New(nc, client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	const job, carried = "carried", 4
	for seq := range carried {
		m := nats.NewMsg(wire.ModelResultPrefix(wire.DefaultPrefix, "digits") + job + "." + fmt.Sprint(seq))
		m.Header.Set(wire.HeaderRequestID, client.RequestID(job, seq))
		status := codec.CodeOK
		if seq == 1 {
			status = codec.CodeInvalidArgument
		}
		m.Header.Set(wire.HeaderStatus, string(status))
		m.Data = []byte("stored")
		if _, err := js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	rows := make([]int, len(bodies))
	for i := range rows {
		rows[i] = 10 + i
	}
	carry := client.Carried{Requests: carried, Rows: 10 + 11 + 12 + 13, FailedRows: 11,
		Errors: map[codec.Code]int{codec.CodeInvalidArgument: 1}}
	var handed []int
	st, err := c.Run(context.Background(), client.Job{Name: job, Fingerprint: "f", Rows: -1, Carried: carry},
		client.Bodies(bodies[carried:], rows[carried:]), func(seq int, p client.Part, r client.Result) error {
			handed = append(handed, seq)
			if p.Rows != rows[seq] {
				return fmt.Errorf("request %d handed with %d rows, want %d", seq, p.Rows, rows[seq])
			}
			res, err := r.Decode(codec.DefaultLimits())
			if err != nil {
				return fmt.Errorf("request %d: %s %q: %w", seq, r.Status, r.Body, err)
			}
			res.Release()
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if want := ascending(carried, len(bodies)); !slices.Equal(handed, want) {
		t.Fatalf("handed requests %v, want %v", handed, want)
	}
	var all int64
	for _, n := range rows {
		all += int64(n)
	}
	if st.Requests != len(bodies) || st.Published != len(bodies)-carried || st.Rows != all ||
		st.ResumedRows != carry.Rows || st.FailedRows != 11 || st.OKRows != all-11 ||
		st.Errors[codec.CodeInvalidArgument] != 1 || st.TotalReqs != len(bodies) {
		t.Fatalf("stats %+v, want %d requests (%d published), %d rows, %d resumed, 11 failed", st, len(bodies),
			len(bodies)-carried, all, carry.Rows)
	}
	rec, err := c.LoadJob(context.Background(), job)
	if err != nil || rec.State != client.StateDone || rec.Requests != len(bodies) || rec.DoneRows != all || rec.FailedRows != 11 {
		t.Fatalf("job record %+v, %v", rec, err)
	}
}

// TestRunRecordsWhereResultsResume interrupts a job and checks the
// record's ResultsFrom: past the results of finished requests, and at or
// before every result of the unfinished ones (stored then or later). A
// run that carries the finished requests over starts reading there and
// still hands on every other request once.
func TestRunRecordsWhereResultsResume(t *testing.T) {
	ns := startServer(t, -1, t.TempDir())
	nc := connect(t, ns.ClientURL())
	startWorker(t, nc)
	bodies, _, _ := digitsBodies(t, 7)
	rows := make([]int, len(bodies))
	for i := range rows {
		rows[i] = 7
	}
	c, err := client.New(nc, client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	const job, stopAfter = "from", 10
	job1 := client.Job{Name: job, Fingerprint: "f", Rows: -1, Window: 8}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = c.Run(ctx, job1, client.Bodies(bodies, rows), func(seq int, _ client.Part, _ client.Result) error {
		if seq == stopAfter-1 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, client.ErrInterrupted) {
		t.Fatalf("interrupted run: %v", err)
	}
	rec, err := c.LoadJob(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	if rec.DoneRequests < stopAfter || rec.DoneRequests >= len(bodies) || rec.ResultsFrom == 0 {
		t.Fatalf("record after the interrupt: %d requests done, results from %d", rec.DoneRequests, rec.ResultsFrom)
	}

	carry := client.Carried{Requests: rec.DoneRequests, Rows: rec.DoneRows, FailedRows: rec.FailedRows}
	var handed []int
	job2 := client.Job{Name: job, Fingerprint: "f", Rows: -1, Window: 8, Carried: carry}
	st, err := c.Run(context.Background(), job2, client.Bodies(bodies[carry.Requests:], rows[carry.Requests:]),
		decodeEach(&handed))
	if err != nil {
		t.Fatal(err)
	}
	if want := ascending(carry.Requests, len(bodies)); !slices.Equal(handed, want) {
		t.Fatalf("resumed run handed %v, want %v", handed, want)
	}
	if st.Requests != len(bodies) || st.FailedRows != 0 {
		t.Fatalf("resumed run stats %+v", st)
	}

	// Every stored result, with its stream sequence.
	js, _ := jetstream.New(nc)
	cons, err := js.OrderedConsumer(context.Background(), wire.DefaultResultStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{wire.ModelResultPrefix(wire.DefaultPrefix, "digits") + job + ".>"}})
	if err != nil {
		t.Fatal(err)
	}
	first := map[int]uint64{} // request → stream sequence of its first result
	for len(first) < len(bodies) {
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("reading stored results (%d of %d requests seen): %v", len(first), len(bodies), err)
		}
		md, err := msg.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		var seq int
		if _, err := fmt.Sscanf(msg.Headers().Get(wire.HeaderRequestID), job+"-%d", &seq); err != nil {
			t.Fatal(err)
		}
		if _, ok := first[seq]; !ok {
			first[seq] = md.Sequence.Stream
		}
	}
	if first[0] >= rec.ResultsFrom {
		t.Errorf("request 0's result is at %d, ResultsFrom %d does not skip it", first[0], rec.ResultsFrom)
	}
	for seq := carry.Requests; seq < len(bodies); seq++ {
		if first[seq] < rec.ResultsFrom {
			t.Errorf("request %d (not finished at the interrupt) has a result at %d, before ResultsFrom %d",
				seq, first[seq], rec.ResultsFrom)
		}
	}
}

// idleQueue is a server whose digits streams and consumer exist, with
// one request of another job taken from the consumer and not acked: a
// request held by a "worker" passes Run's live-worker check while no
// worker takes the job's requests.
type idleQueue struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	c    *client.Client
	reqs jetstream.Stream // the request stream
	hold jetstream.Msg    // the held request
}

func newIdleQueue(t *testing.T, cfg worker.Config) *idleQueue {
	t.Helper()
	ns := startServer(t, -1, t.TempDir())
	q := &idleQueue{nc: connect(t, ns.ClientURL())}
	q.js, _ = jetstream.New(q.nc)
	cons, err := worker.EnsureStreams(context.Background(), q.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if q.c, err = client.New(q.nc, client.Config{Model: cfg.Model}); err != nil {
		t.Fatal(err)
	}
	if q.reqs, err = q.js.Stream(context.Background(), wire.DefaultRequestStream); err != nil {
		t.Fatal(err)
	}
	if _, err := q.c.Publish(context.Background(), client.Request{ID: "hold-0", Job: "hold", Body: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	held, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range held.Messages() {
		q.hold = m
	}
	if q.hold == nil {
		t.Fatalf("holding a request: %v", held.Error())
	}
	return q
}

// state returns the request stream's state.
func (q *idleQueue) state(t *testing.T) jetstream.StreamState {
	t.Helper()
	info, err := q.reqs.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}

// interrupt runs job over bodies with window, interrupts it once the
// request stream holds msgs messages (the held one included), and
// returns the job's record.
func (q *idleQueue) interrupt(t *testing.T, job string, window int, bodies [][]byte, rows []int, msgs uint64) client.JobRecord {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if info, err := q.reqs.Info(context.Background()); err == nil && info.State.Msgs >= msgs {
				cancel()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	_, err := q.c.Run(ctx, client.Job{Name: job, Fingerprint: "f", Rows: -1, Window: window}, &markedSource{client.Bodies(bodies, rows), 0},
		func(seq int, _ client.Part, _ client.Result) error {
			return fmt.Errorf("request %d answered with no worker", seq)
		})
	if !errors.Is(err, client.ErrInterrupted) || strings.Contains(err.Error(), "storing job record") {
		t.Fatalf("interrupted run: %v", err)
	}
	rec, err := q.c.LoadJob(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// decodeEach is a Sink that decodes every result and appends its
// request's number to handed.
func decodeEach(handed *[]int) client.Sink {
	return func(seq int, _ client.Part, r client.Result) error {
		*handed = append(*handed, seq)
		res, err := r.Decode(codec.DefaultLimits())
		if err != nil {
			return fmt.Errorf("request %d: %s %q: %w", seq, r.Status, r.Error, err)
		}
		res.Release()
		return nil
	}
}

// markedSource gives each part the number of requests up to it as its
// Resume.
type markedSource struct {
	client.Source
	n int
}

func (s *markedSource) Next(ctx context.Context) (client.Part, error) {
	p, err := s.Source.Next(ctx)
	if err == nil {
		s.n++
		p.Resume = s.n
	}
	return p, err
}

// TestRunLeavesQueuedRequestsQueued interrupts a job whose requests no
// worker has taken yet, waits past the duplicate window and resumes it:
// the requests still queued are not published again (the server would
// store them twice and the worker run them twice), the others are, and
// every request is answered once and handed on once, in order.
func TestRunLeavesQueuedRequestsQueued(t *testing.T) {
	cfg := worker.Config{Model: "digits", DuplicateWindow: time.Second}
	q := newIdleQueue(t, cfg)
	c := q.c

	bodies, _, _ := digitsBodies(t, 7)
	bodies = bodies[:12]
	rows := make([]int, len(bodies))
	for i := range rows {
		rows[i] = 7
	}
	const job, window = "queued", 8
	// The run publishes a window of requests and waits: interrupt it once
	// they are stored (their PubAcks may still be on the way).
	rec := q.interrupt(t, job, window, bodies, rows, 1+window)
	if len(rec.Queued) != window {
		t.Fatalf("record after the interrupt keeps %d queued requests (%v), want the %d published", len(rec.Queued), rec.Queued, window)
	}

	time.Sleep(2 * cfg.DuplicateWindow) // the server forgets the requests' ids
	before := q.state(t).LastSeq
	var handed []int
	var st client.Stats
	ran := make(chan error, 1)
	go func() {
		// A window wider than the queued requests: the others are
		// published before any result comes.
		var err error
		st, err = c.Run(context.Background(), client.Job{Name: job, Fingerprint: "f", Rows: -1, Window: 2 * window},
			client.Bodies(bodies, rows), decodeEach(&handed))
		ran <- err
	}()
	// The resumed run has found its queued requests still there and
	// published the others: now a worker may take them.
	for q.state(t).Msgs < uint64(1+len(bodies)) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := q.hold.Ack(); err != nil {
		t.Fatal(err)
	}
	startWorkerWith(t, q.nc, cfg)
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if want := ascending(0, len(bodies)); !slices.Equal(handed, want) {
		t.Fatalf("resumed run handed %v, want %v", handed, want)
	}
	if st.Queued != window || st.Published != len(bodies)-window {
		t.Errorf("resumed run: %d requests left queued, %d published; want %d and %d", st.Queued, st.Published, window, len(bodies)-window)
	}
	if stored := int(q.state(t).LastSeq - before); stored != len(bodies)-window {
		t.Errorf("the request stream stored %d requests during the resumed run, want the %d not queued before", stored, len(bodies)-window)
	}
	res, _ := q.js.Stream(context.Background(), wire.DefaultResultStream)
	info, err := res.Info(context.Background(), jetstream.WithSubjectFilter(wire.ModelResultPrefix(wire.DefaultPrefix, "digits")+job+".>"))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.State.Subjects) != len(bodies) {
		t.Errorf("results stored for %d requests, want %d", len(info.State.Subjects), len(bodies))
	}
	for subj, n := range info.State.Subjects {
		if n != 1 {
			t.Errorf("%s: %d results stored: a request ran more than once", subj, n)
		}
	}
	if rec, err := c.LoadJob(context.Background(), job); err != nil || len(rec.Queued) != 0 || rec.State != client.StateDone {
		t.Errorf("record after the resumed run: %+v, %v; want done, nothing queued", rec, err)
	}
}

// TestRunInterruptedRecordsEveryStoredRequest interrupts a job while its
// requests are being published, no worker taking them: the job record
// names every request the stream stored (where it lies), those whose
// PubAcks were still on the way included, and as its sent point the
// Resume of the last of them.
func TestRunInterruptedRecordsEveryStoredRequest(t *testing.T) {
	q := newIdleQueue(t, worker.Config{Model: "digits"})
	few, _, _ := digitsBodies(t, 7)
	var bodies [][]byte // enough that the interrupt comes while they are sent
	for range 40 {
		bodies = append(bodies, few...)
	}
	rows := make([]int, len(bodies))
	for i := range rows {
		rows[i] = 7
	}
	const job = "sent"
	rec := q.interrupt(t, job, len(bodies), bodies, rows, 3)
	stored := int(q.state(t).Msgs) - 1 // the held request
	if len(rec.Queued) != stored || stored == len(bodies) {
		t.Fatalf("the stream stored %d of the job's %d requests, the record names %d: %v", stored, len(bodies), len(rec.Queued), rec.Queued)
	}
	// Every request up to the last one stored is stored: the record's
	// sent point is the Resume of that one.
	if got, want := string(rec.Sent), strconv.Itoa(stored); got != want {
		t.Errorf("the record's sent point is %q, want %s: the Resume of the last stored request", got, want)
	}
	for seq, at := range rec.Queued {
		m, err := q.reqs.GetMsg(context.Background(), at)
		if err != nil {
			t.Fatalf("request %d at %d: %v", seq, at, err)
		}
		if id := m.Header.Get(nats.MsgIdHdr); id != client.RequestID(job, seq) {
			t.Errorf("the record puts request %d at %d, which holds %q", seq, at, id)
		}
	}
}

// TestRunRecordsNoQueuedPastItsBound interrupts a run with more requests
// stored and not handed on than a job record names: the record is still
// saved, naming none (a later run publishes them again).
func TestRunRecordsNoQueuedPastItsBound(t *testing.T) {
	q := newIdleQueue(t, worker.Config{Model: "digits"})
	const n = 16400 // past the 16,384 a record names
	body := []byte("x")
	bodies, rows := make([][]byte, n), make([]int, n)
	for i := range bodies {
		bodies[i], rows[i] = body, 1
	}
	rec := q.interrupt(t, "wide", n, bodies, rows, 1+n)
	if rec.State != client.StateInterrupted || len(rec.Queued) != 0 {
		t.Fatalf("record: state %s, %d queued requests named; want interrupted, none", rec.State, len(rec.Queued))
	}
}

// TestCancelJobStopsItsRun cancels a job while a run of it waits for
// results no worker will produce: the run stops with ErrJobCancelled
// instead of waiting, hands nothing on, its requests leave the stream and
// its record stays cancelled.
func TestCancelJobStopsItsRun(t *testing.T) {
	q := newIdleQueue(t, worker.Config{Model: "digits"})
	bodies, _, _ := digitsBodies(t, 7)
	bodies = bodies[:6]
	rows := make([]int, len(bodies))
	for i := range rows {
		rows[i] = 7
	}
	const job = "stopped"
	errc := make(chan error, 1)
	go func() {
		_, err := q.c.Run(context.Background(), client.Job{Name: job, Fingerprint: "f", Rows: -1}, client.Bodies(bodies, rows),
			func(seq int, _ client.Part, _ client.Result) error {
				return fmt.Errorf("request %d answered with no worker", seq)
			})
		errc <- err
	}()
	for q.state(t).Msgs < uint64(1+len(bodies)) {
		select {
		case err := <-errc:
			t.Fatalf("run ended before its requests were stored: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	n, err := q.c.CancelJob(context.Background(), job)
	if err != nil || n != len(bodies) {
		t.Fatalf("CancelJob = %d, %v; want %d removed", n, err, len(bodies))
	}
	select {
	case err := <-errc:
		if !errors.Is(err, client.ErrJobCancelled) {
			t.Fatalf("run of a cancelled job: %v, want ErrJobCancelled", err)
		}
	case <-time.After(30 * time.Second): // a hang guard, far above the ~ms it takes
		t.Fatal("run still waiting 30 s after its job was cancelled")
	}
	rec, err := q.c.LoadJob(context.Background(), job)
	if err != nil || rec.State != client.StateCancelled {
		t.Fatalf("record after the cancel: state %q (%v), want %q", rec.State, err, client.StateCancelled)
	}
	if m := q.state(t).Msgs; m != 1 {
		t.Fatalf("request stream holds %d, want only the held request", m)
	}
}
