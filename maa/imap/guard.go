package imap

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// guardConn is the plaintext connection imapserver reads: it runs the
// client's bytes through a literalGuard. dc is the TCP-level wrapper
// (deadlines, corking) under it, possibly below TLS.
//
// On the plaintext listener it also does STARTTLS itself, so that the
// guard keeps seeing the plaintext after the upgrade (imapserver's own
// STARTTLS would wrap the connection above us, leaving us only TLS
// records): when a client that has not logged in sends STARTTLS, the
// guard passes on the commands before it, answers OK, discards whatever
// the client pipelined behind it (RFC 9051 section 6.2.1), makes the TLS
// handshake, and hands the TLS connection to a new imapserver.Server of
// its own, as implicit TLS does; the first one then reads EOF and its
// writes and Close go nowhere. The new server's greeting is dropped: none
// is sent after STARTTLS.
type guardConn struct {
	net.Conn
	dc *deadlineConn
	g  *literalGuard
	s  *Server

	authed   atomic.Bool // a login succeeded: STARTTLS is imapserver's to refuse
	detached atomic.Bool // handed over to a TLS connection
	greeting bool        // drop the first line written (the new server's greeting)

	wmu     sync.Mutex
	corked  bool
	pending []byte

	// Write deadlines while corked (see SetWriteDeadline), under dmu, not
	// wmu: a deadline may be set to end a write that holds wmu.
	dmu      sync.Mutex
	dlCorked bool
	wdl      time.Time // armed on Conn
	wdlWant  time.Time // the last one asked for
}

// corkLimit is how much a corked connection buffers before writing.
const corkLimit = 64 * 1024

// cork makes writes accumulate until uncork (or corkLimit): imapserver
// flushes after every response, which for a 10,000-message FETCH would be
// 10,000 system calls, and over TLS 10,000 records. The buffer is above
// TLS, so that records are full.
func (c *guardConn) cork() {
	c.wmu.Lock()
	c.corked = true
	c.wmu.Unlock()
	c.dmu.Lock()
	c.dlCorked = true
	c.dmu.Unlock()
}

func (c *guardConn) uncork() error {
	c.wmu.Lock()
	c.corked = false
	err := c.flushLocked()
	c.wmu.Unlock()
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.dlCorked = false
	if !c.wdl.Equal(c.wdlWant) && !c.detached.Load() {
		c.wdl = c.wdlWant
		if derr := c.Conn.SetWriteDeadline(c.wdl); err == nil {
			err = derr
		}
	}
	return err
}

func (c *guardConn) flushLocked() error {
	if len(c.pending) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.pending)
	c.pending = c.pending[:0]
	if cap(c.pending) > 2*corkLimit {
		c.pending = nil
	}
	return err
}

// write is Write after the greeting: corked or not.
func (c *guardConn) write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.corked || len(b) >= corkLimit/4 {
		// Not corked, or a large write (a body literal): no point
		// copying it.
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return c.Conn.Write(b)
	}
	c.pending = append(c.pending, b...)
	if len(c.pending) >= corkLimit {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

func newGuardConn(c net.Conn, dc *deadlineConn, s *Server) *guardConn {
	gc := &guardConn{Conn: c, dc: dc, s: s, g: &literalGuard{appendLimit: s.MaxMessageBytes}}
	gc.g.authed = &gc.authed
	return gc
}

// newPlainGuardConn is newGuardConn for the plaintext (STARTTLS) listener.
func newPlainGuardConn(dc *deadlineConn, s *Server) *guardConn {
	c := newGuardConn(dc, dc, s)
	c.g.interceptTLS = true
	return c
}

// Read passes the client's bytes through the guard; on a violation it
// answers BAD [TOOBIG] and the next Read fails, which ends the connection
// before the parser sees the offending line.
func (c *guardConn) Read(p []byte) (int, error) {
	g := c.g
	for {
		if c.detached.Load() {
			return 0, io.EOF
		}
		if g.failed != nil {
			return 0, g.failed
		}
		if g.startTLS != "" {
			if err := c.startTLS(); err != nil {
				return 0, err
			}
		}
		var n int
		var err error
		if len(g.held) > 0 {
			// A refused STARTTLS: what followed it goes on to the parser.
			n = copy(p, g.held)
			g.held = g.held[n:]
		} else if n, err = c.Conn.Read(p); n == 0 {
			return n, err
		}
		ok, reply := g.scan(p[:n])
		if g.startTLS != "" && ok == 0 {
			continue // STARTTLS first in this read: do it now
		}
		if g.startTLS != "" || reply == "" {
			return ok, nil // the commands before STARTTLS run first
		}
		g.failed = errGuard
		c.s.Logger.Warn("imap: oversized literal refused", "remote", c.RemoteAddr().String())
		c.Conn.Write([]byte(reply + "\r\n* BYE Literal too large\r\n"))
		if ok == 0 {
			return 0, errGuard
		}
		return ok, nil
	}
}

// startTLS answers a STARTTLS the guard took. Every command before it has
// been read and answered by now (the guard held back the rest of that
// read), so the login state is known: after a login it is refused, as
// RFC 9051 says; otherwise the connection is upgraded and handed to a new
// server, and io.EOF ends the plaintext server's connection.
func (c *guardConn) startTLS() error {
	tag := c.g.startTLS
	c.g.startTLS = ""
	if c.authed.Load() || c.s.TLS == nil {
		_, err := c.Conn.Write([]byte(tag + " BAD STARTTLS not available\r\n"))
		return err
	}
	// Whatever the client pipelined behind STARTTLS is dropped (RFC 9051
	// section 6.2.1: it must wait for the OK; an attacker's injected
	// plaintext must not run inside the TLS session).
	c.g.held = nil
	c.g.failed = io.EOF
	if _, err := c.Conn.Write([]byte(tag + " OK Begin TLS negotiation now\r\n")); err != nil {
		return err
	}
	c.detached.Store(true)
	tc := tls.Server(c.dc, c.s.TLS)
	c.dc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		c.s.Logger.Info("imap: STARTTLS handshake failed", "remote", c.dc.RemoteAddr().String(), "err", err)
		c.dc.Close()
		return io.EOF
	}
	c.dc.SetDeadline(time.Time{})
	up := newGuardConn(tc, c.dc, c.s)
	up.greeting = true
	c.s.serveOne(up, c.dc.LocalAddr())
	return io.EOF
}

