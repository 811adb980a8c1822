package pop3

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/posthorn/posthorn/metrics"
)

// state is a POP3 session state (RFC 1939 section 3).
type state uint8

const (
	stateAuthorization state = 1 << iota
	stateTransaction
	stateUpdate
)

func (st state) String() string {
	switch st {
	case stateAuthorization:
		return "AUTHORIZATION"
	case stateTransaction:
		return "TRANSACTION"
	case stateUpdate:
		return "UPDATE"
	}
	return "?"
}

// Status indicators and the response codes used (RFC 2449 section 8,
// RFC 3206).
const (
	replyOK  = "+OK"
	replyErr = "-ERR"

	codeAuth    = "[AUTH] "     // RFC 3206 section 5: credentials problem
	codeInUse   = "[IN-USE] "   // RFC 2449 section 8.1.2: maildrop locked
	codeSysTemp = "[SYS/TEMP] " // RFC 3206 section 4: temporary failure
	codeSysPerm = "[SYS/PERM] " // RFC 3206 section 4: permanent failure
)

// Errors that end a session.
var (
	errLineTooLong = errors.New("command line too long")
	errShutdown    = errors.New("server shutting down")
	errQuit        = errors.New("client quit")
	// errAbort ends a session whose protocol state is lost (a RETR that
	// failed after its +OK line was sent); the cause is already logged.
	errAbort = errors.New("session aborted")
)

// session is one POP3 connection.
type session struct {
	srv    *Server
	ctx    context.Context // ends with the session or at Shutdown
	cancel context.CancelFunc
	id     string
	log    *slog.Logger
	raw    net.Conn // the TCP connection: deadlines are set here
	conn   net.Conn // raw, or the TLS connection over it
	r      *bufio.Reader
	w      *bufio.Writer
	tls    bool

	state   state
	user    string // from USER, waiting for PASS
	account string // set once the maildrop is locked
	drop    *maildrop
	buf     []byte // RETR/TOP read buffer
	bad     int    // unknown or misplaced commands in a row
}

// maxBadCommands is how many unknown or misplaced commands in a row end a
// session, as in Dovecot: what sends them is not a POP3 client (an HTTP
// request sent to the port, say), or has lost its way.
const maxBadCommands = 10

// deadlineWriter re-arms the write deadline before every write, so a client
// that stops reading is cut after the idle timeout while a slow but live
// one can download a large message.
type deadlineWriter struct {
	raw     net.Conn
	w       io.Writer
	timeout time.Duration
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.raw.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.w.Write(p)
}

func newSession(srv *Server, conn net.Conn, id string) *session {
	ctx, cancel := context.WithCancel(context.Background())
	ss := &session{
		srv:    srv,
		ctx:    ctx,
		cancel: cancel,
		id:     id,
		raw:    conn,
		state:  stateAuthorization,
		log:    srv.logger().With("conn", id, "remote", conn.RemoteAddr().String()),
	}
	if tc, ok := conn.(*tls.Conn); ok {
		ss.tls = true
		ss.raw = tc.NetConn()
	}
	ss.setConn(conn)
	return ss
}

// setConn makes conn the connection commands are read from and replies
// written to (after STLS, the TLS connection).
func (ss *session) setConn(conn net.Conn) {
	ss.conn = conn
	ss.r = bufio.NewReaderSize(conn, ss.srv.maxLine())
	ss.w = bufio.NewWriterSize(deadlineWriter{ss.raw, conn, ss.srv.idleTimeout()}, 32*1024)
}

func (ss *session) run() {
	m := ss.srv.Metrics
	m.Inc(metrics.Connections, "protocol", "pop3")
	defer func() {
		if v := recover(); v != nil {
			id := errorID()
			ss.log.Error("panic in session", "err_id", id, "panic", v, "stack", string(debug.Stack()))
			ss.errf(codeSysTemp+"Internal error, try again later (id %s)", id)
			ss.flush()
		}
		ss.release()
		ss.cancel()
		ss.conn.Close()
		m.Dec(metrics.Connections, "protocol", "pop3")
		ss.srv.endSession(ss)
		ss.log.Debug("session closed")
	}()
	ss.log.Debug("session opened", "tls", ss.tls)
	if tc, ok := ss.conn.(*tls.Conn); ok {
		if err := ss.handshake(tc); err != nil {
			ss.log.Debug("TLS handshake failed", "err", err)
			return
		}
	}
	ss.okf("%s Posthorn POP3 server ready", ss.srv.Hostname)
	if ss.flush() != nil {
		return
	}
	for {
		line, err := ss.readLine()
		if err != nil {
			ss.endWith(err)
			return
		}
		if err := ss.dispatch(line); err != nil {
			if !errors.Is(err, errQuit) && !errors.Is(err, errAbort) {
				ss.log.Debug("session ends", "err", err)
			}
			ss.flush()
			return
		}
		if ss.r.Buffered() == 0 && ss.flush() != nil {
			return
		}
	}
}

// badCommand answers an unknown or misplaced command, and ends the
// session at the maxBadCommands'th in a row.
func (ss *session) badCommand(why string) error {
	if ss.bad++; ss.bad >= maxBadCommands {
		ss.log.Info("too many bad commands", "remote", ss.raw.RemoteAddr().String())
		ss.errf("Too many bad commands")
		return errAbort
	}
	ss.errf("%s", why)
	return nil
}

