package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/caarlos0/env/v10"

	"github.com/jetinfer/jetinfer/worker/client"
)

// jobsCmd lists the model's scoring jobs, or cancels one.
func jobsCmd(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	var cfg scoreConfig
	if err := env.ParseWithOptions(&cfg, env.Options{Prefix: "JETINFER_"}); err != nil {
		return fmt.Errorf("reading JETINFER_* environment: %w", err)
	}
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: jetinfer jobs [flags]             list jobs with their progress\n"+
			"       jetinfer jobs [flags] cancel JOB  remove the job's requests no worker has taken (a score running it stops)\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.NATSURL, "nats", cfg.NATSURL, "NATS server URL (JETINFER_NATS_URL)")
	fs.StringVar(&cfg.Model, "model", cfg.Model, "model name (JETINFER_MODEL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	nc, err := cfg.NATS.connect(cfg.NATSURL, "jetinfer jobs", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	cl, err := client.New(nc, client.Config{Model: cfg.Model, Prefix: cfg.Prefix, RequestStream: cfg.RequestStream,
		ResultStream: cfg.ResultStream, Logger: log})
	if err != nil {
		return err
	}
	switch rest := fs.Args(); {
	case len(rest) == 0:
		return listJobs(ctx, cl, stdout)
	case len(rest) == 2 && rest[0] == "cancel":
		n, err := cl.CancelJob(ctx, rest[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "jobs: cancelled %s: removed %d pending requests\n", rest[1], n)
		return nil
	default:
		fs.Usage()
		return errors.New("jobs takes no argument, or cancel JOB")
	}
}

func listJobs(ctx context.Context, cl *client.Client, stdout io.Writer) error {
	recs, err := cl.Jobs(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tMODEL\tSTATE\tROWS DONE\tROWS\tPROGRESS\tFAILED ROWS\tUPDATED")
	for _, r := range recs {
		pct, total := "?", "?"
		if r.Rows >= 0 {
			total = fmt.Sprint(r.Rows)
			if r.Rows > 0 {
				pct = fmt.Sprintf("%.1f%%", 100*float64(r.DoneRows)/float64(r.Rows))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n", r.Name, r.Model, r.State, r.DoneRows, total, pct,
			r.FailedRows, r.Updated.Local().Format(time.DateTime))
	}
	return tw.Flush()
}
