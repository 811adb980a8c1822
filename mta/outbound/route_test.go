package outbound_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/posthorn/posthorn/resolver"
	"github.com/posthorn/posthorn/store"
)

// TestIDNDomainLookedUpAsALabel: the MX of user@bücher.test is looked up
// as xn--bcher-kva.test (IDNA2008), and a server with SMTPUTF8 gets the
// address as it was given.
func TestIDNDomainLookedUpAsALabel(t *testing.T) {
	f := startFakeMX(t, nil)
	e := newQueueEnv(t, f.port())
	e.DNS.Add(t, "xn--bcher-kva.test. 300 IN MX 10 mx.remote.test.", "mx.remote.test. 300 IN A 127.0.0.1")
	e.run(t)
	e.enqueueBody(t, "Subject: idn\r\nTo: user@bücher.test\r\n\r\nHello\r\n",
		func(qe *store.QueueEntry) { qe.SMTPUTF8 = true }, "user@bücher.test")
	if got := f.wait(t); strings.Join(got.Rcpts, ",") != "user@bücher.test" {
		t.Fatalf("RCPT %v", got.Rcpts)
	}
	e.waitEmpty(t)
}

// startServfailDNS starts a DNS server that answers SERVFAIL to all.
func startServfailDNS(t testing.TB) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestDNSErrorNamesNoResolver: a lookup error kept as the last error (and
// sent in DSNs) does not name the system's resolver, which the queue did
// not ask (Go puts resolv.conf's server in net.DNSError).
func TestDNSErrorNamesNoResolver(t *testing.T) {
	e := newQueueEnv(t, 1)
	e.Q.Resolver = resolver.New(startServfailDNS(t))
	e.Q.RetryInitial, e.Q.RetryMax = time.Hour, time.Hour
	e.run(t)
	qe := e.enqueueBody(t, "Subject: x\r\n\r\nHello\r\n", nil, "bob@sfail.test")
	got := e.waitEntry(t, qe.ID, func(g store.QueueEntry) bool { return g.Attempts > 0 })
	le := got.Recipients[0].LastError
	if !strings.Contains(le, "lookup sfail.test: server misbehaving") || strings.Contains(le, " on ") {
		t.Fatalf("last error %q, want the lookup without a resolver address", le)
	}
}
