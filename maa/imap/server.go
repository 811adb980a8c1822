// Package imap is Posthorn's IMAP server: IMAP4rev2 and IMAP4rev1 on
// go-imap v2's imapserver, backed by the store.
//
// Implementation notes:
//
//   - Protocol framing, parsing and response encoding are imapserver's
//     (github.com/emersion/go-imap/v2 v2.0.0-beta.8); this package supplies
//     the Session (session.go and the files per command group) and the
//     listeners. Capabilities are set in caps(): only what works end to end.
//   - Literals and lines. beta.8 advertises LITERAL- (RFC 7888) before
//     login and, as caps() asks, LITERAL+ after it. When a command fails
//     before it reads its non-synchronising literal (a syntax error, or a
//     size it refuses), beta.8 answers and then parses the literal's data
//     as commands; a synchronising literal over 4096 bytes outside APPEND
//     makes it wait forever; a command over 50 KiB leaves the rest of its
//     line to run as a command; a line without a tag and a name ends the
//     connection without a word. guard.go watches the plaintext the
//     client sends, before the parser, a line at a time, and the
//     responses: the data of a literal whose command was answered before
//     reading it is skipped with the rest of the command; a line without
//     a command gets BAD; the rest gets BAD and BYE before the connection
//     is closed. To see the plaintext of implicit TLS, ServeTLS does the
//     TLS itself. Every connection has an imapserver.Server of its own
//     (InsecureAuth there only means "not a *tls.Conn of imapserver's"),
//     whose logger tells the connection's guard the errors imapserver
//     would answer with NO [SERVERBUG]: most are the client's (a mailbox
//     name that is not mUTF-7, an invalid sequence set or date), and
//     cmderr.go answers them with BAD or NO [CANNOT]. STARTTLS on port 143
//     is done by the guard too (guard.go), not by imapserver, which would
//     wrap the connection above the guard.
//   - The LIST pattern matcher is our own (names.go): imapserver.MatchList
//     is exponential in the number of wildcards.
//   - Mailbox state shared between sessions lives in one tracker per
//     selected mailbox (tracker.go), fed by store.Subscribe events and by
//     the sessions' own changes, applied idempotently. A session's view is
//     "the tracker's messages up to the highest UID it was told about, plus
//     the expunged messages it was not told about yet", so an idle session
//     costs a few words whatever the mailbox size (RFC 9051 section 7.5.1:
//     no EXPUNGE during FETCH, STORE, SEARCH).
//   - ENVELOPE and BODYSTRUCTURE come from store.BlobInfo, parsed once at
//     delivery. Body sections are located by scanning the MIME structure
//     over the store's chunked io.ReaderAt (section.go) and streamed; a
//     whole message is never loaded for a FETCH.
//   - Inactivity: imapserver sets its own deadlines (35 minutes idle); the
//     listener wraps each connection so that no read deadline exceeds
//     IdleTimeout (RFC 9051 section 5.4: at least 30 minutes).
//     Implicit TLS (ServeTLS) is layered above that wrapper, so the TLS
//     handshake is bounded too.
//   - imapserver flushes after every response; FETCH runs "corked" (the
//     connection wrapper batches writes up to 64 KiB), so a 10,000-message
//     header sync is a few hundred writes instead of 10,000.
//   - SEARCH: flags, sizes, dates and sets from the tracker; SUBJECT, FROM,
//     TO, CC, BCC and SENT* from the stored ENVELOPE; HEADER reads only the
//     header; BODY streams, in 32 KiB chunks, what a reader sees: the text
//     parts decoded from base64/quoted-printable and from their charset to
//     UTF-8 (every IANA charset, go-message/charset) and the headers of
//     attached messages, not MIME headers, boundaries or attachments that
//     are not text; TEXT adds the header and the parts' headers.
//   - A keyword new to a selected mailbox is announced to the sessions
//     that have it selected with an untagged FLAGS before the FETCH that
//     shows it (RFC 9051 section 7.3.5); PERMANENTFLAGS has \* and does
//     not change. Deleting an account ends its sessions with BYE (the
//     store's EventAccountDelete); deleting a mailbox ends the other
//     sessions that have it selected with BYE, as Dovecot does (the
//     session that deletes it gets its messages expunged), and keeps
//     its subscription (RFC 9051 section 6.3.7).
//   - Known limits: no CONDSTORE/QRESYNC; the store addresses mailboxes by
//     name, so a session whose mailbox is deleted and created again by
//     another session is cut off only once the delete event has reached
//     it.
//   - Internal errors become NO [SERVERBUG] with an id that is also logged
//     (imapserver's own too, cmderr.go); a client never sees an internal
//     error's text. Panics in a connection are recovered and logged by
//     imapserver (and by the IDLE goroutine).
package imap

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"github.com/posthorn/posthorn/internal/drain"
	"github.com/posthorn/posthorn/internal/membudget"
	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/store"
)

