package pop3

import (
	"crypto/tls"
	"encoding/base64"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/metrics"
)

func TestCAPABeforeAndAfterSTLS(t *testing.T) {
	srv, _ := newTestServer(t)
	c := dial(t, serve(t, srv, false))
	caps := c.multiCmd("CAPA")
	for _, want := range []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS"} {
		if !slices.Contains(caps, want) {
			t.Errorf("CAPA before TLS lacks %q: %q", want, caps)
		}
	}
	for _, no := range []string{"USER", "SASL PLAIN LOGIN"} {
		if slices.Contains(caps, no) {
			t.Errorf("CAPA before TLS offers %q", no)
		}
	}
	c.starttls()
	caps = c.multiCmd("CAPA")
	if slices.Contains(caps, "STLS") || !slices.Contains(caps, "USER") || !slices.Contains(caps, "SASL PLAIN LOGIN") {
		t.Errorf("CAPA after STLS: %q", caps)
	}
	c.cmdErr("STLS", "-ERR")
}

func TestPlaintextAuthRefused(t *testing.T) {
	srv, _ := newTestServer(t)
	c := dial(t, serve(t, srv, false))
	c.cmdErr("USER "+alice, "-ERR [AUTH] Plaintext authentication disallowed")
	c.cmdErr("PASS "+alicePwd, "-ERR [AUTH] Plaintext authentication disallowed")
	c.cmdErr("AUTH PLAIN "+plainIR(alice, alicePwd), "-ERR [AUTH] Plaintext authentication disallowed")
	c.cmdErr("STAT", "-ERR")
}

func TestPlaintextAuthAllowed(t *testing.T) {
	srv, _ := newTestServer(t)
	srv.AllowPlaintextAuth = true
	srv.TLSConfig = nil
	c := dial(t, serve(t, srv, false))
	if caps := c.multiCmd("CAPA"); !slices.Contains(caps, "USER") || slices.Contains(caps, "STLS") {
		t.Errorf("CAPA: %q", caps)
	}
	c.cmdErr("STLS", "-ERR")
	c.cmdOK("USER " + alice)
	c.cmdOK("PASS " + alicePwd)
	c.cmdOK("STAT")
}

// TestSTLSDiscardsPipelinedPlaintext sends a command in the same packet as
// STLS: it must not run inside the TLS session (RFC 2595; CVE-2011-0411).
func TestSTLSDiscardsPipelinedPlaintext(t *testing.T) {
	srv, _ := newTestServer(t)
	c := dial(t, serve(t, srv, false))
	if _, err := io.WriteString(c.conn, "STLS\r\nUSER "+alice+"\r\n"); err != nil {
		t.Fatal(err)
	}
	c.expectPrefix("+OK")
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	c.conn = tc
	c.r.Reset(tc)
	// Had the injected USER run, this PASS would log in.
	c.cmdErr("PASS "+alicePwd, "-ERR Send USER first")
	c.cmdOK("USER " + alice)
	c.cmdOK("PASS " + alicePwd)
}

func TestImplicitTLS(t *testing.T) {
	srv, _ := newTestServer(t)
	c := dialTLS(t, serve(t, srv, true))
	if caps := c.multiCmd("CAPA"); slices.Contains(caps, "STLS") || !slices.Contains(caps, "USER") {
		t.Errorf("CAPA on implicit TLS: %q", caps)
	}
	c.cmdOK("USER " + alice)
	c.cmdOK("PASS " + alicePwd)
}

