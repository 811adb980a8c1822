// Package pop3 is Posthorn's POP3 server, written here because there is no
// mainstream Go POP3 server library. It serves one account's INBOX as a
// POP3 maildrop.
//
// Implementation notes:
//
//   - Protocol: RFC 1939 (POP3), RFC 2449 (CAPA and extended response
//     codes), RFC 2595 (STLS), RFC 5034 (SASL AUTH, PLAIN and LOGIN with an
//     initial response), RFC 3206 ([SYS/TEMP], [SYS/PERM], [AUTH]).
//   - A session has an explicit state (AUTHORIZATION, TRANSACTION, UPDATE,
//     RFC 1939 section 3) and a table (commands.go) says which commands each
//     state accepts.
//   - The maildrop is a snapshot of INBOX taken at login: message numbers
//     are stable for the session. DELE only marks; QUIT in the TRANSACTION
//     state enters UPDATE and removes the marked messages in one
//     Store.Expunge call (RFC 1939 section 6), which IMAP sessions see as
//     expunge events. A failed expunge answers -ERR [SYS/TEMP] and nothing
//     is lost.
//   - The session subscribes to the account's store events before taking
//     the snapshot, so a message expunged by IMAP meanwhile is known and
//     RETR/TOP answer a clean -ERR for it.
//   - Unique ids (UIDL) are "UIDVALIDITY.UID" of INBOX: UIDs are never
//     reused within a UIDVALIDITY, so ids are stable across sessions and
//     never reused.
//   - Sizes (STAT, LIST) are the stored message sizes: the octets RETR sends
//     before dot-stuffing (the store keeps CRLF line endings), which is what
//     RFC 1939 section 5 calls the "exact size" and what Dovecot reports.
//   - RETR and TOP stream the message from the store's chunks through a
//     dot-stuffing writer (stuff.go) into a bufio.Writer; a message is
//     never loaded whole. Replies are flushed only when no pipelined
//     command is waiting (RFC 2449 section 6.6, PIPELINING).
//   - One account has at most one POP3 session at a time (an in-process
//     lock map on the Server); a second login gets -ERR [IN-USE]
//     (RFC 2449 section 8.1.2).
//   - USER/PASS and AUTH are refused before TLS unless AllowPlaintextAuth;
//     CAPA then omits USER and SASL, as Dovecot does. After STLS, any
//     plaintext the client sent behind the command is thrown away.
//   - Limits: command lines longer than MaxLineBytes get -ERR and the
//     connection is closed; the autologout timer is IdleTimeout, at least
//     10 minutes (RFC 1939 section 3); each connection recovers its panics.
package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/store"
)

// Defaults for zero-valued Server fields.
const (
	// DefaultIdleTimeout is the autologout timer: RFC 1939 section 3 says
	// it MUST be at least 10 minutes.
	DefaultIdleTimeout  = 10 * time.Minute
	DefaultMaxLineBytes = 4096
	// minLineBytes leaves room for a SASL PLAIN response of maximum size
	// (RFC 4616: 3 x 255 octets, base64-encoded).
	minLineBytes = 1100
	// handshakeTimeout bounds a TLS handshake after STLS.
	handshakeTimeout = 30 * time.Second
)

// Authenticator checks credentials. *auth.Authenticator implements it; the
// errors it returns are tested with errors.Is against
// auth.ErrInvalidCredentials and auth.ErrThrottled.
type Authenticator interface {
	Authenticate(ctx context.Context, remote net.Addr, username, password string) (string, error)
	PlainServer(remote net.Addr, done func(account string)) sasl.Server
	LoginServer(remote net.Addr, done func(account string)) sasl.Server
}

// Server is a POP3 server. Serve may be called with several listeners (for
// example 110 with STLS and 995 wrapped in tls.NewListener); they share
// the maildrop locks.
type Server struct {
	// Hostname is announced in the greeting.
	Hostname string
	Store    store.Store
	Auth     Authenticator
	// TLSConfig enables STLS; nil: no STLS.
	TLSConfig *tls.Config
	// AllowPlaintextAuth lets USER/PASS and AUTH work without TLS.
	AllowPlaintextAuth bool
	// MaxLineBytes bounds a command line; 0: DefaultMaxLineBytes.
	MaxLineBytes int
	// IdleTimeout is the autologout timer; 0: DefaultIdleTimeout.
	IdleTimeout time.Duration
	Logger      *slog.Logger
	Metrics     *metrics.Registry

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	locked    map[string]*session // account -> session holding its maildrop
	wg        sync.WaitGroup
	closing   atomic.Bool
	nextID    atomic.Uint64
}

// ErrServerClosed is returned by Serve after Shutdown; it wraps
// net.ErrClosed.
var ErrServerClosed = fmt.Errorf("pop3: server closed: %w", net.ErrClosed)

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) maxLine() int {
	n := s.MaxLineBytes
	if n <= 0 {
		n = DefaultMaxLineBytes
	}
	return max(n, minLineBytes)
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout <= 0 {
		return DefaultIdleTimeout
	}
	return s.IdleTimeout
}

// Serve accepts connections on ln until it is closed or Shutdown is called.
// A listener wrapped by tls.NewListener gives implicit-TLS (pop3s)
// sessions.
func (s *Server) Serve(ln net.Listener) error {
	if s.closing.Load() {
		return ErrServerClosed
	}
	s.mu.Lock()
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.startSession(conn)
	}
}

// ServeConn runs one session on conn and returns when it ends (tests and
// fuzzing; Serve uses the same path).
func (s *Server) ServeConn(conn net.Conn) {
	ss := s.newSession(conn)
	if ss == nil {
		return
	}
	s.wg.Add(1)
	ss.run()
}

func (s *Server) startSession(conn net.Conn) {
	ss := s.newSession(conn)
	if ss == nil {
		return
	}
	s.wg.Add(1)
	go ss.run()
}

func (s *Server) newSession(conn net.Conn) *session {
	id := fmt.Sprintf("p%x-%d", time.Now().Unix()&0xffffff, s.nextID.Add(1))
	ss := newSession(s, conn, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		conn.Close()
		return nil
	}
	if s.sessions == nil {
		s.sessions = map[*session]struct{}{}
	}
	s.sessions[ss] = struct{}{}
	return ss
}

func (s *Server) endSession(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
	s.wg.Done()
}

// lock takes the maildrop lock of an account for ss; false: another
// session holds it.
func (s *Server) lock(account string, ss *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locked == nil {
		s.locked = map[string]*session{}
	}
	if other, ok := s.locked[account]; ok && other != ss {
		return false
	}
	s.locked[account] = ss
	return true
}

// unlock releases the maildrop lock of an account held by ss.
func (s *Server) unlock(account string, ss *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locked[account] == ss {
		delete(s.locked, account)
	}
}

// Shutdown stops accepting connections, interrupts sessions waiting for a
// command (they end without entering UPDATE, RFC 1939 section 6), lets a
// command in progress finish, and closes what is left when ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	var errs []error
	for ln := range s.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for ss := range s.sessions {
		// A session re-arms its deadline and then checks closing, so
		// this cannot be lost (see session.readCommand).
		ss.raw.SetReadDeadline(time.Now())
		ss.cancel() // ends a login delay
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		for ss := range s.sessions {
			ss.raw.Close()
		}
		s.mu.Unlock()
		<-done
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}
