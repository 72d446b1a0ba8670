package traffic

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// Audit is what the result stream says about a set of requests.
type Audit struct {
	// Requests is the number of requests audited.
	Requests int
	// Results counts result messages for those requests.
	Results int
	// Answered counts requests with at least one result.
	Answered int
	// Lost counts requests without a result.
	Lost int
	// Duplicated counts result messages beyond the first per request.
	Duplicated int
	// ErrorCoded counts requests whose (first) result has an error code.
	ErrorCoded int
	// Wrong counts requests whose result has an unexpected status, an
	// error message that does not name what it must, or wrong OK rows.
	Wrong int
	// Foreign counts result messages for request ids never sent.
	Foreign int
	// Internal counts requests answered INTERNAL that did not ask for it.
	Internal int
	// NotFound counts requests pinned to a version the repository has
	// (Request.Known) that were answered NOT_FOUND.
	NotFound int
	// ByCode counts first results per status.
	ByCode map[codec.Code]int
	// Examples describes a few wrong, lost, duplicated or foreign results.
	Examples []string
	// Sample holds one error message per request Kind.
	Sample map[string]string
}

// OK reports whether the contract held: every request answered exactly
// once, as it must be, and no result for anything else.
func (a *Audit) OK() bool {
	return a.Requests > 0 && a.Lost == 0 && a.Duplicated == 0 && a.Wrong == 0 && a.Foreign == 0 && a.NotFound == 0
}

// Err is nil when OK, and otherwise says what broke, with examples.
func (a *Audit) Err() error {
	if a.OK() {
		return nil
	}
	return fmt.Errorf("%d requests: %d lost, %d duplicate results, %d wrong, %d results for unknown ids, %d NOT_FOUND for versions the repository has; %s",
		a.Requests, a.Lost, a.Duplicated, a.Wrong, a.Foreign, a.NotFound, strings.Join(a.Examples, "; "))
}

// Codes formats the error codes seen, e.g. "5 (INTERNAL 5)", or "0".
func (a *Audit) Codes() string {
	var parts []string
	for _, c := range sortedCodes(a.ByCode) {
		if c != codec.CodeOK {
			parts = append(parts, fmt.Sprintf("%s %d", c, a.ByCode[c]))
		}
	}
	if len(parts) == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", a.ErrorCoded, strings.Join(parts, ", "))
}

func (a *Audit) example(format string, args ...any) {
	if len(a.Examples) < 5 {
		a.Examples = append(a.Examples, fmt.Sprintf(format, args...))
	}
}

