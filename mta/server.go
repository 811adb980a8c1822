// Package mta is Posthorn's inbound mail transfer agent: the SMTP server on
// port 25 that takes mail for our domains from other servers, verifies
// SPF, DKIM and DMARC, and hands it to the delivery agent (package mda).
// The outbound queue lives in mta/outbound.
//
// Implementation notes:
//
//   - The protocol engine is go-smtp's server; this package is its Backend.
//     go-smtp answers a plain Go error from Data with a permanent 554, so
//     every error a session returns goes through reply(), which turns
//     anything that is not already an *smtp.SMTPError into 451 4.3.0 with
//     an id that is also logged (reply.go).
//   - No open relay (RFC 5321 section 3.6.1, section 7.1): RCPT is accepted
//     only for what mda.Resolve resolves; other domains get 550 5.7.1,
//     unknown users of ours 550 5.1.1, relay forms 550 5.7.1. After
//     MaxBadRecipients refusals the session is cut with 421.
//   - Strict line endings against SMTP smuggling: the DATA body is read by
//     our own strict reader (data.go) straight from go-smtp's buffered
//     reader, because go-smtp's dot reader silently drops a ".\r" that is
//     not followed by "\n". Any bare CR, bare LF or NUL gets 550 5.5.2 and
//     the connection is closed; content sent before the 354 (pipelining
//     past DATA, RFC 2920 section 3.1) gets 554 5.5.0 and is closed too.
//   - 250 only after mda.Deliver returned, which is after the store's
//     fsynced commit (DESIGN.md: 250 means durable).
//   - Timeouts follow RFC 5321 section 4.5.3.2: CommandTimeout between
//     commands; in DATA the deadline is DataTimeout plus the time the bytes
//     received so far would take at MinDataRate, so a slow but steady
//     sender of a large message is not cut and a trickling one is.
//   - TXT answers (SPF, DKIM keys, DMARC) are cached per Server for
//     TXTCacheTTL (dnscache.go); temporary DNS failures are not cached.
//   - Connection caps are enforced at accept: over the global or per-IP
//     cap the client gets 421 4.7.0 and is closed before any session.
//   - A body is held in memory until it is stored. The bodies being
//     received at once share a budget (package membudget), with the
//     submission ports and IMAP APPEND when the server is wired so: one
//     that finds no room is read to its end without being kept and gets
//     452 4.3.1, so that many clients sending large messages together
//     cannot take all the memory.
package mta

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/internal/connlimit"
	"github.com/posthorn/posthorn/internal/drain"
	"github.com/posthorn/posthorn/internal/membudget"
	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/metrics"
)

// Server is the inbound SMTP server. Fields are read when Serve is called.
type Server struct {
	Hostname string            // greeting, Received:, Authentication-Results authserv-id
	MDA      *mda.Agent        // resolves recipients and delivers
	Resolver *net.Resolver     // all DNS (SPF, DKIM, DMARC); nil: the system's
	TLS      *tls.Config       // STARTTLS; nil: not offered
	Logger   *slog.Logger      // nil: discard
	Metrics  *metrics.Registry // nil: none

	MaxMessageBytes     int64 // 0: 50 MiB
	MaxRecipients       int   // 0: 100
	MaxLineBytes        int   // command line limit (message lines have none); 0: 4096
	MaxBadRecipients    int   // 0: 10
	MaxConnections      int   // 0: 4000
	MaxConnectionsPerIP int   // 0: 50
	// Conns, if set, counts the connections instead (a limiter shared
	// with other listeners); MaxConnections and MaxConnectionsPerIP are
	// then unused.
	Conns          *connlimit.Limiter
	CommandTimeout time.Duration
	DataTimeout    time.Duration
	MinDataRate    int64 // bytes per second in DATA; 0: 1024
	// DNSTimeout bounds the SPF/DKIM/DMARC checks of one message; 0: 20s.
	DNSTimeout time.Duration
	// TXTCacheTTL keeps TXT answers (SPF, DKIM, DMARC) this long; 0: 1m,
	// negative: no cache.
	TXTCacheTTL time.Duration
	// Budget bounds the bytes of the message bodies being received at
	// once, over all connections, and is shared with the server's other
	// listeners; nil: a budget of MaxDataInFlight of this server's own.
	Budget *membudget.Budget
	// MaxDataInFlight is the size of the server's own budget (unused
	// with Budget); 0: four times MaxMessageBytes, and at least 256 MiB.
	MaxDataInFlight int64

	mu        sync.Mutex
	engine    *smtp.Server
	listeners []net.Listener
	closed    bool
	drain     drain.Counter // transactions in progress
	conns     Conns         // open connections
	dns       spf.DNSResolver
	budget    *membudget.Budget
}

