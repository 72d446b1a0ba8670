package worker

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Header names of the jetinfer.v1 contract (docs/protocol.md).
const (
	// Request headers.
	HeaderMsgID        = "Nats-Msg-Id"            // producer dedup and request id
	HeaderJob          = "Jetinfer-Job"           // groups requests; names the default result subject
	HeaderReplyTo      = "Jetinfer-Reply-To"      // result subject, must be under <prefix>.res.>
	HeaderDeadline     = "Jetinfer-Deadline"      // RFC 3339 time after which the result is useless
	HeaderPriority     = "Jetinfer-Priority"      // integer, higher first
	HeaderModelVersion = "Jetinfer-Model-Version" // pin; also set on results
	// Result headers.
	HeaderRequestID = "Jetinfer-Request-Id"
	HeaderStatus    = "Jetinfer-Status" // OK or an error code
	HeaderError     = "Jetinfer-Error"  // human-readable error message
	HeaderModel     = "Jetinfer-Model"
	HeaderEngine    = "Jetinfer-Engine"
	HeaderRows      = "Jetinfer-Rows"
	HeaderQueueMs   = "Jetinfer-Queue-Ms"
	HeaderComputeMs = "Jetinfer-Compute-Ms"
)

// maxHeaderValue bounds any header value the worker reads or echoes.
const maxHeaderValue = 1024

// HeaderCarrier adapts nats.Header to OpenTelemetry's TextMapCarrier. Keys
// are stored as given (the W3C propagator uses lowercase "traceparent" and
// "tracestate", as other NATS clients do); Get also finds a key written in
// another case. Do not use propagation.HeaderCarrier: it canonicalizes keys.
type HeaderCarrier nats.Header

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string {
	if v := nats.Header(c)[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if strings.EqualFold(k, key) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// Set replaces the values of key.
func (c HeaderCarrier) Set(key, value string) { nats.Header(c)[key] = []string{value} }

// Keys lists the header keys.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

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
	m := requestMeta{id: h.Get(HeaderMsgID)}
	if m.id == "" {
		m.id = "seq-" + strconv.FormatUint(seq, 10)
	}
	if len(m.id) > maxHeaderValue {
		// Keep distinct ids distinct (the result's Nats-Msg-Id derives
		// from the id) without echoing an unbounded header.
		sum := sha256.Sum256([]byte(m.id))
		m.id = "sha256-" + hex.EncodeToString(sum[:])
		return m, "header " + HeaderMsgID + " is longer than " + strconv.Itoa(maxHeaderValue) + " bytes"
	}
	for _, hv := range []struct {
		name string
		dst  *string
	}{{HeaderJob, &m.job}, {HeaderReplyTo, &m.replyTo}, {HeaderModelVersion, &m.version}} {
		v := h.Get(hv.name)
		if len(v) > maxHeaderValue {
			return m, "header " + hv.name + " is longer than " + strconv.Itoa(maxHeaderValue) + " bytes"
		}
		*hv.dst = v
	}
	if v := h.Get(HeaderDeadline); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return m, "header " + HeaderDeadline + ": " + strconv.Quote(truncate(v, 64)) + " is not an RFC 3339 time"
		}
		m.deadline = t
	}
	if v := h.Get(HeaderPriority); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil {
			return m, "header " + HeaderPriority + ": " + strconv.Quote(truncate(v, 64)) + " is not an integer"
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

// resultSubject returns where the request's results go, or a reason why
// the requested subject is not acceptable.
func (c Config) resultSubject(m requestMeta) (string, string) {
	if m.replyTo != "" {
		// Results stay under this model's subjects, so that a worker's
		// publish permission can be limited to <prefix>.res.<model>.>.
		own := c.Prefix + ".res." + c.Model + "."
		if !strings.HasPrefix(m.replyTo, own) || len(m.replyTo) == len(own) || strings.ContainsAny(m.replyTo, " \t\r\n*>") {
			return "", "header " + HeaderReplyTo + ": " + strconv.Quote(truncate(m.replyTo, 64)) +
				" must be a literal subject under " + own
		}
		return m.replyTo, ""
	}
	job := m.job
	if job == "" {
		job = m.id
	}
	if !validToken(job) {
		// Ids may hold dots or other characters; keep the subject one token.
		job = tokenize(job)
	}
	return ResultSubject(c.Prefix, c.Model, job), ""
}

// tokenize maps s onto the subject-token alphabet.
func tokenize(s string) string {
	b := []byte(s)
	for i, ch := range b {
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '-', ch == '_':
		default:
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}
