package wire

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// Version names the contract implemented here.
const Version = "jetinfer.v1"

// Default names of the subject prefix, streams and buckets.
const (
	DefaultPrefix        = "jetinfer"
	DefaultRequestStream = "JETINFER_REQ"
	DefaultResultStream  = "JETINFER_RES"
	// DefaultReportBucket is the KV bucket workers report their
	// measurements to; the scheduler reads it.
	DefaultReportBucket = "jetinfer_workers"
	// DefaultHintBucket is the KV bucket the scheduler publishes its
	// scaling hints to.
	DefaultHintBucket = "jetinfer_hints"
	// DefaultModelBucket is the KV bucket of the model repository: version
	// metadata and the active version per model (docs/models.md).
	DefaultModelBucket = "jetinfer_models"
	// DefaultArtifactBucket is the Object Store bucket holding the model
	// repository's artifacts: ONNX models, TensorRT plans and manifests,
	// reference data.
	DefaultArtifactBucket = "jetinfer_artifacts"
	// DefaultJobBucket is the KV bucket of scoring job records
	// (`jetinfer score`, `jetinfer jobs`).
	DefaultJobBucket = "jetinfer_jobs"
)

// Header names. Request headers are set by producers, result headers by
// workers. nats.Header is case-sensitive: use these names exactly.
const (
	// HeaderMsgID is the producer's dedup id, which is also the request id.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderJob groups requests and names their default result subject.
	HeaderJob = "Jetinfer-Job"
	// HeaderReplyTo names the result subject; it must be a literal subject
	// under <prefix>.res.<model>. (see CheckReplyTo).
	HeaderReplyTo = "Jetinfer-Reply-To"
	// HeaderDeadline is an RFC 3339 time after which the result is useless.
	HeaderDeadline = "Jetinfer-Deadline"
	// HeaderPriority is an integer; higher runs first.
	HeaderPriority = "Jetinfer-Priority"
	// HeaderModelVersion pins a request to a model version; workers set it
	// on results to the version that produced them.
	HeaderModelVersion = "Jetinfer-Model-Version"

	// HeaderRequestID echoes the request id on its result.
	HeaderRequestID = "Jetinfer-Request-Id"
	// HeaderStatus is OK or an error code.
	HeaderStatus = "Jetinfer-Status"
	// HeaderError is the human-readable message of an error result.
	HeaderError = "Jetinfer-Error"
	// HeaderModel names the model that produced the result.
	HeaderModel = "Jetinfer-Model"
	// HeaderEngine names the engine (backend and device) that ran it.
	HeaderEngine = "Jetinfer-Engine"
	// HeaderRows is the number of result rows (0 for error results).
	HeaderRows = "Jetinfer-Rows"
	// HeaderQueueMs is the time from receipt to the first batch, in ms.
	HeaderQueueMs = "Jetinfer-Queue-Ms"
	// HeaderComputeMs is the engine time of the batches holding its rows.
	HeaderComputeMs = "Jetinfer-Compute-Ms"
)

// MaxHeaderValue bounds any header value a worker reads or echoes.
const MaxHeaderValue = 1024

// RequestIDFor is the request id a worker uses, and its result's
// Jetinfer-Request-Id carries, for a request published with Nats-Msg-Id
// msgID: msgID itself, or for one longer than MaxHeaderValue, "sha256-"
// and the hex SHA-256 of msgID (distinct ids stay distinct without echoing
// an unbounded header).
func RequestIDFor(msgID string) string {
	if len(msgID) <= MaxHeaderValue {
		return msgID
	}
	sum := sha256.Sum256([]byte(msgID))
	return "sha256-" + hex.EncodeToString(sum[:])
}

// MaxSubjectLen bounds the subjects a worker publishes results to.
const MaxSubjectLen = 1024

// RequestSubject is the subject producers publish requests for model to.
func RequestSubject(prefix, model string) string { return prefix + ".req." + model }

// RequestSubjects is the subject filter of the request stream.
func RequestSubjects(prefix string) string { return prefix + ".req.>" }

// ResultSubjects is the subject filter of the result stream.
func ResultSubjects(prefix string) string { return prefix + ".res.>" }

// ModelResultPrefix is the start, including the trailing dot, of every
// result subject of model. Custom reply subjects must extend it.
func ModelResultPrefix(prefix, model string) string { return prefix + ".res." + model + "." }

// ResultSubject is the default subject of the results of job for model.
// A job is any producer-chosen token grouping requests; collecting its
// results takes one consumer filtered on this subject. A job that is not a
// valid token is mapped onto one with Tokenize.
func ResultSubject(prefix, model, job string) string {
	if !ValidToken(job) {
		job = Tokenize(job)
	}
	return ModelResultPrefix(prefix, model) + job
}

// ResultMsgID is the Nats-Msg-Id of the result of the request with id
// requestID: the same for every delivery of that request, so that the
// result stream drops a second result as a duplicate.
func ResultMsgID(requestID string) string { return requestID + "/result" }

// ValidToken reports whether s is a non-empty subject token of letters,
// digits, '-' and '_' (the alphabet jetinfer uses for prefixes, models,
// jobs and worker ids).
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte(s[i]) {
			return false
		}
	}
	return true
}

func tokenByte(ch byte) bool {
	return ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_'
}

// Tokenize maps s onto the token alphabet of ValidToken, replacing every
// other byte with '_' ("_" for an empty s).
func Tokenize(s string) string {
	if s == "" {
		return "_"
	}
	b := []byte(s)
	for i, ch := range b {
		if !tokenByte(ch) {
			b[i] = '_'
		}
	}
	return string(b)
}

// ErrBadSubject is wrapped by the errors of CheckSubject and CheckReplyTo.
var ErrBadSubject = errors.New("invalid subject")

// CheckSubject reports why s cannot be published to, or nil: it must be
// at most MaxSubjectLen bytes, hold no whitespace or control characters,
// no wildcard tokens ("*", ">"), and no empty token (leading, trailing or
// doubled dots).
func CheckSubject(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrBadSubject)
	case len(s) > MaxSubjectLen:
		return fmt.Errorf("%w: %d bytes, longer than %d", ErrBadSubject, len(s), MaxSubjectLen)
	}
	for i := 0; i < len(s); i++ {
		if ch := s[i]; ch <= ' ' || ch == 0x7f {
			return fmt.Errorf("%w: %s holds whitespace or a control character at byte %d", ErrBadSubject, quote(s), i)
		}
	}
	for i, tok := range strings.Split(s, ".") {
		switch tok {
		case "":
			return fmt.Errorf("%w: %s has an empty token (token %d)", ErrBadSubject, quote(s), i+1)
		case "*", ">":
			return fmt.Errorf("%w: %s has the wildcard token %q", ErrBadSubject, quote(s), tok)
		}
	}
	return nil
}

// CheckReplyTo reports why subject is not an acceptable Jetinfer-Reply-To
// for model: it must be a valid literal subject (CheckSubject) that
// extends ModelResultPrefix(prefix, model) by at least one token, so that
// a worker's publish permission can be limited to that model's results.
func CheckReplyTo(prefix, model, subject string) error {
	if err := CheckSubject(subject); err != nil {
		return err
	}
	own := ModelResultPrefix(prefix, model)
	if !strings.HasPrefix(subject, own) {
		return fmt.Errorf("%w: %s is not under %s>", ErrBadSubject, quote(subject), own)
	}
	return nil
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}

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
