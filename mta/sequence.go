package mta

import (
	"bytes"
	"net"
)

// RFC 5321 section 4.2.4 and 4.3.2: a command out of sequence is answered
// with 503 ("Bad sequence of commands"). go-smtp v0.25.1 answers these
// with 502 ("Command not implemented"), which tells a client the command
// does not exist. sequenceConn rewrites exactly those replies, keeping
// their length, on the plaintext part of a connection: after STARTTLS the
// bytes are TLS records and are left alone (a client that errs in
// sequence inside TLS gets go-smtp's 502, with the right enhanced code
// 5.5.1 either way).
type sequenceConn struct {
	net.Conn
	lineStart bool // the next byte written starts a reply line
	tls       bool // STARTTLS was accepted: no more rewriting
}

// sequenceReplies are go-smtp's texts for commands out of sequence.
var sequenceReplies = [][]byte{
	[]byte("502 5.5.1 Please introduce yourself first."),
	[]byte("502 5.5.1 Missing MAIL FROM command."),
	[]byte("502 5.5.1 Missing RCPT TO command."),
	[]byte("502 5.5.1 MAIL not allowed during message transfer"),
	[]byte("502 5.5.1 RCPT not allowed during message transfer"),
	[]byte("502 5.5.1 DATA not allowed during message transfer"),
}

var startTLSReply = []byte("220 2.0.0 Ready to start TLS")

func newSequenceConn(c net.Conn) *sequenceConn {
	return &sequenceConn{Conn: c, lineStart: true}
}

func (c *sequenceConn) Write(p []byte) (int, error) {
	if !c.tls {
		c.rewrite(p)
	}
	return c.Conn.Write(p)
}

// rewrite changes "502" to "503" in place at the start of every line of p
// that is one of sequenceReplies.
func (c *sequenceConn) rewrite(p []byte) {
	for i := 0; i < len(p); {
		if c.lineStart {
			line := p[i:]
			if bytes.HasPrefix(line, startTLSReply) {
				c.tls = true
				return
			}
			for _, r := range sequenceReplies {
				if bytes.HasPrefix(line, r) {
					p[i+2] = '3'
					break
				}
			}
		}
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			c.lineStart = false
			return
		}
		i += j + 1
		c.lineStart = true
	}
}
