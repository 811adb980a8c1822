package server

import (
	"github.com/posthorn/posthorn/mta"
)

// wireMTA returns the inbound SMTP listener (port 25).
func (s *Server) wireMTA() ([]service, []worker, error) {
	c := s.Config
	m := &mta.Server{
		Hostname:         c.Hostname,
		MDA:              s.MDA,
		Resolver:         s.Resolver,
		TLS:              s.TLS,
		Logger:           s.Logger.With("component", "mta"),
		Metrics:          s.Metrics,
		MaxMessageBytes:  c.MaxMessageBytes,
		MaxRecipients:    c.Limits.MaxRecipients,
		MaxLineBytes:     c.Limits.MaxLineBytes,
		MaxBadRecipients: c.Limits.MaxBadRecipients,
		Conns:            s.conns,  // shared with the other mail listeners
		Budget:           s.budget, // likewise
		CommandTimeout:   c.Limits.CommandTimeout.Duration,
		DataTimeout:      c.Limits.DataTimeout.Duration,
	}
	return []service{{name: "smtp", addr: c.Listen.SMTP, serve: m.Serve, shutdown: m.Shutdown}}, nil, nil
}
