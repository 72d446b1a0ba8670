package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/worker"
)

// streamsCmd creates the streams and the model's consumer with the
// worker's settings, so that producers can publish before any worker has
// started. Existing streams keep an operator's settings: the command lists
// every one that differs from the config. --check only reports (exit
// status 1 when anything is missing or differs); --update makes the
// existing streams and consumer match the config.
func streamsCmd(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	var cfg workerConfig
	var check, update bool
	err := cfg.parseWith("streams", args, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&check, "check", false, "report how the server's streams and consumer differ from the config; change nothing")
		fs.BoolVar(&update, "update", false, "make existing streams and consumer match the config (overrides operators' settings)")
	})
	if err != nil {
		return err
	}
	if check && update {
		return errors.New("--check and --update exclude each other")
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
	if check {
		drift, err := worker.CheckStreams(ctx, js, cfg.Worker)
		if err != nil {
			return err
		}
		for _, d := range drift {
			fmt.Fprintln(stdout, d)
		}
		if len(drift) > 0 {
			return fmt.Errorf("%d settings differ from the config", len(drift))
		}
		fmt.Fprintln(stdout, "streams and consumer match the config")
		return nil
	}
	var cons jetstream.Consumer
	var drift []worker.Drift
	if update {
		cons, err = worker.UpdateStreams(ctx, js, cfg.Worker)
	} else {
		cons, drift, err = worker.SetUpStreams(ctx, js, cfg.Worker)
	}
	if err != nil {
		return err
	}
	for _, d := range drift {
		fmt.Fprintln(stdout, "left as set:", d)
	}
	info := cons.CachedInfo()
	fmt.Fprintf(stdout, "streams ready: consumer %s on %s filtering %s\n", info.Name, info.Stream, info.Config.FilterSubject)
	return nil
}
