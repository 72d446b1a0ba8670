package client

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestSentPointStopsAtAMissedPubAck settles three publishes to a real
// JetStream server, the middle one refused (no stream takes its subject):
// the sent point stays after the first request, although the third was
// stored, because every request before the sent point must be stored.
func TestSentPointStopsAtAMissedPubAck(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	send := func(seq int, subject string) inflight {
		f, err := js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: []byte("b")})
		if err != nil {
			t.Fatal(err)
		}
		return inflight{seq: seq, fut: f, resume: seq + 1}
	}
	in0, in1, in2 := send(0, "s.a"), send(1, "nowhere.b"), send(2, "s.c")
	r := &run{job: Job{Name: "j"}, stored: map[int]uint64{}, acks: make(chan inflight, 2)}
	r.acks <- in1
	r.acks <- in2
	close(r.acks)
	r.settle(in0)

	if _, ok := r.stored[1]; ok || len(r.stored) != 2 || r.stored[0] == 0 || r.stored[2] == 0 {
		t.Fatalf("stored %v, want requests 0 and 2 at their stream sequences", r.stored)
	}
	var rec JobRecord
	r.keepSent(&rec)
	var sent int
	if err := json.Unmarshal(rec.Sent, &sent); err != nil || sent != 1 {
		t.Fatalf("sent point %s (%v), want 1: after request 0, before the missed request 1", rec.Sent, err)
	}
}
