// Package certs provides the TLS configuration: the certificate and key
// from the config, or a self-signed certificate for the hostname made in
// data_dir on first start. TLS 1.2 is the minimum.
//
// CONTRACT (filled in by the implementation; signature fixed).
package certs

import (
	"crypto/tls"
	"log/slog"

	"github.com/posthorn/posthorn/config"
)

// Load returns the server TLS configuration for cfg.
func Load(cfg *config.Config, logger *slog.Logger) (*tls.Config, error) {
	panic("not implemented")
}
