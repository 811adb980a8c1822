package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/config"
)

// Names of the self-signed certificate's files in data_dir.
const (
	selfSignedCert = "selfsigned-cert.pem"
	selfSignedKey  = "selfsigned-key.pem"
)

const (
	selfSignedValidity = 365 * 24 * time.Hour
	// A self-signed certificate this close to expiry is remade at start.
	selfSignedRenew = 30 * 24 * time.Hour
)

// selfSignedSource serves the self-signed certificate and remakes it when
// it nears expiry in a long-running server (checked at most hourly).
type selfSignedSource struct {
	cfg    *config.Config
	logger *slog.Logger
	now    func() time.Time

	mu        sync.Mutex
	cert      *tls.Certificate
	lastCheck time.Time
}

func newSelfSignedSource(cfg *config.Config, logger *slog.Logger, now func() time.Time) (*selfSignedSource, error) {
	cert, err := selfSigned(cfg, logger, now())
	if err != nil {
		return nil, err
	}
	return &selfSignedSource{cfg: cfg, logger: logger, now: now, cert: cert, lastCheck: now()}, nil
}

// get implements tls.Config.GetCertificate.
func (s *selfSignedSource) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if now.Sub(s.lastCheck) < time.Hour {
		return s.cert, nil
	}
	s.lastCheck = now
	if unusable(s.cert.Leaf, s.cfg.Hostname, now) == "" {
		return s.cert, nil
	}
	cert, err := selfSigned(s.cfg, s.logger, now)
	if err != nil {
		s.logger.Error("could not remake the self-signed certificate", "err", err)
		return s.cert, nil
	}
	s.cert = cert
	s.logger.Warn("TLS certificate is self-signed (remade)", "sha256", Fingerprint(cert.Leaf), "expires", cert.Leaf.NotAfter)
	return s.cert, nil
}

// selfSigned loads the self-signed certificate from data_dir, or makes it
// when it is missing, unreadable as PEM, for another hostname, or about to
// expire.
func selfSigned(cfg *config.Config, logger *slog.Logger, now time.Time) (*tls.Certificate, error) {
	certPath, keyPath := cfg.DataPath(selfSignedCert), cfg.DataPath(selfSignedKey)
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	switch {
	case err == nil:
		if why := unusable(cert.Leaf, cfg.Hostname, now); why != "" {
			logger.Info("remaking the self-signed certificate", "reason", why)
			break
		}
		return &cert, nil
	case errors.Is(err, fs.ErrNotExist):
		logger.Info("making a self-signed certificate", "hostname", cfg.Hostname, "cert", certPath)
	case isPermission(err):
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	default:
		logger.Warn("remaking the self-signed certificate", "reason", err.Error())
	}
	certPEM, keyPEM, err := makeSelfSigned(cfg.Hostname, now)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Abs(cfg.DataDir), 0o700); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, err
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &cert, nil
}

func isPermission(err error) bool { return errors.Is(err, fs.ErrPermission) }

// unusable says why a stored self-signed certificate must be remade, or "".
func unusable(c *x509.Certificate, hostname string, now time.Time) string {
	if c == nil {
		return "no leaf certificate"
	}
	if err := c.VerifyHostname(hostname); err != nil {
		return "made for another hostname"
	}
	if now.Add(selfSignedRenew).After(c.NotAfter) {
		return "expires soon"
	}
	return ""
}

// makeSelfSigned returns PEM certificate and PKCS#8 key for hostname.
func makeSelfSigned(hostname string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname, Organization: []string{"Posthorn self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, n := range []string{hostname, "localhost"} {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if !containsFold(tmpl.DNSNames, n) {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	return certPEM, keyPEM, nil
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// writeFileAtomic writes data to a temporary file in the same directory,
// syncs it and renames it over path, so a crash leaves the old or the new
// file, never half of one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// firstCertificate parses the first CERTIFICATE block of PEM data.
func firstCertificate(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no PEM certificate found")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}
