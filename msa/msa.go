// Package msa is Posthorn's mail submission agent: it takes mail from a
// user's client on the submission ports (587 with STARTTLS, 465 with
// implicit TLS, RFC 6409 and RFC 8314), after AUTH, and hands it on: local
// recipients to the delivery agent, remote ones to the outbound queue.
//
// Implementation notes:
//
//   - The SMTP protocol is go-smtp's server; this package is its Backend.
//     AUTH PLAIN and LOGIN go to the auth package's SASL servers and are
//     offered only under TLS unless AllowPlaintextAuth (go-smtp's
//     AllowInsecureAuth). MAIL before AUTH is 530 5.7.0 (RFC 4954 section
//     6), a wrong password 535 5.7.8, throttling 454 4.7.0.
//   - The sender must be the user's: MAIL FROM and every From: address
//     must be the account's own address (also with a +tag), an alias whose
//     targets include the account, or an address of a domain whose
//     catch-all alias the account receives, unless that address is another
//     account or an alias of others. Otherwise 550 5.7.1 (RFC 6409 section
//     6.1 lets an MSA enforce this).
//   - The message is completed as RFC 6409 section 8 allows: Date (8.3) and
//     Message-ID (8.3) are added when missing, and a Received field is
//     prepended (RFC 5321 section 4.4) without the client's IP address, so
//     a user's home address does not travel with their mail.
//   - A bare CR, bare LF or NUL in the data is refused with 550 5.5.2, as
//     the inbound MTA does (RFC 5321 section 2.3.8; SMTP smuggling). go-smtp
//     swallows a "." followed by a lone CR at the start of a line, so that
//     one form is not seen here; it cannot smuggle anything because nothing
//     that leaves the queue has a line ending other than CRLF.
//   - Mail whose From: domain is ours is DKIM-signed with the domain's
//     active keys (the dkim package: ed25519 and RSA, relaxed/relaxed).
//   - Routing: every recipient is resolved by the delivery agent; local
//     ones are delivered with one call (durable before it returns), remote
//     ones become one queue entry (durable before it returns, grouped by
//     domain at delivery). Only then is 250 sent. Any internal error is a
//     451 4.3.0 with an id that is also logged, never go-smtp's 554.
package msa

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/internal/drain"
	"github.com/posthorn/posthorn/internal/membudget"
	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/mta"
	"github.com/posthorn/posthorn/store"
)

// Authenticator gives SASL servers that report the account logged in;
// *auth.Authenticator implements it.
type Authenticator interface {
	PlainServer(remote net.Addr, done func(account string)) sasl.Server
	LoginServer(remote net.Addr, done func(account string)) sasl.Server
}

// LocalDelivery resolves recipients and delivers to local ones;
// *mda.Agent implements it.
type LocalDelivery interface {
	Resolve(address string) (mda.Route, error)
	Deliver(ctx context.Context, env mda.Envelope, body []byte) (mda.Result, error)
}

// Server is one submission listener.
type Server struct {
	Hostname string
	// TLS is offered with STARTTLS; nil: no STARTTLS (the listener is
	// already TLS for port 465).
	TLS *tls.Config
	// ImplicitTLS says the listener is TLS-wrapped (port 465).
	ImplicitTLS        bool
	AllowPlaintextAuth bool

	Auth  Authenticator
	Store store.Store
	MDA   LocalDelivery
	Queue mda.Queue

	MaxMessageBytes int64 // 0: 50 MiB
	MaxRecipients   int   // 0: 100
	MaxLineBytes    int   // command line length (message lines have none); 0: 4096
	// Budget bounds the bytes of the message bodies being received at
	// once, shared with the server's other listeners; a message that
	// finds no room gets 452 4.3.1. nil: a budget of this server's own
	// (membudget.DefaultSize).
	Budget *membudget.Budget
	// CommandTimeout bounds each read and write; 0: 5 minutes. In a
	// message transfer (DATA, BDAT) it bounds the wait for the next
	// bytes, and the transfer as a whole takes at most DataTimeout (0:
	// 10 minutes) plus the time its bytes take at MinDataRate bytes per
	// second (0: 1024), as on port 25 (see mta.PaceData): a large
	// attachment over a slow uplink is not cut.
	CommandTimeout time.Duration
	DataTimeout    time.Duration
	MinDataRate    int64

	Logger  *slog.Logger
	Metrics *metrics.Registry

	mu     sync.Mutex
	srv    *smtp.Server
	ln     net.Listener
	drain  drain.Counter // transactions in progress
	conns  mta.Conns     // open connections
	budget *membudget.Budget
}

