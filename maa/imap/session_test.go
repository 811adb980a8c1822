package imap

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/posthorn/posthorn/metrics"
)

// TestLoginRefusedBeforeSTARTTLS: LOGINDISABLED before TLS, LOGIN refused
// with PRIVACYREQUIRED, then allowed after STARTTLS (RFC 9051 6.2.3).
func TestLoginRefusedBeforeSTARTTLS(t *testing.T) {
	e := newTestEnv(t)
	c, err := imapclient.DialInsecure(e.plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !caps.Has(imapv2.CapLoginDisabled) || !caps.Has(imapv2.CapStartTLS) || caps.Has("AUTH=PLAIN") {
		t.Fatalf("caps before TLS: %v", caps)
	}
	err = c.Login(testAlice, testPass).Wait()
	if imapCode(err) != imapv2.ResponseCodePrivacyRequired {
		t.Fatalf("LOGIN before TLS: %v", err)
	}
	c.Close()

	c, err = imapclient.DialStartTLS(e.plain, &imapclient.Options{TLSConfig: e.tls})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(testAlice, testPass).Wait(); err != nil {
		t.Fatalf("LOGIN after STARTTLS: %v", err)
	}
	caps = c.Caps()
	for _, want := range []imapv2.Cap{imapv2.CapIMAP4rev2, imapv2.CapIdle, imapv2.CapUIDPlus, imapv2.CapMove,
		imapv2.CapSpecialUse, imapv2.CapListStatus, imapv2.CapStatusSize, imapv2.CapESearch, "APPENDLIMIT=52428800"} {
		if !caps.Has(want) {
			t.Errorf("missing capability %s in %v", want, caps)
		}
	}
	// LITERAL+ after login only: before it, LITERAL- (4096 bytes).
	if !caps.Has(imapv2.CapLiteralPlus) {
		t.Errorf("LITERAL+ not advertised after login: %v", caps)
	}
}

// TestLiteralPlusBeforeLogin: before login the capabilities offer
// LITERAL-, not LITERAL+.
func TestLiteralPlusBeforeLogin(t *testing.T) {
	e := newTestEnv(t)
	conn, r, greeting := e.dialPlain()
	fmt.Fprintf(conn, "a CAPABILITY\r\n")
	caps, _ := r.ReadString('\n')
	expectTagged(t, r, "a OK")
	for _, l := range []string{greeting, caps} {
		if strings.Contains(l, "LITERAL+") || !strings.Contains(l, "LITERAL-") {
			t.Errorf("capabilities before login: %q", l)
		}
	}
}

// TestAppendLiteralPlus: after login, APPEND takes a non-synchronising
// literal larger than 4096 bytes: no continuation request, the message
// stored byte for byte, and the next command pipelined behind it runs.
func TestAppendLiteralPlus(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	conn, r, _ := e.dialPlain()
	fmt.Fprintf(conn, "a LOGIN %s \"%s\"\r\n", testAlice, testPass)
	expectTagged(t, r, "a OK")
	msg := "Subject: big\r\n\r\n" + strings.Repeat("b NOOP and a line of the body\r\n", 1000)
	fmt.Fprintf(conn, "b APPEND INBOX {%d+}\r\n%s\r\nc NOOP\r\n", len(msg), msg)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "+") {
			t.Fatalf("continuation request for a LITERAL+ literal: %q", line)
		}
		if strings.HasPrefix(line, "b ") {
			if !strings.HasPrefix(line, "b OK [APPENDUID ") {
				t.Fatalf("APPEND: %q", line)
			}
			break
		}
	}
	expectTagged(t, r, "c OK")
	msgs, err := e.st.Messages(testAlice, "INBOX")
	if err != nil || len(msgs) != 1 {
		t.Fatalf("INBOX: %d messages (%v)", len(msgs), err)
	}
	b, err := e.st.OpenMessage(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, b.Size())
	if _, err := b.ReadAt(got, 0); err != nil || string(got) != msg {
		t.Fatalf("stored %d bytes (%v), sent %d", len(got), err, len(msg))
	}
}