// Defaults for zero-valued Server fields.
const (
	// DefaultIdleTimeout is the RFC 9051 section 5.4 minimum autologout.
	DefaultIdleTimeout = 30 * time.Minute
	// DefaultMaxMessageBytes is the APPENDLIMIT when none is configured.
	DefaultMaxMessageBytes = 50 << 20
	// handshakeTimeout bounds an implicit-TLS handshake.
	handshakeTimeout = 30 * time.Second
)

// Authenticator checks credentials. *auth.Authenticator implements it; its
// errors are tested with errors.Is against auth.ErrInvalidCredentials and
// auth.ErrThrottled.
type Authenticator interface {
	Authenticate(ctx context.Context, remote net.Addr, username, password string) (string, error)
	PlainServer(remote net.Addr, done func(account string)) sasl.Server
	LoginServer(remote net.Addr, done func(account string)) sasl.Server
}

// Server is an IMAP server. Set the fields, then call Serve (plain with
// STARTTLS) and/or ServeTLS (implicit TLS) on listeners; Shutdown stops all.
type Server struct {
	Store  store.Store
	Auth   Authenticator
	Logger *slog.Logger
	// Metrics is optional (nil records nothing).
	Metrics *metrics.Registry
	// TLS is used for STARTTLS and ServeTLS; nil disables STARTTLS.
	TLS *tls.Config
	// AllowPlaintextAuth lets LOGIN and AUTHENTICATE work without TLS;
	// otherwise LOGINDISABLED is advertised before TLS (RFC 9051 6.2.3).
	AllowPlaintextAuth bool
	// MaxMessageBytes is the APPENDLIMIT (RFC 7889).
	MaxMessageBytes int64
	// Budget bounds the bytes of the messages being APPENDed at once,
	// shared with the server's other listeners; an APPEND that finds no
	// room gets NO [UNAVAILABLE]. nil: a budget of this server's own
	// (membudget.DefaultSize).
	Budget *membudget.Budget
	// IdleTimeout is the longest a connection may stay silent.
	IdleTimeout time.Duration

	initOnce sync.Once
	caps     imapv2.CapSet
	hub      *hub
	closed   atomic.Bool
	// appending counts the APPENDs running, which Shutdown lets finish.
	appending drain.Counter
	conns     atomic.Int64

	mu        sync.Mutex
	listeners []net.Listener
	open      map[*deadlineConn]struct{}
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		if s.Logger == nil {
			s.Logger = slog.Default()
		}
		if s.IdleTimeout <= 0 {
			s.IdleTimeout = DefaultIdleTimeout
		}
		if s.MaxMessageBytes <= 0 {
			s.MaxMessageBytes = DefaultMaxMessageBytes
		}
		if s.MaxMessageBytes > 1<<32-1 {
			s.MaxMessageBytes = 1<<32 - 1
		}
		if s.Budget == nil {
			s.Budget = membudget.New(membudget.DefaultSize(s.MaxMessageBytes))
		}
		s.hub = newHub(s.Store, s.Logger)
		s.caps = caps()
	})
}

