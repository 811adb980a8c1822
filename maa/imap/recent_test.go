package imap

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// rawLogin opens a plaintext session logged in as alice.
func rawLogin(t *testing.T, e *testEnv) *rawClient {
	t.Helper()
	conn, r, _ := e.dialPlain()
	c := &rawClient{t: t, conn: conn, r: r}
	c.send(`l LOGIN %s "%s"`, testAlice, testPass)
	c.expect("l OK")
	return c
}

// cmd sends a command tagged tag and returns its responses, joined.
func (c *rawClient) cmd(tag, format string, args ...any) string {
	c.t.Helper()
	c.send(tag+" "+format, args...)
	return strings.Join(c.expect(tag+" OK"), "")
}

// TestRecent: \Recent (RFC 3501 section 2.3.2), for IMAP4rev1 sessions.
// Mail that came while no session had the mailbox selected is \Recent to
// the first that selects it, and to no other; new mail is \Recent to one
// session that has it selected; EXAMINE shows \Recent without taking it;
// SEARCH RECENT, NEW and OLD, STATUS RECENT and the RECENT response
// follow it; a client that enabled IMAP4rev2 sees none of it.
func TestRecent(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	a := rawLogin(t, e) // the hub follows the store from the first login
	e.deliver(testAlice, "INBOX", testMessage(1, "one"))
	e.deliver(testAlice, "INBOX", testMessage(2, "two"), `\Seen`)

	ex := rawLogin(t, e)
	if got := ex.cmd("x1", "EXAMINE INBOX"); !strings.Contains(got, "* 2 RECENT\r\n") {
		t.Errorf("EXAMINE: %q, want 2 RECENT", got)
	}
	if got := ex.cmd("x2", "UNSELECT"); got == "" {
		t.Fatal("no reply")
	}
	if got := a.cmd("a1", "SELECT INBOX"); !strings.Contains(got, "* 2 RECENT\r\n") {
		t.Errorf("first SELECT: %q, want 2 RECENT", got)
	}
	if got := a.cmd("a2", "FETCH 1:* (FLAGS)"); !strings.Contains(got, `* 1 FETCH (FLAGS (\Recent))`) ||
		!strings.Contains(got, `* 2 FETCH (FLAGS (\Seen \Recent))`) {
		t.Errorf("FETCH FLAGS: %q", got)
	}
	for q, want := range map[string]string{"RECENT": "* SEARCH 1 2\r\n", "NEW": "* SEARCH 1\r\n", "OLD": "* SEARCH\r\n", "UNSEEN RECENT": "* SEARCH 1\r\n"} {
		if got := a.cmd("a3", "SEARCH %s", q); !strings.HasPrefix(got, want) {
			t.Errorf("SEARCH %s: %q, want %q", q, got, want)
		}
	}
	b := rawLogin(t, e)
	if got := b.cmd("b1", "SELECT INBOX"); !strings.Contains(got, "* 0 RECENT\r\n") {
		t.Errorf("second SELECT: %q, want 0 RECENT", got)
	}
	if got := b.cmd("b2", "FETCH 1:* (FLAGS)"); strings.Contains(got, `\Recent`) {
		t.Errorf("second session: %q", got)
	}
	// New mail: \Recent to one of the two.
	e.deliver(testAlice, "INBOX", testMessage(3, "three"))
	recentIn := 0
	for i, c := range []*rawClient{a, b} {
		got := c.cmd(fmt.Sprintf("n%d", i), "NOOP")
		if !strings.Contains(got, "* 3 EXISTS\r\n") {
			t.Errorf("NOOP: %q", got)
		}
		flags := c.cmd(fmt.Sprintf("f%d", i), "FETCH 3 (FLAGS)")
		if strings.Contains(flags, `\Recent`) {
			recentIn++
			if !strings.Contains(got, " RECENT\r\n") {
				t.Errorf("no RECENT response with the new mail: %q", got)
			}
		}
	}
	if recentIn != 1 {
		t.Errorf("new mail \\Recent in %d sessions, want 1", recentIn)
	}
	// STATUS RECENT: mail no session has taken yet.
	a.cmd("a4", "LOGOUT")
	b.cmd("b3", "LOGOUT")
	e.deliver(testAlice, "INBOX", testMessage(4, "four"))
	if got := ex.cmd("x3", "STATUS INBOX (RECENT MESSAGES)"); !strings.Contains(got, "RECENT 1") {
		t.Errorf("STATUS: %q, want RECENT 1", got)
	}
	// IMAP4rev2 has no \Recent.
	r2 := rawLogin(t, e)
	r2.cmd("r1", "ENABLE IMAP4rev2")
	got := r2.cmd("r2", "SELECT INBOX") + r2.cmd("r3", "FETCH 1:* (FLAGS)")
	if strings.Contains(got, "RECENT") || strings.Contains(got, `\Recent`) {
		t.Errorf("IMAP4rev2 session: %q", got)
	}
}

