package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/acme/autocert"

	"github.com/posthorn/posthorn/config"
)

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	dir := t.TempDir()
	c := config.Default()
	c.Path = filepath.Join(dir, "posthorn.toml")
	c.Hostname = "mail.example.test"
	c.DataDir = "data"
	return &c
}

// serve runs a TLS listener with conf on loopback; every connection gets a
// handshake and is closed.
func serve(t *testing.T, conf *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.(*tls.Conn).Handshake()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// peer connects and returns the certificate the server presented.
func peer(t *testing.T, addr string, conf *tls.Config) (*x509.Certificate, error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

func TestSelfSignedMadeOnceAndReused(t *testing.T) {
	cfg := testConfig(t)
	p1, err := NewProvider(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p1.Source != "self-signed" {
		t.Fatalf("source %q", p1.Source)
	}
	c1, err := p1.Certificate("")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mail.example.test", "localhost", "127.0.0.1", "::1"} {
		if err := c1.VerifyHostname(name); err != nil {
			t.Errorf("certificate does not cover %s: %v", name, err)
		}
	}
	if d := c1.NotAfter.Sub(time.Now()); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("validity %v, want one year", d)
	}
	fi, err := os.Stat(cfg.DataPath("selfsigned-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	p2, err := NewProvider(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := p2.Certificate("")
	if Fingerprint(c1) != Fingerprint(c2) {
		t.Fatal("second start made a new certificate instead of reusing the stored one")
	}
	// A new hostname gets a new certificate.
	cfg.Hostname = "mx.other.test"
	p3, err := NewProvider(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	c3, _ := p3.Certificate("")
	if c3.VerifyHostname("mx.other.test") != nil || Fingerprint(c3) == Fingerprint(c1) {
		t.Fatal("certificate not remade for the new hostname")
	}
	exp, err := Expiry(cfg)
	if err != nil || !exp.Equal(c3.NotAfter) {
		t.Fatalf("Expiry = %v, %v; want %v", exp, err, c3.NotAfter)
	}
}

func TestSelfSignedExpiringIsRemade(t *testing.T) {
	cfg := testConfig(t)
	past := time.Now().Add(-350 * 24 * time.Hour)
	p1, err := NewProvider(cfg, nil, withNow(func() time.Time { return past }))
	if err != nil {
		t.Fatal(err)
	}
	c1, _ := p1.Certificate("")
	p2, err := NewProvider(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := p2.Certificate("")
	if Fingerprint(c1) == Fingerprint(c2) || c2.NotAfter.Before(time.Now().Add(300*24*time.Hour)) {
		t.Fatal("a certificate 15 days from expiry was not remade")
	}
}

func TestHandshakeAndMinVersion(t *testing.T) {
	cfg := testConfig(t)
	conf, err := Load(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, conf)
	pemData, err := os.ReadFile(cfg.DataPath("selfsigned-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemData)
	// A client that trusts the stored certificate verifies the handshake,
	// with and without SNI.
	if _, err := peer(t, addr, &tls.Config{RootCAs: roots, ServerName: "mail.example.test"}); err != nil {
		t.Fatalf("verified handshake: %v", err)
	}
	if _, err := peer(t, addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}); err != nil {
		t.Fatalf("handshake by IP: %v", err)
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		_, err := peer(t, addr, &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v})
		if err == nil {
			t.Fatalf("TLS version %x accepted", v)
		}
	}
	if _, err := peer(t, addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}); err != nil {
		t.Fatalf("TLS 1.2: %v", err)
	}
}

// writePair writes a certificate and key for host to dir and returns the
// file names.
func writePair(t *testing.T, dir, host, prefix string) (string, string) {
	t.Helper()
	certPEM, keyPEM, err := makeSelfSigned(host, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cp, kp := filepath.Join(dir, prefix+"cert.pem"), filepath.Join(dir, prefix+"key.pem")
	if err := os.WriteFile(cp, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kp, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return cp, kp
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestFilesLoadedAndReloaded(t *testing.T) {
	cfg := testConfig(t)
	dir := filepath.Dir(cfg.Path)
	writePair(t, dir, "one.example.test", "")
	cfg.TLS.CertFile, cfg.TLS.KeyFile = "cert.pem", "key.pem" // relative to the config file
	clk := &clock{t: time.Now()}
	p, err := NewProvider(cfg, nil, withNow(clk.now))
	if err != nil {
		t.Fatal(err)
	}
	if p.Source != "files" {
		t.Fatalf("source %q", p.Source)
	}
	if _, err := os.Stat(cfg.DataPath("selfsigned-cert.pem")); err == nil {
		t.Fatal("a self-signed certificate was made although files are configured")
	}
	addr := serve(t, p.TLS)
	insecure := &tls.Config{InsecureSkipVerify: true}
	c, err := peer(t, addr, insecure)
	if err != nil || c.Subject.CommonName != "one.example.test" {
		t.Fatalf("served %v, %v", c, err)
	}
	// certbot renews: new files (by rename, as certbot's symlinks change).
	writePair(t, dir, "two.example.test", "new-")
	os.Rename(filepath.Join(dir, "new-cert.pem"), filepath.Join(dir, "cert.pem"))
	os.Rename(filepath.Join(dir, "new-key.pem"), filepath.Join(dir, "key.pem"))
	clk.advance(30 * time.Second)
	if c, _ := peer(t, addr, insecure); c.Subject.CommonName != "one.example.test" {
		t.Fatal("files checked more often than once a minute")
	}
	clk.advance(31 * time.Second)
	if c, _ := peer(t, addr, insecure); c.Subject.CommonName != "two.example.test" {
		t.Fatalf("renewed certificate not picked up: still %s", c.Subject.CommonName)
	}
	// A half-written renewal (cert of one pair, key of another) keeps the
	// last good certificate.
	writePair(t, dir, "three.example.test", "new-")
	os.Rename(filepath.Join(dir, "new-cert.pem"), filepath.Join(dir, "cert.pem"))
	clk.advance(2 * time.Minute)
	if c, err := peer(t, addr, insecure); err != nil || c.Subject.CommonName != "two.example.test" {
		t.Fatalf("mismatched renewal: %v, %v", c, err)
	}
	os.Rename(filepath.Join(dir, "new-key.pem"), filepath.Join(dir, "key.pem"))
	clk.advance(2 * time.Minute)
	if c, _ := peer(t, addr, insecure); c.Subject.CommonName != "three.example.test" {
		t.Fatalf("completed renewal not picked up: %s", c.Subject.CommonName)
	}
	exp, err := Expiry(cfg)
	if err != nil || exp.Before(time.Now().Add(300*24*time.Hour)) {
		t.Fatalf("Expiry of files: %v, %v", exp, err)
	}
}

func TestFilesErrors(t *testing.T) {
	cfg := testConfig(t)
	dir := filepath.Dir(cfg.Path)
	cA, _ := writePair(t, dir, "a.example.test", "a-")
	_, kB := writePair(t, dir, "b.example.test", "b-")
	cfg.TLS.CertFile, cfg.TLS.KeyFile = cA, kB
	if _, err := NewProvider(cfg, nil); err == nil || !strings.Contains(err.Error(), "tls.cert_file") {
		t.Fatalf("mismatched pair: %v", err)
	}
	cfg.TLS.KeyFile = filepath.Join(dir, "missing.pem")
	if _, err := Load(cfg, nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing key file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not pem"), 0o600)
	cfg.TLS.KeyFile = filepath.Join(dir, "junk.pem")
	if _, err := Load(cfg, nil); err == nil {
		t.Fatal("junk key accepted")
	}
}

func TestACMEConfiguration(t *testing.T) {
	cfg := testConfig(t)
	cfg.TLS.ACME = true
	cfg.TLS.ACMEEmail = "postmaster@example.test"
	// A directory nobody serves: obtaining fails fast, on loopback only.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dirURL := "http://" + ln.Addr().String() + "/dir"
	ln.Close()
	cfg.TLS.ACMEDirectory = dirURL
	p, err := NewProvider(cfg, nil,
		WithHosts("mta-sts.example.test"),
		WithHostPolicy(func(h string) bool { return h == "mta-sts.later.test" }))
	if err != nil {
		t.Fatal(err)
	}
	m := p.ACME
	if p.Source != "acme" || m == nil {
		t.Fatalf("source %q manager %v", p.Source, m)
	}
	if m.Email != cfg.TLS.ACMEEmail || m.Client.DirectoryURL != dirURL {
		t.Fatalf("email %q directory %q", m.Email, m.Client.DirectoryURL)
	}
	if dc, ok := m.Cache.(autocert.DirCache); !ok || string(dc) != cfg.DataPath("acme") {
		t.Fatalf("cache %#v, want DirCache(%s)", m.Cache, cfg.DataPath("acme"))
	}
	ctx := context.Background()
	for _, h := range []string{"mail.example.test", "MAIL.example.test.", "mta-sts.example.test", "mta-sts.later.test"} {
		if err := m.HostPolicy(ctx, h); err != nil {
			t.Errorf("policy refuses %s: %v", h, err)
		}
	}
	for _, h := range []string{"example.test", "evil.test", "mail.example.test.evil.test"} {
		if err := m.HostPolicy(ctx, h); err == nil {
			t.Errorf("policy allows %s", h)
		}
	}
	// Until the CA answers, handshakes get the self-signed fallback at
	// once, and Obtain reports the CA's failure.
	start := time.Now()
	c, err := p.Certificate("mail.example.test")
	if err != nil || c.VerifyHostname("mail.example.test") != nil || time.Since(start) > 5*time.Second {
		t.Fatalf("fallback certificate: %v, %v after %v", c, err, time.Since(start))
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.Obtain(octx); err == nil {
		t.Fatal("Obtain succeeded without a CA")
	}
	if _, err := Expiry(cfg); err == nil {
		t.Fatal("Expiry without an ACME certificate")
	}
	// Without ACME the HTTP handler is the fallback itself.
	cfg.TLS.ACME = false
	p2, _ := NewProvider(cfg, nil)
	if p2.ACME != nil || p2.HTTPHandler(nil) != nil {
		t.Fatal("HTTPHandler without ACME is not the fallback")
	}
}

func TestSelfSignedRemadeWhileRunning(t *testing.T) {
	cfg := testConfig(t)
	clk := &clock{t: time.Now()}
	p, err := NewProvider(cfg, nil, withNow(clk.now))
	if err != nil {
		t.Fatal(err)
	}
	c1, _ := p.Certificate("")
	clk.advance(340 * 24 * time.Hour) // 25 days before expiry
	c2, _ := p.Certificate("")
	if Fingerprint(c1) == Fingerprint(c2) || !c2.NotAfter.After(c1.NotAfter) {
		t.Fatal("self-signed certificate not remade before expiry in a running server")
	}
	if exp, err := Expiry(cfg); err != nil || !exp.Equal(c2.NotAfter) {
		t.Fatalf("stored certificate not the new one: %v %v", exp, err)
	}
}
