// Package certs provides the server's TLS configuration and its
// certificate, from one of three sources:
//
//   - tls.cert_file and tls.key_file (PEM): loaded at start, and reloaded
//     when either file changes (checked at most once a minute, on a
//     handshake), so that a renewal by certbot needs no restart. A pair
//     that fails to load keeps the old certificate in use and is logged.
//   - tls.acme: golang.org/x/crypto/acme/autocert obtains and renews a
//     certificate for hostname (RFC 8555), answering HTTP-01 challenges
//     through Provider.HTTPHandler on the http listener (RFC 8555 section
//     8.3); autocert tries TLS-ALPN-01 first, which fails without port
//     443 and falls through to HTTP-01. Account key and certificates are
//     cached in data_dir/acme. Until a certificate is at hand, handshakes
//     get the self-signed certificate instead of waiting for the CA.
//   - neither: a self-signed ECDSA P-256 certificate for hostname,
//     localhost, 127.0.0.1 and ::1, valid one year, made in data_dir on
//     first start (selfsigned-cert.pem, selfsigned-key.pem with mode 0600)
//     and reused after; remade when the hostname changes or it nears
//     expiry. It is logged as self-signed with its SHA-256 fingerprint.
//
// TLS 1.2 is the minimum version (RFC 8996 deprecates 1.0 and 1.1; RFC
// 8314 section 4.1 asks mail clients and servers for 1.2 or later).
package certs

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/acme/autocert"

	"github.com/posthorn/posthorn/config"
)

// Provider is the TLS configuration of a server and where its certificate
// comes from.
type Provider struct {
	// TLS is the server configuration every listener uses.
	TLS *tls.Config
	// HTTPHandler wraps the handler of the plain-HTTP listener. With ACME
	// it answers /.well-known/acme-challenge/ (HTTP-01) and passes every
	// other request to fallback; otherwise it returns fallback unchanged.
	HTTPHandler func(fallback http.Handler) http.Handler
	// Source is "files", "acme" or "self-signed".
	Source string
	// ACME is the certificate manager when tls.acme is set, else nil.
	ACME *autocert.Manager

	get  func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	acme *acmeSource
}

// Option changes NewProvider.
type Option func(*options)

type options struct {
	hosts      []string
	hostPolicy func(host string) bool
	httpClient *http.Client // tests: the ACME CA's TLS
	now        func() time.Time
}

// WithHosts adds names the ACME certificate may be obtained for besides
// hostname (for example mta-sts.<domain>, RFC 8461 section 3.3).
func WithHosts(names ...string) Option {
	return func(o *options) { o.hosts = append(o.hosts, names...) }
}

// WithHostPolicy allows, besides hostname and WithHosts, every name for
// which allow returns true; it is asked at handshake time, so names of
// domains added later can be covered.
func WithHostPolicy(allow func(host string) bool) Option {
	return func(o *options) { o.hostPolicy = allow }
}

// withNow replaces the clock (tests).
func withNow(now func() time.Time) Option { return func(o *options) { o.now = now } }

// withHTTPClient sets the HTTP client of the ACME client (tests: to trust
// a test CA's directory).
func withHTTPClient(c *http.Client) Option { return func(o *options) { o.httpClient = c } }

// Load returns the server TLS configuration for cfg.
func Load(cfg *config.Config, logger *slog.Logger) (*tls.Config, error) {
	p, err := NewProvider(cfg, logger)
	if err != nil {
		return nil, err
	}
	return p.TLS, nil
}

// NewProvider loads or makes the certificate of cfg and returns the
// Provider around it.
func NewProvider(cfg *config.Config, logger *slog.Logger, opts ...Option) (*Provider, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	o := options{now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	p := &Provider{HTTPHandler: func(h http.Handler) http.Handler { return h }}
	switch {
	case cfg.TLS.CertFile != "":
		fc, err := loadFiles(cfg.Abs(cfg.TLS.CertFile), cfg.Abs(cfg.TLS.KeyFile), logger, o.now)
		if err != nil {
			return nil, err
		}
		p.Source, p.get = "files", fc.get
		logger.Info("TLS certificate from files", "cert", fc.certPath,
			"subject", fc.cert.Leaf.Subject.CommonName, "expires", fc.cert.Leaf.NotAfter)
	case cfg.TLS.ACME:
		fallback, err := selfSigned(cfg, logger, o.now())
		if err != nil {
			return nil, err
		}
		a := newACME(cfg, logger, o, fallback)
		p.Source, p.get, p.acme, p.ACME = "acme", a.get, a, a.m
		p.HTTPHandler = a.m.HTTPHandler
		logger.Info("TLS certificate from ACME", "hostname", cfg.Hostname,
			"directory", a.m.Client.DirectoryURL, "cache", cfg.DataPath("acme"))
	default:
		ss, err := newSelfSignedSource(cfg, logger, o.now)
		if err != nil {
			return nil, err
		}
		p.Source, p.get = "self-signed", ss.get
		cert := ss.cert
		logger.Warn("TLS certificate is self-signed: clients will warn; set tls.cert_file or tls.acme",
			"hostname", cfg.Hostname, "sha256", Fingerprint(cert.Leaf), "expires", cert.Leaf.NotAfter)
	}
	p.TLS = &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: p.get,
	}
	return p, nil
}

// Obtain gets the ACME certificate for the hostname now, if it is not at
// hand, and waits for it. It does nothing for other sources. Call it once
// the http listener is serving HTTPHandler.
func (p *Provider) Obtain(ctx context.Context) error {
	if p.acme == nil {
		return nil
	}
	return p.acme.obtain(ctx, p.acme.hostname)
}

// Certificate returns the certificate a client asking for serverName
// gets now ("" for the hostname).
func (p *Provider) Certificate(serverName string) (*x509.Certificate, error) {
	c, err := p.get(&tls.ClientHelloInfo{ServerName: serverName})
	if err != nil {
		return nil, err
	}
	return leaf(c)
}

// Expiry returns when the certificate cfg uses expires, without making or
// obtaining anything (for `posthorn doctor`).
func Expiry(cfg *config.Config) (time.Time, error) {
	var path string
	switch {
	case cfg.TLS.CertFile != "":
		path = cfg.Abs(cfg.TLS.CertFile)
	case cfg.TLS.ACME:
		c, err := cachedACME(cfg.DataPath("acme"), strings.ToLower(cfg.Hostname))
		if err != nil {
			return time.Time{}, fmt.Errorf("no ACME certificate for %s yet: %w", cfg.Hostname, err)
		}
		return c.NotAfter, nil
	default:
		path = cfg.DataPath(selfSignedCert)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, err
	}
	c, err := firstCertificate(data)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", path, err)
	}
	return c.NotAfter, nil
}

// Fingerprint is the SHA-256 of a certificate in colon-separated hex, as
// openssl x509 -fingerprint -sha256 shows it.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

func leaf(c *tls.Certificate) (*x509.Certificate, error) {
	if c.Leaf != nil {
		return c.Leaf, nil
	}
	if len(c.Certificate) == 0 {
		return nil, errors.New("empty certificate chain")
	}
	return x509.ParseCertificate(c.Certificate[0])
}
