package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// maxPayload is the servers' max_payload: room for the largest request a
// scenario sends (the flood's) plus headers.
const maxPayload = 8 << 20

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// broker is one in-process JetStream server, or a cluster of them. Its
// nodes can be shut down and restarted on the same port and store.
type broker struct {
	opts  []*server.Options
	nodes []*server.Server // nil where a node is down
}

// startSingle starts one JetStream server with file storage under dir on
// a fixed port, so that it can be restarted at the same address.
func startSingle(dir string) (*broker, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	b := &broker{opts: []*server.Options{{
		ServerName: "rel-single", Host: "127.0.0.1", Port: port,
		JetStream: true, StoreDir: filepath.Join(dir, "js"),
		MaxPayload: maxPayload, NoSigs: true, NoLog: true,
	}}}
	b.nodes = make([]*server.Server, 1)
	return b, b.start(0)
}

func (b *broker) start(i int) error {
	o := *b.opts[i] // the server keeps and mutates its options
	o.Routes = append(o.Routes[:0:0], b.opts[i].Routes...)
	ns, err := server.NewServer(&o)
	if err != nil {
		return fmt.Errorf("configuring server %s: %w", o.ServerName, err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return fmt.Errorf("server %s not ready after 15s", o.ServerName)
	}
	b.nodes[i] = ns
	return nil
}

// stop shuts node i down and waits until it is gone.
func (b *broker) stop(i int) {
	if ns := b.nodes[i]; ns != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		b.nodes[i] = nil
	}
}

func (b *broker) shutdown() {
	for i := range b.nodes {
		b.stop(i)
	}
}

// url lists every node's client URL, comma-separated (nats.Connect and
// JETINFER_NATS_URL accept such a list).
func (b *broker) url() string {
	urls := make([]string, len(b.opts))
	for i, o := range b.opts {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", o.Port)
	}
	return strings.Join(urls, ",")
}

// connect opens a client connection that reconnects forever.
func (b *broker) connect(name string) (*nats.Conn, error) {
	nc, err := nats.Connect(b.url(), nats.Name(name), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(false))
	if err != nil {
		return nil, fmt.Errorf("connecting %s: %w", name, err)
	}
	return nc, nil
}

// retry calls f until it succeeds or ctx ends: a cluster's first meta
// leader election takes seconds, and a leader change makes API calls fail
// for a moment.
func retry(ctx context.Context, what string, f func(context.Context) error) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last := f(cctx)
		cancel()
		if last == nil {
			return nil
		}
		t.Reset(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last error: %w)", what, ctx.Err(), last)
		case <-t.C:
		}
	}
}