func (s *Server) defaults() {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Resolver == nil {
		s.Resolver = net.DefaultResolver
	}
	setDefault(&s.MaxMessageBytes, 50<<20)
	setDefault(&s.MaxRecipients, 100)
	setDefault(&s.MaxLineBytes, 4096)
	setDefault(&s.MaxBadRecipients, 10)
	setDefault(&s.MaxConnections, 4000)
	setDefault(&s.MaxConnectionsPerIP, 50)
	setDefault(&s.CommandTimeout, 5*time.Minute)
	setDefault(&s.DataTimeout, 10*time.Minute)
	setDefault(&s.MinDataRate, 1024)
	setDefault(&s.DNSTimeout, 20*time.Second)
	setDefault(&s.TXTCacheTTL, time.Minute)
	s.budget = s.Budget
	if s.budget == nil {
		setDefault(&s.MaxDataInFlight, membudget.DefaultSize(s.MaxMessageBytes))
		s.budget = membudget.New(s.MaxDataInFlight)
	}
	s.dns = s.Resolver
	if s.TXTCacheTTL > 0 {
		s.dns = newTXTCache(s.Resolver, s.TXTCacheTTL, 10000)
	}
	if s.Hostname == "" {
		s.Hostname = "localhost"
	}
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// Serve accepts connections on ln until Shutdown or ln is closed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return smtp.ErrServerClosed
	}
	if s.engine == nil {
		s.defaults()
		if s.Conns == nil {
			s.Conns = connlimit.New(s.MaxConnections, s.MaxConnectionsPerIP)
		}
		e := smtp.NewServer(backend{s})
		e.Domain = s.Hostname
		e.MaxMessageBytes = s.MaxMessageBytes
		e.MaxRecipients = s.MaxRecipients
		e.MaxLineLength = s.MaxLineBytes
		e.ReadTimeout = s.CommandTimeout
		e.WriteTimeout = s.CommandTimeout
		e.EnableSMTPUTF8 = true
		e.TLSConfig = s.TLS
		e.ErrorLog = logAdapter{s.Logger}
		s.engine = e
	}
	e := s.engine
	cl := s.capListener(ln)
	s.listeners = append(s.listeners, cl)
	s.mu.Unlock()
	err := e.Serve(cl)
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, lets messages being received or delivered
// finish until ctx is done, then closes every connection, telling an idle
// plaintext client 421 (idle sessions would otherwise hold a shutdown for
// their whole command timeout).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	e, lns := s.engine, s.listeners
	s.mu.Unlock()
	if e == nil {
		return nil
	}
	for _, ln := range lns {
		ln.Close()
	}
	err := s.drain.Wait(ctx)
	if eerr := EndSessions(ctx, e, &s.conns); err == nil {
		err = eerr
	}
	return err
}

// EndSessions ends the sessions of an SMTP server (port 25's, or
// submission's) whose transactions have drained, or that ran out of
// time: it closes their connections (Conns.Hangup) and waits, as long as
// ctx lets it, for go-smtp to see them end; go-smtp's Close then ends
// what is left.
func EndSessions(ctx context.Context, e *smtp.Server, conns *Conns) error {
	conns.Hangup()
	e.Shutdown(ctx) // its error is that of closing listeners closed already
	if err := ctx.Err(); err != nil {
		e.Close()
		return err
	}
	return nil
}

// capListener enforces the connection caps before go-smtp sees a
// connection.
func (s *Server) capListener(ln net.Listener) net.Listener {
	return &connlimit.Listener{
		Listener: ln,
		Limiter:  s.Conns,
		Refusal:  connlimit.SMTPRefusal(s.Hostname),
		Refused: func(ip string) {
			s.Logger.Warn("connection refused: too many connections", "remote", ip)
			s.Metrics.Inc(metrics.Rejected, "via", "smtp", "reason", "connections")
		},
		Wrap: func(c net.Conn) net.Conn {
			s.Metrics.Inc(metrics.Connections, "protocol", "smtp")
			return newSequenceConn(&readAheadConn{Conn: s.conns.Wrap(c, false)})
		},
		Closed: func() { s.Metrics.Dec(metrics.Connections, "protocol", "smtp") },
	}
}

// backend is go-smtp's Backend: one session per connection.
type backend struct{ srv *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	// RFC 5321 section 4.1.1.1: the argument is a domain or an address
	// literal.
	if !ValidHELO(c.Hostname()) {
		return nil, errBadHelo
	}
	NoteTLS(c)
	WatchCommands(c)
	return newSession(b.srv, c), nil
}

// logAdapter sends go-smtp's own error log to slog.
type logAdapter struct{ l *slog.Logger }

func (a logAdapter) Printf(format string, v ...any) {
	a.l.Warn("smtp engine", "msg", sprintf(format, v...))
}

func (a logAdapter) Println(v ...any) { a.l.Warn("smtp engine", "msg", sprint(v...)) }
