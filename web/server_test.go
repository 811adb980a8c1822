package web

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/store"
)

type domainList []string

func (d domainList) Domains() ([]string, error) { return d, nil }

// start serves s on a loopback port and returns its address.
func start(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func fetch(t *testing.T, url, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Without ListenerAddr the ports come from the configuration; a listener
// set to "" is left out.
func TestAutoconfigFromConfig(t *testing.T) {
	cfg := config.Default()
	cfg.Hostname = "mail.example.org"
	cfg.Listen.IMAP = ""
	cfg.Listen.POP3 = ""
	cfg.Listen.POP3S = ""
	addr := start(t, &Server{Config: &cfg, Domains: domainList{"example.org", "example.net"}})
	code, body := fetch(t, "http://"+addr+"/mail/config-v1.1.xml?emailaddress=bob%40Example.NET", "autoconfig.example.net")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var cc clientConfig
	if err := xml.Unmarshal([]byte(body), &cc); err != nil {
		t.Fatal(err)
	}
	p := cc.Provider
	// The asked domain only: not which others share the server.
	if p.ID != "example.net" || strings.Join(p.Domains, ",") != "example.net" {
		t.Errorf("provider %q domains %v", p.ID, p.Domains)
	}
	if len(p.Incoming) != 1 || p.Incoming[0] != (serverConfig{"imap", "mail.example.org", 993, "SSL", "%EMAILADDRESS%", "password-cleartext"}) {
		t.Errorf("incoming %+v", p.Incoming)
	}
	if len(p.Outgoing) != 2 || p.Outgoing[0].Port != 465 || p.Outgoing[0].SocketType != "SSL" ||
		p.Outgoing[1].Port != 587 || p.Outgoing[1].SocketType != "STARTTLS" {
		t.Errorf("outgoing %+v", p.Outgoing)
	}
	if !strings.HasPrefix(body, `<?xml version="1.0" encoding="UTF-8"?>`) {
		t.Errorf("no XML declaration: %.60s", body)
	}
}

// Wrap sees every request first: that is where ACME HTTP-01 answers.
func TestWrap(t *testing.T) {
	cfg := config.Default()
	s := &Server{Config: &cfg, Domains: domainList{"example.org"}, Wrap: func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
				io.WriteString(w, "token")
				return
			}
			h.ServeHTTP(w, r)
		})
	}}
	addr := start(t, s)
	if code, body := fetch(t, "http://"+addr+"/.well-known/acme-challenge/x", "mail.example.org"); code != 200 || body != "token" {
		t.Errorf("challenge: %d %q", code, body)
	}
	if code, _ := fetch(t, "http://"+addr+"/.well-known/mta-sts.txt", "mta-sts.example.org"); code != 200 {
		t.Errorf("policy behind Wrap: %d", code)
	}
}

type failingDomains struct{}

func (failingDomains) Domains() ([]string, error) { return nil, errors.New("disk on fire") }

func TestAutoconfigStoreError(t *testing.T) {
	cfg := config.Default()
	addr := start(t, &Server{Config: &cfg, Domains: failingDomains{}})
	code, body := fetch(t, "http://"+addr+"/mail/config-v1.1.xml?emailaddress=a@example.org", "x")
	if code != 500 || strings.Contains(body, "disk on fire") {
		t.Errorf("%d %q", code, body)
	}
}

func TestQueueLengthGaugeCaches(t *testing.T) {
	q := &countingQueue{}
	g := QueueLengthGauge(q, time.Hour)
	if g() != 2 || g() != 2 || q.calls != 1 {
		t.Errorf("calls %d", q.calls)
	}
	g = QueueLengthGauge(q, 0)
	g()
	g()
	if q.calls != 3 {
		t.Errorf("ttl 0: calls %d", q.calls)
	}
}

type countingQueue struct{ calls int }

func (q *countingQueue) QueueEntries() ([]store.QueueEntry, error) {
	q.calls++
	return make([]store.QueueEntry, 2), nil
}

// With a real certificate configured the policy enforces.
func TestMTASTSEnforce(t *testing.T) {
	cfg := config.Default()
	cfg.Hostname = "mail.example.org"
	cfg.TLS.CertFile, cfg.TLS.KeyFile = "cert.pem", "key.pem"
	addr := start(t, &Server{Config: &cfg, Domains: domainList{"example.org"}})
	code, body := fetch(t, "http://"+addr+"/.well-known/mta-sts.txt", "mta-sts.example.org")
	if want := "version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmax_age: 604800\r\n"; code != 200 || body != want {
		t.Errorf("%d %q, want %q", code, body, want)
	}
}
