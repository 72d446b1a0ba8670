package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jetinfer/jetinfer/worker/wire"
	"github.com/nats-io/nats.go/jetstream"
)

// Default bucket names. Deployments may override them through Config; the
// worker and the scheduler must agree.
const (
	// DefaultReportBucket is the KV bucket workers publish reports to.
	DefaultReportBucket = wire.DefaultReportBucket
	// DefaultHintBucket is the KV bucket the scheduler publishes hints to.
	DefaultHintBucket = wire.DefaultHintBucket
	// DefaultReportTTL is how long the report bucket keeps a key after its
	// last update. It only reclaims space: staleness is judged by
	// WorkerReport.At against Config.ReportMaxAge.
	DefaultReportTTL = 2 * time.Minute
)

// WorkerReport is what one worker measures about itself for one model. A
// worker publishes it every few seconds (a period well below the
// scheduler's ReportMaxAge, 20 s by default; 5 s is a good choice) with
// PublishReport. Encoded as JSON with the field names shown.
type WorkerReport struct {
	// Model is the model the worker serves (the consumer's name).
	Model string `json:"model"`
	// WorkerID identifies the worker process, e.g. the pod name. Unique per
	// model; it is part of the KV key.
	WorkerID string `json:"workerId"`
	// At is when the worker took these measurements (the worker's clock).
	// The scheduler ignores a report older than its ReportMaxAge.
	At time.Time `json:"at"`
	// ServiceRate is the rows per second one worker sustains at
	// saturation, end to end: messaging included, not only engine time.
	// jetinfer's worker reports the larger of SustainedRate (measured) and
	// a load-independent ceiling, the lesser of EngineRate and the rows
	// per CPU-second times the cores the process may use. Zero means not
	// measured yet.
	ServiceRate float64 `json:"serviceRate"`
	// SustainedRate is the rows per second the worker delivered end to end
	// (decoding, batching, engine, result publishing and acks) per second
	// of wall time during which it held at least one message. At
	// saturation it is the capacity the pool really has; below it, a
	// lower bound. Zero means not measured yet. Informational: the worker
	// folds it into ServiceRate.
	SustainedRate float64 `json:"sustainedRate,omitempty"`
	// SustainedMsgRate is SustainedRate in request messages settled per
	// second.
	SustainedMsgRate float64 `json:"sustainedMsgRate,omitempty"`
	// EngineRate is the rows per second of engine time: the ceiling if
	// messaging were free. Informational.
	EngineRate float64 `json:"engineRate,omitempty"`
	// RowsPerMsg is the mean number of rows per request message the worker
	// has seen recently; the scheduler divides ServiceRate by it to get
	// messages per second, the unit of the backlog. Zero means unknown and
	// is read as 1.
	RowsPerMsg float64 `json:"rowsPerMsg,omitempty"`
	// Utilization is the busy fraction in [0,1]: GPU utilization from NVML
	// where present, otherwise the fraction of wall time the engine ran.
	Utilization float64 `json:"utilization"`
	// QueueDelay is the recent mean time a request waited inside the worker
	// (pulled → batch start).
	QueueDelay time.Duration `json:"queueDelayNs"`
	// ColdStart is the time from process start to the first published
	// result, engine load included. Zero until the first result.
	ColdStart time.Duration `json:"coldStartNs"`
	// Version is the model version the worker serves (a worker switching
	// versions reports the new one once it has switched). Workers use it
	// to route requests pinned to another version (docs/models.md).
	Version string `json:"version,omitempty"`
	// InFlightMsgs counts messages the worker holds (delivered, not yet
	// acked: forming a batch or executing). They are work in progress, not
	// backlog, and the scheduler subtracts them from NumAckPending.
	InFlightMsgs int `json:"inFlightMsgs"`
}

