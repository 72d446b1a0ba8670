// Command jetinfer is jetinfer's single binary: the worker, the demo, the
// job submitter, stream setup, the scaling scheduler and the TensorRT
// engine tools. Run `jetinfer help` for the subcommands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

const usage = `jetinfer — batch inference from NATS JetStream

Usage: jetinfer <command> [flags]

Commands:
  worker     serve a model from JetStream (config from JETINFER_* env; --embedded starts a local server)
  demo       embedded server + worker + producer: score the digits test split and print a summary
  score      score Parquet/Arrow tables through the pool into a Parquet/Arrow file (resumable; alias: submit)
  jobs       list scoring jobs with their progress; 'jobs cancel JOB' removes a job's pending requests
  streams    create or update the request/result streams and the model's consumer, then exit
  drain      ask the local worker to drain and wait until it has (Kubernetes preStop hook)
  scheduler  compute and serve autoscaling hints
  engine     build, inspect and check TensorRT engine plans
  model      the model repository: push, ls, show, promote, rollback, rm, resolve
  version    print the version, commit, Go, ONNX Runtime and TensorRT versions

Run 'jetinfer <command> -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := exitCode(run(ctx, os.Args[1:], os.Stdout, os.Stderr), os.Stderr)
	stop()
	os.Exit(code)
}

// exitCode prints err on stderr and returns the process exit status: 0
// for success and for -h/--help (the command printed its usage), 1
// otherwise.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "jetinfer:", err)
	return 1
}

// newFlagSet returns a flag set for `jetinfer <name>` that writes to
// stderr and whose usage starts with synopsis and about, then lists the
// flags.
func newFlagSet(name, synopsis, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: jetinfer %s %s\n\n%s\n\nFlags:\n", name, synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// run dispatches to a subcommand.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	log := newLogger(stderr)
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "worker":
		return workerCmd(ctx, rest, stdout, stderr, log)
	case "demo":
		return demoCmd(ctx, rest, stdout, stderr, log)
	case "score", "submit":
		return scoreCmd(ctx, cmd, rest, stdout, stderr)
	case "jobs":
		return jobsCmd(ctx, rest, stdout, stderr, log)
	case "streams":
		return streamsCmd(ctx, rest, stdout, stderr, log)
	case "scheduler":
		return schedulerCmd(ctx, rest, stdout, stderr, log)
	case "engine":
		return engineCmd(ctx, rest, stdout, stderr, log)
	case "model":
		return modelCmd(ctx, rest, stdout, stderr, log)
	case "drain":
		return drainCmd(ctx, rest, stdout, stderr)
	case "version", "-version", "--version":
		return versionCmd(rest, stdout, stderr)
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// newLogger returns a text logger on w at the level named by
// JETINFER_LOG_LEVEL (debug, info, warn, error; default info), or a JSON
// logger when JETINFER_LOG_FORMAT=json.
func newLogger(w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv("JETINFER_LOG_LEVEL"))); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if os.Getenv("JETINFER_LOG_FORMAT") == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
