package pop3

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// client is a minimal POP3 client for tests.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c.expectPrefix("+OK mail.example.test")
	return c
}

func dialTLS(t testing.TB, addr string) *client {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c.expectPrefix("+OK mail.example.test")
	return c
}

// starttls sends STLS and runs the TLS handshake.
func (c *client) starttls() {
	c.t.Helper()
	c.cmdOK("STLS")
	c.handshake()
}

// handshake runs the client side of the TLS handshake.
func (c *client) handshake() {
	c.t.Helper()
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	c.conn = tc
	c.r = bufio.NewReader(tc)
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
}

func (c *client) readLine() string {
	c.t.Helper()
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, line)
	}
	if !strings.HasSuffix(line, "\r\n") {
		c.t.Fatalf("line without CRLF: %q", line)
	}
	return strings.TrimSuffix(line, "\r\n")
}

// cmd sends a command and returns the first reply line.
func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	return c.readLine()
}

func (c *client) cmdOK(line string) string {
	c.t.Helper()
	reply := c.cmd(line)
	if !strings.HasPrefix(reply, "+OK") {
		c.t.Fatalf("%s: got %q, want +OK", line, reply)
	}
	return reply
}

func (c *client) cmdErr(line, want string) {
	c.t.Helper()
	reply := c.cmd(line)
	if !strings.HasPrefix(reply, want) {
		c.t.Fatalf("%s: got %q, want %q...", line, reply, want)
	}
}

func (c *client) expectPrefix(want string) string {
	c.t.Helper()
	line := c.readLine()
	if !strings.HasPrefix(line, want) {
		c.t.Fatalf("got %q, want %q...", line, want)
	}
	return line
}

// multi reads the lines of a multi-line reply, raw (still dot-stuffed),
// without the terminating ".".
func (c *client) multi() []string {
	c.t.Helper()
	var lines []string
	for {
		line := c.readLine()
		if line == "." {
			return lines
		}
		lines = append(lines, line)
	}
}

// multiCmd sends a command that answers +OK and a multi-line reply.
func (c *client) multiCmd(line string) []string {
	c.t.Helper()
	c.cmdOK(line)
	return c.multi()
}

// rawMulti reads a multi-line reply and returns its bytes before
// un-stuffing, without the terminating ".\r\n".
func (c *client) rawMulti() string {
	c.t.Helper()
	var b strings.Builder
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if line == ".\r\n" {
			return b.String()
		}
		b.WriteString(line)
	}
}

// unstuff removes the dot-stuffing of a multi-line body.
func unstuff(s string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, ".")
	}
	return strings.Join(lines, "")
}

// login logs alice in with USER/PASS over STLS.
func login(t testing.TB, addr string) *client {
	t.Helper()
	c := dial(t, addr)
	c.starttls()
	c.cmdOK("USER " + alice)
	c.cmdOK("PASS " + alicePwd)
	return c
}

// expectEOF checks that the server closed the connection.
func (c *client) expectEOF() {
	c.t.Helper()
	if line, err := c.r.ReadString('\n'); err == nil {
		c.t.Fatalf("connection still open, got %q", line)
	}
}
