package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/posthorn/posthorn/config"
)

// acmeRetry is the wait after a failed attempt to obtain a certificate
// before a handshake starts another one.
const acmeRetry = 10 * time.Minute

// acmeSource serves certificates from an autocert.Manager. A name whose
// certificate is not at hand gets the fallback (self-signed) certificate
// while it is obtained in the background: a mail client never waits for
// the CA in its handshake.
type acmeSource struct {
	m        *autocert.Manager
	hostname string
	fallback *tls.Certificate
	logger   *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	ready    map[string]bool      // names with a valid certificate in the manager
	failedAt map[string]time.Time // last failure per name
	busy     map[string]chan struct{}
	lastErr  map[string]error
}

func newACME(cfg *config.Config, logger *slog.Logger, o options, fallback *tls.Certificate) *acmeSource {
	hostname := strings.ToLower(strings.TrimSuffix(cfg.Hostname, "."))
	allowed := append([]string{hostname}, o.hosts...)
	for i := range allowed {
		allowed[i] = strings.ToLower(strings.TrimSuffix(allowed[i], "."))
	}
	extra := o.hostPolicy
	policy := func(_ context.Context, host string) error {
		// An HTTP-01 request's Host may carry a port (a test CA, or an
		// http listener on another port than 80).
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.ToLower(strings.TrimSuffix(host, "."))
		if slices.Contains(allowed, host) || (extra != nil && extra(host)) {
			return nil
		}
		return fmt.Errorf("acme: host %q is not served here", host)
	}
	client := &acme.Client{DirectoryURL: autocert.DefaultACMEDirectory, UserAgent: "posthorn"}
	if cfg.TLS.ACMEDirectory != "" {
		client.DirectoryURL = cfg.TLS.ACMEDirectory
	}
	if o.httpClient != nil {
		client.HTTPClient = o.httpClient
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(cfg.DataPath("acme")),
		HostPolicy: policy,
		Email:      cfg.TLS.ACMEEmail,
		Client:     client,
	}
	a := &acmeSource{
		m: m, hostname: hostname, fallback: fallback, logger: logger, now: o.now,
		ready: map[string]bool{}, failedAt: map[string]time.Time{},
		busy: map[string]chan struct{}{}, lastErr: map[string]error{},
	}
	if c, err := cachedACME(cfg.DataPath("acme"), hostname); err == nil && a.now().Before(c.NotAfter) {
		a.ready[hostname] = true
	}
	return a
}

// get implements tls.Config.GetCertificate. A client that sends no SNI, or
// a name we do not serve, gets the hostname's certificate.
func (a *acmeSource) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto {
		return a.m.GetCertificate(hello) // a TLS-ALPN-01 validation (RFC 8737)
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" || a.m.HostPolicy(context.Background(), name) != nil {
		name = a.hostname
	}
	a.mu.Lock()
	ready := a.ready[name]
	a.mu.Unlock()
	if ready {
		c, err := a.m.GetCertificate(ecdsaHello(name))
		if err == nil {
			return c, nil
		}
		a.logger.Warn("ACME certificate unavailable; serving the self-signed one", "name", name, "err", err)
	}
	a.start(name)
	return a.fallback, nil
}

// ecdsaHello is the hello autocert is asked with: one that supports ECDSA,
// so that only the ECDSA certificate is ever obtained. (autocert would
// otherwise obtain an RSA one, blocking the handshake, for a client that
// offers no ECDSA; the self-signed fallback is ECDSA too, and every TLS 1.2
// client in use supports ECDSA P-256.)
func ecdsaHello(name string) *tls.ClientHelloInfo {
	return &tls.ClientHelloInfo{
		ServerName:   name,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	}
}

// start obtains name's certificate in the background unless that is under
// way or failed less than acmeRetry ago.
func (a *acmeSource) start(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.busy[name]; ok || a.ready[name] {
		return
	}
	if t, ok := a.failedAt[name]; ok && a.now().Sub(t) < acmeRetry {
		return
	}
	done := make(chan struct{})
	a.busy[name] = done
	go a.run(name, done)
}

func (a *acmeSource) run(name string, done chan struct{}) {
	_, err := a.m.GetCertificate(ecdsaHello(name))
	a.mu.Lock()
	delete(a.busy, name)
	a.lastErr[name] = err
	if err == nil {
		a.ready[name] = true
		delete(a.failedAt, name)
	} else {
		a.failedAt[name] = a.now()
	}
	a.mu.Unlock()
	close(done)
	if err != nil {
		a.logger.Error("ACME: could not obtain a certificate; retrying later", "name", name, "err", err)
	} else {
		a.logger.Info("ACME: certificate obtained", "name", name)
	}
}

// obtain starts or joins obtaining name's certificate and waits for it.
func (a *acmeSource) obtain(ctx context.Context, name string) error {
	for {
		a.mu.Lock()
		if a.ready[name] {
			a.mu.Unlock()
			return nil
		}
		done, ok := a.busy[name]
		if !ok {
			delete(a.failedAt, name) // an explicit request does not wait for acmeRetry
			a.mu.Unlock()
			a.start(name)
			continue
		}
		a.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
		a.mu.Lock()
		err := a.lastErr[name]
		a.mu.Unlock()
		return err
	}
}

// cachedACME reads the ECDSA certificate autocert cached for name (the
// cache entry is the private key and the chain, PEM, under the name).
func cachedACME(dir, name string) (*x509.Certificate, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errors.New("not in the ACME cache")
		}
		return nil, err
	}
	return firstCertificate(data)
}
