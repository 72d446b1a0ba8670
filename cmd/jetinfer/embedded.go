package main

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startEmbedded starts an in-process NATS server with JetStream on
// 127.0.0.1:port (-1 picks a free port), storing streams under dir.
func startEmbedded(port int, dir string, maxPayload int32) (*server.Server, error) {
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
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS server on port %d not ready after 10s", port)
	}
	return ns, nil
}
