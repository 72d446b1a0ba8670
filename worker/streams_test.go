package worker_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/wire"
)

// TestStreamSetupKeepsOperatorSettings: an operator sized the result
// stream and narrowed the request stream's subjects by hand. Workers must
// add only the subjects they cannot work without and report, not
// overwrite, everything else; --update (UpdateStreams) applies the config.
func TestStreamSetupKeepsOperatorSettings(t *testing.T) {
	ns := startServer(t)
	js := mustJS(t, connect(t, ns))
	ctx := context.Background()
	cfg := worker.Config{Model: "digits"}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: wire.DefaultResultStream, Subjects: []string{"jetinfer.res.>"},
		MaxMsgs: 5_000_000, Discard: jetstream.DiscardNew,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: wire.DefaultRequestStream, Subjects: []string{"jetinfer.req.other"},
		Retention: jetstream.WorkQueuePolicy, MaxMsgs: 1000, Discard: jetstream.DiscardOld,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, wire.DefaultRequestStream, jetstream.ConsumerConfig{
		Durable: "digits", FilterSubject: "jetinfer.req.other", AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 5,
	}); err != nil {
		t.Fatal(err)
	}

	cons, drift, err := worker.SetUpStreams(ctx, js, cfg)
	if err != nil {
		t.Fatalf("setting up streams: %v", err)
	}
	res := streamConfig(t, js, wire.DefaultResultStream)
	if res.MaxMsgs != 5_000_000 || res.Discard != jetstream.DiscardNew {
		t.Errorf("result stream limits overwritten: max_msgs %d discard %v", res.MaxMsgs, res.Discard)
	}
	req := streamConfig(t, js, wire.DefaultRequestStream)
	if !slices.Contains(req.Subjects, "jetinfer.req.other") || !slices.Contains(req.Subjects, wire.RequestSubject("jetinfer", "digits")) {
		t.Errorf("request stream subjects %v: want the operator's plus the model's", req.Subjects)
	}
	if c := cons.CachedInfo().Config; c.FilterSubject != "jetinfer.req.digits" || c.MaxDeliver != -1 {
		t.Errorf("consumer filter %q max_deliver %d: the worker needs its filter and unlimited deliveries", c.FilterSubject, c.MaxDeliver)
	}
	text := driftText(drift)
	for _, want := range []string{
		"stream JETINFER_RES: max_msgs is 5000000",
		"stream JETINFER_REQ: max_msgs is 1000, config says -1 (drops queued requests",
		"stream JETINFER_RES: max_age is 0s, config says 24h0m0s",
		"consumer JETINFER_REQ/digits: max_ack_pending is 1000",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("drift report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "evicts unread results") {
		t.Errorf("DiscardNew keeps unread results, yet drift says it evicts them:\n%s", text)
	}

	checked, err := worker.CheckStreams(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if driftText(checked) != text {
		t.Errorf("CheckStreams and SetUpStreams disagree:\n%s\n---\n%s", driftText(checked), text)
	}

	if _, err := worker.UpdateStreams(ctx, js, cfg); err != nil {
		t.Fatalf("updating streams: %v", err)
	}
	if res := streamConfig(t, js, wire.DefaultResultStream); res.MaxMsgs != -1 || res.Discard != jetstream.DiscardOld {
		t.Errorf("after --update: max_msgs %d discard %v, want the config's -1/old", res.MaxMsgs, res.Discard)
	}
	if left, err := worker.CheckStreams(ctx, js, cfg); err != nil || len(left) != 0 {
		t.Errorf("after --update, CheckStreams = %v, %v; want no drift", driftText(left), err)
	}
}

// TestStreamSetupWarnsOfEvictingResultLimits: a count limit with
// DiscardOld on the result stream deletes unread results.
func TestStreamSetupWarnsOfEvictingResultLimits(t *testing.T) {
	ns := startServer(t)
	js := mustJS(t, connect(t, ns))
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: wire.DefaultResultStream, Subjects: []string{"jetinfer.res.>"}, MaxMsgs: 1000,
	}); err != nil {
		t.Fatal(err)
	}
	drift, err := worker.CheckStreams(ctx, js, worker.Config{Model: "digits"})
	if err != nil {
		t.Fatal(err)
	}
	text := driftText(drift)
	if !strings.Contains(text, "max_msgs is 1000") || !strings.Contains(text, "evicts unread results") {
		t.Errorf("drift report does not warn of evicted results:\n%s", text)
	}
	if !strings.Contains(text, "stream JETINFER_REQ: stream is missing") || !strings.Contains(text, "consumer JETINFER_REQ/digits: consumer is missing") {
		t.Errorf("drift report does not name what is missing:\n%s", text)
	}
}

func streamConfig(t *testing.T, js jetstream.JetStream, name string) jetstream.StreamConfig {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config
}

func driftText(drift []worker.Drift) string {
	var b strings.Builder
	for _, d := range drift {
		b.WriteString(d.String())
		b.WriteByte('\n')
	}
	return b.String()
}