func TestPlaintextAllowed(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	c, err := imapclient.DialInsecure(e.plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(testAlice, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestLoginFailures(t *testing.T) {
	e := newTestEnv(t)
	c, err := imapclient.DialTLS(e.implicit, &imapclient.Options{TLSConfig: e.tls})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(testAlice, "wrong").Wait(); imapCode(err) != imapv2.ResponseCodeAuthenticationFailed {
		t.Fatalf("bad password: %v", err)
	}
	if err := c.Login("throttled@example.test", testPass).Wait(); imapCode(err) != imapv2.ResponseCodeUnavailable {
		t.Fatalf("throttled: %v", err)
	}
	if n := e.srv.Metrics.Value(metrics.AuthFailures, "protocol", "imap"); n != 2 {
		t.Fatalf("auth failures metric = %d", n)
	}
	if err := c.Authenticate(sasl.NewPlainClient("", testAlice, testPass)); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN: %v", err)
	}
	// Not c.State(): imapclient (beta.8) wakes Authenticate's caller before
	// it records the new state. A command only valid after a login shows
	// the server's side.
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("SELECT after AUTHENTICATE PLAIN: %v", err)
	}
	if n := e.srv.Metrics.Value(metrics.Connections, "protocol", "imap"); n != 1 {
		t.Fatalf("connections gauge = %d", n)
	}
}

// TestIdleTimeout: a silent client is disconnected after IdleTimeout, even
// in the authenticated state where imapserver itself waits 35 minutes.
func TestIdleTimeout(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.IdleTimeout = 300 * time.Millisecond; s.AllowPlaintextAuth = true })
	conn, err := net.Dial("tcp", e.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	r.ReadString('\n') // greeting
	fmt.Fprintf(conn, "a LOGIN %s \"%s\"\r\n", testAlice, testPass)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "a OK") {
			break
		}
	}
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("connection not closed by the server: %v", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Fatalf("closed after %v", d)
	}
	// Announced (RFC 9051 section 7.1.5), as Dovecot does; it closed
	// without a word.
	if string(rest) != "* BYE Autologout: idle for too long\r\n" {
		t.Errorf("before the close: %q", rest)
	}
}

// TestGarbageInput: nonsense before login costs a BAD and the connection;
// after login, a BAD per bad line, and the session keeps working.
func TestGarbageInput(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	conn, r, _ := e.dialPlain()
	e.deliver(testAlice, "INBOX", string(loadCRLF(t, "testdata/nested.eml")))
	fmt.Fprintf(conn, "a LOGIN %s \"%s\"\r\n", testAlice, testPass)
	expectTagged(t, r, "a OK")
	fmt.Fprintf(conn, "a2 SELECT INBOX\r\n")
	expectTagged(t, r, "a2 OK")
	for i, bad := range []string{"b FETCH", "c SELECT \"a\x00b\"", "d UID FETCH 1:* (BODY[1.2.3.4.5.6.7.8.9.10.11.12])",
		"e LIST \"\" \"" + strings.Repeat("*%", 400) + "\"", "f SEARCH OR OR OR", "g STORE 1 +FLAGS (\\Bogus)",
		"h FETCH 1 BODY[" + strings.Repeat("1.", 100) + "1]"} {
		fmt.Fprintf(conn, "%s\r\n", bad)
		tag := string(rune('b' + i))
		line := expectTagged(t, r, tag+" ")
		if strings.HasPrefix(line, tag+" OK") && i < 2 {
			t.Errorf("%q: %s", bad, line)
		}
	}
	fmt.Fprintf(conn, "z NOOP\r\n")
	expectTagged(t, r, "z OK")
}

