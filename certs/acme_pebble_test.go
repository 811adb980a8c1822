package certs

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// startDNS answers every A question with 127.0.0.1 (and AAAA with
// nothing), over TCP on loopback, for Pebble's validation authority.
func startDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, qq := range q.Question {
			if qq.Qtype == dns.TypeA {
				rr, _ := dns.NewRR(qq.Name + " 60 IN A 127.0.0.1")
				m.Answer = append(m.Answer, rr)
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return ln.Addr().String()
}

// startPebble runs Let's Encrypt's test CA in this process: its HTTP-01
// validations go to httpPort on 127.0.0.1, its TLS-ALPN-01 ones to a port
// where nothing listens (as on a mail server without port 443).
func startPebble(t *testing.T, httpPort int) *httptest.Server {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	tlsPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	logger := log.New(io.Discard, "", 0)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1,
		map[string]ca.Profile{"default": {Description: "test"}})
	validator := va.New(logger, httpPort, tlsPort, false, startDNS(t), store)
	front := wfe.New(logger, store, validator, authority, nil, false, false, 1, 1)
	srv := httptest.NewTLSServer(front.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func TestACMEWithPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("ACME issuance against Pebble")
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer httpLn.Close()
	pebble := startPebble(t, httpLn.Addr().(*net.TCPAddr).Port)

	cfg := testConfig(t)
	cfg.TLS.ACME = true
	cfg.TLS.ACMEEmail = "postmaster@example.test"
	cfg.TLS.ACMEDirectory = pebble.URL + wfe.DirectoryPath
	p, err := NewProvider(cfg, nil, withHTTPClient(pebble.Client()))
	if err != nil {
		t.Fatal(err)
	}
	// The http listener serves the challenge handler; other paths reach
	// the fallback.
	var challenges atomic.Int32
	acmeHandler := p.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "fallback")
	}))
	hsrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			challenges.Add(1)
		}
		acmeHandler.ServeHTTP(w, r)
	})}
	go hsrv.Serve(httpLn)
	defer hsrv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Obtain(ctx); err != nil {
		t.Fatalf("Obtain: %v", err)
	}
	if challenges.Load() == 0 {
		t.Fatal("the CA never fetched an HTTP-01 challenge")
	}
	addr := serve(t, p.TLS)
	c, err := peer(t, addr, &tls.Config{InsecureSkipVerify: true, ServerName: "mail.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.Issuer.CommonName, "Pebble") || c.VerifyHostname("mail.example.test") != nil {
		t.Fatalf("served %q issued by %q, want Pebble's certificate for the hostname", c.Subject, c.Issuer)
	}
	// Without SNI a mail client still gets the hostname's certificate.
	if c2, err := peer(t, addr, &tls.Config{InsecureSkipVerify: true}); err != nil || Fingerprint(c2) != Fingerprint(c) {
		t.Fatalf("no SNI: %v", err)
	}
	exp, err := Expiry(cfg)
	if err != nil || !exp.Equal(c.NotAfter) {
		t.Fatalf("Expiry = %v, %v; want %v", exp, err, c.NotAfter)
	}
	resp, err := http.Get("http://" + httpLn.Addr().String() + "/other")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "fallback" {
		t.Fatalf("fallback handler got %q", body)
	}

	// A restart uses the cached certificate at once, with the CA gone.
	pebble.Close()
	p2, err := NewProvider(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	c3, err := p2.Certificate("mail.example.test")
	if err != nil || Fingerprint(c3) != Fingerprint(c) {
		t.Fatalf("after restart: %v, %v", c3.Issuer, err)
	}
}
