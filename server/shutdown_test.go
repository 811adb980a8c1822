package server_test

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/internal/smtptest"
)

// TestShutdownStopsEveryListenerAtOnce: while one SMTP transaction
// drains, no listener takes new connections (they used to stop one after
// another, the later ones still accepting logins and APPENDs while the
// first drained), the transaction still completes (also when the server
// had not yet reached its Data handler after the 354), a new one is
// refused with 421, and the shutdown then ends without error.
func TestShutdownStopsEveryListenerAtOnce(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	srv := env.Server
	addrs := map[string]string{}
	for _, name := range []string{"imap", "imaps", "pop3", "pop3s", "submission", "submissions", "http"} {
		addrs[name] = env.Addr(name)
	}
	idle := smtptest.Dial(t, env.Addr("smtp"))
	idle.Cmd("EHLO idle.example", "250")
	idleSub := smtptest.Dial(t, env.Addr("submission"))
	idleSub.Cmd("EHLO idle.example", "250")
	c := smtptest.Dial(t, env.Addr("smtp"))
	c.Send("EHLO client.example\r\n")
	c.Expect("250")
	c.Send("MAIL FROM:<bob@remote.example>\r\n")
	c.Expect("250")
	c.Send("RCPT TO:<" + harness.User + ">\r\n")
	c.Expect("250")
	c.Send("DATA\r\n")
	c.Expect("354")
	c.Send("From: bob@remote.example\r\nSubject: drained\r\n\r\nfirst half\r\n")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	env.Server = nil // shut down here, not again at cleanup
	deadline := time.Now().Add(5 * time.Second)
	for name, addr := range addrs {
		for {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				break
			}
			conn.Close()
			if time.Now().After(deadline) {
				t.Fatalf("%s still accepts connections while SMTP drains", name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("shutdown ended (%v) before the transaction did", err)
	default:
	}
	// No new transaction starts meanwhile (RFC 5321 section 3.8).
	idle.Cmd("MAIL FROM:<late@remote.example>", "421 4.3.2")
	c.Send("second half\r\n.\r\n")
	c.Expect("250")
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not end after the transaction")
	}
	// The idle sessions are told before their connections close (RFC
	// 5321 section 3.8).
	for name, c := range map[string]*smtptest.Conn{"smtp": idle, "submission": idleSub} {
		if got := c.Reply(); !strings.HasPrefix(got, "421 4.3.2") {
			t.Errorf("idle %s session at shutdown got %q, want 421 4.3.2", name, got)
		}
		if !c.Closed() {
			t.Errorf("idle %s session still open after shutdown", name)
		}
	}
}

// TestShutdownTellsTLSSessions: idle sessions under TLS are told 421
// 4.3.2 at shutdown too (RFC 5321 section 3.8), over their TLS: on
// implicit TLS (465), and after STARTTLS on submission and on port 25.
func TestShutdownTellsTLSSessions(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	sessions := map[string]*smtptest.Conn{}
	raw, err := tls.Dial("tcp", env.Addr("submissions"), env.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	raw.SetDeadline(time.Now().Add(20 * time.Second))
	sessions["submissions"] = smtptest.New(t, raw)
	sessions["submissions"].Expect("220")
	sessions["submissions"].Cmd("EHLO client.example", "250")
	for _, name := range []string{"submission", "smtp"} {
		c := smtptest.Dial(t, env.Addr(name))
		c.Cmd("EHLO client.example", "250")
		sessions[name] = c.StartTLS(env.ClientTLS())
		sessions[name].Cmd("EHLO client.example", "250")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.Server.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	env.Server = nil
	for name, c := range sessions {
		if got := c.Reply(); !strings.HasPrefix(got, "421 4.3.2") {
			t.Errorf("idle %s session under TLS got %q at shutdown, want 421 4.3.2", name, got)
		}
		if !c.Closed() {
			t.Errorf("%s session still open after shutdown", name)
		}
	}
}