func expectTagged(t testing.TB, r *bufio.Reader, prefix string) string {
	t.Helper()
	tag, _, _ := strings.Cut(prefix, " ")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("waiting for %q: %v", prefix, err)
		}
		if strings.HasPrefix(line, tag+" ") {
			if !strings.HasPrefix(line, prefix) {
				t.Fatalf("got %q, want %q", line, prefix)
			}
			return line
		}
	}
}

// TestLiteralGuard: a non-synchronising literal that imapserver would
// refuse without draining ends the connection before its data can run as
// commands, on the plaintext and on the implicit-TLS listener: in APPEND
// over the append limit (LITERAL+), elsewhere or before login over 4096
// bytes (LITERAL-). Implicit TLS offers neither STARTTLS nor
// LOGINDISABLED.
func TestLiteralGuard(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true; s.MaxMessageBytes = 5000 })
	dialers := map[string]func() net.Conn{
		"plain": func() net.Conn {
			c, err := net.Dial("tcp", e.plain)
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		"tls": func() net.Conn {
			c, err := tls.Dial("tcp", e.implicit, e.tls)
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
	}
	cases := []struct {
		name  string
		login bool
		cmd   string // with %d for the literal's size
		lines int    // of the smuggled command in the literal
	}{
		{"append-over-limit", true, "b APPEND INBOX {%d+}", 300},    // 6000+ bytes > 5000
		{"search-over-4096", true, "b SEARCH TEXT {%d+}", 220},      // 4400+ bytes
		{"append-before-login", false, "b APPEND INBOX {%d+}", 220}, // 4400+ bytes
	}
	for name, dial := range dialers {
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				conn := dial()
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(conn)
				greeting, _ := r.ReadString('\n')
				if name == "tls" && (strings.Contains(greeting, "STARTTLS") || strings.Contains(greeting, "LOGINDISABLED") ||
					!strings.Contains(greeting, "AUTH=PLAIN")) {
					t.Errorf("implicit TLS greeting: %q", greeting)
				}
				if tc.login {
					fmt.Fprintf(conn, "a LOGIN %s \"%s\"\r\n", testAlice, testPass)
					expectTagged(t, r, "a OK")
				}
				box := "Smuggled" + name + tc.name
				evil := strings.Repeat("E1 CREATE "+box+"\r\n", tc.lines)
				if len(evil) <= 4096 {
					t.Fatalf("literal of %d bytes: not over 4096", len(evil))
				}
				fmt.Fprintf(conn, tc.cmd+"\r\n%s\r\nc NOOP\r\n", len(evil), evil)
				line := expectTagged(t, r, "b BAD")
				if !strings.Contains(line, "TOOBIG") {
					t.Errorf("reply %q", line)
				}
				rest, _ := io.ReadAll(r)
				if strings.Contains(string(rest), "E1 ") || strings.Contains(string(rest), "c OK") {
					t.Errorf("data ran as commands: %q", rest)
				}
				if _, err := e.st.Mailbox(testAlice, box); err == nil {
					t.Error("smuggled mailbox exists")
				}
			})
		}
	}
}

// guardRun feeds in to g as imapserver's parser reads it, chunk bytes
// at a time at most, and returns what the parser got. answer says what
// the server wrote after each line end passed on; the parser reads every
// literal it is given.
func guardRun(g *literalGuard, in string, chunk int, answer func(p pending) (cont, tagged bool)) (string, *refusal) {
	src := []byte(in)
	buf := make([]byte, 4096)
	var got strings.Builder
	for {
		if g.pend.set {
			g.resolve(answer(g.pend))
		}
		if g.startTLS != "" {
			return got.String(), nil
		}
		n := 0
		if len(g.held) > 0 {
			n = copy(buf, g.held)
			g.held = g.held[n:]
		}
		if n == 0 || g.more {
			if len(src) == 0 {
				return got.String(), nil
			}
			g.more = false
			m := copy(buf[n:min(len(buf), n+chunk)], src)
			src, n = src[m:], n+m
		}
		out, rest, ref := g.filter(buf[:n], n == len(buf))
		if rest < n {
			g.held = append(append([]byte(nil), buf[rest:n]...), g.held...)
		}
		got.Write(buf[:out])
		if ref != nil {
			return got.String(), ref
		}
	}
}

