package server

import (
	"crypto/tls"
	"fmt"

	"github.com/posthorn/posthorn/msa"
	"github.com/posthorn/posthorn/mta/outbound"
)

// wireMSA returns the submission listeners (587 with STARTTLS, 465 with
// implicit TLS) and the outbound queue's workers. The queue also takes the
// delivery agent's remote alias targets and the admin commands' retry/drop.
func (s *Server) wireMSA() ([]service, []worker, error) {
	c := s.Config
	var roots *tls.Config // nil: the system's
	if pool, err := c.OutboundRoots(); err != nil {
		return nil, nil, fmt.Errorf("outbound.ca_file: %w", err)
	} else if pool != nil {
		roots = &tls.Config{RootCAs: pool}
	}
	q := &outbound.Queue{
		Store:             s.Store,
		Resolver:          s.Resolver,
		Hostname:          c.Hostname,
		MXPort:            c.Outbound.MXPort,
		STSPort:           c.Outbound.MTASTSPort,
		TLS:               roots,
		Smarthost:         c.Outbound.Smarthost,
		SmarthostUser:     c.Outbound.SmarthostUser,
		SmarthostPassword: c.Outbound.SmarthostPassword,
		RetryInitial:      c.Outbound.RetryInitial.Duration,
		RetryMax:          c.Outbound.RetryMax.Duration,
		GiveUpAfter:       c.Outbound.GiveUpAfter.Duration,
		DelayNotice:       c.Outbound.DelayNotice.Duration,
		Workers:           c.Outbound.Workers,
		MDA:               s.MDA,
		Logger:            s.Logger.With("component", "outbound"),
		Metrics:           s.Metrics,
	}
	s.MDA.Queue = q
	s.queue = q
	newMSA := func(implicit bool) *msa.Server {
		return &msa.Server{
			Hostname:           c.Hostname,
			TLS:                s.TLS,
			ImplicitTLS:        implicit,
			AllowPlaintextAuth: c.AllowPlaintextAuth,
			Auth:               s.Auth.For("submission"),
			Store:              s.Store,
			MDA:                s.MDA,
			Queue:              q,
			MaxMessageBytes:    c.MaxMessageBytes,
			Budget:             s.budget,
			MaxRecipients:      c.Limits.MaxRecipients,
			MaxLineBytes:       c.Limits.MaxLineBytes,
			CommandTimeout:     c.Limits.CommandTimeout.Duration,
			DataTimeout:        c.Limits.DataTimeout.Duration,
			Logger:             s.Logger.With("component", "msa"),
			Metrics:            s.Metrics,
		}
	}
	sub, subs := newMSA(false), newMSA(true)
	return []service{
			{name: "submission", addr: c.Listen.Submission, serve: sub.Serve, shutdown: sub.Shutdown},
			{name: "submissions", addr: c.Listen.Submissions, implicitTLS: true, serve: subs.Serve, shutdown: subs.Shutdown, wrapConn: subs.WrapConn},
		}, []worker{
			{name: "outbound", run: q.Run},
		}, nil
}
