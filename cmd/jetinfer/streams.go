package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/worker"
)

// streamsCmd creates or updates the streams and the model's consumer with
// the worker's settings, so that producers can publish before any worker
// has started.
func streamsCmd(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	var cfg workerConfig
	if err := cfg.parse("streams", args, stderr); err != nil {
		return err
	}
	nc, err := cfg.NATS.connect(cfg.NATSURL, "jetinfer streams", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("creating JetStream context: %w", err)
	}
	cons, err := worker.EnsureStreams(ctx, js, cfg.Worker)
	if err != nil {
		return err
	}
	info := cons.CachedInfo()
	fmt.Fprintf(stdout, "streams ready: consumer %s on %s filtering %s\n", info.Name, info.Stream, info.Config.FilterSubject)
	return nil
}
