package imap

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"github.com/posthorn/posthorn/auth"
	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/store"
)

// authTimeout bounds one credential check.
const authTimeout = 30 * time.Second

// session is one IMAP connection's state behind imapserver.Conn. The
// states (not authenticated, authenticated, selected) are enforced by
// imapserver (RFC 9051 section 3); account is set on login and sel while a
// mailbox is selected.
type session struct {
	s       *Server
	conn    *imapserver.Conn
	id      string // of the connection, in its log lines
	remote  net.Addr
	account string
	sel     *view
	// searchRes is the last SEARCH RETURN (SAVE) result as UIDs ($, RFC
	// 5182); it is reset on SELECT.
	searchRes []uint32

	// imapserver runs Idle in a goroutine of its own, and when the
	// connection ends during IDLE it calls Close without waiting for it:
	// idleMu orders the two (see Idle and Close).
	idleMu   sync.Mutex
	idleDone chan struct{} // closed when the running Idle returns
	idling   bool          // Idle is running (see keepalive)
	closed   bool
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionSASL        = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
)

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	id := newID()
	remote := c.NetConn().RemoteAddr()
	return &session{s: s, conn: c, id: id, remote: remote}, nil, nil
}

// log is the session's logger. It is made when something is logged,
// which is rare, rather than kept: an idle connection is cheaper without
// a handler of its own (a slog With copies the handler and formats the
// attributes).
func (ss *session) log() *slog.Logger {
	l := ss.s.Logger.With("proto", "imap", "conn", ss.id, "remote", ss.remote.String())
	if ss.account != "" {
		l = l.With("account", ss.account)
	}
	return l
}

func (ss *session) Close() error {
	ss.idleMu.Lock()
	ss.closed = true
	done := ss.idleDone
	ss.idleMu.Unlock()
	if done != nil {
		<-done // its stop channel is closed: it returns
	}
	if ss.sel != nil {
		ss.sel.close()
		ss.sel = nil
	}
	if ss.account != "" {
		ss.s.hub.logout(ss)
	}
	return nil
}

// bye ends the session from outside (hub.kick): an untagged BYE, then
// the connection is closed, which ends the command loop and Close runs.
func (ss *session) bye(text string) {
	err := ss.conn.Bye(text)
	ss.log().Info("imap session ended: "+text, "bye_sent", err == nil)
}

// Login implements LOGIN (RFC 9051 section 6.2.3). imapserver has already
// refused it before TLS unless plaintext auth is allowed.
func (ss *session) Login(username, password string) error {
	ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
	defer cancel()
	account, err := ss.s.Auth.Authenticate(ctx, ss.remote, username, password)
	if err != nil {
		return ss.authError(err)
	}
	ss.loggedIn(account)
	return nil
}

// AuthenticateMechanisms lists the SASL mechanisms (RFC 9051 section 6.2.2).
func (ss *session) AuthenticateMechanisms() []string { return []string{"PLAIN", "LOGIN"} }

// Authenticate returns the SASL server for a mechanism; failures inside it
// are mapped by authError through the wrapper.
func (ss *session) Authenticate(mech string) (sasl.Server, error) {
	var srv sasl.Server
	switch strings.ToUpper(mech) {
	case "PLAIN":
		srv = ss.s.Auth.PlainServer(ss.remote, ss.loggedIn)
	case "LOGIN":
		srv = ss.s.Auth.LoginServer(ss.remote, ss.loggedIn)
	default:
		return nil, &imapv2.Error{Type: imapv2.StatusResponseTypeNo, Text: "Unsupported SASL mechanism"}
	}
	return saslServer{srv: srv, ss: ss}, nil
}

// saslServer maps the authenticator's errors to IMAP responses.
type saslServer struct {
	srv sasl.Server
	ss  *session
}

func (w saslServer) Next(resp []byte) ([]byte, bool, error) {
	challenge, done, err := w.srv.Next(resp)
	if err != nil {
		return nil, false, w.ss.authError(err)
	}
	return challenge, done, nil
}

func (ss *session) loggedIn(account string) {
	if ss.conn != nil {
		markLoggedIn(ss.conn.NetConn())
	}
	ss.account = account
	ss.s.hub.login(ss)
	ss.log().Info("imap login")
}

// authError maps an authentication failure: throttling is temporary
// (NO [UNAVAILABLE]), bad credentials are AUTHENTICATIONFAILED (RFC 5530).
func (ss *session) authError(err error) error {
	ss.s.Metrics.Inc(metrics.AuthFailures, "protocol", "imap")
	var ie *imapv2.Error
	switch {
	case errors.As(err, &ie):
		return ie
	case errors.Is(err, auth.ErrThrottled):
		ss.log().Warn("imap login throttled")
		return &imapv2.Error{Type: imapv2.StatusResponseTypeNo, Code: imapv2.ResponseCodeUnavailable,
			Text: "Too many failed logins, try again later"}
	case errors.Is(err, auth.ErrMalformed), errors.Is(err, sasl.ErrUnexpectedClientResponse):
		// As SMTP (501) and POP3 answer it: the client's fault, no
		// server error (one an unauthenticated client could log at will).
		ss.log().Debug("imap login failed: malformed SASL response")
		return badErr("Malformed SASL response")
	case errors.Is(err, auth.ErrInvalidCredentials), strings.HasPrefix(err.Error(), "sasl:"):
		// auth's own line (proto, user, remote, reason) is the one to
		// count failures by; this one adds the session, for debugging.
		ss.log().Debug("imap login failed")
		return imapserver.ErrAuthFailed
	}
	return ss.internalError("authenticate", err)
}

