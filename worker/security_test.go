package worker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/jetinfer/jetinfer/codec"
	"github.com/jetinfer/jetinfer/scheduler"
	"github.com/jetinfer/jetinfer/worker"
	"github.com/jetinfer/jetinfer/worker/client"
)

// Users of the documented configuration and their inbox prefixes.
var secUsers = map[string]string{
	"worker":     "_INBOX_worker",
	"producer_a": "_INBOX_producer_a",
	"producer_b": "_INBOX_producer_b",
	"scheduler":  "_INBOX_scheduler",
}

// startSecuredServer starts a JetStream server whose users and permissions
// are the block of docs/security.md between the permissions markers,
// verbatim, plus an unrestricted "admin" user for the test's own checks.
func startSecuredServer(t *testing.T) *server.Server {
	t.Helper()
	doc, err := os.ReadFile(repoFile("docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "<!-- permissions:begin -->")
	block, _, ok2 := strings.Cut(block, "<!-- permissions:end -->")
	if !ok || !ok2 {
		t.Fatal("docs/security.md lacks the permissions:begin/end markers")
	}
	block = strings.Trim(strings.TrimSpace(block), "`")
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	for user := range secUsers {
		t.Setenv("JETINFER_"+strings.ToUpper(user)+"_PASSWORD", "pw-"+user)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("loading the permissions of docs/security.md: %v", err)
	}
	if len(opts.Users) != len(secUsers) {
		t.Fatalf("docs/security.md defines %d users, want %d", len(opts.Users), len(secUsers))
	}
	opts.Users = append(opts.Users, &server.User{Username: "admin", Password: "pw-admin"})
	opts.Host, opts.Port, opts.JetStream, opts.StoreDir = "127.0.0.1", -1, true, filepath.Join(dir, "js")
	opts.NoSigs, opts.NoLog, opts.MaxPayload = true, true, 8<<20
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("creating server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// asyncErrs records the asynchronous errors of a connection (permission
// violations arrive that way).
type asyncErrs struct {
	mu   sync.Mutex
	errs []error
}

func (a *asyncErrs) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	a.mu.Lock()
	a.errs = append(a.errs, err)
	a.mu.Unlock()
}

func (a *asyncErrs) list() []error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]error(nil), a.errs...)
}

// violation returns the first recorded permission violation mentioning s.
func (a *asyncErrs) violation(s string) error {
	for _, err := range a.list() {
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), s) {
			return err
		}
	}
	return nil
}

