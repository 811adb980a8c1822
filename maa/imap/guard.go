package imap

import (
	"bytes"
	"errors"
	"net"
	"strconv"
)

// guardConn is the plaintext connection imapserver reads: it runs the
// client's bytes through a literalGuard. dc is the TCP-level wrapper
// (deadlines, corking) under it, possibly below TLS.
type guardConn struct {
	net.Conn
	dc *deadlineConn
	g  *literalGuard
	s  *Server
}

func newGuardConn(c net.Conn, dc *deadlineConn, s *Server) *guardConn {
	return &guardConn{Conn: c, dc: dc, s: s, g: &literalGuard{appendLimit: s.MaxMessageBytes}}
}

// Read passes the client's bytes through the guard; on a violation it
// answers BAD [TOOBIG] and the next Read fails, which ends the connection
// before the parser sees the offending line.
func (c *guardConn) Read(p []byte) (int, error) {
	g := c.g
	if g.failed != nil {
		return 0, g.failed
	}
	n, err := c.Conn.Read(p)
	if n == 0 {
		return n, err
	}
	ok, reply := g.scan(p[:n])
	if reply == "" {
		return n, err
	}
	g.failed = errGuard
	c.s.Logger.Warn("imap: oversized literal refused", "remote", c.RemoteAddr().String())
	c.Conn.Write([]byte(reply + "\r\n* BYE Literal too large\r\n"))
	if ok == 0 {
		return 0, errGuard
	}
	return ok, nil
}

// literalGuard watches the plaintext a client sends, before imapserver's
// parser sees it, for the two literal hazards of go-imap v2 beta.8:
//
//   - a non-synchronising literal ({N+} or {N-}) over 4096 bytes is
//     refused by imapserver without draining it, so its data would then
//     run as commands (RFC 7888 section 4: LITERAL- servers must reject
//     them; we answer BAD and close the connection, as 4 allows);
//   - a synchronising literal over 4096 bytes outside APPEND makes beta.8
//     drop its own TOOBIG error and wait for data that never comes.
//
// The guard never changes the bytes; it only cuts the connection before
// the offending line reaches the parser. It tracks literal data so that a
// message body is never mistaken for commands, and stops at STARTTLS,
// after which the bytes it sees are TLS records.
type literalGuard struct {
	appendLimit int64
	skip        int64  // literal bytes still to pass through
	line        []byte // the current line, up to guardLineMax bytes
	cmd         []byte // the first line of the current command (prefix)
	contLine    bool   // the current line continues a command after a literal
	off         bool   // after STARTTLS
	failed      error
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
	if g.off {
		return len(p), ""
	}
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
		lineStart = i + 1
		if g.off {
			return len(p), ""
		}
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
		if len(fields) == 2 && bytes.EqualFold(fields[1], []byte("STARTTLS")) {
			g.off = true
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
