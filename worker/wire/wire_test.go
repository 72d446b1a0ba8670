package wire_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/jetinfer/jetinfer/worker/wire"
)

func TestCheckReplyTo(t *testing.T) {
	long := "jetinfer.res.digits." + strings.Repeat("x", wire.MaxSubjectLen)
	for _, tc := range []struct {
		subject string
		ok      bool
		want    string
	}{
		{"jetinfer.res.digits.job1", true, ""},
		{"jetinfer.res.digits.job1.part-2", true, ""},
		{"jetinfer.res.digits..x", false, "empty token"},
		{"jetinfer.res.digits.x.", false, "empty token"},
		{".jetinfer.res.digits.x", false, "empty token"},
		{"jetinfer.res.digits.", false, "empty token"},
		{"jetinfer.res.digits", false, "not under"},
		{"jetinfer.res.other.x", false, "not under"},
		{"jetinfer.res.digits.*", false, "wildcard"},
		{"jetinfer.res.digits.>", false, "wildcard"},
		{"jetinfer.res.digits.a b", false, "whitespace"},
		{"jetinfer.res.digits.a\tb", false, "whitespace"},
		{"", false, "empty"},
		{long, false, "longer than"},
	} {
		err := wire.CheckReplyTo("jetinfer", "digits", tc.subject)
		if tc.ok {
			if err != nil {
				t.Errorf("CheckReplyTo(%q) = %v, want nil", tc.subject, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, wire.ErrBadSubject) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckReplyTo(%q) = %v, want ErrBadSubject mentioning %q", tc.subject, err, tc.want)
		}
	}
}

func TestResultSubjectTokenizesJob(t *testing.T) {
	got := wire.ResultSubject("jetinfer", "digits", "a.b c*")
	if got != "jetinfer.res.digits.a_b_c_" {
		t.Fatalf("ResultSubject = %q", got)
	}
	if err := wire.CheckSubject(got); err != nil {
		t.Fatalf("tokenized subject rejected: %v", err)
	}
	if wire.ResultSubject("p", "m", "") != "p.res.m._" {
		t.Fatalf("empty job not mapped to a token")
	}
}

func TestHeaderCarrierKeepsLowercaseKeys(t *testing.T) {
	h := nats.Header{}
	c := wire.HeaderCarrier(h)
	c.Set("traceparent", "00-abc")
	if _, ok := h["traceparent"]; !ok {
		t.Fatalf("key canonicalized: %v", h)
	}
	h2 := nats.Header{"Traceparent": {"x"}}
	if got := wire.HeaderCarrier(h2).Get("traceparent"); got != "x" {
		t.Fatalf("case-insensitive Get = %q", got)
	}
}

func TestRequestIDFor(t *testing.T) {
	if got := wire.RequestIDFor("job-1/42"); got != "job-1/42" {
		t.Errorf("short id changed to %q", got)
	}
	long := strings.Repeat("a", wire.MaxHeaderValue+1)
	other := strings.Repeat("a", wire.MaxHeaderValue) + "b"
	got := wire.RequestIDFor(long)
	if !strings.HasPrefix(got, "sha256-") || len(got) != len("sha256-")+64 {
		t.Errorf("long id mapped to %q, want sha256-<64 hex>", got)
	}
	if got == wire.RequestIDFor(other) {
		t.Error("two distinct long ids share one request id")
	}
	if exact := strings.Repeat("a", wire.MaxHeaderValue); wire.RequestIDFor(exact) != exact {
		t.Error("an id of exactly MaxHeaderValue bytes was replaced")
	}
}
