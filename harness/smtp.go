package harness

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// SMTPConn is a raw SMTP client for tests that must send what a real
// client library would not (or not in that order): one line at a time,
// replies read whole.
type SMTPConn struct {
	t    testing.TB
	Conn net.Conn
	r    *bufio.Reader
}

// DialSMTP connects to addr and reads the greeting.
func DialSMTP(t testing.TB, addr string) *SMTPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	s := &SMTPConn{t: t, Conn: c, r: bufio.NewReader(c)}
	s.Expect("220")
	return s
}

// Reply reads one reply, all its lines, and returns its last line
// without the line ending; "" when the connection is closed.
func (s *SMTPConn) Reply() string {
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			return ""
		}
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimRight(l, "\r\n")
		}
	}
}

// Expect reads a reply and fails the test unless it starts with prefix.
func (s *SMTPConn) Expect(prefix string) string {
	s.t.Helper()
	l := s.Reply()
	if !strings.HasPrefix(l, prefix) {
		s.t.Fatalf("got reply %q, want %q", l, prefix)
	}
	return l
}

// Send writes s as it is.
func (s *SMTPConn) Send(text string) {
	s.t.Helper()
	if _, err := io.WriteString(s.Conn, text); err != nil {
		s.t.Fatalf("write: %v", err)
	}
}

// Cmd sends line with CRLF and expects a reply starting with prefix.
func (s *SMTPConn) Cmd(line, prefix string) string {
	s.t.Helper()
	s.Send(line + "\r\n")
	return s.Expect(prefix)
}

// Rest reads to the end of the connection and returns what came.
func (s *SMTPConn) Rest() string {
	b, _ := io.ReadAll(s.r)
	return string(b)
}