// parserReads: every literal is read ("+" for a synchronising one), every
// command answered.
func parserReads(p pending) (cont, tagged bool) {
	if p.lit {
		return !p.nonSync, false
	}
	return false, true
}

func TestLiteralGuardScan(t *testing.T) {
	for _, chunk := range []int{1, 7, 4096} {
		g := &literalGuard{appendLimit: 100}
		in := "a APPEND INBOX {10}\r\n0123456789\r\nb LOGIN {3+}\r\nbob {5+}\r\nx{99}}\r\nc UID FETCH 1 BODY[]\r\n"
		if got, ref := guardRun(g, in, chunk, parserReads); got != in || ref != nil {
			t.Fatalf("clean input, %d-byte reads: %q %v", chunk, got, ref)
		}
	}
	// A literal's data that looks like a header is passed on as data.
	g := &literalGuard{appendLimit: 100}
	in := "a APPEND INBOX {12}\r\nz {9999+}\r\n\r\nb NOOP\r\n"
	if got, ref := guardRun(g, in, 4096, parserReads); got != in || ref != nil {
		t.Fatalf("literal data: %q %v", got, ref)
	}
	g = &literalGuard{appendLimit: 100}
	in = "a NOOP\r\nb LOGIN {5000}\r\n"
	if got, ref := guardRun(g, in, 4096, parserReads); got != "a NOOP\r\n" || ref == nil || !strings.HasPrefix(ref.reply, "b BAD") {
		t.Fatalf("sync literal outside APPEND: %q %v", got, ref)
	}
	// LITERAL+ after login: APPEND up to the append limit, data passed on.
	var authed atomic.Bool
	authed.Store(true)
	g = &literalGuard{appendLimit: 10000, authed: &authed}
	in = "a APPEND INBOX {6000+}\r\n" + strings.Repeat("z {99999+}\r\n", 500) + "\r\nb NOOP\r\n"
	if got, ref := guardRun(g, in, 4096, parserReads); got != in || ref != nil {
		t.Fatalf("LITERAL+ APPEND within the limit: %q %v", got, ref)
	}
	g = &literalGuard{appendLimit: 10000, authed: &authed}
	in = "a NOOP\r\nb APPEND INBOX {10001+}\r\n"
	if got, ref := guardRun(g, in, 4096, parserReads); got != "a NOOP\r\n" || ref == nil || !strings.HasPrefix(ref.reply, "b BAD") {
		t.Fatalf("LITERAL+ APPEND over the limit: %q %v", got, ref)
	}
	g = &literalGuard{appendLimit: 10000, authed: &authed}
	in = "b SEARCH TEXT {4097+}\r\n"
	if got, ref := guardRun(g, in, 4096, parserReads); got != "" || ref == nil || !strings.HasPrefix(ref.reply, "b BAD") {
		t.Fatalf("LITERAL+ outside APPEND over 4096: %q %v", got, ref)
	}
	g = &literalGuard{appendLimit: 10000, authed: new(atomic.Bool)}
	in = "b APPEND INBOX {4097+}\r\n"
	if got, ref := guardRun(g, in, 4096, parserReads); got != "" || ref == nil || !strings.HasPrefix(ref.reply, "b BAD") {
		t.Fatalf("LITERAL+ APPEND before login: %q %v", got, ref)
	}
	// Refused before the "+" (over the append limit): no data follows.
	refused := func(p pending) (bool, bool) { return false, true }
	g = &literalGuard{appendLimit: 100}
	in = "a APPEND INBOX {500}\r\nb NOOP\r\n"
	if got, ref := guardRun(g, in, 4096, refused); got != in || ref != nil {
		t.Fatalf("APPEND over the limit: %q %v", got, ref)
	}
	// Answered before its LITERAL+ literal was read: the literal and the
	// rest of the command, a second literal included, never reach the
	// parser.
	for _, chunk := range []int{1, 5, 4096} {
		g = &literalGuard{appendLimit: 100, authed: &authed}
		in = "a APPEND INBOX \"x\" {8+}\r\nb NOOP\r\n {4+}\r\nc NO\r\nd NOOP\r\n"
		got, ref := guardRun(g, in, chunk, refused)
		if got != "a APPEND INBOX \"x\" {8+}\r\nd NOOP\r\n" || ref != nil {
			t.Fatalf("literal of an answered command, %d-byte reads: %q %v", chunk, got, ref)
		}
	}
	// A line without a tag and a command is answered by the guard.
	for _, chunk := range []int{1, 4096} {
		g = &literalGuard{appendLimit: 100}
		in = "\r\n\n(x {3+}\r\nabc\r\na\r\nb \r\nc UID\r\n+a NOOP\r\nd UID FETCH 1 FLAGS\r\n"
		got, ref := guardRun(g, in, chunk, parserReads)
		if got != "d UID FETCH 1 FLAGS\r\n" || ref != nil {
			t.Fatalf("lines without a command, %d-byte reads: %q %v", chunk, got, ref)
		}
		if want := "* BAD [CLIENTBUG] Empty command line\r\n* BAD [CLIENTBUG] Empty command line\r\n" +
			"* BAD [CLIENTBUG] Invalid tag\r\na BAD [CLIENTBUG] Missing command name\r\n" +
			"b BAD [CLIENTBUG] Missing command name\r\nc BAD [CLIENTBUG] Missing command name\r\n" +
			"* BAD [CLIENTBUG] Invalid tag\r\n"; string(g.say) != want {
			t.Fatalf("answers: %q", g.say)
		}
	}
	// A command over maxCommandBytes is refused.
	g = &literalGuard{appendLimit: 100}
	in = "a NOOP\r\nb LOGIN x " + strings.Repeat("y", maxCommandBytes) + "\r\n"
	if got, ref := guardRun(g, in, 4096, parserReads); !strings.HasPrefix(got, "a NOOP\r\n") || ref == nil ||
		!strings.HasPrefix(ref.reply, "b BAD [TOOBIG]") {
		t.Fatalf("over-long command: %q %v", got[:min(len(got), 40)], ref)
	}
	// On the plaintext listener STARTTLS is taken by the guard: nothing
	// from its line on reaches the parser.
	g = &literalGuard{appendLimit: 100, interceptTLS: true}
	in = "a NOOP\r\nb STARTTLS\r\nc LOGIN x y\r\n"
	if got, ref := guardRun(g, in, 4096, parserReads); got != "a NOOP\r\n" || ref != nil || g.startTLS != "b" ||
		string(g.held) != "c LOGIN x y\r\n" {
		t.Fatalf("STARTTLS taken: %q %v %q %q", got, ref, g.startTLS, g.held)
	}
	// On TLS it is taken too, to be answered BAD (TestSTARTTLSOverTLS),
	// and what follows stays for the next read.
	g = &literalGuard{appendLimit: 100}
	in = "a STARTTLS\r\nb APPEND INBOX {99999+}\r\n"
	if got, ref := guardRun(g, in, 4096, parserReads); got != "" || ref != nil || g.startTLS != "a" ||
		string(g.held) != "b APPEND INBOX {99999+}\r\n" {
		t.Fatalf("STARTTLS on TLS: %q %v %q %q", got, ref, g.startTLS, g.held)
	}
}