func TestAuthFailureSameReply(t *testing.T) {
	srv, _ := newTestServer(t)
	srv.Metrics = metrics.New()
	c := dial(t, serve(t, srv, false))
	if n := srv.Metrics.Value(metrics.Connections, "protocol", "pop3"); n != 1 {
		t.Errorf("open connections = %d, want 1", n)
	}
	c.starttls()
	c.cmdOK("USER nobody@example.test")
	unknown := c.cmd("PASS " + alicePwd)
	c.cmdOK("USER " + alice)
	wrong := c.cmd("PASS wrong")
	if unknown != wrong || unknown != "-ERR [AUTH] Authentication failed" {
		t.Errorf("unknown user: %q, wrong password: %q", unknown, wrong)
	}
	c.cmdOK("USER throttled@example.test")
	c.cmdErr("PASS x", "-ERR [SYS/TEMP]")
	c.cmdOK("USER broken@example.test")
	reply := c.cmd("PASS x")
	if !strings.HasPrefix(reply, "-ERR [SYS/TEMP] Internal error") || strings.Contains(reply, "fire") {
		t.Errorf("internal error reply: %q", reply)
	}
	if got := srv.Metrics.Value(metrics.AuthFailures, "protocol", "pop3"); got != 3 {
		t.Errorf("auth failures = %d, want 3", got)
	}
	// PASS may contain spaces (RFC 1939 section 7).
	c.cmdOK("USER " + alice)
	c.cmdOK("PASS " + alicePwd)
}

func plainIR(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestAuthSASL(t *testing.T) {
	srv, _ := newTestServer(t)
	addr := serve(t, srv, false)

	c := dial(t, addr)
	c.starttls()
	if mechs := c.multiCmd("AUTH"); !slices.Equal(mechs, []string{"PLAIN", "LOGIN"}) {
		t.Errorf("AUTH list: %q", mechs)
	}
	c.cmdErr("AUTH CRAM-MD5", "-ERR")
	c.cmdErr("AUTH PLAIN !!!", "-ERR Invalid base64")
	c.cmdErr("AUTH PLAIN "+plainIR(alice, "wrong"), "-ERR [AUTH] Authentication failed")
	// Without an initial response: an empty challenge, then "*" cancels.
	if got := c.cmd("AUTH PLAIN"); got != "+ " {
		t.Fatalf("challenge %q", got)
	}
	c.cmdErr("*", "-ERR Authentication canceled")
	if got := c.cmd("AUTH PLAIN"); got != "+ " {
		t.Fatalf("challenge %q", got)
	}
	c.cmdOK(plainIR(alice, alicePwd))
	c.cmdOK("STAT")
	c.cmdOK("QUIT")

	// LOGIN with the user name as initial response (RFC 5034 section 4).
	c = dial(t, addr)
	c.starttls()
	if got := c.cmd("AUTH LOGIN " + b64(alice)); got != "+ "+b64("Password:") {
		t.Fatalf("LOGIN challenge %q", got)
	}
	c.cmdOK(b64(alicePwd))
	c.cmdOK("QUIT")

	// PLAIN with an initial response.
	c = dial(t, addr)
	c.starttls()
	c.cmdOK("AUTH PLAIN " + plainIR(alice, alicePwd))
	c.cmdErr("AUTH PLAIN", "-ERR") // not valid in TRANSACTION
}

func TestInUse(t *testing.T) {
	srv, _ := newTestServer(t)
	addr := serve(t, srv, false)
	first := login(t, addr)
	second := dial(t, addr)
	second.starttls()
	second.cmdOK("USER " + alice)
	second.cmdErr("PASS "+alicePwd, "-ERR [IN-USE]")
	// Another account is not locked.
	second.cmdOK("USER bob@example.test")
	second.cmdOK("PASS bobpw")
	first.cmdOK("QUIT")
	first.expectEOF()
	third := login(t, addr)
	third.cmdOK("STAT")
}

func TestInUseReleasedOnDisconnect(t *testing.T) {
	srv, _ := newTestServer(t)
	addr := serve(t, srv, false)
	first := login(t, addr)
	first.conn.Close()
	// The lock goes when the session ends; wait for that through the
	// server's session set rather than a sleep.
	waitSessions(t, srv, 0)
	login(t, addr).cmdOK("STAT")
}

// waitSessions waits until srv has n sessions.
func waitSessions(t testing.TB, srv *Server, n int) {
	t.Helper()
	for i := 0; ; i++ {
		srv.mu.Lock()
		got := len(srv.sessions)
		srv.mu.Unlock()
		if got == n {
			return
		}
		if i > 2000 {
			t.Fatalf("sessions = %d, want %d", got, n)
		}
		yieldBriefly()
	}
}