// Write drops the new server's greeting after STARTTLS, and whatever the
// plaintext server writes once the connection has been handed over.
func (c *guardConn) Write(p []byte) (int, error) {
	if c.detached.Load() {
		return len(p), nil
	}
	if c.greeting {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			return len(p), nil
		}
		c.greeting = false
		if rest := p[i+1:]; len(rest) > 0 {
			n, err := c.write(rest)
			return i + 1 + n, err
		}
		return len(p), nil
	}
	return c.write(p)
}

// Close, and the deadlines, belong to the TLS connection once handed over.
func (c *guardConn) Close() error {
	if c.detached.Load() {
		return nil
	}
	return c.Conn.Close()
}

func (c *guardConn) SetDeadline(t time.Time) error {
	if c.detached.Load() {
		return nil
	}
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.wdl, c.wdlWant = t, t
	return c.Conn.SetDeadline(t)
}

func (c *guardConn) SetReadDeadline(t time.Time) error {
	if c.detached.Load() {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline: imapserver sets a 30 s write deadline before each
// response and clears it after, which for a 10,000-message FETCH is
// 20,000 timer changes, a sixth of the server's time for a flags resync.
// While corked (such a FETCH), a deadline asked for is armed only when it
// is over a second later than the one armed, and clearing waits for
// uncork: the deadline in force is never more than a second earlier than
// asked, and a stuck client is still cut off.
func (c *guardConn) SetWriteDeadline(t time.Time) error {
	if c.detached.Load() {
		return nil
	}
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.wdlWant = t
	if c.dlCorked && (t.IsZero() || !c.wdl.IsZero() && !t.Before(c.wdl) && t.Sub(c.wdl) < time.Second) {
		return nil
	}
	c.wdl = t
	return c.Conn.SetWriteDeadline(t)
}

// markLoggedIn tells the guard of the connection under an imapserver.Conn
// that a login succeeded.
func markLoggedIn(nc net.Conn) {
	if gc, ok := nc.(*guardConn); ok {
		gc.authed.Store(true)
	}
}

// literalGuard watches the plaintext a client sends, before imapserver's
// parser sees it, for the two literal hazards of go-imap v2 beta.8:
//
//   - a non-synchronising literal ({N+} or {N-}) that imapserver refuses
//     is not drained, so its data would then run as commands. One over
//     4096 bytes is refused before login and outside APPEND (RFC 7888
//     section 4 allows it), and one in APPEND over the append limit; for
//     these we answer BAD and close the connection. Within the limit,
//     APPEND after login takes any size (LITERAL+, RFC 7888 section 3);
//   - a synchronising literal over 4096 bytes outside APPEND makes beta.8
//     drop its own TOOBIG error and wait for data that never comes.
//
// The guard never changes the bytes; it only cuts the connection before
// the offending line reaches the parser. It tracks literal data so that a
// message body is never mistaken for commands, and stops at STARTTLS,
// after which the bytes it sees are TLS records.
type literalGuard struct {
	appendLimit int64
	authed      *atomic.Bool // a login succeeded (nil: never)
	skip        int64        // literal bytes still to pass through
	line        []byte       // the current line, up to guardLineMax bytes
	cmd         []byte       // the first line of the current command (prefix)
	contLine    bool         // the current line continues a command after a literal
	failed      error
	// interceptTLS: STARTTLS is done by guardConn (the plaintext
	// listener); startTLS is then its tag, until it is answered.
	// Elsewhere a STARTTLS line is a command like any other, which
	// imapserver refuses: no upgrade can happen above the guard.
	interceptTLS bool
	startTLS     string
	held         []byte // the bytes read after a taken STARTTLS line
}

const (
	guardLineMax     = 128
	maxNonSyncLit    = 4096 // RFC 7888 LITERAL-
	maxBufferedLit   = 4096 // imapserver's limit outside APPEND
	errLiteralTooBig = "BAD [TOOBIG] Literal too large for this command"
)

var errGuard = errors.New("imap: literal refused, connection closed")

// scan inspects p (just read from the client). It returns how many bytes
// may go to the parser and, on a violation, the tagged reply to send
// before closing.
func (g *literalGuard) scan(p []byte) (int, string) {
	lineStart := 0
	for i := 0; i < len(p); i++ {
		if g.skip > 0 {
			n := min(g.skip, int64(len(p)-i))
			g.skip -= n
			i += int(n) - 1
			lineStart = i + 1
			continue
		}
		c := p[i]
		if len(g.line) < guardLineMax {
			g.line = append(g.line, c)
		} else {
			// Keep the tail, where a literal header would be.
			copy(g.line, g.line[1:])
			g.line[len(g.line)-1] = c
		}
		if c != '\n' {
			continue
		}
		if reply := g.endOfLine(); reply != "" {
			return lineStart, reply
		}
		if g.startTLS != "" {
			// Neither the STARTTLS line nor anything pipelined behind it
			// reaches the parser now; the rest is held until STARTTLS is
			// answered (dropped if it succeeds).
			g.held = append(g.held[:0], p[i+1:]...)
			return lineStart, ""
		}
		lineStart = i + 1
	}
	return len(p), ""
}

// endOfLine handles a complete line in g.line.
func (g *literalGuard) endOfLine() string {
	line := bytes.TrimRight(g.line, "\r\n")
	g.line = g.line[:0]
	if !g.contLine {
		g.cmd = append(g.cmd[:0], line[:min(len(line), 64)]...)
		fields := bytes.Fields(g.cmd)
		if len(fields) == 2 && bytes.EqualFold(fields[1], []byte("STARTTLS")) && g.interceptTLS {
			g.startTLS = string(fields[0])
			return ""
		}
	}
	n, nonSync, ok := literalHeader(line)
	if !ok {
		g.contLine = false // the command ends here
		return ""
	}
	g.contLine = true
	isAppend := g.command() == "APPEND"
	switch {
	case nonSync && isAppend && g.authed != nil && g.authed.Load():
		// LITERAL+ (advertised once logged in): the message may be as
		// large as APPEND allows; over that, imapserver would refuse it
		// without draining it.
		if n > g.appendLimit {
			return g.tag() + " " + errLiteralTooBig
		}
	case nonSync && n > maxNonSyncLit:
		return g.tag() + " " + errLiteralTooBig
	case !nonSync && !isAppend && n > maxBufferedLit:
		return g.tag() + " " + errLiteralTooBig
	case !nonSync && isAppend && n > g.appendLimit:
		// imapserver answers NO [TOOBIG] without "+": no data follows.
		g.contLine = false
		return ""
	}
	g.skip = n
	return ""
}

// literalHeader parses "{N}", "{N+}" or "{N-}" at the end of a line.
func literalHeader(line []byte) (n int64, nonSync, ok bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false, false
	}
	num := line[open+1 : len(line)-1]
	if k := len(num); k > 0 && (num[k-1] == '+' || num[k-1] == '-') {
		nonSync, num = true, num[:k-1]
	}
	v, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || v < 0 {
		return 0, false, false
	}
	return v, nonSync, true
}

func (g *literalGuard) tag() string {
	f := bytes.Fields(g.cmd)
	if len(f) == 0 {
		return "*"
	}
	return string(f[0])
}

func (g *literalGuard) command() string {
	f := bytes.Fields(g.cmd)
	if len(f) < 2 {
		return ""
	}
	name := string(bytes.ToUpper(f[1]))
	if name == "UID" && len(f) > 2 {
		return "UID " + string(bytes.ToUpper(f[2]))
	}
	return name
}