// Audit reads every message of the result stream and checks it against
// reqs: one result per request, with an accepted status, an error message
// that mentions what the request says, and OK bodies that pass the
// request's Check. A read that fails (a cluster electing a leader) starts
// over, for at most 30 s.
func (t Target) Audit(ctx context.Context, js jetstream.JetStream, reqs []*Request) (*Audit, error) {
	t = t.withDefaults()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, err := t.audit(ctx, js, reqs)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return a, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (t Target) audit(ctx context.Context, js jetstream.JetStream, reqs []*Request) (*Audit, error) {
	byID := make(map[string]*Request, len(reqs))
	for _, q := range reqs {
		byID[q.resultID()] = q
	}
	var a *Audit
	var seen map[*Request]int
	reset := func() {
		a = &Audit{Requests: len(reqs), ByCode: map[codec.Code]int{}, Sample: map[string]string{}}
		seen = make(map[*Request]int, len(reqs))
	}
	reset()
	if err := readStream(ctx, js, t.ResultStream, reset, func(h nats.Header, body []byte) {
		a.result(byID, seen, h, body)
	}); err != nil {
		return nil, err
	}
	for _, q := range reqs {
		if seen[q] == 0 {
			a.Lost++
			a.example("request %s has no result", truncate(q.ID, 80))
		}
	}
	return a, nil
}

func (a *Audit) result(byID map[string]*Request, seen map[*Request]int, h nats.Header, body []byte) {
	id := h.Get(wire.HeaderRequestID)
	q, ok := byID[id]
	if !ok {
		a.Foreign++
		a.example("result for unknown request id %q", truncate(id, 80))
		return
	}
	a.Results++
	seen[q]++
	if seen[q] > 1 {
		a.Duplicated++
		a.example("request %s has %d results", truncate(id, 80), seen[q])
		return
	}
	a.Answered++
	code := codec.Code(h.Get(wire.HeaderStatus))
	a.ByCode[code]++
	if code != codec.CodeOK {
		a.ErrorCoded++
	}
	if code == codec.CodeInternal && !slices.Contains(q.Want, code) {
		a.Internal++
	}
	if code == codec.CodeNotFound && q.Known {
		a.NotFound++
	}
	msg := h.Get(wire.HeaderError)
	if _, ok := a.Sample[q.Kind]; !ok && q.Kind != "" && code != codec.CodeOK {
		a.Sample[q.Kind] = string(code) + ": " + truncate(msg, 200)
	}
	switch {
	case !slices.Contains(q.Want, code):
		a.Wrong++
		a.example("request %s (%s): status %s (%s), want one of %v", truncate(id, 80), q.Kind, code, truncate(msg, 120), q.Want)
	case strings.Contains(msg, "decoder panic"):
		a.Wrong++
		a.example("request %s (%s): the decoder panicked: %s", truncate(id, 80), q.Kind, truncate(msg, 200))
	case code == codec.CodeOK && q.Version != "" && h.Get(wire.HeaderModelVersion) != q.Version:
		a.Wrong++
		a.example("request %s: answered by version %q, want %q", truncate(id, 80), h.Get(wire.HeaderModelVersion), q.Version)
	case code == codec.CodeOK && q.Check == nil:
	case code == codec.CodeOK:
		if err := q.Check(body); err != nil {
			a.Wrong++
			a.example("request %s: %v", truncate(id, 80), err)
		}
	case msg == "":
		a.Wrong++
		a.example("request %s: error result %s without a message", truncate(id, 80), code)
	default:
		for _, s := range q.Mention {
			if !strings.Contains(msg, s) {
				a.Wrong++
				a.example("request %s (%s): message %q does not mention %q", truncate(id, 80), q.Kind, truncate(msg, 160), s)
				break
			}
		}
	}
}

// readStream calls visit for every message of stream up to its last
// sequence when called, in order, with an ordered consumer. When the
// server places that consumer on a node that is gone (no responders,
// after a node loss), it calls reset and reads message by message from
// the stream's leader instead, from the start again.
func readStream(ctx context.Context, js jetstream.JetStream, stream string, reset func(), visit func(nats.Header, []byte)) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("looking up stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("reading stream %s info: %w", stream, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil
	}
	err = readOrdered(ctx, js, stream, last, visit)
	if err == nil || !errors.Is(err, nats.ErrNoResponders) {
		return err
	}
	reset()
	for seq := uint64(1); seq <= last; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading %s sequence %d: %w", stream, seq, err)
		}
		visit(m.Header, m.Data)
	}
	return nil
}

func readOrdered(ctx context.Context, js jetstream.JetStream, stream string, last uint64, visit func(nats.Header, []byte)) error {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", stream, err)
	}
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxBytes(16<<20), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("reading stream %s: %w", stream, err)
		}
		n, done := 0, false
		for m := range batch.Messages() {
			n++
			visit(m.Headers(), m.Data())
			if md, err := m.Metadata(); err == nil && md.Sequence.Stream >= last {
				done = true
			}
		}
		if done {
			return nil
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("reading stream %s before sequence %d: %w", stream, last, err)
		}
		if n == 0 {
			return fmt.Errorf("reading stream %s stalled before sequence %d", stream, last)
		}
	}
}
