package worker_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/jetinfer/jetinfer/trt/onnxrt"
)

// ortRuntime is the process-wide ONNX Runtime environment (the library
// allows one per process); nil when the library is not installed.
var (
	ortRuntime *onnxrt.Runtime
	ortMissing string
)

func TestMain(m *testing.M) {
	lib, err := onnxrt.FindLibrary(os.Getenv("JETINFER_ORT_LIBRARY"))
	if err == nil {
		ortRuntime, err = onnxrt.NewRuntime(lib)
	}
	if err != nil {
		ortMissing = fmt.Sprintf("ONNX Runtime library not available (%v); run `make ort` or set JETINFER_ORT_LIBRARY", err)
	}
	code := m.Run()
	if ortRuntime != nil {
		_ = ortRuntime.Close()
	}
	os.Exit(code)
}

// repoFile returns the path of a file relative to the repository root.
func repoFile(parts ...string) string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(append([]string{filepath.Dir(here), ".."}, parts...)...)
}

// loadEngine loads an ONNX model from testdata/models on ONNX Runtime, or
// skips the test when the library is missing.
func loadEngine(t testing.TB, model string) *onnxrt.Engine {
	t.Helper()
	if ortRuntime == nil {
		t.Skip(ortMissing)
	}
	eng, err := ortRuntime.LoadFile(context.Background(), repoFile("testdata", "models", model), onnxrt.Options{IntraOpThreads: 1})
	if err != nil {
		t.Fatalf("loading %s: %v", model, err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	return eng
}

// startServer starts an in-process JetStream server on a free port.
func startServer(t testing.TB) *server.Server {
	t.Helper()
	dir := t.TempDir() // registered before Shutdown, so removed after it
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir,
		MaxPayload: 8 << 20, NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatalf("creating server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("JetStream server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

func connect(t testing.TB, ns *server.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}
