package web_test

import (
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/metrics"
)

// The fields Thunderbird reads from a clientConfig 1.1 document.
type tbConfig struct {
	XMLName  xml.Name `xml:"clientConfig"`
	Version  string   `xml:"version,attr"`
	Provider struct {
		ID       string     `xml:"id,attr"`
		Domains  []string   `xml:"domain"`
		Incoming []tbServer `xml:"incomingServer"`
		Outgoing []tbServer `xml:"outgoingServer"`
	} `xml:"emailProvider"`
}

type tbServer struct {
	Type           string `xml:"type,attr"`
	Hostname       string `xml:"hostname"`
	Port           int    `xml:"port"`
	SocketType     string `xml:"socketType"`
	Username       string `xml:"username"`
	Authentication string `xml:"authentication"`
}

// get fetches a path from addr with a Host header.
func get(t *testing.T, addr, host, path string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func port(t *testing.T, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func TestAutoconfig(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	env.AddDomain("second.test")
	addr := env.Addr("http")
	for _, c := range []struct{ host, path string }{
		{"autoconfig.example.test", "/mail/config-v1.1.xml?emailaddress=alice%40example.test"},
		{"autoconfig.example.test", "/mail/config-v1.1.xml"},
		{"mail.example.test", "/mail/config-v1.1.xml?emailaddress=alice@example.test"},
		{"example.test", "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice@example.test"},
	} {
		code, body, hdr := get(t, addr, c.host, c.path)
		if code != 200 || !strings.Contains(hdr.Get("Content-Type"), "xml") {
			t.Fatalf("%s%s: %d %s", c.host, c.path, code, hdr.Get("Content-Type"))
		}
		var cc tbConfig
		if err := xml.Unmarshal([]byte(body), &cc); err != nil {
			t.Fatalf("%s%s: %v\n%s", c.host, c.path, err, body)
		}
		checkConfig(t, env, cc)
	}
}

func checkConfig(t *testing.T, env *harness.Env, cc tbConfig) {
	t.Helper()
	if cc.Version != "1.1" || cc.Provider.ID != "example.test" {
		t.Errorf("version %q provider %q", cc.Version, cc.Provider.ID)
	}
	// The asked domain only: second.test, served too, is not for anyone
	// asking about example.test to learn.
	if len(cc.Provider.Domains) != 1 || cc.Provider.Domains[0] != "example.test" {
		t.Errorf("domains %v", cc.Provider.Domains)
	}
	want := map[string]tbServer{
		"imaps":       {Type: "imap", SocketType: "SSL"},
		"imap":        {Type: "imap", SocketType: "STARTTLS"},
		"pop3s":       {Type: "pop3", SocketType: "SSL"},
		"pop3":        {Type: "pop3", SocketType: "STARTTLS"},
		"submissions": {Type: "smtp", SocketType: "SSL"},
		"submission":  {Type: "smtp", SocketType: "STARTTLS"},
	}
	got := append(append([]tbServer{}, cc.Provider.Incoming...), cc.Provider.Outgoing...)
	for _, s := range got {
		if s.SocketType == "plain" || (s.SocketType != "SSL" && s.SocketType != "STARTTLS") {
			t.Errorf("%s server with socket type %q and %s", s.Type, s.SocketType, s.Authentication)
		}
		if s.Hostname != "mail.example.test" || s.Username != "%EMAILADDRESS%" || s.Authentication != "password-cleartext" {
			t.Errorf("server %+v", s)
		}
	}
	for name, w := range want {
		if env.Server.Addr(name) == nil {
			continue // not built yet: must not be announced
		}
		p := port(t, env.Addr(name))
		found := false
		for _, s := range got {
			found = found || (s.Type == w.Type && s.SocketType == w.SocketType && s.Port == p)
		}
		if !found {
			t.Errorf("%s (%s %s port %d) not announced: %+v", name, w.Type, w.SocketType, p, got)
		}
	}
	if len(cc.Provider.Outgoing) > 0 && cc.Provider.Outgoing[0].Type != "smtp" {
		t.Errorf("outgoing %+v", cc.Provider.Outgoing)
	}
}

func TestAutoconfigUnknownDomain(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	addr := env.Addr("http")
	for _, c := range []struct{ host, path string }{
		{"autoconfig.other.test", "/mail/config-v1.1.xml"},
		{"mail.example.test", "/mail/config-v1.1.xml?emailaddress=bob@other.test"},
		{"autoconfig.example.test", "/mail/config-v1.1.xml?emailaddress=no-at-sign"},
	} {
		if code, _, _ := get(t, addr, c.host, c.path); code != http.StatusNotFound {
			t.Errorf("%s%s: %d, want 404", c.host, c.path, code)
		}
	}
}

// Thunderbird puts the address in the query as the user typed it: a
// domain in U-labels is the served domain under its A-labels.
func TestAutoconfigULabelDomain(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	env.AddDomain("xn--bcher-kva.example")
	for _, path := range []string{
		"/mail/config-v1.1.xml?emailaddress=j%C3%B6rg%40b%C3%BCcher.example",
		"/mail/config-v1.1.xml?emailaddress=jorg%40B%C3%9CCHER.example",
		"/mail/config-v1.1.xml?emailaddress=jorg%40xn--bcher-kva.example",
	} {
		code, body, _ := get(t, env.Addr("http"), "autoconfig.xn--bcher-kva.example", path)
		if code != 200 {
			t.Errorf("%s: %d, want 200", path, code)
			continue
		}
		var cc tbConfig
		if err := xml.Unmarshal([]byte(body), &cc); err != nil {
			t.Fatal(err)
		}
		if cc.Provider.ID != "xn--bcher-kva.example" {
			t.Errorf("%s: provider %q", path, cc.Provider.ID)
		}
	}
}

// A listener that is off is not announced; never a plain socket.
func TestAutoconfigOmitsDisabled(t *testing.T) {
	env := harness.Start(t, harness.Options{Configure: func(c *config.Config) {
		c.Listen.POP3 = ""
		c.Listen.POP3S = ""
		c.Listen.Submission = ""
	}})
	_, body, _ := get(t, env.Addr("http"), "autoconfig.example.test", "/mail/config-v1.1.xml")
	var cc tbConfig
	if err := xml.Unmarshal([]byte(body), &cc); err != nil {
		t.Fatal(err)
	}
	for _, s := range append(cc.Provider.Incoming, cc.Provider.Outgoing...) {
		if s.Type == "pop3" || (s.Type == "smtp" && s.SocketType == "STARTTLS") {
			t.Errorf("disabled listener announced: %+v", s)
		}
	}
}

func TestMTASTSPolicy(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	code, body, hdr := get(t, env.Addr("http"), "mta-sts.example.test", "/.well-known/mta-sts.txt")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("%d %s", code, hdr.Get("Content-Type"))
	}
	want := "version: STSv1\r\nmode: testing\r\nmx: mail.example.test\r\nmax_age: 604800\r\n"
	if body != want {
		t.Errorf("policy %q, want %q (self-signed certificate: testing)", body, want)
	}
}

func TestMetrics(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	env.Server.Metrics.Inc(metrics.Accepted, "via", "smtp")
	code, body, hdr := get(t, env.Addr("metrics"), "localhost", "/metrics")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("%d %s", code, hdr.Get("Content-Type"))
	}
	for _, name := range []string{metrics.Accepted, metrics.Rejected, metrics.Delivered, metrics.Deferred,
		metrics.Bounced, metrics.AuthFailures, metrics.QueueLength, metrics.Connections} {
		if !strings.Contains(body, "\n"+name) && !strings.HasPrefix(body, name) {
			t.Errorf("metric %s missing", name)
		}
	}
	if !strings.Contains(body, metrics.Accepted+`{via="smtp"} 1`) {
		t.Errorf("counter not exported:\n%s", body)
	}
	if !strings.Contains(body, metrics.QueueLength+" 0\n") {
		t.Errorf("queue length gauge not 0:\n%s", body)
	}
	// The metrics listener serves nothing else, the HTTP listener no metrics.
	if code, _, _ := get(t, env.Addr("metrics"), "localhost", "/mail/config-v1.1.xml"); code != 404 {
		t.Errorf("metrics listener serves autoconfig: %d", code)
	}
	if code, _, _ := get(t, env.Addr("http"), "localhost", "/metrics"); code != 404 {
		t.Errorf("http listener serves metrics: %d", code)
	}
}
