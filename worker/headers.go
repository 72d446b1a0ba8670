package worker

import (
	"fmt"
	"strconv"
	"time"

	"github.com/jetinfer/jetinfer/worker/wire"
	"github.com/nats-io/nats.go"
)

// requestMeta is what the worker reads from a request's headers.
type requestMeta struct {
	id       string
	job      string
	replyTo  string
	deadline time.Time
	priority int
	version  string
}

// parseMeta reads the request headers. seq is the message's stream
// sequence, used as request id when the producer set no Nats-Msg-Id. It
// returns the metadata and a description of the first invalid header.
func parseMeta(h nats.Header, seq uint64) (requestMeta, string) {
	m := requestMeta{id: h.Get(wire.HeaderMsgID)}
	if m.id == "" {
		m.id = "seq-" + strconv.FormatUint(seq, 10)
	}
	if len(m.id) > wire.MaxHeaderValue {
		// Keep distinct ids distinct (the result's Nats-Msg-Id derives
		// from the id) without echoing an unbounded header.
		m.id = wire.RequestIDFor(m.id)
		return m, "header " + wire.HeaderMsgID + " is longer than " + strconv.Itoa(wire.MaxHeaderValue) + " bytes"
	}
	for _, hv := range []struct {
		name string
		dst  *string
	}{{wire.HeaderJob, &m.job}, {wire.HeaderReplyTo, &m.replyTo}, {wire.HeaderModelVersion, &m.version}} {
		v := h.Get(hv.name)
		if len(v) > wire.MaxHeaderValue {
			return m, "header " + hv.name + " is longer than " + strconv.Itoa(wire.MaxHeaderValue) + " bytes"
		}
		*hv.dst = v
	}
	if v := h.Get(wire.HeaderDeadline); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return m, "header " + wire.HeaderDeadline + ": " + strconv.Quote(truncate(v, 64)) + " is not an RFC 3339 time"
		}
		m.deadline = t
	}
	if v := h.Get(wire.HeaderPriority); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil {
			return m, "header " + wire.HeaderPriority + ": " + strconv.Quote(truncate(v, 64)) + " is not an integer"
		}
		m.priority = p
	}
	return m, ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// resultSubject returns where the request's results go, or why the
// requested Jetinfer-Reply-To is not acceptable (the default subject is
// returned with the error, so that the error result is still delivered).
func (c Config) resultSubject(m requestMeta) (string, error) {
	job := m.job
	if job == "" {
		job = m.id
	}
	def := wire.ResultSubject(c.Prefix, c.Model, job)
	if m.replyTo == "" {
		return def, nil
	}
	// Results stay under this model's subjects, so that a worker's publish
	// permission can be limited to <prefix>.res.<model>.>.
	if err := wire.CheckReplyTo(c.Prefix, c.Model, m.replyTo); err != nil {
		return def, fmt.Errorf("header %s: %w", wire.HeaderReplyTo, err)
	}
	return m.replyTo, nil
}