// caps lists the capabilities this server implements in full. beta.8 adds
// SASL-IR, LITERAL-, AUTH=, STARTTLS/LOGINDISABLED, and after login UNSELECT,
// ENABLE, IDLE, UTF8=ACCEPT (which guard.go hides: see hiddenCap) and
// APPENDLIMIT= (from SessionAppendLimit).
func caps() imapv2.CapSet {
	return imapv2.CapSet{
		imapv2.CapIMAP4rev2:        {},
		imapv2.CapIMAP4rev1:        {},
		imapv2.CapNamespace:        {},
		imapv2.CapUIDPlus:          {},
		imapv2.CapESearch:          {},
		imapv2.CapListExtended:     {},
		imapv2.CapListStatus:       {},
		imapv2.CapMove:             {},
		imapv2.CapStatusSize:       {},
		imapv2.CapBinary:           {},
		imapv2.CapChildren:         {},
		imapv2.CapSpecialUse:       {},
		imapv2.CapCreateSpecialUse: {},
		// LITERAL+ is safe only because guard.go skips, or closes the
		// connection on, a non-synchronising literal imapserver does
		// not read.
		imapv2.CapLiteralPlus: {},
	}
}

// Serve accepts plaintext connections (STARTTLS available) on ln.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	return s.accept(ln, func(dc *deadlineConn) {
		s.serveOne(newPlainGuardConn(dc, s), ln.Addr(), true)
	})
}

// ServeTLS accepts implicit-TLS connections on a plain TCP listener ln.
// It does the TLS itself so that the literal guard sees the plaintext.
func (s *Server) ServeTLS(ln net.Listener) error {
	s.init()
	if s.TLS == nil {
		return errors.New("imap: ServeTLS needs a TLS configuration")
	}
	return s.accept(ln, func(dc *deadlineConn) {
		s.serveOne(newGuardConn(tls.Server(dc, s.TLS), dc, s), ln.Addr(), false)
	})
}

// accept runs the accept loop of ln until Shutdown.
func (s *Server) accept(ln net.Listener, serve func(*deadlineConn)) error {
	if !s.addListener(ln) {
		return net.ErrClosed
	}
	dl := &deadlineListener{Listener: ln, s: s}
	for {
		c, err := dl.Accept()
		if err != nil {
			if s.closed.Load() || errors.Is(err, net.ErrClosed) {
				return net.ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		serve(c.(*deadlineConn))
	}
}

// serveOne serves one connection with an imapserver.Server of its own,
// whose logger reports to the connection's guard the errors imapserver
// cannot classify (cmderr.go). On the plaintext listener (plain) it
// offers STARTTLS (done by the guard) and allows authentication only if
// AllowPlaintextAuth is set. A connection that is already private
// (implicit TLS, or after STARTTLS) allows authentication (InsecureAuth,
// which here only means "the transport is not a *tls.Conn imapserver
// made") and offers no STARTTLS.
func (s *Server) serveOne(gc *guardConn, addr net.Addr, plain bool) {
	opts := &imapserver.Options{
		NewSession:   s.newSession,
		Caps:         s.caps,
		Logger:       connLogger{l: s.Logger, gc: gc},
		InsecureAuth: true,
	}
	if plain {
		opts.TLSConfig, opts.InsecureAuth = s.TLS, s.AllowPlaintextAuth
	}
	srv := imapserver.New(opts)
	go srv.Serve(&oneConnListener{conn: gc, addr: addr})
}

func (s *Server) addListener(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return false
	}
	s.listeners = append(s.listeners, ln)
	return true
}

// track records open connections for Shutdown.
func (s *Server) track(c *deadlineConn, open bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if open {
		if s.open == nil {
			s.open = map[*deadlineConn]struct{}{}
		}
		s.open[c] = struct{}{}
	} else {
		delete(s.open, c)
	}
}

// Shutdown closes the listeners, lets the APPENDs running finish (until
// ctx ends: a message the client is sending is in flight, and Thunderbird
// reports a Sent copy it could not save), says BYE to the sessions logged
// in, as Dovecot does, and closes every connection. IMAP sessions hold no
// other state that needs a graceful end: every change is already in the
// store.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	if s.closed.Swap(true) {
		return nil
	}
	s.mu.Lock()
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	err := s.appending.Wait(ctx)
	s.hub.byeAll(ctx, "Server shutting down")
	s.mu.Lock()
	var open []*deadlineConn
	for c := range s.open {
		open = append(open, c)
	}
	s.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
	s.hub.close()
	return err
}

