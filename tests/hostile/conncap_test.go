package hostile

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/config"
)

// TestConnectionCaps: limits.max_connections_per_ip counts every mail
// protocol of one client together, and limits.max_connections every
// client. Over a cap, a plaintext listener answers with its protocol's
// temporary refusal (SMTP 421, IMAP BYE [UNAVAILABLE], POP3 -ERR
// [SYS/TEMP]) and closes; an implicit-TLS listener closes. A closed
// connection gives its slot back.
func TestConnectionCaps(t *testing.T) {
	env := start(t, func(c *config.Config) {
		c.Limits.MaxConnectionsPerIP = 3
		c.Limits.MaxConnections = 4
	})
	dial := func(listener, from string) (net.Conn, *bufio.Reader) {
		t.Helper()
		d := net.Dialer{Timeout: 5 * time.Second}
		if from != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
		}
		c, err := d.Dial("tcp", env.Addr(listener))
		if err != nil {
			t.Fatalf("dial %s from %s: %v", listener, from, err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}
	greet := func(listener, from, want string) net.Conn {
		t.Helper()
		c, r := dial(listener, from)
		l, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(l, want) {
			t.Fatalf("%s from %s: greeting %q (%v), want %q", listener, from, l, err, want)
		}
		return c
	}
	refused := func(listener, from, want string) {
		t.Helper()
		c, r := dial(listener, from)
		l, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(l, want) {
			t.Fatalf("%s from %s over the cap: %q (%v), want %q", listener, from, l, err, want)
		}
		if _, err := r.ReadString('\n'); err == nil {
			t.Fatalf("%s from %s: the refused connection stays open", listener, from)
		}
		c.Close()
	}

	imap1 := greet("imap", "127.0.0.1", "* OK")
	greet("pop3", "127.0.0.1", "+OK")
	greet("submission", "127.0.0.1", "220 ")
	// Three from 127.0.0.1, one protocol after another: the fourth of
	// any protocol is over its per-address cap.
	refused("imap", "127.0.0.1", "* BYE [UNAVAILABLE]")
	refused("pop3", "127.0.0.1", "-ERR [SYS/TEMP]")
	refused("smtp", "127.0.0.1", "421 4.7.0")
	refused("submission", "127.0.0.1", "421 4.7.0")
	// Implicit TLS: no plaintext line, the handshake fails.
	tc := tls.Client(func() net.Conn { c, _ := dial("imaps", "127.0.0.1"); return c }(), env.ClientTLS())
	if err := tc.Handshake(); err == nil {
		t.Fatal("imaps over the cap: TLS handshake succeeded")
	}

	// Another address has its own per-address slots, but four in all is
	// the server's cap.
	greet("imap", "127.0.0.2", "* OK")
	refused("imap", "127.0.0.3", "* BYE [UNAVAILABLE]")

	// A closed connection frees its slot (per address and in all).
	imap1.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, r := dial("pop3", "127.0.0.1")
		l, _ := r.ReadString('\n')
		c.Close()
		if strings.HasPrefix(l, "+OK") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after closing a connection, POP3 still says %q", l)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