// connectAs connects as user with its private inbox prefix.
func connectAs(t *testing.T, ns *server.Server, user string) (*nats.Conn, *asyncErrs) {
	t.Helper()
	errs := &asyncErrs{}
	opts := []nats.Option{nats.UserInfo(user, "pw-"+user), nats.ErrorHandler(errs.handler)}
	if p := secUsers[user]; p != "" {
		opts = append(opts, nats.CustomInboxPrefix(p))
	}
	nc, err := nats.Connect(ns.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("connecting as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

// noViolations fails the test if any connection recorded an error.
func noViolations(t *testing.T, byUser map[string]*asyncErrs) {
	t.Helper()
	for user, e := range byUser {
		for _, err := range e.list() {
			t.Errorf("%s: asynchronous error under the documented permissions: %v", user, err)
		}
	}
}

// produce publishes n requests of job, ids <prefix>-<i>, through c.
func produce(t *testing.T, c *client.Client, job, prefix string, n int) {
	t.Helper()
	for i := range n {
		if _, err := c.PublishAsync(context.Background(), client.Request{ID: fmt.Sprintf("%s-%d", prefix, i), Job: job, Body: body(i, i+3)}); err != nil {
			t.Fatalf("publishing %s: %v", job, err)
		}
	}
	select {
	case <-c.PublishComplete():
	case <-time.After(20 * time.Second):
		t.Fatalf("publishes of %s not acknowledged", job)
	}
}

// checkJob collects the results of job through c, until the n requests
// with ids <prefix>-<i> are answered, and checks each.
func checkJob(t *testing.T, c *client.Client, job, prefix string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := map[string]client.Result{}
	err := c.Results(ctx, job, func(r client.Result) bool {
		if strings.HasPrefix(r.RequestID, prefix+"-") {
			if _, dup := got[r.RequestID]; dup {
				t.Errorf("duplicate result for %s", r.RequestID)
			}
			got[r.RequestID] = r
		}
		return len(got) < n
	})
	if err != nil {
		t.Fatalf("collecting results of %s: %d of %d arrived: %v", job, len(got), n, err)
	}
	for i := range n {
		r, ok := got[fmt.Sprintf("%s-%d", prefix, i)]
		if !ok || r.Status != codec.CodeOK {
			t.Fatalf("%s-%d: result %v %s (%s)", prefix, i, ok, r.Status, r.Error)
		}
		checkRows(t, r.Body, i, i+3)
	}
}

// startSecuredWorker runs a worker of model digits as user "worker".
func startSecuredWorker(t *testing.T, ns *server.Server) *asyncErrs {
	t.Helper()
	nc, errs := connectAs(t, ns, "worker")
	startWorker(t, nc, newTestEngine(t),
		worker.Config{Model: "digits", WorkerID: "w1", ReportInterval: 50 * time.Millisecond})
	return errs
}

func TestSecurityLeastPrivilegeEndToEnd(t *testing.T) {
	ns := startSecuredServer(t)
	errs := map[string]*asyncErrs{"worker": startSecuredWorker(t, ns)}

	snc, serrs := connectAs(t, ns, "scheduler")
	errs["scheduler"] = serrs
	scfg := scheduler.DefaultConfig()
	scfg.Interval = 50 * time.Millisecond
	sched, err := scheduler.New(context.Background(), mustJS(t, snc), scfg)
	if err != nil {
		t.Fatalf("starting the scheduler under its permissions: %v", err)
	}
	sctx, stop := context.WithCancel(context.Background())
	sdone := make(chan error, 1)
	go func() { sdone <- sched.Run(sctx) }()
	t.Cleanup(func() { stop(); <-sdone })

	for _, p := range []struct{ user, job string }{{"producer_a", "jobA"}, {"producer_b", "jobB"}} {
		nc, e := connectAs(t, ns, p.user)
		errs[p.user] = e
		c, err := client.New(nc, client.Config{Model: "digits"})
		if err != nil {
			t.Fatal(err)
		}
		produce(t, c, p.job, p.job, 20)
		checkJob(t, c, p.job, p.job, 20)
	}

	// The worker's report and the scheduler's hint were stored.
	admin, _ := connectAs(t, ns, "admin")
	js := mustJS(t, admin)
	waitFor(t, func() bool {
		reports, err := js.KeyValue(context.Background(), scheduler.DefaultReportBucket)
		if err != nil {
			return false
		}
		_, err = reports.Get(context.Background(), scheduler.ReportKey("digits", "w1"))
		return err == nil
	}, "the worker's report in "+scheduler.DefaultReportBucket)
	waitFor(t, func() bool {
		hints, err := js.KeyValue(context.Background(), scheduler.DefaultHintBucket)
		if err != nil {
			return false
		}
		_, err = hints.Get(context.Background(), "digits")
		return err == nil
	}, "the scheduler's hint in "+scheduler.DefaultHintBucket)
	noViolations(t, errs)
}

func TestSecurityProducerCannotReadOtherJobsResults(t *testing.T) {
	ns := startSecuredServer(t)
	startSecuredWorker(t, ns)
	bnc, _ := connectAs(t, ns, "producer_b")
	cb, _ := client.New(bnc, client.Config{Model: "digits"})
	produce(t, cb, "jobB", "b1", 5)
	checkJob(t, cb, "jobB", "b1", 5)

	anc, aerrs := connectAs(t, ns, "producer_a")
	ca, _ := client.New(anc, client.Config{Model: "digits"})

	t.Run("consumer on another job's results", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		n := 0
		err := ca.Results(ctx, "jobB", func(client.Result) bool { n++; return true })
		if err == nil || n > 0 {
			t.Fatalf("producer_a read %d results of jobB (err %v)", n, err)
		}
		if v := aerrs.violation("$JS.API.CONSUMER.CREATE.JETINFER_RES"); v == nil {
			t.Errorf("refusal was not a permissions violation: %v (async: %v)", err, aerrs.list())
		}
	})

	t.Run("filter that differs from the allowed create subject", func(t *testing.T) {
		// The allowed subject names jobA; the configuration asks for jobB.
		req := `{"stream_name":"JETINFER_RES","config":{"name":"sneaky","filter_subject":"jetinfer.res.digits.jobB","ack_policy":"none"}}`
		msg, err := anc.Request("$JS.API.CONSUMER.CREATE.JETINFER_RES.sneaky.jetinfer.res.digits.jobA", []byte(req), 3*time.Second)
		if err != nil {
			t.Fatalf("requesting: %v", err)
		}
		if !strings.Contains(string(msg.Data), `"error"`) {
			t.Fatalf("server created a consumer whose filter differs from its create subject: %s", msg.Data)
		}
	})

	t.Run("direct subscriptions", func(t *testing.T) {
		for _, subj := range []string{"jetinfer.res.digits.jobB", "jetinfer.res.>", "_INBOX_producer_b.>", "_INBOX.>", "$JS.EVENT.>"} {
			sub, err := anc.SubscribeSync(subj)
			if err != nil {
				t.Fatal(err)
			}
			if err := anc.Flush(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return aerrs.violation("Subscription to \""+subj+"\"") != nil },
				"the server to refuse producer_a's subscription to "+subj)
			_ = sub.Unsubscribe()
		}
		// jobB keeps receiving results; producer_a's refused
		// subscriptions see none of them.
		sub, _ := anc.SubscribeSync("jetinfer.res.digits.jobB")
		produce(t, cb, "jobB", "b2", 3)
		checkJob(t, cb, "jobB", "b2", 3)
		if m, err := sub.NextMsg(200 * time.Millisecond); err == nil {
			t.Fatalf("producer_a received %s", m.Subject)
		}
	})

	t.Run("reading stored messages", func(t *testing.T) {
		for _, subj := range []string{"$JS.API.STREAM.MSG.GET.JETINFER_RES", "$JS.API.DIRECT.GET.JETINFER_RES", "$JS.API.STREAM.INFO.JETINFER_RES"} {
			if _, err := anc.Request(subj, []byte(`{"seq":1}`), 300*time.Millisecond); err == nil {
				t.Errorf("producer_a got an answer from %s", subj)
			}
			waitFor(t, func() bool { return aerrs.violation("Publish to \""+subj+"\"") != nil },
				"the server to refuse producer_a's request to "+subj)
		}
	})

	t.Run("own results still readable", func(t *testing.T) {
		produce(t, ca, "jobA", "a1", 4)
		checkJob(t, ca, "jobA", "a1", 4)
	})
}

// writeCerts writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA, as PEM files in dir.
func writeCerts(t *testing.T, dir string) (ca, serverCert, serverKey, clientCert, clientKey string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "jetinfer test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	ca = write("ca.pem", "CERTIFICATE", caDER)
	serverCert, serverKey = leaf(2, "server", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	clientCert, clientKey = leaf(3, "client", x509.ExtKeyUsageClientAuth, nil)
	return ca, serverCert, serverKey, clientCert, clientKey
}

// TestSecurityTLSWithClientCertificates serves requests over TLS with
// client certificates required, connecting with the options that
// JETINFER_NATS_TLS_CA/_CERT/_KEY map to (nats.RootCAs, nats.ClientCert).
func TestSecurityTLSWithClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, scert, skey, ccert, ckey := writeCerts(t, dir)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: scert, KeyFile: skey, CaFile: ca, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(dir, "js"),
		TLSConfig: tc, TLSVerify: true, TLSTimeout: 5, NoSigs: true, NoLog: true, MaxPayload: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	url := fmt.Sprintf("tls://127.0.0.1:%d", ns.Addr().(*net.TCPAddr).Port)

	dial := func(opts ...nats.Option) (*nats.Conn, error) {
		return nats.Connect(url, append(opts, nats.MaxReconnects(0), nats.Timeout(3*time.Second))...)
	}
	t.Run("refused without a client certificate", func(t *testing.T) {
		if nc, err := dial(nats.RootCAs(ca)); err == nil {
			nc.Close()
			t.Fatal("connected without a client certificate")
		}
	})
	t.Run("refused without the CA", func(t *testing.T) {
		if nc, err := dial(nats.ClientCert(ccert, ckey)); err == nil {
			nc.Close()
			t.Fatal("connected without trusting the server's CA")
		}
	})
	wnc, err := dial(nats.RootCAs(ca), nats.ClientCert(ccert, ckey))
	if err != nil {
		t.Fatalf("connecting over TLS: %v", err)
	}
	t.Cleanup(wnc.Close)
	if !wnc.TLSRequired() {
		t.Fatal("connection is not TLS")
	}
	startWorker(t, wnc, newTestEngine(t), worker.Config{Model: "digits"})
	pnc, err := dial(nats.RootCAs(ca), nats.ClientCert(ccert, ckey))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pnc.Close)
	c, _ := client.New(pnc, client.Config{Model: "digits"})
	produce(t, c, "tls", "tls", 10)
	checkJob(t, c, "tls", "tls", 10)
}
