// Package smtptest is a raw SMTP client for tests that must send what a
// real client library would not (or not in that order): exact bytes, one
// line at a time, replies read whole. It depends on nothing of Posthorn's,
// so that the tests of any package (mta's own among them) can use it.
package smtptest

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Conn is one client connection.
type Conn struct {
	t    testing.TB
	Conn net.Conn
	R    *bufio.Reader
}

// Dial connects to addr, closed at the end of the test, and reads the
// greeting.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	s := New(t, c)
	s.Expect("220")
	return s
}

// New speaks SMTP over c (a TLS client over a Conn's connection, say).
func New(t testing.TB, c net.Conn) *Conn {
	return &Conn{t: t, Conn: c, R: bufio.NewReader(c)}
}

// Reply reads one reply, all its lines, and returns its last line
// without the line ending; "" when the connection is closed.
func (s *Conn) Reply() string {
	for {
		l, err := s.R.ReadString('\n')
		if err != nil {
			return ""
		}
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimRight(l, "\r\n")
		}
	}
}

// Expect reads a reply and fails the test unless it starts with prefix.
func (s *Conn) Expect(prefix string) string {
	s.t.Helper()
	l := s.Reply()
	if !strings.HasPrefix(l, prefix) {
		s.t.Fatalf("got reply %q, want %q", l, prefix)
	}
	return l
}

// Send writes text as it is.
func (s *Conn) Send(text string) {
	s.t.Helper()
	if _, err := io.WriteString(s.Conn, text); err != nil {
		s.t.Fatalf("write: %v", err)
	}
}

// Cmd sends line with CRLF and expects a reply starting with prefix.
func (s *Conn) Cmd(line, prefix string) string {
	s.t.Helper()
	s.Send(line + "\r\n")
	return s.Expect(prefix)
}

// StartTLS sends STARTTLS, makes the TLS handshake with cfg on the
// connection, and returns the client that speaks inside it.
func (s *Conn) StartTLS(cfg *tls.Config) *Conn {
	s.t.Helper()
	s.Cmd("STARTTLS", "220")
	tc := tls.Client(s.Conn, cfg)
	if err := tc.Handshake(); err != nil {
		s.t.Fatalf("TLS handshake: %v", err)
	}
	return New(s.t, tc)
}

// Closed reports whether the server closed the connection (within 10
// seconds, and with nothing more to read).
func (s *Conn) Closed() bool {
	s.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := s.R.ReadByte()
	return err != nil
}

// Rest reads to the end of the connection and returns what came.
func (s *Conn) Rest() string {
	b, _ := io.ReadAll(s.R)
	return string(b)
}