// errAccountGone answers the commands of a session whose account was
// deleted that run before the session is ended (hub.kick).
var errAccountGone = noErr(imapv2.ResponseCodeNonExistent, "Account no longer exists")

// internalError logs err with an id and returns NO [SERVERBUG] with that
// id only; unless the account, or the selected mailbox, was deleted
// meanwhile, which explains the failure (a message gone, say) and is no
// server error.
func (ss *session) internalError(op string, err error) error {
	if ss.accountGone(err) {
		return errAccountGone
	}
	if ss.selectedGone() {
		return errMailboxGone
	}
	id := newID()
	ss.log().Error("imap internal error", "op", op, "err", err, "errid", id)
	return &imapv2.Error{Type: imapv2.StatusResponseTypeNo, Code: imapv2.ResponseCodeServerBug,
		Text: "Internal error, id " + id}
}

// accountGone reports whether err, or the account's absence, shows that
// the session's account was deleted.
func (ss *session) accountGone(err error) bool {
	if errors.Is(err, store.ErrNoSuchAccount) {
		return true
	}
	if ss.account == "" {
		return false
	}
	_, aerr := ss.s.Store.Account(ss.account)
	return errors.Is(aerr, store.ErrNoSuchAccount)
}

// storeError maps store errors to IMAP responses (RFC 5530 codes).
func (ss *session) storeError(op string, err error) error {
	var ie *imapv2.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ie):
		return ie
	case errors.Is(err, store.ErrNoSuchAccount):
		return errAccountGone
	case errors.Is(err, store.ErrNoSuchMailbox), errors.Is(err, store.ErrNotFound):
		return noErr(imapv2.ResponseCodeNonExistent, "No such mailbox")
	case errors.Is(err, store.ErrMailboxExists), errors.Is(err, store.ErrExists):
		return noErr(imapv2.ResponseCodeAlreadyExists, "Mailbox already exists")
	case errors.Is(err, store.ErrInvalidName):
		return noErr(imapv2.ResponseCodeCannot, "Invalid mailbox name")
	case errors.Is(err, store.ErrOverQuota):
		return noErr(imapv2.ResponseCodeOverQuota, "Over quota")
	case store.NoSpace(err):
		// As Dovecot answers it (RFC 5530 has no code of its own).
		if report, missed := store.ReportNoSpace(); report {
			ss.log().Error("no space left for the store", "op", op, "err", err, "refused_unlogged", missed)
		}
		return noErr(imapv2.ResponseCodeOverQuota, "Not enough disk space")
	}
	return ss.internalError(op, err)
}

// tryCreate is the answer for a missing destination (RFC 9051 7.1).
func (ss *session) tryCreate(op string, err error) error {
	if errors.Is(err, store.ErrNoSuchMailbox) || errors.Is(err, store.ErrNotFound) {
		return noErr(imapv2.ResponseCodeTryCreate, "No such mailbox")
	}
	return ss.storeError(op, err)
}

func noErr(code imapv2.ResponseCode, text string) error {
	return &imapv2.Error{Type: imapv2.StatusResponseTypeNo, Code: code, Text: text}
}

func badErr(text string) error {
	return &imapv2.Error{Type: imapv2.StatusResponseTypeBad, Code: imapv2.ResponseCodeClientBug, Text: text}
}

// corked runs fn with the connection's writes batched (see
// guardConn.cork); the responses are flushed when fn returns.
func (ss *session) corked(fn func() error) error {
	gc, ok := ss.conn.NetConn().(*guardConn)
	if !ok {
		return fn()
	}
	gc.cork()
	err := fn()
	if ferr := gc.uncork(); err == nil {
		err = ferr
	}
	return err
}

// AppendLimit is APPENDLIMIT (RFC 7889), from max_message_bytes.
func (ss *session) AppendLimit() uint32 { return uint32(ss.s.MaxMessageBytes) }

// Namespace: one personal namespace, delimiter '/' (RFC 2342).
func (ss *session) Namespace() (*imapv2.NamespaceData, error) {
	return &imapv2.NamespaceData{Personal: []imapv2.NamespaceDescriptor{{Prefix: "", Delim: Delim}}}, nil
}

// Poll reports pending changes of the selected mailbox.
func (ss *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if ss.sel == nil {
		return nil
	}
	ss.s.hub.settle()
	return writeUpdates(w, ss.sel.collect(allowExpunge))
}

// Idle waits for changes (RFC 2177); in the authenticated state there is
// nothing to report, so it only waits.
func (ss *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	ss.idleMu.Lock()
	if ss.closed {
		ss.idleMu.Unlock()
		return nil
	}
	done := make(chan struct{})
	ss.idleDone, ss.idling = done, true
	sel := ss.sel
	ss.idleMu.Unlock()
	defer close(done)
	defer func() {
		ss.idleMu.Lock()
		ss.idling = false
		ss.idleMu.Unlock()
	}()
	if restore := shrinkWriter(ss.conn); restore != nil {
		defer restore()
	}
	if sel == nil {
		<-stop
		return nil
	}
	return sel.idle(w, stop)
}

// keepalive sends "* OK Still here" if the session is in IDLE (see
// idleKeepalive). idleMu is held through the write, so that IDLE cannot
// end and another command write meanwhile.
func (ss *session) keepalive() {
	ss.idleMu.Lock()
	defer ss.idleMu.Unlock()
	if !ss.idling || ss.closed {
		return
	}
	if _, err := writeUntagged(ss.conn, []byte("* OK Still here\r\n")); err != nil {
		ss.s.Logger.Debug("imap: IDLE keepalive not written", "err", err)
	}
}

func newID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
