package main

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
	"time"

	"github.com/jetinfer/jetinfer/worker/traffic"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// documentedUsers loads the users and permissions of docs/security.md
// (the block between the permissions markers), with passwords from the
// environment variables it names.
func (r *runner) documentedUsers() ([]*server.User, map[string]string, error) {
	doc, err := os.ReadFile(filepath.Join(r.root, "docs", "security.md"))
	if err != nil {
		return nil, nil, err
	}
	_, block, ok := strings.Cut(string(doc), "<!-- permissions:begin -->")
	block, _, ok2 := strings.Cut(block, "<!-- permissions:end -->")
	if !ok || !ok2 {
		return nil, nil, errors.New("docs/security.md lacks the permissions:begin/end markers")
	}
	conf := filepath.Join(r.dir, "users.conf")
	if err := os.WriteFile(conf, []byte(strings.Trim(strings.TrimSpace(block), "`")), 0o600); err != nil {
		return nil, nil, err
	}
	passwords := map[string]string{}
	for _, u := range []string{"worker", "producer_a", "producer_b", "scheduler"} {
		passwords[u] = "pw-" + u
		os.Setenv("JETINFER_"+strings.ToUpper(u)+"_PASSWORD", passwords[u])
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		return nil, nil, fmt.Errorf("loading docs/security.md permissions: %w", err)
	}
	return opts.Users, passwords, nil
}

// writeCerts writes a CA, a server certificate for 127.0.0.1 and a client
// certificate signed by it, as PEM files in dir.
func writeCerts(dir string) (ca, srvCert, srvKey, cliCert, cliKey string, err error) {
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if werr := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); werr != nil && err == nil {
			err = werr
		}
		return p
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "reliability CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return
	}
	caParsed, err := x509.ParseCertificate(caDER)
	if err != nil {
		return
	}
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		k, kerr := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if kerr != nil {
			err = kerr
			return "", ""
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips}
		der, cerr := x509.CreateCertificate(rand.Reader, tmpl, caParsed, &k.PublicKey, caKey)
		kder, merr := x509.MarshalECPrivateKey(k)
		if err = errors.Join(cerr, merr); err != nil {
			return "", ""
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	ca = write("ca.pem", "CERTIFICATE", caDER)
	srvCert, srvKey = leaf(2, "server", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	cliCert, cliKey = leaf(3, "client", x509.ExtKeyUsageClientAuth, nil)
	return
}

// secureConnection runs real worker processes configured only through the
// JETINFER_NATS_* variables against a server that requires TLS client
// certificates and the documented least-privilege users.
func secureConnection(ctx context.Context, r *runner, rw *row) error {
	users, passwords, err := r.documentedUsers()
	if err != nil {
		return err
	}
	ca, scert, skey, ccert, ckey, err := writeCerts(r.dir)
	if err != nil {
		return fmt.Errorf("writing certificates: %w", err)
	}
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: scert, KeyFile: skey, CaFile: ca, Verify: true})
	if err != nil {
		return err
	}
	// Workers run with exactly docs/security.md's permissions and a
	// private inbox (JETINFER_NATS_INBOX_PREFIX).
	var workerPerms *server.Permissions
	for _, u := range users {
		if u.Username == "worker" {
			workerPerms = u.Permissions
		}
	}
	if workerPerms == nil {
		return errors.New("docs/security.md has no worker user")
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return err
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	seedFile := filepath.Join(r.dir, "worker.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	b := &broker{opts: []*server.Options{{
		ServerName: "rel-secure", Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: filepath.Join(r.dir, "js"),
		MaxPayload: maxPayload, NoSigs: true, NoLog: true, TLSConfig: tc, TLSVerify: true, TLSTimeout: 5,
		Users: append(users, &server.User{Username: "admin", Password: "pw-admin"}),
		Nkeys: []*server.NkeyUser{{Nkey: pub, Permissions: workerPerms}},
	}}, nodes: make([]*server.Server, 1)}
	if err := b.start(0); err != nil {
		return err
	}
	defer b.shutdown()
	url := fmt.Sprintf("tls://127.0.0.1:%d", port)
	tlsOpts := []nats.Option{nats.RootCAs(ca), nats.ClientCert(ccert, ckey)}
	admin, err := nats.Connect(url, append(tlsOpts, nats.UserInfo("admin", "pw-admin"))...)
	if err != nil {
		return err
	}
	defer admin.Close()
	js, err := jetstream.New(admin)
	if err != nil {
		return err
	}
	tlsEnv := []string{"JETINFER_NATS_TLS_CA", ca, "JETINFER_NATS_TLS_CERT", ccert, "JETINFER_NATS_TLS_KEY", ckey,
		"JETINFER_REPORT_INTERVAL", "100ms", "JETINFER_NATS_INBOX_PREFIX", "_INBOX_worker"}
	env := r.env(url, append(tlsEnv, "JETINFER_NATS_USER", "worker", "JETINFER_NATS_PASSWORD", passwords["worker"])...)
	rw.rssBound = boundOf(env)
	w1, err := r.startWorker(realWorker, "password", env)
	if err != nil {
		return err
	}
	w2, err := r.startWorker(realWorker, "nkey", r.env(url, append(tlsEnv, "JETINFER_NATS_NKEY_SEED_FILE", seedFile)...))
	if err != nil {
		return err
	}
	// The producer has its own inbox and may read only job jobA.
	pnc, err := nats.Connect(url, append(tlsOpts, nats.UserInfo("producer_a", passwords["producer_a"]),
		nats.CustomInboxPrefix("_INBOX_producer_a"))...)
	if err != nil {
		return err
	}
	defer pnc.Close()
	pjs, err := jetstream.New(pnc)
	if err != nil {
		return err
	}
	reqs := r.okRequests("sec", "jobA", r.n(1000), 16, 50)
	var st traffic.SendStats
	if err := send(ctx, pjs, reqs, 4, 0, &st); err != nil {
		return err
	}
	sleepCtx(ctx, 300*time.Millisecond) // a few scaling reports
	if err := r.finish(ctx, rw, js, reqs, 60*time.Second); err != nil {
		return err
	}
	for _, p := range []*proc{w1, w2} {
		rw.check(p.countLog("permissions violation") == 0, "worker %s hit a permissions violation: %s", p.name, p.tail(3))
		rw.check(p.countLog("worker report") == 0, "worker %s could not publish its scaling reports: %s", p.name, p.tail(3))
	}
	rw.note("TLS with client certificates required; one worker authenticated by user/password, one by NKey seed file, both configured only through JETINFER_NATS_* and limited to docs/security.md's worker permissions with a private inbox; the producer limited to job jobA")
	return nil
}
