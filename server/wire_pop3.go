package server

import (
	"time"

	"github.com/posthorn/posthorn/maa/pop3"
)

// wirePOP3 returns the POP3 listeners (110 with STLS, 995 with implicit
// TLS). Owned by maa/pop3. Both listeners share one pop3.Server, so the
// maildrop lock ([IN-USE]) covers them both.
func (s *Server) wirePOP3() ([]service, []worker, error) {
	srv := &pop3.Server{
		Hostname:           s.Config.Hostname,
		Store:              s.Store,
		Auth:               s.Auth.For("pop3"),
		TLSConfig:          s.TLS,
		AllowPlaintextAuth: s.Config.AllowPlaintextAuth,
		MaxLineBytes:       s.Config.Limits.MaxLineBytes,
		// RFC 1939 section 3: the autologout timer is at least 10
		// minutes, whatever limits.command_timeout says.
		IdleTimeout: max(s.Config.Limits.CommandTimeout.Duration, 10*time.Minute),
		Logger:      s.Logger.With("component", "pop3"),
		Metrics:     s.Metrics,
	}
	return []service{
		{name: "pop3", addr: s.Config.Listen.POP3, serve: srv.Serve, shutdown: srv.Shutdown},
		{name: "pop3s", addr: s.Config.Listen.POP3S, implicitTLS: true, serve: srv.Serve, shutdown: srv.Shutdown},
	}, nil, nil
}
