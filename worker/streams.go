package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/worker/wire"
)

// Drift is one setting of an existing stream or consumer that differs from
// the configuration. Stream setup reports drift instead of overwriting an
// operator's choice; `jetinfer streams --update` applies the configuration.
type Drift struct {
	// Object is "stream NAME" or "consumer STREAM/NAME".
	Object string
	// Setting names the field as in the JetStream API (max_msgs, ...).
	Setting string
	// Have and Want are the server's value and the configuration's.
	Have, Want string
	// Breaks says which promise of docs/protocol.md the server's value
	// breaks, or is empty when it is merely different.
	Breaks string
}

func (d Drift) String() string {
	s := fmt.Sprintf("%s: %s is %s, config says %s", d.Object, d.Setting, d.Have, d.Want)
	if d.Breaks != "" {
		s += " (" + d.Breaks + ")"
	}
	return s
}

// desired returns the stream and consumer configurations c asks for.
func (c Config) desired() (req, res jetstream.StreamConfig, cons jetstream.ConsumerConfig) {
	storage := jetstream.FileStorage
	if c.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	req = jetstream.StreamConfig{
		Name:        c.RequestStream,
		Description: "jetinfer inference requests",
		Subjects:    []string{wire.RequestSubjects(c.Prefix)},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     storage,
		Replicas:    c.Replicas,
		Duplicates:  c.DuplicateWindow,
		MaxMsgSize:  int32(c.MaxMsgSize),
		Discard:     jetstream.DiscardOld,
	}
	res = jetstream.StreamConfig{
		Name:        c.ResultStream,
		Description: "jetinfer inference results",
		Subjects:    []string{wire.ResultSubjects(c.Prefix)},
		Retention:   jetstream.LimitsPolicy,
		Storage:     storage,
		Replicas:    c.Replicas,
		Duplicates:  c.DuplicateWindow,
		MaxAge:      c.ResultMaxAge,
	}
	cons = jetstream.ConsumerConfig{
		Durable:       c.Model,
		Description:   "jetinfer workers of model " + c.Model,
		FilterSubject: wire.RequestSubject(c.Prefix, c.Model),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		// Unlimited on the server: the worker counts attempts itself and
		// answers the last one with an error result, so that no request is
		// ever left undeliverable in the work queue.
		MaxDeliver:    -1,
		MaxAckPending: c.MaxAckPending,
	}
	return req, res, cons
}

// EnsureStreams creates the request and result streams and the model's
// durable pull consumer when they are missing. When they exist it changes
// only what the worker owns and cannot work without (the streams must take
// the model's subjects; the consumer must filter the model's requests with
// explicit acks and unlimited deliveries) and leaves every other setting
// as the operator set it; SetUpStreams also returns those differences. It
// is idempotent: every worker of a model calls it at start-up.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.Consumer, error) {
	cons, _, err := SetUpStreams(ctx, js, c)
	return cons, err
}

// SetUpStreams is EnsureStreams, also returning every setting of the
// existing streams and consumer that differs from c.
func SetUpStreams(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.Consumer, []Drift, error) {
	return setUp(ctx, js, c, false)
}

// UpdateStreams makes existing streams and the consumer match c, creating
// what is missing: what `jetinfer streams --update` runs when an operator
// wants the configuration to win.
func UpdateStreams(ctx context.Context, js jetstream.JetStream, c Config) (jetstream.Consumer, error) {
	cons, _, err := setUp(ctx, js, c, true)
	return cons, err
}

// CheckStreams reports, without changing anything, how the server's
// streams and consumer differ from c. Missing ones are reported as drift
// with Have "missing".
func CheckStreams(ctx context.Context, js jetstream.JetStream, c Config) ([]Drift, error) {
	c = c.withDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("validating config: %w", err)
	}
	wantReq, wantRes, wantCons := c.desired()
	var drift []Drift
	for _, want := range []jetstream.StreamConfig{wantReq, wantRes} {
		s, err := js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			drift = append(drift, Drift{Object: "stream " + want.Name, Setting: "stream", Have: "missing", Want: "created"})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading stream %s: %w", want.Name, err)
		}
		have := s.CachedInfo().Config
		_, d := reconcileStream(have, want, c)
		drift = append(drift, d...)
	}
	cons, err := js.Consumer(ctx, c.RequestStream, c.Model)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
		drift = append(drift, Drift{Object: "consumer " + c.RequestStream + "/" + c.Model, Setting: "consumer", Have: "missing", Want: "created"})
	case err != nil:
		return nil, fmt.Errorf("reading consumer %s on %s: %w", c.Model, c.RequestStream, err)
	default:
		_, d := reconcileConsumer(cons.CachedInfo().Config, wantCons, c.RequestStream)
		drift = append(drift, d...)
	}
	return drift, nil
}

