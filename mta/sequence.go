package mta

import (
	"bytes"
	"net"
	"sync"
)

// RFC 5321 section 4.2.4 and 4.3.2: a command out of sequence is answered
// with 503 ("Bad sequence of commands"). go-smtp v0.25.1 answers these
// with 502 ("Command not implemented"), which tells a client the command
// does not exist. sequenceConn rewrites exactly those replies, keeping
// their length, on the plaintext part of a connection: after STARTTLS the
// bytes are TLS records and are left alone (a client that errs in
// sequence inside TLS gets go-smtp's 502, with the right enhanced code
// 5.5.1 either way).
//
// It also sends a multi-line reply in one write. go-smtp flushes every
// line on its own, so its EHLO reply (nine lines) cost nine write system
// calls and woke the client nine times, 8% of the server's CPU for a
// 100 KiB message. A line that another line of its reply follows
// ("250-...") is held until the reply's last line ("250 ..."), or until
// the next read (the server reads only once its reply is out), or until
// maxHeldReply bytes are held.
type sequenceConn struct {
	net.Conn
	mu        sync.Mutex // Shutdown may write while the session reads
	lineStart bool       // the next byte written starts a reply line
	tls       bool       // STARTTLS was accepted: no more rewriting
	held      []byte     // lines of a reply not yet ended
}

const maxHeldReply = 4096

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

// handshakeFailed is go-smtp's reply, in plaintext, to a STARTTLS whose
// handshake failed, after which it goes on reading commands in plaintext.
// Postfix ends the session there: so does sequenceConn, in place of the
// reply. (Once the handshake is done, every write is a TLS record, which
// never starts so.)
var handshakeFailed = []byte("550 5.0.0 Handshake error")

func newSequenceConn(c net.Conn) *sequenceConn {
	return &sequenceConn{Conn: c, lineStart: true}
}

// SequenceConn wraps the plaintext connection of an SMTP server as port 25
// does: replies to commands out of sequence are 503, multi-line replies
// leave in one write, and a failed STARTTLS handshake ends the session.
// Not for a connection that starts with TLS.
func SequenceConn(c net.Conn) net.Conn { return newSequenceConn(c) }

// Unwrap returns the connection under it.
func (c *sequenceConn) Unwrap() net.Conn { return c.Conn }

func (c *sequenceConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tls {
		if bytes.HasPrefix(p, handshakeFailed) {
			c.Conn.Close()
			return len(p), nil
		}
		return c.Conn.Write(p)
	}
	c.rewrite(p)
	if continued(p) && len(c.held)+len(p) <= maxHeldReply {
		c.held = append(c.held, p...)
		return len(p), nil
	}
	if len(c.held) == 0 {
		return c.Conn.Write(p)
	}
	c.held = append(c.held, p...)
	if err := c.flushLocked(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Read sends the lines held first: whatever the server writes before it
// reads is all of its reply.
func (c *sequenceConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	err := c.flushLocked()
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *sequenceConn) flushLocked() error {
	if len(c.held) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.held)
	c.held = c.held[:0]
	if cap(c.held) > maxHeldReply {
		c.held = nil
	}
	return err
}

// continued reports whether p ends with a whole reply line that is not
// the last of its reply: "ddd-text" CRLF (RFC 5321 section 4.2.1).
func continued(p []byte) bool {
	if !bytes.HasSuffix(p, []byte("\r\n")) {
		return false
	}
	line := p[bytes.LastIndexByte(p[:len(p)-1], '\n')+1:]
	return len(line) >= 6 && line[3] == '-'
}

// rewrite changes "502" to "503" in place at the start of every line of p
// that is one of sequenceReplies.
func (c *sequenceConn) rewrite(p []byte) {
	for i := 0; i < len(p); {
		if c.lineStart {
			line := p[i:]
			if bytes.HasPrefix(line, startTLSReply) {
				c.tls = true
				startTLS(c.Conn)
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