// Validate reports whether r can be published: names usable as KV key
// tokens, a time, and measurements in range.
func (r WorkerReport) Validate() error {
	if err := validToken("model", r.Model); err != nil {
		return err
	}
	if err := validToken("worker id", r.WorkerID); err != nil {
		return err
	}
	switch {
	case r.At.IsZero():
		return errors.New("report time is zero")
	case r.ServiceRate < 0 || r.RowsPerMsg < 0 || r.SustainedRate < 0 || r.SustainedMsgRate < 0 || r.EngineRate < 0:
		return fmt.Errorf("service rate %v rows/s, %v rows/msg: must not be negative", r.ServiceRate, r.RowsPerMsg)
	case r.Utilization < 0 || r.Utilization > 1:
		return fmt.Errorf("utilization %v: must be in [0,1]", r.Utilization)
	case r.QueueDelay < 0 || r.ColdStart < 0 || r.InFlightMsgs < 0:
		return errors.New("queue delay, cold start and in-flight count must not be negative")
	}
	return nil
}

// MsgRate is the worker's service rate in request messages per second.
func (r WorkerReport) MsgRate() float64 {
	if r.RowsPerMsg <= 0 {
		return r.ServiceRate
	}
	return r.ServiceRate / r.RowsPerMsg
}

// ReportKey is the KV key of a worker's report: "<model>.<workerID>".
func ReportKey(model, workerID string) string { return model + "." + workerID }

// PublishReport stores r in the report bucket under ReportKey. Call it
// periodically; the bucket's TTL removes the key of a worker that stopped.
// On a clean shutdown a worker may delete its key (kv.Delete) so that the
// scheduler stops counting it at once.
func PublishReport(ctx context.Context, kv jetstream.KeyValue, r WorkerReport) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("validating worker report: %w", err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding worker report: %w", err)
	}
	if _, err := kv.Put(ctx, ReportKey(r.Model, r.WorkerID), b); err != nil {
		return fmt.Errorf("putting worker report %s: %w", ReportKey(r.Model, r.WorkerID), err)
	}
	return nil
}

// decodeReport parses a report entry and checks that its key matches its
// content.
func decodeReport(key string, value []byte) (WorkerReport, error) {
	var r WorkerReport
	if err := json.Unmarshal(value, &r); err != nil {
		return r, fmt.Errorf("decoding worker report %s: %w", key, err)
	}
	if err := r.Validate(); err != nil {
		return r, fmt.Errorf("validating worker report %s: %w", key, err)
	}
	if ReportKey(r.Model, r.WorkerID) != key {
		return r, fmt.Errorf("validating worker report %s: key does not match model %q and worker %q", key, r.Model, r.WorkerID)
	}
	return r, nil
}

// OpenReportBucket returns the worker report bucket, creating it with the
// given TTL (DefaultReportTTL when zero) if it does not exist. An existing
// bucket is used as it is, so workers and the scheduler may both call it.
func OpenReportBucket(ctx context.Context, js jetstream.JetStream, bucket string, ttl time.Duration) (jetstream.KeyValue, error) {
	if ttl <= 0 {
		ttl = DefaultReportTTL
	}
	return openBucket(ctx, js, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "jetinfer worker reports, key <model>.<worker>",
		History:     1,
		TTL:         ttl,
	})
}

// OpenHintBucket returns the hint bucket, creating it if needed. Hints are
// small and rewritten every tick, so the bucket keeps one revision per key.
func OpenHintBucket(ctx context.Context, js jetstream.JetStream, bucket string) (jetstream.KeyValue, error) {
	return openBucket(ctx, js, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "jetinfer scaling hints, key <model>",
		History:     1,
	})
}

func openBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("opening bucket %s: %w", cfg.Bucket, err)
	}
	kv, err = js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		// Another process created it between our two calls.
		kv, err = js.KeyValue(ctx, cfg.Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("creating bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// validToken checks that s can be one token of a NATS subject, of a KV key
// and of a URL path: non-empty, only ASCII letters, digits, '-' and '_'.
func validToken(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	for _, c := range s {
		ok := c == '-' || c == '_' ||
			(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if !ok {
			return fmt.Errorf("%s %q: character %q is not allowed (use letters, digits, '-' and '_')", what, s, c)
		}
	}
	return nil
}