func setUp(ctx context.Context, js jetstream.JetStream, c Config, overwrite bool) (jetstream.Consumer, []Drift, error) {
	c = c.withDefaults()
	if err := c.Validate(); err != nil {
		return nil, nil, fmt.Errorf("validating config: %w", err)
	}
	wantReq, wantRes, wantCons := c.desired()
	var drift []Drift
	for _, want := range []jetstream.StreamConfig{wantReq, wantRes} {
		d, err := ensureStream(ctx, js, want, c, overwrite)
		if err != nil {
			return nil, nil, err
		}
		drift = append(drift, d...)
	}
	cons, err := js.Consumer(ctx, c.RequestStream, c.Model)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || (err == nil && overwrite) {
		cons, err = js.CreateOrUpdateConsumer(ctx, c.RequestStream, wantCons)
		if err != nil {
			return nil, nil, fmt.Errorf("creating consumer %s on %s: %w", c.Model, c.RequestStream, err)
		}
		return cons, drift, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading consumer %s on %s: %w", c.Model, c.RequestStream, err)
	}
	fixed, d := reconcileConsumer(cons.CachedInfo().Config, wantCons, c.RequestStream)
	drift = append(drift, d...)
	if fixed != nil {
		if cons, err = js.UpdateConsumer(ctx, c.RequestStream, *fixed); err != nil {
			return nil, nil, fmt.Errorf("updating consumer %s on %s: %w", c.Model, c.RequestStream, err)
		}
	}
	return cons, drift, nil
}

// ensureStream creates want when missing; otherwise it applies the owned
// settings (or all of want when overwrite) and returns the drift left.
func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, c Config, overwrite bool) ([]Drift, error) {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := js.CreateStream(ctx, want); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("creating stream %s: %w", want.Name, err)
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	if want.Retention != have.Retention {
		return nil, fmt.Errorf("stream %s has retention %v, jetinfer needs %v (retention cannot be changed: recreate the stream)", want.Name, have.Retention, want.Retention)
	}
	if overwrite {
		if _, err := js.UpdateStream(ctx, want); err != nil {
			return nil, fmt.Errorf("updating stream %s: %w", want.Name, err)
		}
		return nil, nil
	}
	fixed, drift := reconcileStream(have, want, c)
	if fixed != nil {
		if _, err := js.UpdateStream(ctx, *fixed); err != nil {
			return nil, fmt.Errorf("adding jetinfer's subjects to stream %s: %w", want.Name, err)
		}
	}
	return drift, nil
}

