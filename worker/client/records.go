package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/worker/wire"
)

// Job states recorded in a JobRecord.
const (
	StateRunning     = "running"
	StateInterrupted = "interrupted"
	StateDone        = "done"
	StateFailed      = "failed"
	StateCancelled   = "cancelled"
)

// JobRecord is what the job bucket keeps about a job, under the key
// "<model>.<name>".
type JobRecord struct {
	Name         string    `json:"name"`
	Model        string    `json:"model"`
	Fingerprint  string    `json:"fingerprint"`
	Args         []string  `json:"args,omitempty"`
	State        string    `json:"state"`
	Rows         int64     `json:"rows"`          // total input rows, -1 unknown
	Requests     int       `json:"requests"`      // total requests, -1 until known
	DoneRequests int       `json:"done_requests"` // handed to the sink by the last run
	DoneRows     int64     `json:"done_rows"`
	FailedRows   int64     `json:"failed_rows"`
	Created      time.Time `json:"created"`
	Updated      time.Time `json:"updated"`
	// Resume is where the job's Source can start again: the last
	// Part.Resume the job handed on, as JSON (nil: none).
	Resume json.RawMessage `json:"resume,omitempty"`
	// ResultsFrom is the result stream's sequence from which every result
	// of the requests after DoneRequests is stored (0: from the start). A
	// run that carries the first DoneRequests requests over starts
	// reading results there instead of reading the finished ones again.
	ResultsFrom uint64 `json:"results_from,omitempty"`
	// Queued is where the requests after DoneRequests that were stored in
	// the request stream and not handed on lie in it: request → stream
	// sequence. A later run does not publish again those still there
	// (their results come all the same), so that past the duplicate
	// window no request is stored, and run, twice. Empty when more than
	// 16,384 were (a window that wide): they are published again.
	Queued map[int]uint64 `json:"queued,omitempty"`
	// Sent is the Part.Resume, as JSON, of the last request a run stored
	// in the request stream with every request before it stored too or
	// finished (nil: none yet). A later run whose requests up to there
	// all have a stored result or still wait in the stream can read the
	// input for the requests it publishes from there (BodyFilter).
	Sent json.RawMessage `json:"sent,omitempty"`
}

func (c *Client) jobKey(name string) string { return c.cfg.Model + "." + name }

// jobs opens (creating if needed) the job bucket.
func (c *Client) jobs(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.js.KeyValue(ctx, c.cfg.JobBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		// Create only (never update): a producer needs no right to
		// change the bucket (docs/security.md).
		kv, err = c.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: c.cfg.JobBucket, Description: "jetinfer job records", History: 1,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // created meanwhile
			kv, err = c.js.KeyValue(ctx, c.cfg.JobBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("opening job bucket %s: %w", c.cfg.JobBucket, err)
	}
	return kv, nil
}

// startRecord checks a stored record of job against its fingerprint and
// marks it running, or creates it.
func (c *Client) startRecord(ctx context.Context, kv jetstream.KeyValue, job Job) (JobRecord, error) {
	now := time.Now().UTC()
	rec, err := c.record(ctx, kv, job.Name)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		rec = JobRecord{Name: job.Name, Model: c.cfg.Model, Fingerprint: job.Fingerprint, Args: job.Args,
			Rows: job.Rows, Requests: -1, Created: now}
	case err != nil:
		return rec, err
	case rec.Fingerprint != job.Fingerprint:
		return rec, fmt.Errorf("%w: job %s was started with fingerprint %s, this run has %s (changed input files or settings: pick another job name)",
			ErrJobMismatch, job.Name, rec.Fingerprint, job.Fingerprint)
	}
	rec.State, rec.Updated = StateRunning, now
	return rec, c.putRecord(ctx, kv, rec)
}

func (c *Client) record(ctx context.Context, kv jetstream.KeyValue, name string) (JobRecord, error) {
	var rec JobRecord
	e, err := kv.Get(ctx, c.jobKey(name))
	if err != nil {
		return rec, fmt.Errorf("reading job %s: %w", name, err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return rec, fmt.Errorf("decoding job record %s: %w", name, err)
	}
	return rec, nil
}

func (c *Client) putRecord(ctx context.Context, kv jetstream.KeyValue, rec JobRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding job record %s: %w", rec.Name, err)
	}
	if _, err := kv.Put(ctx, c.jobKey(rec.Name), b); err != nil {
		return fmt.Errorf("storing job record %s: %w", rec.Name, err)
	}
	return nil
}

// LoadJob returns the stored record of job name.
func (c *Client) LoadJob(ctx context.Context, name string) (JobRecord, error) {
	kv, err := c.jobs(ctx)
	if err != nil {
		return JobRecord{}, err
	}
	return c.record(ctx, kv, name)
}

// Jobs returns the records of the model's jobs, newest first.
func (c *Client) Jobs(ctx context.Context) ([]JobRecord, error) {
	kv, err := c.jobs(ctx)
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeysFiltered(ctx, c.cfg.Model+".>")
	if err != nil {
		return nil, fmt.Errorf("listing jobs: %w", err)
	}
	var out []JobRecord
	for key := range lister.Keys() {
		rec, err := c.record(ctx, kv, strings.TrimPrefix(key, c.cfg.Model+"."))
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			return nil, err
		}
		out = append(out, rec)
	}
	slices.SortFunc(out, func(a, b JobRecord) int { return b.Updated.Compare(a.Updated) })
	return out, nil
}

// CancelJob marks the job cancelled and removes its requests still
// waiting in the request stream (workers have not taken them). It returns
// the number of requests removed. A job without a record (its requests
// published by other means) is cancelled all the same. Requests a worker
// holds are answered as usual; a Run of the job that is running stops with
// ErrJobCancelled once it sees the record cancelled, which is why the
// record is written first, and a second pass removes what such a run
// published meanwhile.
func (c *Client) CancelJob(ctx context.Context, name string) (int, error) {
	kv, err := c.jobs(ctx)
	if err != nil {
		return 0, err
	}
	rec, err := c.record(ctx, kv, name)
	switch {
	case err == nil:
		rec.State, rec.Updated = StateCancelled, time.Now().UTC()
		if err := c.putRecord(ctx, kv, rec); err != nil {
			return 0, err
		}
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, err
	}
	s, err := c.js.Stream(ctx, c.cfg.RequestStream)
	if err != nil {
		return 0, fmt.Errorf("opening request stream %s: %w", c.cfg.RequestStream, err)
	}
	removed, last, err := c.removeRequests(ctx, s, name, 0)
	if err != nil {
		return removed, err
	}
	more, _, err := c.removeRequests(ctx, s, name, last+1)
	return removed + more, err
}

// removeRequests deletes the job's requests stored in the request stream
// from sequence from on and returns how many it removed and the last
// sequence it looked at. A WorkQueue stream takes one consumer per
// subject, and the workers' consumer has this one: it reads the stored
// requests one by one instead.
func (c *Client) removeRequests(ctx context.Context, s jetstream.Stream, name string, from uint64) (int, uint64, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return 0, from, fmt.Errorf("reading request stream %s: %w", c.cfg.RequestStream, err)
	}
	subject := wire.RequestSubject(c.cfg.Prefix, c.cfg.Model)
	removed := 0
	for seq := max(from, info.State.FirstSeq); seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return removed, seq, fmt.Errorf("reading request %d: %w", seq, err)
		}
		if m.Subject != subject || nats.Header(m.Header).Get(wire.HeaderJob) != name {
			continue
		}
		if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return removed, seq, fmt.Errorf("removing request %d: %w", seq, err)
		}
		removed++
	}
	return removed, info.State.LastSeq, nil
}
