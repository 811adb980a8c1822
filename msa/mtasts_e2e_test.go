package msa_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/internal/storetest"
	"github.com/posthorn/posthorn/zone"
)

// writeCA makes a certificate authority and a certificate it signs for
// names, in PEM files under dir: ca.pem, cert.pem, key.pem.
func writeCA(t *testing.T, dir string, names ...string) (caFile, certFile, keyFile string) {
	t.Helper()
	ca := harness.NewCA(t)
	_, cert, key := ca.Issue(names...)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", ca.PEM), write("cert.pem", cert), write("key.pem", key)
}

// TestE2EMTASTS: b.test publishes an MTA-STS policy in enforce mode from
// its https listener (it has a CA-signed certificate for mx.b.test and
// mta-sts.b.test), and a.test, trusting that CA (outbound.ca_file),
// fetches it and sends to b.test over verified TLS. When b.test's MX
// record then names a host the policy does not, a.test keeps the mail
// (4.7.5) rather than send it there: the policy, cached, is enforced.
func TestE2EMTASTS(t *testing.T) {
	dns := harness.StartDNS(t)
	caFile, certFile, keyFile := writeCA(t, t.TempDir(), "mx.b.test", "mta-sts.b.test")
	b := harness.Start(t, harness.Options{DNS: dns, Configure: func(c *config.Config) {
		c.Hostname = "mx.b.test"
		c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile
	}})
	b.AddDomain("b.test")
	b.AddUser(bob, pairPass)
	if mode := zone.MTASTSMode(b.Config); mode != "enforce" {
		t.Fatalf("b publishes mode %q, want enforce (it has a real certificate)", mode)
	}
	a := harness.Start(t, harness.Options{DNS: dns, Configure: func(c *config.Config) {
		c.Hostname = "mx.a.test"
		c.Outbound.MXPort = b.Server.Addr("smtp").(*net.TCPAddr).Port
		c.Outbound.MTASTSPort = b.Server.Addr("https").(*net.TCPAddr).Port
		c.Outbound.CAFile = caFile
	}})
	a.AddDomain("a.test")
	a.AddUser(alice, pairPass)
	dns.Add(t,
		"b.test. 300 IN MX 10 mx.b.test.", "mx.b.test. 300 IN A 127.0.0.1",
		"mta-sts.b.test. 300 IN A 127.0.0.1",
		`_mta-sts.b.test. 300 IN TXT "v=STSv1; id=`+zone.MTASTSID(b.Config)+`"`,
	)

	c, err := dial(t, a, alice, pairPass)
	if err != nil {
		t.Fatal(err)
	}
	if err := send(c, alice, []string{bob}, testMessage(alice, bob, "under policy")); err != nil {
		t.Fatal(err)
	}
	msgs := waitMessages(t, b.Server.Store, bob, 1)
	if rcv := headerField(string(msgs[0]), "Received"); !strings.Contains(rcv, " with ESMTPS ") {
		t.Fatalf("b received the message without TLS: Received: %s", rcv)
	}

	// b.test's MX now names mx2.b.test, which the policy does not list.
	dns.Remove("b.test.", 15)
	dns.Add(t, "b.test. 300 IN MX 10 mx2.b.test.", "mx2.b.test. 300 IN A 127.0.0.1")
	if err := send(c, alice, []string{bob}, testMessage(alice, bob, "to the wrong host")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitLimit)
	for {
		es, err := a.Server.Store.QueueEntries()
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 1 && strings.Contains(es[0].Recipients[0].LastError, "MTA-STS") {
			if n := len(storetest.Bodies(t, b.Server.Store, bob, "INBOX")); n != 1 {
				t.Fatalf("bob has %d messages: the second went to a host the policy does not list", n)
			}
			t.Logf("kept: %s", es[0].Recipients[0].LastError)
			break
		}
		if len(es) == 0 || time.Now().After(deadline) {
			t.Fatalf("queue %+v: want the message kept for MTA-STS", es)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