// release closes the maildrop and unlocks it.
func (ss *session) release() {
	if ss.drop != nil {
		ss.drop.close()
		ss.drop = nil
	}
	if ss.account != "" {
		ss.srv.unlock(ss.account, ss)
	}
}

// endWith answers what ended the session, when the client can still be
// told.
func (ss *session) endWith(err error) {
	switch {
	case errors.Is(err, errLineTooLong):
		ss.errf("Command line too long")
	case errors.Is(err, errShutdown):
		ss.errf(codeSysTemp + "Server shutting down")
	case errors.Is(err, os.ErrDeadlineExceeded):
		if ss.srv.closing.Load() {
			ss.errf(codeSysTemp + "Server shutting down")
		} else {
			// RFC 1939 section 3: the autologout timer ended the
			// session, without entering UPDATE.
			ss.errf("Autologout; idle for too long")
		}
	default:
		ss.log.Debug("read failed", "err", err)
		return
	}
	ss.flush()
}

// readLine reads one line within the line limit and the idle timeout,
// without its line ending.
func (ss *session) readLine() (string, error) {
	// Arm the deadline before looking at closing: Shutdown sets closing
	// and then the deadline, so one of the two is seen.
	ss.raw.SetReadDeadline(time.Now().Add(ss.srv.idleTimeout()))
	if ss.srv.closing.Load() {
		return "", errShutdown
	}
	line, err := ss.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return string(line), nil
}

// dispatch runs one command line. A non-nil error ends the session.
func (ss *session) dispatch(line string) error {
	name, args, _ := strings.Cut(line, " ")
	name = strings.ToUpper(name)
	cmd, ok := commands[name]
	switch {
	case !ok:
		ss.log.Debug("unknown command", "cmd", trimForLog(name))
		return ss.badCommand("Unknown command")
	case cmd.states&ss.state == 0:
		return ss.badCommand(name + " is not valid in the " + ss.state.String() + " state")
	}
	ss.bad = 0
	switch name {
	case "PASS", "AUTH": // credentials are never logged
		mech, _, _ := strings.Cut(args, " ")
		if name == "PASS" {
			mech = ""
		}
		ss.log.Debug("command", "cmd", name, "mech", trimForLog(mech), "args", "<redacted>")
	default:
		ss.log.Debug("command", "cmd", name, "args", trimForLog(args))
	}
	if ss.drop != nil && name != "CAPA" {
		// An account deleted or disabled meanwhile ends the session (as
		// IMAP's BYE), before a command that would find its messages gone.
		if err := ss.drop.sync(); err != nil {
			// The maildrop's state is unknown: the session ends, its
			// deletions not made, with the error's id (it ended without
			// a word).
			ss.internalError(err)
			return errAbort
		}
		if ss.drop.accountGone {
			ss.log.Info("session ended: account deleted")
			ss.errf(codeSysPerm + "Account no longer exists")
			return errAbort
		}
		if ss.drop.disabled {
			// As IMAP's sessions are ended: the deletions marked so far
			// are not made (no UPDATE state).
			ss.log.Info("session ended: account disabled")
			ss.errf(codeSysPerm + "Account disabled")
			return errAbort
		}
	}
	err := cmd.run(ss, args)
	var ce connError
	switch {
	case err == nil, errors.Is(err, errQuit), errors.Is(err, errAbort):
		return err
	case errors.As(err, &ce):
		ss.log.Debug("connection failed", "err", ce.err)
		return err
	}
	ss.internalError(err)
	return nil
}

// connError is a failure to talk to the client: the session ends without a
// reply.
type connError struct{ err error }

func (e connError) Error() string { return e.err.Error() }
func (e connError) Unwrap() error { return e.err }

// internalError logs err with an id and tells the client only the id
// (a client never sees err.Error() of an internal error).
func (ss *session) internalError(err error) {
	id := errorID()
	ss.log.Error("internal error", "err_id", id, "err", err)
	ss.errf(codeSysTemp+"Internal error, try again later (id %s)", id)
}

func errorID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func trimForLog(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func (ss *session) okf(format string, args ...any) {
	ss.w.WriteString(replyOK)
	if format != "" {
		ss.w.WriteByte(' ')
		fmt.Fprintf(ss.w, format, args...)
	}
	ss.w.WriteString("\r\n")
}

func (ss *session) errf(format string, args ...any) {
	ss.w.WriteString(replyErr + " ")
	fmt.Fprintf(ss.w, format, args...)
	ss.w.WriteString("\r\n")
}

// line writes one line of a multi-line reply.
func (ss *session) line(s string) {
	ss.w.WriteString(s)
	ss.w.WriteString("\r\n")
}

func (ss *session) flush() error {
	if err := ss.w.Flush(); err != nil {
		return connError{err}
	}
	return nil
}

// authAllowed says whether credentials may be sent on this connection
// (DESIGN: no plaintext passwords on the wire).
func (ss *session) authAllowed() bool {
	return ss.tls || ss.srv.AllowPlaintextAuth
}
