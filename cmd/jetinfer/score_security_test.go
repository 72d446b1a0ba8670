package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/trt/onnxrt"
	"github.com/jetinfer/jetinfer/worker/client"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// docBlock returns the text of docs/security.md between
// <!-- name:begin --> and <!-- name:end -->, without its code fence.
func docBlock(t *testing.T, name string) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "<!-- "+name+":begin -->")
	block, _, ok2 := strings.Cut(block, "<!-- "+name+":end -->")
	if !ok || !ok2 {
		t.Fatalf("docs/security.md lacks the %s:begin/end markers", name)
	}
	return strings.Trim(strings.TrimSpace(block), "`")
}

// startScorerServer starts a JetStream server with the users of
// docs/security.md, verbatim: the permissions block with the scorer entry
// added to its users, plus an unrestricted "admin" for the test's checks.
func startScorerServer(t *testing.T) *server.Server {
	t.Helper()
	block := docBlock(t, "permissions")
	i := strings.LastIndex(block, "]")
	if i < 0 {
		t.Fatal("the permissions block has no users list")
	}
	conf := block[:i] + docBlock(t, "score-permissions") + "\n" + block[i:]
	dir := t.TempDir()
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"worker", "producer_a", "producer_b", "scheduler", "scorer"} {
		t.Setenv("JETINFER_"+strings.ToUpper(user)+"_PASSWORD", "pw-"+user)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("loading the permissions of docs/security.md: %v", err)
	}
	opts.Users = append(opts.Users, &server.User{Username: "admin", Password: "pw-admin"})
	opts.Host, opts.Port, opts.JetStream, opts.StoreDir = "127.0.0.1", -1, true, filepath.Join(dir, "js")
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("creating server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// TestSecurityScorerRole runs `jetinfer score` (an interrupted run, its
// resumption, and a re-run that finds every result stored) and `jetinfer
// jobs` as the scorer user of docs/security.md, beside a worker with the
// worker user's rights: everything works and no permission is refused.
// What the role leaves out is refused: `jobs cancel` (it reads and
// deletes request-stream messages), and reading a stored result by
// sequence.
func TestSecurityScorerRole(t *testing.T) {
	lib, err := onnxrt.FindLibrary(os.Getenv("JETINFER_ORT_LIBRARY"))
	if err != nil {
		t.Skipf("ONNX Runtime library not available (%v); run `make ort`", err)
	}
	ns := startScorerServer(t)
	url := ns.ClientURL()
	admin, err := nats.Connect(url, nats.UserInfo("admin", "pw-admin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)

	// The worker, as the worker user.
	wk := exec.Command(os.Args[0], "worker", "-nats", url, "-model", "digits",
		"-model-path", filepath.Join("..", "..", "testdata", "models", "digits.onnx"))
	wk.Env = append(os.Environ(), "JETINFER_TEST_MAIN=1", "JETINFER_ORT_LIBRARY="+lib, "JETINFER_HTTP_LISTEN=127.0.0.1:0",
		"JETINFER_LOG_LEVEL=warn", "JETINFER_NATS_USER=worker", "JETINFER_NATS_PASSWORD=pw-worker",
		"JETINFER_NATS_INBOX_PREFIX=_INBOX_worker")
	var wkErr bytes.Buffer
	wk.Stderr = &wkErr
	if err := wk.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = wk.Process.Kill()
		_ = wk.Wait()
		if t.Failed() {
			t.Logf("worker stderr:\n%s", wkErr.String())
		}
	})
	ac, err := client.New(admin, client.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ac.CheckWorker(context.Background(), 0, true, nil); err != nil {
		t.Fatal(err)
	}

	// score and jobs, as the scorer user.
	t.Setenv("JETINFER_NATS_USER", "scorer")
	t.Setenv("JETINFER_NATS_PASSWORD", "pw-scorer")
	t.Setenv("JETINFER_NATS_INBOX_PREFIX", "_INBOX_scorer")
	d := loadDigitsTable(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.parquet"), filepath.Join(dir, "out.parquet")
	ids := d.writeParquet(t, in, 3, 128)
	args := scoreArgs(url, in, out, "-rows-per-request", "16", "-window", "4")
	refused := func(stderr string) {
		t.Helper()
		if strings.Contains(strings.ToLower(stderr), "permission") {
			t.Fatalf("a permission was refused:\n%s", stderr)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	whenResults(t, admin, 15, cancel)
	var stdout, stderr bytes.Buffer
	if err := run(ctx, args, &stdout, &stderr); !errors.Is(err, client.ErrInterrupted) {
		t.Fatalf("interrupted score = %v, want ErrInterrupted\n%s", err, stderr.String())
	}
	refused(stderr.String())
	for i, want := range []string{"resumed_rows=", "resumed_rows=1080"} {
		stdout.Reset()
		stderr.Reset()
		if err := run(context.Background(), args, &stdout, &stderr); err != nil {
			t.Fatalf("score run %d: %v\n%s", i+2, err, stderr.String())
		}
		refused(stderr.String())
		var rows, ok, failed, resumed int
		if _, err := fmtSscan(stdout.String(), &rows, &ok, &failed, &resumed); err != nil || rows != len(ids) || ok != len(ids) ||
			!strings.Contains(stdout.String(), want) || resumed == 0 {
			t.Fatalf("score run %d: %q (%v); want %d rows ok, %s…, some resumed", i+2, stdout.String(), err, len(ids), want)
		}
		d.checkOutput(t, out, ids)
	}
	stdout.Reset()
	stderr.Reset()
	if err := run(context.Background(), []string{"jobs", "-nats", url}, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), "done") {
		t.Fatalf("jobs = %v:\n%s%s", err, stdout.String(), stderr.String())
	}
	refused(stderr.String())

	// Left out of the role: cancelling (request-stream reads and deletes),
	// tried while the stream holds a request (of a model no worker serves).
	ajs, _ := jetstream.New(admin)
	if _, err := ajs.Publish(context.Background(), wire.RequestSubject(wire.DefaultPrefix, "other"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if err := run(cctx, []string{"jobs", "-nats", url, "cancel", "x"}, &stdout, &stderr); err == nil {
		t.Error("jobs cancel succeeded as the scorer; the role grants no reads or deletes of stored requests")
	}
	// ... and reading stored results by sequence.
	nc, err := nats.Connect(url, nats.UserInfo("scorer", "pw-scorer"), nats.CustomInboxPrefix("_INBOX_scorer"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	gctx, gcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer gcancel()
	s, err := js.Stream(gctx, wire.DefaultResultStream)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.GetMsg(gctx, 1); err == nil {
		t.Errorf("the scorer read stored result 1 by sequence (%s)", m.Subject)
	}
}