// TestIdleKeepalive: a client in IDLE, with a mailbox selected or not, is
// sent "* OK Still here" every idleKeepalive, as Dovecot does, so that a
// NAT gateway keeps the connection; DONE ends IDLE as before.
func TestIdleKeepalive(t *testing.T) {
	old := idleKeepalive
	idleKeepalive = 30 * time.Millisecond
	t.Cleanup(func() { idleKeepalive = old })
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	for _, sel := range []bool{false, true} {
		c := rawLogin(t, e)
		if sel {
			c.cmd("s", "SELECT INBOX")
		}
		c.send("i IDLE")
		for n := 0; n < 2; {
			line, err := c.r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case strings.HasPrefix(line, "+"):
			case line == "* OK Still here\r\n":
				n++
			default:
				t.Fatalf("selected %v: %q in IDLE", sel, line)
			}
		}
		c.send("DONE")
		c.expect("i OK")
		c.usable()
	}
}

// TestRecentNotLost: new mail is \Recent to the first session told of it;
// one that leaves before it is told does not take it with it.
func TestRecentNotLost(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	a := rawLogin(t, e)
	a.cmd("a1", "SELECT INBOX")
	e.deliver(testAlice, "INBOX", testMessage(1, "one"))
	a.cmd("a2", "UNSELECT")
	b := rawLogin(t, e)
	if got := b.cmd("b1", "SELECT INBOX"); !strings.Contains(got, "* 1 RECENT\r\n") {
		t.Errorf("SELECT after a session left without being told: %q, want 1 RECENT", got)
	}
}

// TestFlagsBeforeFetch: a keyword new to the mailbox is announced with
// FLAGS before the FETCH responses that show it (RFC 9051 section
// 7.3.5), in the reply to the STORE that adds it and in another session's
// FETCH; it came after them.
func TestFlagsBeforeFetch(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	e.deliver(testAlice, "INBOX", testMessage(1, "one"))
	a, b := rawLogin(t, e), rawLogin(t, e)
	a.cmd("a1", "SELECT INBOX")
	b.cmd("b1", "SELECT INBOX")
	check := func(what, got string) {
		t.Helper()
		fl, fe := strings.Index(got, "* FLAGS ("), strings.Index(got, "* 1 FETCH")
		if fl < 0 || fe < 0 || fl > fe || !strings.Contains(got[fl:], "$Newkw") {
			t.Errorf("%s: %q, want FLAGS with $Newkw before the FETCH", what, got)
		}
	}
	check("STORE", a.cmd("a2", "STORE 1 +FLAGS ($Newkw)"))
	check("FETCH in another session", b.cmd("b2", "FETCH 1 (FLAGS)"))
	if got := b.cmd("b3", "NOOP"); strings.Contains(got, "* FLAGS") {
		t.Errorf("FLAGS sent twice: %q", got)
	}
}

// TestRecentEdges: a refused ENABLE IMAP4rev2 (before LOGIN, or with a
// syntax error) leaves the session IMAP4rev1, with \Recent; a mailbox
// deleted and made again under the same name has \Recent mail again (the
// old one's mark, of another UIDVALIDITY, kept it from being).
func TestRecentEdges(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	conn, r, _ := e.dialPlain()
	c := &rawClient{t: t, conn: conn, r: r}
	c.send("e1 ENABLE IMAP4rev2")
	c.expect("e1 BAD")
	c.send(`l LOGIN %s "%s"`, testAlice, testPass)
	c.expect("l OK")
	c.send("e2 ENABLE IMAP4rev2 (")
	c.expect("e2 BAD")
	if _, err := e.st.CreateMailbox(testAlice, "Box", ""); err != nil {
		t.Fatal(err)
	}
	c.cmd("s1", "SELECT Box")
	c.cmd("u1", "UNSELECT")
	e.deliver(testAlice, "Box", testMessage(1, "one"))
	if got := c.cmd("s2", "SELECT Box") + c.cmd("f1", "FETCH 1 (FLAGS)"); !strings.Contains(got, "* 1 RECENT") || !strings.Contains(got, `\Recent`) {
		t.Errorf("after refused ENABLEs: %q", got)
	}
	c.cmd("u2", "UNSELECT")
	c.cmd("d1", "DELETE Box")
	c.cmd("c1", "CREATE Box")
	e.deliver(testAlice, "Box", testMessage(2, "two"))
	if got := c.cmd("st", "STATUS Box (RECENT)"); !strings.Contains(got, "RECENT 1") {
		t.Errorf("STATUS of the mailbox made again: %q", got)
	}
	if got := c.cmd("s3", "SELECT Box"); !strings.Contains(got, "* 1 RECENT") {
		t.Errorf("SELECT of the mailbox made again: %q", got)
	}
}