// TestOutWatch: continuation requests and tagged responses are told
// apart from untagged ones and from literal data, across writes.
func TestOutWatch(t *testing.T) {
	var o outWatch
	for _, w := range []string{"* OK hi\r\n", "* 1 FETCH (BODY[] {12}\r\n", "+ x\r\na OK\r\n", ")\r\n* 2 EXISTS", "\r\n"} {
		o.see([]byte(w))
	}
	if cont, tagged := o.take(); cont || tagged {
		t.Fatalf("literal data taken for responses: %v %v", cont, tagged)
	}
	for _, w := range []string{"+", " Ready\r\n"} {
		o.see([]byte(w))
	}
	if cont, tagged := o.take(); !cont || tagged {
		t.Fatalf("continuation request: %v %v", cont, tagged)
	}
	o.see([]byte("* BYE\r\na1 "))
	o.see([]byte("OK done\r\n"))
	if cont, tagged := o.take(); cont || !tagged {
		t.Fatalf("tagged response: %v %v", cont, tagged)
	}
}

// TestSTARTTLSByGuard: STARTTLS on the plaintext listener is done below
// imapserver, so that after it the literal guard still sees the client's
// plaintext: commands before STARTTLS are answered, a command pipelined
// behind it is dropped, no greeting follows the handshake, the
// capabilities change as RFC 9051 says, and an oversized non-synchronising
// literal sent over the upgraded connection is refused instead of running
// its data as commands.
func TestSTARTTLSByGuard(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.MaxMessageBytes = 5000 }) // the literal below is over it
	conn, r, greeting := e.dialPlain()
	if !strings.Contains(greeting, "STARTTLS") || !strings.Contains(greeting, "LOGINDISABLED") {
		t.Fatalf("plaintext greeting: %q", greeting)
	}
	fmt.Fprintf(conn, "a NOOP\r\nb STARTTLS\r\nc LOGIN %s \"%s\"\r\n", testAlice, testPass)
	expectTagged(t, r, "a OK")
	expectTagged(t, r, "b OK")
	if r.Buffered() > 0 {
		t.Fatalf("plaintext after STARTTLS's OK: %d bytes", r.Buffered())
	}
	tc := tls.Client(conn, e.tls)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	r = bufio.NewReader(tc)
	fmt.Fprintf(tc, "d CAPABILITY\r\n")
	first, _ := r.ReadString('\n')
	if !strings.HasPrefix(first, "* CAPABILITY ") {
		t.Fatalf("first line after the handshake %q: want the CAPABILITY reply (no greeting after STARTTLS)", first)
	}
	if strings.Contains(first, "STARTTLS") || strings.Contains(first, "LOGINDISABLED") || !strings.Contains(first, "AUTH=PLAIN") {
		t.Errorf("capabilities after STARTTLS: %q", first)
	}
	expectTagged(t, r, "d OK")
	// The LOGIN pipelined behind STARTTLS did not run.
	fmt.Fprintf(tc, "e SELECT INBOX\r\n")
	if line := expectTagged(t, r, "e "); strings.HasPrefix(line, "e OK") {
		t.Fatalf("SELECT without a login after STARTTLS: the pipelined LOGIN ran")
	}
	fmt.Fprintf(tc, "f STARTTLS\r\n")
	if line := expectTagged(t, r, "f "); strings.HasPrefix(line, "f OK") {
		t.Fatalf("a second STARTTLS was accepted: %q", line)
	}
	fmt.Fprintf(tc, "g LOGIN %s \"%s\"\r\n", testAlice, testPass)
	expectTagged(t, r, "g OK")
	evil := strings.Repeat("E1 CREATE SmuggledAfterSTARTTLS\r\n", 300)
	fmt.Fprintf(tc, "h APPEND INBOX {%d+}\r\n%s\r\ni NOOP\r\n", len(evil), evil)
	if line := expectTagged(t, r, "h BAD"); !strings.Contains(line, "TOOBIG") {
		t.Errorf("reply %q", line)
	}
	rest, _ := io.ReadAll(r)
	if strings.Contains(string(rest), "E1 ") || strings.Contains(string(rest), "i OK") {
		t.Errorf("literal data ran as commands after STARTTLS: %q", rest)
	}
	if _, err := e.st.Mailbox(testAlice, "SmuggledAfterSTARTTLS"); err == nil {
		t.Fatal("the smuggled CREATE ran")
	}
}