// reconcileStream compares an existing stream with the configuration. It
// returns the stream's configuration with what the worker cannot work
// without put right (nil when nothing needs changing) and the drift in
// everything else.
func reconcileStream(have, want jetstream.StreamConfig, c Config) (*jetstream.StreamConfig, []Drift) {
	var fixed *jetstream.StreamConfig
	own := wire.RequestSubject(c.Prefix, c.Model)
	if want.Retention == jetstream.LimitsPolicy {
		own = wire.ModelResultPrefix(c.Prefix, c.Model) + ">"
	}
	if !slices.ContainsFunc(have.Subjects, func(f string) bool { return covers(f, own) }) {
		// Owned: without the model's subjects the stream cannot hold its
		// messages. Others' subjects stay.
		f := have
		f.Subjects = append(slices.Clone(have.Subjects), own)
		fixed = &f
	}
	obj := "stream " + want.Name
	var drift []Drift
	add := func(setting string, h, w any, breaks string) {
		if fmt.Sprint(h) != fmt.Sprint(w) {
			drift = append(drift, Drift{Object: obj, Setting: setting, Have: fmt.Sprint(h), Want: fmt.Sprint(w), Breaks: breaks})
		}
	}
	add("storage", have.Storage, want.Storage, "")
	add("num_replicas", max(have.Replicas, 1), want.Replicas, "")
	add("duplicate_window", have.Duplicates, want.Duplicates, windowBreaks(have.Duplicates, c))
	add("max_msg_size", have.MaxMsgSize, orUnlimited32(want.MaxMsgSize), "")
	add("max_age", have.MaxAge, want.MaxAge, "")
	limited := have.MaxMsgs > 0 || have.MaxBytes > 0 || have.MaxMsgsPerSubject > 0
	if want.Retention == jetstream.LimitsPolicy {
		// Results: a count or size limit with DiscardOld deletes results
		// nobody has read yet.
		evicts := ""
		if limited && have.Discard == jetstream.DiscardOld {
			evicts = "evicts unread results once reached: a job may never see some of its results"
		}
		add("max_msgs", have.MaxMsgs, int64(-1), evicts)
		add("max_bytes", have.MaxBytes, int64(-1), evicts)
		add("max_msgs_per_subject", have.MaxMsgsPerSubject, int64(-1), evicts)
		add("discard", have.Discard, want.Discard, evicts)
	} else {
		drops := ""
		if limited && have.Discard == jetstream.DiscardOld {
			drops = "drops queued requests once reached: they get no result at all"
		}
		add("max_msgs", have.MaxMsgs, int64(-1), drops)
		add("max_bytes", have.MaxBytes, int64(-1), drops)
		add("discard", have.Discard, want.Discard, drops)
	}
	return fixed, drift
}

// covers reports whether the subject filter f matches every subject that
// subj (which may end in ">") matches.
func covers(f, subj string) bool {
	ft, st := strings.Split(f, "."), strings.Split(subj, ".")
	for i, tok := range ft {
		switch {
		case tok == ">":
			return true
		case i >= len(st) || st[i] == ">":
			return false
		case tok != "*" && tok != st[i]:
			return false
		}
	}
	return len(ft) == len(st)
}

// windowBreaks says what a duplicate window shorter than the consumer's
// ack wait breaks: a request redelivered after its first result left the
// window yields a second visible result.
func windowBreaks(d time.Duration, c Config) string {
	if d > 0 && d < 2*c.AckWait {
		return "shorter than twice the ack wait: a redelivered request may yield a second visible result"
	}
	return ""
}

func orUnlimited32(v int32) int32 {
	if v == 0 {
		return -1
	}
	return v
}

// reconcileConsumer compares the model's existing consumer with the
// configuration: the filter, explicit acks and unlimited deliveries are
// the worker's (a delivery limit would leave requests undeliverable in
// the work queue forever); ack wait and max ack pending are reported.
func reconcileConsumer(have, want jetstream.ConsumerConfig, stream string) (*jetstream.ConsumerConfig, []Drift) {
	obj := "consumer " + stream + "/" + want.Durable
	var fixed *jetstream.ConsumerConfig
	if have.FilterSubject != want.FilterSubject || have.MaxDeliver != -1 || len(have.FilterSubjects) > 0 {
		f := have
		f.FilterSubject, f.FilterSubjects, f.MaxDeliver = want.FilterSubject, nil, -1
		fixed = &f
	}
	var drift []Drift
	if have.AckWait != want.AckWait {
		drift = append(drift, Drift{Object: obj, Setting: "ack_wait", Have: have.AckWait.String(), Want: want.AckWait.String()})
	}
	if have.MaxAckPending != want.MaxAckPending {
		drift = append(drift, Drift{Object: obj, Setting: "max_ack_pending", Have: fmt.Sprint(have.MaxAckPending), Want: fmt.Sprint(want.MaxAckPending)})
	}
	if have.AckPolicy != jetstream.AckExplicitPolicy {
		drift = append(drift, Drift{Object: obj, Setting: "ack_policy", Have: have.AckPolicy.String(), Want: want.AckPolicy.String(),
			Breaks: "requests are not acked after their result: recreate the consumer"})
	}
	return fixed, drift
}
