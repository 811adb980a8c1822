package imap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"

	imapv2 "github.com/emersion/go-imap/v2"
)

// Command errors imapserver cannot classify. imapserver answers a
// command whose handler fails with an error that is not an *imap.Error
// (nor its parser's "expected ..." error) with NO [SERVERBUG] "Internal
// server error", and logs it, as "handling %v command: %v", through
// Options.Logger just before. Most such errors are the client's: go-imap's
// parser reports an invalid modified UTF-7 mailbox name, sequence set or
// date, or a list nested too deep, with plain errors of its internal
// packages. Each connection has its own imapserver.Server whose logger
// (connLogger) hands the error to the connection's guardConn, which
// replaces the NO [SERVERBUG] that follows by the answer below: BAD for a
// syntax error (RFC 9051 section 7.1.3), NO [CANNOT] for a mailbox name
// that is not mUTF-7 (as Dovecot answers it). Errors that are not the
// client's (our session's errors are all *imap.Error) are logged at ERROR
// with an id, as session.internalError does; a failed read ends the
// connection.

// commandError is an error imapserver is about to answer with NO
// [SERVERBUG].
type commandError struct {
	command string
	err     error
}

// clientError is the answer to a parser error recognised by its text
// (the error types are in go-imap's internal packages).
type clientError struct {
	text string // in the error's text
	resp imapv2.StatusResponse
	bye  bool // the rest of the command cannot be skipped: close
}

var clientErrors = []clientError{
	{text: "utf7: invalid UTF-7", resp: imapv2.StatusResponse{Type: imapv2.StatusResponseTypeNo,
		Code: imapv2.ResponseCodeCannot, Text: "Mailbox name is not valid mUTF-7"}},
	{text: "invalid UTF-8", resp: imapv2.StatusResponse{Type: imapv2.StatusResponseTypeNo,
		Code: imapv2.ResponseCodeCannot, Text: "Mailbox name is not valid UTF-8"}},
	{text: "imap: bad number set value", resp: badResp("Invalid sequence set")},
	{text: "in date-time:", resp: badResp("Invalid date-time")},
	{text: "in date:", resp: badResp("Invalid date")},
	{text: "imapwire: exceeded max depth", resp: badResp("Too deeply nested")},
	{text: "illegal base64 data", resp: badResp("Invalid base64")},
	{text: "imapwire: max size exceeded", bye: true, resp: imapv2.StatusResponse{Type: imapv2.StatusResponseTypeBad,
		Code: imapv2.ResponseCodeTooBig, Text: "Command line too long"}},
	{text: "SASL response too long", bye: true, resp: imapv2.StatusResponse{Type: imapv2.StatusResponseTypeBad,
		Code: imapv2.ResponseCodeTooBig, Text: "SASL response too long"}},
}

func badResp(text string) imapv2.StatusResponse {
	return imapv2.StatusResponse{Type: imapv2.StatusResponseTypeBad, Code: imapv2.ResponseCodeClientBug, Text: text}
}

// serverBugReply is imapserver's answer to the errors it cannot classify.
var serverBugReply = []byte(" NO [SERVERBUG] Internal server error\r\n")

// noteCommandError records err for the NO [SERVERBUG] imapserver writes
// next.
func (c *guardConn) noteCommandError(command string, err error) {
	c.emu.Lock()
	c.cmdErr = &commandError{command: command, err: err}
	c.emu.Unlock()
}

// replaceServerBug returns what to write instead of p when p is
// imapserver's NO [SERVERBUG] for a noted error (ok false otherwise), and
// whether the connection ends after it (q is then possibly empty: the
// client is gone).
func (c *guardConn) replaceServerBug(p []byte) (q []byte, bye, ok bool) {
	sp := bytes.IndexByte(p, ' ')
	if sp <= 0 || !bytes.Equal(p[sp:], serverBugReply) {
		return nil, false, false
	}
	c.emu.Lock()
	ce := c.cmdErr
	c.cmdErr = nil
	c.emu.Unlock()
	if ce == nil {
		return nil, false, false
	}
	tag := string(p[:sp])
	remote := c.RemoteAddr().String()
	if c.readFailed.Load() || connError(ce.err) {
		// The connection failed (or timed out) inside the command: what
		// is left of it cannot be told from the next command.
		c.s.Logger.Debug("imap: connection error in a command", "remote", remote, "command", ce.command, "err", ce.err)
		var ne net.Error
		if errors.As(ce.err, &ne) && ne.Timeout() {
			return []byte("* BYE Timed out waiting for the command\r\n"), true, true
		}
		return nil, true, true
	}
	msg := ce.err.Error()
	for _, e := range clientErrors {
		if strings.Contains(msg, e.text) {
			c.s.Logger.Info("imap: invalid command", "remote", remote, "command", ce.command, "reply", e.resp.Text)
			line := statusLine(tag, e.resp)
			if e.bye {
				line += "* BYE " + e.resp.Text + "\r\n"
			}
			return []byte(line), e.bye, true
		}
	}
	id := newID()
	c.s.Logger.Error("imap internal error", "remote", remote, "op", strings.ToLower(ce.command), "err", ce.err, "errid", id)
	return []byte(statusLine(tag, imapv2.StatusResponse{Type: imapv2.StatusResponseTypeNo,
		Code: imapv2.ResponseCodeServerBug, Text: "Internal error, id " + id})), false, true
}

func statusLine(tag string, r imapv2.StatusResponse) string {
	return fmt.Sprintf("%s %s [%s] %s\r\n", tag, r.Type, r.Code, r.Text)
}

// connError reports whether err is the connection's failure rather than
// the command's.
func connError(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, errGuard) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.As(err, &ne)
}

// connLogger is imapserver's logger for one connection: it hands the
// command errors imapserver is about to answer with NO [SERVERBUG] to the
// connection's guard; the rest goes to slog as slogLogger does.
type connLogger struct {
	l  *slog.Logger
	gc *guardConn
}

// handlingFormat is how imapserver (beta.8) logs an unclassified command
// error, just before answering it.
const handlingFormat = "handling %v command: %v"

func (l connLogger) Printf(format string, args ...any) {
	if format == handlingFormat && len(args) == 2 {
		name, _ := args[0].(string)
		if err, ok := args[1].(error); ok && err != nil {
			l.gc.noteCommandError(name, err)
			return
		}
	}
	slogLogger{l.l}.Printf(format, args...)
}