// TestSTARTTLSAfterLogin: once logged in (plaintext allowed), STARTTLS is
// refused, and a command pipelined behind it still runs.
func TestSTARTTLSAfterLogin(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	conn, r, _ := e.dialPlain()
	fmt.Fprintf(conn, "a LOGIN %s \"%s\"\r\nb STARTTLS\r\nc NOOP\r\n", testAlice, testPass)
	expectTagged(t, r, "a OK")
	expectTagged(t, r, "b BAD")
	expectTagged(t, r, "c OK")
}

// TestWriteDeadlineCoalesced: a write deadline a little later than the one
// in force is not set again (imapserver sets one per response), but an
// earlier one always is, so a deadline is never later than asked.
func TestWriteDeadlineCoalesced(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	dc := &deadlineConn{Conn: a, s: &Server{IdleTimeout: time.Minute}}
	now := time.Now()
	dc.SetWriteDeadline(now.Add(time.Minute))
	dc.SetWriteDeadline(now.Add(time.Minute + 500*time.Millisecond))
	if !dc.writeDead.Equal(now.Add(time.Minute)) {
		t.Fatalf("a deadline 0.5 s later was set again: %v", dc.writeDead)
	}
	dc.SetWriteDeadline(now.Add(time.Minute + 2*time.Second))
	if !dc.writeDead.Equal(now.Add(time.Minute + 2*time.Second)) {
		t.Fatalf("a deadline 2 s later was not set: %v", dc.writeDead)
	}
	// Earlier: always applied, and it takes effect.
	dc.SetWriteDeadline(now.Add(-time.Second))
	if _, err := dc.Write([]byte("x")); err == nil {
		t.Fatal("write after a past deadline succeeded")
	}
	// Cleared: the deadline in force stays while it is far enough ahead,
	// and a write goes out under it...
	go io.Copy(io.Discard, b)
	dc.SetWriteDeadline(now.Add(time.Minute))
	dc.SetWriteDeadline(time.Time{})
	if !dc.writeDead.Equal(now.Add(time.Minute)) {
		t.Fatalf("a cleared deadline a minute ahead was cleared at once: %v", dc.writeDead)
	}
	if _, err := dc.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	// ...but one about to pass (or past) is cleared before a write.
	dc.SetWriteDeadline(now.Add(-time.Second))
	dc.SetWriteDeadline(time.Time{})
	if _, err := dc.Write([]byte("x")); err != nil {
		t.Fatalf("write after the deadline was cleared: %v", err)
	}
	if !dc.writeDead.IsZero() {
		t.Fatalf("a passed deadline stayed in force: %v", dc.writeDead)
	}
}

