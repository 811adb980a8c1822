package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// reloadInterval is how often, at most, the certificate files are checked
// for a change.
const reloadInterval = time.Minute

// fileCert serves a certificate from PEM files and reloads it when they
// change on disk.
type fileCert struct {
	certPath, keyPath string
	logger            *slog.Logger
	now               func() time.Time

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     string // digest of both files when loaded (fileStamp)
	lastCheck time.Time
}

func loadFiles(certPath, keyPath string, logger *slog.Logger, now func() time.Time) (*fileCert, error) {
	f := &fileCert{certPath: certPath, keyPath: keyPath, logger: logger, now: now}
	stamp, err := f.fileStamp()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file %s and tls.key_file %s: %w", certPath, keyPath, err)
	}
	f.cert, f.stamp, f.lastCheck = &cert, stamp, now()
	return f, nil
}

// get implements tls.Config.GetCertificate.
func (f *fileCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := f.now(); now.Sub(f.lastCheck) >= reloadInterval || now.Before(f.lastCheck) {
		f.lastCheck = now
		f.reload()
	}
	return f.cert, nil
}

// reload loads the files again if they changed. A pair that does not load
// (certbot may be between writing the two files) keeps the old
// certificate; the next check tries again.
func (f *fileCert) reload() {
	stamp, err := f.fileStamp()
	if err != nil {
		f.logger.Warn("TLS certificate files unreadable; keeping the loaded certificate", "err", err)
		return
	}
	if stamp == f.stamp {
		return
	}
	cert, err := tls.LoadX509KeyPair(f.certPath, f.keyPath)
	if err != nil {
		f.logger.Warn("TLS certificate files changed but do not load; keeping the loaded certificate", "err", err)
		return
	}
	f.cert, f.stamp = &cert, stamp
	f.logger.Info("TLS certificate reloaded", "cert", f.certPath,
		"subject", cert.Leaf.Subject.CommonName, "expires", cert.Leaf.NotAfter)
}

// fileStamp is a digest of both files' contents: a renewal is seen
// whatever happens to their sizes and modification times (which may not
// change between two writes in the same clock tick, or may be kept by a
// copy).
func (f *fileCert) fileStamp() (string, error) {
	h := sha256.New()
	for _, p := range []string{f.certPath, f.keyPath} {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%d;", len(b))
		h.Write(b)
	}
	return string(h.Sum(nil)), nil
}