// Serve accepts submission connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	srv := s.smtpServer()
	s.mu.Lock()
	s.srv, s.ln = srv, ln
	s.mu.Unlock()
	if !s.ImplicitTLS {
		ln = wrapListener{ln, func(c net.Conn) net.Conn { return mta.SequenceConn(s.WrapConn(c)) }}
	}
	return srv.Serve(ln)
}

// wrapListener wraps each connection it accepts.
type wrapListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l wrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

// Shutdown stops accepting, waits until no message is being taken (or
// ctx ends), then closes every connection: an idle plaintext client is
// told 421, a message in DATA gets its reply first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv, ln := s.srv, s.ln
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	ln.Close()
	err := s.drain.Wait(ctx)
	if eerr := mta.EndSessions(ctx, srv, &s.conns); err == nil {
		err = eerr
	}
	return err
}

// WrapConn wraps a connection as the server must see it: on an
// implicit-TLS listener, the connection under the TLS (see mta.Conns).
func (s *Server) WrapConn(c net.Conn) net.Conn { return s.conns.Wrap(c, s.ImplicitTLS) }

func (s *Server) smtpServer() *smtp.Server {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = s.Hostname
	srv.TLSConfig = s.TLS
	if s.ImplicitTLS {
		srv.TLSConfig = nil // no STARTTLS on an implicit-TLS port
	}
	srv.AllowInsecureAuth = s.AllowPlaintextAuth
	srv.MaxMessageBytes = s.maxMessageBytes()
	s.budget = s.Budget
	if s.budget == nil {
		s.budget = membudget.New(membudget.DefaultSize(srv.MaxMessageBytes))
	}
	srv.MaxRecipients = s.maxRecipients()
	srv.MaxLineLength = 4096
	if s.MaxLineBytes > 0 {
		srv.MaxLineLength = s.MaxLineBytes
	}
	srv.ReadTimeout = durationOr(s.CommandTimeout, 5*time.Minute)
	srv.WriteTimeout = srv.ReadTimeout
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = errorLog{s.Logger}
	return srv
}

func (s *Server) maxMessageBytes() int64 {
	if s.MaxMessageBytes > 0 {
		return s.MaxMessageBytes
	}
	return 50 << 20
}

func (s *Server) maxRecipients() int {
	if s.MaxRecipients > 0 {
		return s.MaxRecipients
	}
	return 100
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// errorLog sends go-smtp's own messages to slog.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Printf(format string, v ...any) {
	e.l.Warn("smtp server", "msg", fmt.Sprintf(format, v...))
}

func (e errorLog) Println(v ...any) { e.l.Warn("smtp server", "msg", fmt.Sprint(v...)) }

// newSession starts the session of one connection (at its first EHLO).
func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	// RFC 5321 section 4.1.1.1: the same check as port 25, so control
	// characters never reach a log line or a Received: header.
	if !mta.ValidHELO(c.Hostname()) {
		return nil, &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
			Message: "HELO/EHLO needs a domain name or an address literal"}
	}
	mta.NoteTLS(c)
	mta.WatchCommands(c)
	id := newID()
	_, isTLS := c.TLSConnectionState()
	sess := &session{
		s:    s,
		conn: c,
		id:   id,
		tls:  isTLS,
		log:  s.Logger.With("conn", id, "proto", "submission", "remote", c.Conn().RemoteAddr().String()),
	}
	return sess, nil
}