// countConn records the writes that reach it.
type countConn struct {
	net.Conn
	writes [][]byte
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

// TestCorkAboveTLS: while corked, small writes (a response each) reach
// the connection under the guard (TLS, when there is TLS) as a few large
// ones, in order; a large write goes through after what was pending; after
// uncork, writes go through at once.
func TestCorkAboveTLS(t *testing.T) {
	under := &countConn{}
	gc := &guardConn{Conn: under}
	var want bytes.Buffer
	gc.cork()
	for i := range 5000 {
		line := fmt.Sprintf("* %d FETCH (UID %d FLAGS (\\Seen))\r\n", i+1, i+1)
		want.WriteString(line)
		if _, err := gc.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	big := bytes.Repeat([]byte("x"), corkLimit)
	want.Write(big)
	gc.Write(big)
	tail := "a OK FETCH completed\r\n"
	want.WriteString(tail)
	gc.Write([]byte(tail))
	if err := gc.uncork(); err != nil {
		t.Fatal(err)
	}
	if n := len(under.writes); n > 8 {
		t.Fatalf("%d writes for 5,000 corked responses", n)
	}
	gc.Write([]byte("* BYE\r\n"))
	want.WriteString("* BYE\r\n")
	if got := bytes.Join(under.writes, nil); !bytes.Equal(got, want.Bytes()) {
		t.Fatal("bytes reordered or lost")
	}
	if last := under.writes[len(under.writes)-1]; string(last) != "* BYE\r\n" {
		t.Fatalf("uncorked write held back: %q", last)
	}
}

// deadlineCounter is a net.Conn that records write deadlines.
type deadlineCounter struct {
	net.Conn
	sets int
	last time.Time
}

func (d *deadlineCounter) SetWriteDeadline(t time.Time) error {
	d.sets++
	d.last = t
	return nil
}

func (d *deadlineCounter) Write(p []byte) (int, error) { return len(p), nil }

// TestCorkedWriteDeadlines: while corked, imapserver's per-response
// "deadline in 30 s, then none" pairs arm the connection's deadline once
// a second at most, never more than a second early, and uncork leaves the
// deadline last asked for; uncorked, every call goes through.
func TestCorkedWriteDeadlines(t *testing.T) {
	d := &deadlineCounter{}
	c := &guardConn{Conn: d}
	c.cork()
	start := time.Now()
	for i := range 10000 {
		// 10,000 responses spread over 5 s of deadlines.
		want := start.Add(30*time.Second + time.Duration(i)*500*time.Microsecond)
		c.SetWriteDeadline(want)
		if d.last.After(want) || want.Sub(d.last) >= time.Second {
			t.Fatalf("response %d: deadline armed %v, asked %v", i, d.last, want)
		}
		c.Write([]byte("* 1 FETCH (FLAGS ())\r\n"))
		c.SetWriteDeadline(time.Time{})
		if d.last.IsZero() {
			t.Fatalf("response %d: deadline cleared while corked", i)
		}
	}
	if d.sets > 6 {
		t.Errorf("%d deadline changes for 10,000 responses over 5 s, want at most 6", d.sets)
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	if !d.last.IsZero() {
		t.Errorf("after uncork the deadline is %v, want none (the last asked for)", d.last)
	}
	n := d.sets
	c.SetWriteDeadline(start.Add(time.Minute))
	c.SetWriteDeadline(start.Add(time.Minute + time.Millisecond))
	c.SetWriteDeadline(time.Time{})
	if d.sets != n+3 || !d.last.IsZero() {
		t.Errorf("uncorked: %d of 3 deadline changes went through", d.sets-n)
	}
}

// TestSTARTTLSOverTLS: STARTTLS on implicit TLS, or a second one after
// STARTTLS, is BAD (RFC 9051 section 6.2.1), as Dovecot answers; go-imap
// said NO, which tells of a server whose TLS is not set up (P7h of the
// probe). The session goes on.
func TestSTARTTLSOverTLS(t *testing.T) {
	e := newTestEnv(t)
	check := func(conn net.Conn, r *bufio.Reader) {
		t.Helper()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "s STARTTLS\r\nn NOOP\r\n")
		for _, want := range []string{"s BAD ", "n OK "} {
			l, err := r.ReadString('\n')
			if err != nil || !strings.HasPrefix(l, want) {
				t.Fatalf("got %q (%v), want %q...", l, err, want)
			}
		}
	}
	c, err := tls.Dial("tcp", e.implicit, e.tls)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	r.ReadString('\n') // greeting
	check(c, r)

	p, err := net.Dial("tcp", e.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pr := bufio.NewReader(p)
	pr.ReadString('\n')
	fmt.Fprintf(p, "a STARTTLS\r\n")
	if l, _ := pr.ReadString('\n'); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("STARTTLS: %q", l)
	}
	u := tls.Client(p, e.tls)
	check(u, bufio.NewReader(u))
}
