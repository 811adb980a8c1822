package server

import (
	"github.com/posthorn/posthorn/maa/imap"
)

// wireIMAP returns the IMAP listeners (143 with STARTTLS, 993 with
// implicit TLS). One imap.Server serves both, so they share the mailbox
// trackers. The implicit-TLS listener is marked implicitTLS false on
// purpose: imap.Server.ServeTLS does the TLS itself above a connection
// wrapper that bounds every read deadline by limits.imap_idle_timeout,
// which it could not do under an already wrapped tls.Listener.
func (s *Server) wireIMAP() ([]service, []worker, error) {
	srv := &imap.Server{
		Store:              s.Store,
		Auth:               s.Auth.For("imap"),
		Logger:             s.Logger.With("component", "imap"),
		Metrics:            s.Metrics,
		TLS:                s.TLS,
		AllowPlaintextAuth: s.Config.AllowPlaintextAuth,
		MaxMessageBytes:    s.Config.MaxMessageBytes,
		Budget:             s.budget,
		IdleTimeout:        s.Config.Limits.IMAPIdleTimeout.Duration,
	}
	return []service{
		{name: "imap", addr: s.Config.Listen.IMAP, serve: srv.Serve, shutdown: srv.Shutdown},
		{name: "imaps", addr: s.Config.Listen.IMAPS, serve: srv.ServeTLS, shutdown: srv.Shutdown},
	}, nil, nil
}