// oneConnListener hands one connection to an imapserver.Server, then
// reports itself closed, so that Serve returns at once.
type oneConnListener struct {
	mu   sync.Mutex
	conn net.Conn
	addr net.Addr
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.conn
	l.conn = nil
	if c == nil {
		return nil, net.ErrClosed
	}
	return c, nil
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.addr }

// OpenConnections is the number of connected clients.
func (s *Server) OpenConnections() int64 { return s.conns.Load() }

// deadlineListener caps every read deadline imapserver sets at IdleTimeout
// and counts connections.
type deadlineListener struct {
	net.Listener
	s *Server
}

func (l *deadlineListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.s.conns.Add(1)
	l.s.Metrics.Inc(metrics.Connections, "protocol", "imap")
	dc := &deadlineConn{Conn: c, s: l.s}
	l.s.track(dc, true)
	// Bounds the implicit-TLS handshake and a silent client before the
	// greeting; imapserver sets its own deadlines from then on.
	dc.SetReadDeadline(time.Now().Add(handshakeTimeout))
	return dc, nil
}

type deadlineConn struct {
	net.Conn
	s      *Server
	closed atomic.Bool

	wmu       sync.Mutex
	writeDead time.Time // the write deadline last set on Conn
	noDead    bool      // no deadline asked for, writeDead left in force
}

// deadlineSlack is how much earlier than asked a write deadline may
// fall. imapserver sets one (30 s ahead) before every response and
// clears it after, a runtime timer update each; for a 10,000-message
// FETCH that was a third of the server's time. A deadline less than this
// after the one in force is not set again, and a cleared deadline stays
// in force until a write comes within clearedDeadlineMin of it
// (imapserver sets one before each of its writes anyway).
const deadlineSlack = time.Second

// Read reads from the connection, its next segments acknowledged at once
// (see quickAck).
func (c *deadlineConn) Read(p []byte) (int, error) {
	quickAck(c.Conn)
	return c.Conn.Read(p)
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	if max := time.Now().Add(c.s.IdleTimeout); t.IsZero() || t.After(max) {
		t = max
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if t.IsZero() {
		c.noDead = true // cleared when a write comes near it: see write
		return nil
	}
	c.noDead = false
	if !c.writeDead.IsZero() && !t.Before(c.writeDead) && t.Sub(c.writeDead) < deadlineSlack {
		return nil // the deadline in force is at most deadlineSlack earlier
	}
	c.writeDead = t
	return c.Conn.SetWriteDeadline(t)
}

// clearedDeadlineMin is how far ahead a deadline that was asked away
// must still be for a write to go out under it; a nearer one is cleared
// first. So a write that asked for no deadline can time out only after
// blocking this long.
const clearedDeadlineMin = 10 * time.Second

// Write writes to the connection, first clearing a deadline that was
// asked away and is less than clearedDeadlineMin ahead.
func (c *deadlineConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	if c.noDead && !c.writeDead.IsZero() && time.Until(c.writeDead) < clearedDeadlineMin {
		c.writeDead = time.Time{}
		if err := c.Conn.SetWriteDeadline(time.Time{}); err != nil {
			c.wmu.Unlock()
			return 0, err
		}
	}
	c.wmu.Unlock()
	return c.Conn.Write(b)
}

func (c *deadlineConn) Close() error {
	if !c.closed.Swap(true) {
		c.s.track(c, false)
		c.s.conns.Add(-1)
		c.s.Metrics.Dec(metrics.Connections, "protocol", "imap")
	}
	return c.Conn.Close()
}

// slogLogger adapts imapserver's Printf logger (which also reports
// recovered panics) to slog.
type slogLogger struct{ l *slog.Logger }

func (l slogLogger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.HasPrefix(msg, "panic") {
		l.l.Error("imap: " + msg)
		return
	}
	l.l.Debug("imap: " + msg)
}
