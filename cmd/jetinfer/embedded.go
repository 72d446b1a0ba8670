package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startEmbedded starts an in-process NATS server with JetStream on
// 127.0.0.1:port (-1 picks a free port), storing streams under dir. A
// port already in use, or any other start-up failure the server reports,
// is returned at once rather than after the 10 s readiness wait.
func startEmbedded(port int, dir string, maxPayload int32) (*server.Server, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if port > 0 {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, portError(addr, "JETINFER_EMBEDDED_PORT", "another NATS server or `jetinfer worker --embedded`", err)
		}
		_ = ln.Close()
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "jetinfer-embedded",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		MaxPayload: maxPayload,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("configuring embedded NATS server: %w", err)
	}
	fatal := make(chan string, 1)
	ns.SetLogger(fatalLogger(fatal), false, false)
	go ns.Start()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if ns.ReadyForConnections(100 * time.Millisecond) {
			return ns, nil
		}
		select {
		case msg := <-fatal:
			ns.Shutdown()
			return nil, fmt.Errorf("starting embedded NATS server on %s: %s", addr, msg)
		default:
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			return nil, fmt.Errorf("embedded NATS server on %s not ready after 10s", addr)
		}
	}
}

// portError explains a failed listen on addr; setting names the variable
// that chooses the address and likely names what holds it.
func portError(addr, setting, likely string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s is already in use (by %s?): stop that process or choose another with %s: %w", addr, likely, setting, err)
	}
	return fmt.Errorf("listening on %s (%s): %w", addr, setting, err)
}

// fatalLogger passes the embedded server's fatal messages (which it logs
// instead of returning, e.g. a listen failure) to ch and drops the rest.
type fatalLogger chan<- string

func (l fatalLogger) Fatalf(format string, v ...any) {
	select {
	case l <- fmt.Sprintf(format, v...):
	default:
	}
}
func (fatalLogger) Noticef(string, ...any) {}
func (fatalLogger) Warnf(string, ...any)   {}
func (fatalLogger) Errorf(string, ...any)  {}
func (fatalLogger) Debugf(string, ...any)  {}
func (fatalLogger) Tracef(string, ...any)  {}
