package imap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/store"
)

// rawClient is a plaintext connection that speaks IMAP line by line.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// rawLogin dials the plaintext listener (AllowPlaintextAuth must be set)
// and logs in as user.
func (e *testEnv) rawLogin(t *testing.T, user string) *rawClient {
	t.Helper()
	conn, r, _ := e.dialPlain()
	c := &rawClient{t: t, conn: conn, r: r}
	c.send("0 LOGIN %s \"%s\"", user, testPass)
	c.expect("0 OK")
	return c
}

// twoOnInbox logs in twice as user, both sessions with INBOX selected.
func (e *testEnv) twoOnInbox(t *testing.T, user string) (a, b *rawClient) {
	t.Helper()
	a, b = e.rawLogin(t, user), e.rawLogin(t, user)
	for _, c := range []*rawClient{a, b} {
		c.send("s SELECT INBOX")
		c.expect("s OK")
	}
	return a, b
}

// send writes a line; the CRLF is added.
func (c *rawClient) send(format string, args ...any) {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.conn, format+"\r\n", args...); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads up to the tagged line of prefix's tag and checks that it
// starts with prefix; it returns every line read, the tagged one last.
func (c *rawClient) expect(prefix string) []string {
	c.t.Helper()
	tag, _, _ := strings.Cut(prefix, " ")
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("waiting for %q: %v (read %q)", prefix, err, lines)
		}
		lines = append(lines, line)
		if strings.HasPrefix(line, tag+" ") {
			if !strings.HasPrefix(line, prefix) {
				c.t.Fatalf("got %q, want %q (before it: %q)", line, prefix, lines[:len(lines)-1])
			}
			return lines
		}
	}
}

// usable checks that the connection still answers commands, and that
// nothing was answered in between.
func (c *rawClient) usable() {
	c.t.Helper()
	c.send("zz NOOP")
	for _, l := range c.expect("zz OK") {
		if !strings.HasPrefix(l, "* ") && !strings.HasPrefix(l, "zz ") {
			c.t.Fatalf("stray line before the NOOP's reply: %q", l)
		}
	}
}

// closed reads to the end of the connection and returns what came. A
// reset is an end too: a server that closes with input unread resets
// the connection.
func (c *rawClient) closed() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(c.r)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		c.t.Fatalf("connection not closed: %v (read %q)", err, rest)
	}
	return string(rest)
}

func (e *testEnv) mustNotExist(t *testing.T, account, mailbox string) {
	t.Helper()
	if _, err := e.st.Mailbox(account, mailbox); err == nil {
		t.Fatalf("mailbox %q exists", mailbox)
	}
}

// TestLiteralAfterSyntaxError: a command refused before it reads its
// non-synchronising literal (LITERAL+) never has the literal's bytes run
// as commands: they are skipped with the rest of the command, and the
// connection goes on. The literal holds a CREATE, as a message body
// could.
func TestLiteralAfterSyntaxError(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	e.deliver(testAlice, "INBOX", testMessage(1, "one"))
	inject := "x1 CREATE Injected\r\nx2 CREATE Injected2 {4+}\r\nab\r\n\r\n"
	cases := []struct{ name, cmd, want string }{
		{"append-bad-date", `APPEND Drafts "31-Feb-2024 10:00:00 +0100" {%d+}`, "BAD"},
		{"append-garbage-date", `APPEND Drafts "garbage" {%d+}`, "BAD"},
		{"append-unclosed-flags", `APPEND Drafts (\Seen {%d+}`, "BAD"},
		{"append-bad-utf8-ext", `APPEND Drafts (\Seen) "01-Jan-2024 10:00:00 +0100" UTF8 ( {%d+}`, "BAD"},
		{"append-unknown-ext", `APPEND Drafts FOO {%d+}`, "BAD"},
		{"create", `CREATE "x" {%d+}`, "BAD"},
		{"search", `SEARCH BOGUS {%d+}`, "BAD"},
		{"uid-search", `UID SEARCH SINCE "garbage" BODY {%d+}`, "BAD"},
		{"status-second-line", "STATUS {5+}\r\nINBOX (BOGUS) {%d+}", "BAD"},
		{"rename-bad-name", "RENAME {5+}\r\nINBOX \"x&\" {%d+}", "NO"},
		{"list-bad-pattern", `LIST "" "*&*" {%d+}`, "NO"},
		{"unknown-command", `XFOO {%d+}`, "BAD"},
		{"uid-unknown", `UID XFOO {%d+}`, "BAD"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.rawLogin(t, testAlice)
			c.send("s SELECT INBOX")
			c.expect("s OK")
			c.send("a "+tc.cmd+"\r\n%s", len(inject), inject)
			for _, l := range c.expect("a " + tc.want) {
				if strings.HasPrefix(l, "x") || strings.Contains(l, "SERVERBUG") {
					t.Fatalf("reply %q", l)
				}
			}
			c.usable()
			e.mustNotExist(t, testAlice, "Injected")
			e.mustNotExist(t, testAlice, "Injected2")
		})
	}
	// Before login (LITERAL-), where the literal could hold a LOGIN.
	t.Run("before-login", func(t *testing.T) {
		conn, r, _ := e.dialPlain()
		c := &rawClient{t: t, conn: conn, r: r}
		login := fmt.Sprintf("x1 LOGIN %s \"%s\"\r\n", testAlice, testPass)
		c.send("a LOGIN x (y {%d+}\r\n%s", len(login), login)
		c.expect("a BAD")
		c.send("b SELECT INBOX")
		c.expect("b BAD") // not logged in
		c.usable()
	})
	// A synchronising literal refused before its "+": the client sends no
	// data, and the next command is one.
	t.Run("sync", func(t *testing.T) {
		c := e.rawLogin(t, testAlice)
		c.send(`a APPEND Drafts "garbage" {%d}`, len(inject))
		for _, l := range c.expect("a BAD") {
			if strings.HasPrefix(l, "+") {
				t.Fatalf("continuation request for a refused APPEND: %q", l)
			}
		}
		c.usable()
	})
	// Pipelined behind the refused command, in the same write: the next
	// command runs, once.
	t.Run("pipelined", func(t *testing.T) {
		c := e.rawLogin(t, testAlice)
		c.send(`a APPEND Drafts "garbage" {%d+}`+"\r\n%s\r\nb CREATE Pipelined", len(inject), inject)
		c.expect("a BAD")
		c.expect("b OK")
		c.usable()
		if _, err := e.st.Mailbox(testAlice, "Pipelined"); err != nil {
			t.Fatal(err)
		}
		e.mustNotExist(t, testAlice, "Injected")
	})
	// A valid APPEND with LITERAL+ still stores the literal.
	t.Run("valid", func(t *testing.T) {
		c := e.rawLogin(t, testAlice)
		msg := "Subject: x\r\n\r\nx1 CREATE Injected\r\n"
		c.send(`a APPEND Drafts (\Seen) "01-Jan-2024 10:00:00 +0100" {%d+}`+"\r\n%s", len(msg), msg)
		c.expect("a OK")
		c.send(`b APPEND Drafts UTF8 (~{%d+}`+"\r\n%s)", len(msg), msg)
		c.expect("b OK")
		c.usable()
		e.mustNotExist(t, testAlice, "Injected")
	})
}

// TestClientErrorsNotServerBug: invalid arguments that go-imap's parser
// reports as plain errors (and imapserver as NO [SERVERBUG]) get BAD, or
// NO [CANNOT] for a mailbox name, and the connection goes on.
func TestClientErrorsNotServerBug(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	e.deliver(testAlice, "INBOX", testMessage(1, "one"))
	c := e.rawLogin(t, testAlice)
	msg := "Subject: x\r\n\r\nbody\r\n"
	for _, tc := range []struct{ cmd, want string }{
		{`CREATE "Bad&Name"`, "NO [CANNOT]"},
		{`CREATE "&ZeVnLIqe"`, "NO [CANNOT]"},
		{`CREATE "&AGE-"`, "NO [CANNOT]"},
		{`CREATE "x&AMQ"`, "NO [CANNOT]"},
		{`DELETE "x&AMQ"`, "NO [CANNOT]"},
		{`RENAME INBOX "x&AMQ"`, "NO [CANNOT]"},
		{`STATUS "x&" (MESSAGES)`, "NO [CANNOT]"},
		{`LIST "" "*&*"`, "NO [CANNOT]"},
		{`SELECT "x&"`, "NO [CANNOT]"},
		{`SELECT INBOX`, "OK"},
		{`SEARCH 1:*:3`, "BAD"},
		{`FETCH 0 FLAGS`, "BAD"},
		{`UID FETCH 1:0x FLAGS`, "BAD"},
		{`STORE 0 +FLAGS (\Seen)`, "BAD"},
		{`COPY 0 INBOX`, "BAD"},
		{`SEARCH SINCE 31-Feb-2024`, "BAD"},
		{`SEARCH ` + strings.Repeat("(", 1100) + "ALL" + strings.Repeat(")", 1100), "BAD"},
		{`APPEND INBOX "31-Feb-2024 10:00:00 +0100" {` + fmt.Sprint(len(msg)) + `}`, "BAD"},
		{`APPEND INBOX "garbage" {` + fmt.Sprint(len(msg)) + `}`, "BAD"},
	} {
		c.send("a " + tc.cmd)
		lines := c.expect("a " + tc.want)
		if l := lines[len(lines)-1]; strings.Contains(l, "SERVERBUG") {
			t.Errorf("%s: %q", tc.cmd, l)
		}
	}
	c.usable()
	if msgs, _ := e.st.Messages(testAlice, "INBOX"); len(msgs) != 1 {
		t.Fatalf("INBOX holds %d messages", len(msgs))
	}

	// An over-long command line: BAD, then BYE, then the connection ends.
	conn, r, _ := e.dialPlain()
	c = &rawClient{t: t, conn: conn, r: r}
	c.send(`a LOGIN "%s" "%s"`, testAlice, strings.Repeat("x", 60000))
	c.expect("a BAD")
	if rest := c.closed(); !strings.HasPrefix(rest, "* BYE") || strings.Contains(rest, "SERVERBUG") {
		t.Fatalf("after the over-long line: %q", rest)
	}
	// imapserver gives up on a command 51,202 bytes in, and would parse
	// what follows on its line as the next command: here, a few y's (a
	// tag) and a CREATE. The line never gets that far.
	c = e.rawLogin(t, testAlice)
	prefix := `a SEARCH TEXT "`
	c.send("%s%s CREATE Injected", prefix, strings.Repeat("y", 51210-len(prefix)))
	c.expect("a BAD [TOOBIG]")
	c.closed()
	e.mustNotExist(t, testAlice, "Injected")

	// AUTHENTICATE with an initial response that is not base64.
	conn, r, _ = e.dialPlain()
	c = &rawClient{t: t, conn: conn, r: r}
	c.send("a AUTHENTICATE PLAIN !!!!")
	c.expect("a BAD")
	c.usable()
}

// TestInvalidSystemFlags: STORE and APPEND refuse a system flag that is
// not one of RFC 9051's five (a server must not create flag-extension
// flags), \Recent included (RFC 3501 2.3.2: not settable by a client);
// nothing is stored.
func TestInvalidSystemFlags(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	e.deliver(testAlice, "INBOX", testMessage(1, "one"))
	c := e.rawLogin(t, testAlice)
	c.send("s SELECT INBOX")
	c.expect("s OK")
	msg := "Subject: x\r\n\r\nbody\r\n"
	for _, cmd := range []string{
		`STORE 1 +FLAGS (\Bogus)`, `STORE 1 FLAGS (\Seen \Bogus)`, `UID STORE 1 +FLAGS.SILENT (\Recent)`,
		`STORE 1 +FLAGS (\RECENT)`, `STORE 1 +FLAGS (\*)`,
		fmt.Sprintf("APPEND INBOX (\\Bogus) {%d+}\r\n%s", len(msg), msg),
		fmt.Sprintf("APPEND INBOX (\\Seen \\Recent) {%d+}\r\n%s", len(msg), msg),
	} {
		c.send("a " + cmd)
		c.expect("a BAD")
	}
	c.send(`b STORE 1 +FLAGS (\seen $Foo)`)
	c.expect("b OK")
	c.usable()
	msgs, err := e.st.Messages(testAlice, "INBOX")
	if err != nil || len(msgs) != 1 {
		t.Fatalf("INBOX: %d messages (%v)", len(msgs), err)
	}
	if got := strings.Join(msgs[0].Flags, " "); got != `$Foo \Seen` && got != `\Seen $Foo` {
		t.Fatalf("flags %q", got)
	}
}

// dropEvents hides the store's events of one kind, as when a command
// runs before such an event reaches the server (a deleted account's
// session, a deleted mailbox's).
type dropEvents struct {
	store.Store
	kind store.EventKind
}

func (d dropEvents) Subscribe(account string) (<-chan store.Event, func()) {
	in, cancel := d.Store.Subscribe(account)
	out := make(chan store.Event, 1024)
	go func() {
		defer close(out)
		for ev := range in {
			if ev.Kind != d.kind {
				out <- ev
			}
		}
	}()
	return out, cancel
}

// TestAccountDeleted: deleting an account ends its sessions with a BYE,
// selected or not, idling or not; other accounts' sessions go on.
func TestAccountDeleted(t *testing.T) {
	var logs syncBuffer
	e := newTestEnv(t, func(s *Server) {
		s.AllowPlaintextAuth = true
		s.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	e.deliver(testBob, "INBOX", testMessage(1, "one"))
	selected := e.rawLogin(t, testBob)
	selected.send("s SELECT INBOX")
	selected.expect("s OK")
	authed := e.rawLogin(t, testBob)
	idling := e.rawLogin(t, testBob)
	idling.send("s SELECT INBOX")
	idling.expect("s OK")
	idling.send("i IDLE")
	if l, _ := idling.r.ReadString('\n'); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	other := e.rawLogin(t, testAlice)
	other.send("s SELECT INBOX")
	other.expect("s OK")

	if err := e.st.DeleteAccount(testBob); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*rawClient{"selected": selected, "authenticated": authed, "idling": idling} {
		rest := c.closed()
		if !strings.Contains(rest, "* BYE ") || strings.Contains(rest, "SERVERBUG") {
			t.Errorf("%s session: %q", name, rest)
		}
	}
	other.usable()
	if s := logs.String(); strings.Contains(s, "ERROR") {
		t.Errorf("logged: %s", s)
	}
}

// TestAccountDeletedRace: a command of a deleted account's session that
// runs before the session is ended gets a clean NO, not SERVERBUG, and
// logs no error.
func TestAccountDeletedRace(t *testing.T) {
	var logs syncBuffer
	e := newTestEnv(t, func(s *Server) {
		s.AllowPlaintextAuth = true
		s.Store = dropEvents{s.Store, store.EventAccountDelete}
		s.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	e.deliver(testBob, "INBOX", testMessage(1, "one"))
	c := e.rawLogin(t, testBob)
	c.send("s SELECT INBOX")
	c.expect("s OK")
	if err := e.st.DeleteAccount(testBob); err != nil {
		t.Fatal(err)
	}
	// The selected mailbox's messages are still known to the session;
	// their bodies are gone.
	for _, cmd := range []string{"FETCH 1 BODY.PEEK[]", "FETCH 1 (ENVELOPE BODYSTRUCTURE)", "FETCH 1 BODY.PEEK[HEADER]", "SEARCH BODY x"} {
		c.send("a " + cmd)
		lines := c.expect("a ")
		if l := lines[len(lines)-1]; strings.Contains(l, "SERVERBUG") {
			t.Errorf("%s: %q", cmd, l)
		}
	}
	msg := "Subject: x\r\n\r\nbody\r\n"
	for _, cmd := range []string{
		"CREATE Foo", "LIST \"\" *", "STATUS INBOX (MESSAGES)", "SELECT INBOX", "SUBSCRIBE INBOX",
		fmt.Sprintf("APPEND INBOX {%d+}\r\n%s", len(msg), msg),
	} {
		c.send("a " + cmd)
		lines := c.expect("a ")
		if l := lines[len(lines)-1]; !strings.HasPrefix(l, "a NO ") || strings.Contains(l, "SERVERBUG") || strings.Contains(l, "TRYCREATE") {
			t.Errorf("%s: %q", cmd, l)
		}
	}
	if s := logs.String(); strings.Contains(s, "ERROR") {
		t.Errorf("logged: %s", s)
	}
}

// TestEmptyCommandLine: an empty line, or one without a command, gets a
// BAD and the connection goes on, before and after login.
func TestEmptyCommandLine(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	conn, r, _ := e.dialPlain()
	c := &rawClient{t: t, conn: conn, r: r}
	io.WriteString(conn, "\r\n")
	if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "* BAD ") {
		t.Fatalf("empty line before login: %q", l)
	}
	c.send("0 LOGIN %s \"%s\"", testAlice, testPass)
	c.expect("0 OK")
	io.WriteString(conn, "\r\n\n")
	for range 2 {
		if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "* BAD ") {
			t.Fatalf("empty line: %q", l)
		}
	}
	c.send("a")
	c.expect("a BAD")
	c.send("b ")
	c.expect("b BAD")
	c.send("c UID")
	c.expect("c BAD")
	c.usable()
}

// TestFetchEmptyHeaderList: BODY[HEADER.FIELDS ()] is a syntax error
// (header-list has at least one name), not BODY[HEADER].
func TestFetchEmptyHeaderList(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	e.deliver(testAlice, "INBOX", testMessage(1, "one"))
	c := e.rawLogin(t, testAlice)
	c.send("s SELECT INBOX")
	c.expect("s OK")
	for _, cmd := range []string{
		"FETCH 1 BODY[HEADER.FIELDS ()]", "UID FETCH 1 (FLAGS BODY.PEEK[header.fields.not ()])",
		"FETCH 1 BODY[HEADER.FIELDS()]",
	} {
		c.send("a " + cmd)
		for _, l := range c.expect("a BAD") {
			if strings.Contains(l, "FETCH (") {
				t.Errorf("%s: answered %q", cmd, l)
			}
		}
	}
	c.send("b FETCH 1 BODY.PEEK[HEADER.FIELDS (Subject)]")
	lines := c.expect("b OK")
	if !strings.Contains(strings.Join(lines, ""), "Subject: one") {
		t.Fatalf("HEADER.FIELDS (Subject): %q", lines)
	}
}

// TestNewKeywordFlagsUpdate: a keyword new to the mailbox reaches the
// other sessions that have it selected as an untagged FLAGS response
// before the FETCH that shows it (RFC 9051 7.3.5); a keyword already
// listed sends no FLAGS.
func TestNewKeywordFlagsUpdate(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	e.deliver(testAlice, "INBOX", testMessage(1, "one"))
	a, b := e.twoOnInbox(t, testAlice)
	a.send("a STORE 1 +FLAGS ($Foo)")
	a.expect("a OK")
	b.send("b NOOP")
	lines := b.expect("b OK")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "* FLAGS (") || !strings.Contains(lines[0], "$Foo") ||
		!strings.HasPrefix(lines[1], "* 1 FETCH ") {
		t.Fatalf("after a new keyword: %q", lines)
	}
	a.send("c STORE 1 +FLAGS ($Junk)")
	a.expect("c OK")
	b.send("d NOOP")
	lines = b.expect("d OK")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "* 1 FETCH ") {
		t.Fatalf("after a listed keyword: %q", lines)
	}
	// New keywords on an appended message too.
	msg := "Subject: x\r\n\r\nbody\r\n"
	a.send("e APPEND INBOX ($Bar) {%d+}\r\n%s", len(msg), msg)
	a.expect("e OK")
	b.send("f NOOP")
	lines = b.expect("f OK")
	if !strings.HasPrefix(lines[0], "* FLAGS (") || !strings.Contains(lines[0], "$Bar") {
		t.Fatalf("after an appended keyword: %q", lines)
	}
}

// TestAppendEnd: what follows an APPEND's message literal must end the
// command: nothing, or ")" after a UTF8 (~{n} literal. Anything else is
// BAD with nothing stored, where imapserver stored the message and then
// answered nothing (the client waited forever) or BAD. A MULTIAPPEND
// (not offered) sent without waiting has its further literals dropped,
// not run as commands. Sync and non-sync literals, the mailbox name as a
// literal, and pipelined commands behind a good APPEND all work.
func TestAppendEnd(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	count := func() int {
		ms, err := e.st.Messages(testAlice, "Drafts")
		if err != nil {
			t.Fatal(err)
		}
		return len(ms)
	}
	msg := "Subject: x\r\n\r\nhello\r\n"
	inject := "x1 CREATE Injected\r\n"
	bad := []struct{ name, send string }{
		{"junk", "a APPEND Drafts {%d+}\r\n%sEXTRA"},
		{"paren-without-utf8", "a APPEND Drafts {%d+}\r\n%s)"},
		{"utf8-without-paren", "a APPEND Drafts UTF8 (~{%d+}\r\n%s"},
		{"utf8-junk", "a APPEND Drafts UTF8 (~{%d+}\r\n%s) X"},
		{"space", "a APPEND Drafts {%d+}\r\n%s "},
		{"multiappend", "a APPEND Drafts {%d+}\r\n%s (\\Seen) {" + fmt.Sprint(len(inject)) + "+}\r\n" + inject},
		{"multiappend-chain", "a APPEND Drafts {%d+}\r\n%s {" + fmt.Sprint(len(inject)) + "+}\r\n" + inject + " {" + fmt.Sprint(len(inject)) + "+}\r\n" + inject},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			before := count()
			c := e.rawLogin(t, testAlice)
			c.send(tc.send, len(msg), msg)
			for _, l := range c.expect("a BAD") {
				if strings.HasPrefix(l, "x") {
					t.Fatalf("literal data run as a command: %q", l)
				}
			}
			c.usable()
			if n := count(); n != before {
				t.Errorf("%d messages stored by a refused APPEND", n-before)
			}
			e.mustNotExist(t, testAlice, "Injected")
		})
	}
	good := []struct{ name, send string }{
		{"plain", "a APPEND Drafts {%d+}\r\n%s"},
		{"utf8", "a APPEND Drafts UTF8 (~{%d+}\r\n%s)"},
		{"flags-date", "a APPEND Drafts (\\Seen) \"01-Jan-2024 10:00:00 +0100\" {%d+}\r\n%s"},
		{"mailbox-literal", "a APPEND {6+}\r\nDrafts {%d+}\r\n%s"},
		{"pipelined", "a APPEND Drafts {%d+}\r\n%s\r\nb NOOP"},
		{"empty", "a APPEND Drafts {0+}\r\n%.0d%.0s"},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			before := count()
			c := e.rawLogin(t, testAlice)
			c.send(tc.send, len(msg), msg)
			if tc.name == "empty" {
				c.expect("a ") // an empty message is the store's to refuse or keep
				c.usable()
				return
			}
			c.expect("a OK [APPENDUID")
			if tc.name == "pipelined" {
				c.expect("b OK")
			}
			c.usable()
			if n := count(); n != before+1 {
				t.Errorf("%d messages stored, want 1", n-before)
			}
		})
	}
	// A synchronising literal: the end is read after the data, which
	// comes after the "+".
	t.Run("sync", func(t *testing.T) {
		before := count()
		c := e.rawLogin(t, testAlice)
		c.send("a APPEND Drafts {%d}", len(msg))
		c.expect("+")
		c.send("%sEXTRA", msg)
		c.expect("a BAD")
		c.send("b APPEND Drafts {%d}", len(msg))
		c.expect("+")
		c.send("%s", msg)
		c.expect("b OK [APPENDUID")
		c.usable()
		if n := count(); n != before+1 {
			t.Errorf("%d messages stored, want 1", n-before)
		}
	})
}

// TestTooManyBadCommands: twenty commands answered BAD in a row end the
// connection with a BYE, as in Dovecot; a command that is understood,
// even refused with NO, starts the count again.
func TestTooManyBadCommands(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	c := e.rawLogin(t, testAlice)
	for i := range maxBadCommands - 1 {
		c.send("b%d XFOO", i)
		c.expect(fmt.Sprintf("b%d BAD", i))
	}
	c.send("n SELECT Nonexistent")
	c.expect("n NO")
	for i := range maxBadCommands - 1 {
		c.send("c%d FETCH", i)
		c.expect(fmt.Sprintf("c%d BAD", i))
	}
	c.usable()

	// Pipelined in one write, garbage lines the guard answers itself
	// ("* BAD") mixed with commands the parser refuses. (Before login
	// imapserver ends the connection at the first unknown command.)
	h := e.rawLogin(t, testAlice)
	conn := h.conn
	var req strings.Builder
	for i := range maxBadCommands + 5 {
		if i%2 == 0 {
			req.WriteString("(junk)\r\n")
		} else {
			fmt.Fprintf(&req, "x%d XFOO\r\n", i)
		}
	}
	if _, err := io.WriteString(conn, req.String()); err != nil {
		t.Fatal(err)
	}
	rest := h.closed()
	if !strings.Contains(rest, "* BYE Too many invalid IMAP commands") {
		t.Fatalf("no BYE after %d bad lines: %q", maxBadCommands+5, rest)
	}
	if n := strings.Count(rest, "BAD"); n > maxBadCommands {
		t.Errorf("%d BADs before the BYE, want at most %d", n, maxBadCommands)
	}
}

// TestSequenceOutOfRange: a message sequence number the mailbox does not
// have is BAD in FETCH, STORE, COPY and MOVE (RFC 9051 section 9,
// seq-number; Dovecot: "Invalid messageset"), and so is "*" in an empty
// mailbox; a UID that no message has is not an error; nothing is changed.
func TestSequenceOutOfRange(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	for i := range 3 {
		e.deliver(testAlice, "INBOX", testMessage(i+1, "m"))
	}
	c := e.rawLogin(t, testAlice)
	c.send("s SELECT INBOX")
	c.expect("s OK")
	for _, cmd := range []string{"FETCH 4 FLAGS", "FETCH 2:999 FLAGS", "FETCH 1,7 FLAGS", "FETCH 9:* FLAGS",
		"STORE 999 +FLAGS (\\Deleted)", "COPY 5 Trash", "MOVE 2:4 Trash"} {
		c.send("b " + cmd)
		for _, l := range c.expect("b BAD") {
			if strings.Contains(l, "FETCH") {
				t.Errorf("%s: %q before the BAD", cmd, l)
			}
		}
	}
	c.send("u UID FETCH 999 FLAGS")
	c.expect("u OK")
	c.send("f FETCH 1:* (FLAGS)")
	if n := len(c.expect("f OK")); n != 4 {
		t.Fatalf("FETCH 1:* after the refusals: %d lines, want 3 and OK", n)
	}
	if ms, _ := e.st.Messages(testAlice, "Trash"); len(ms) != 0 {
		t.Errorf("%d messages copied or moved by refused commands", len(ms))
	}
	c.send("x SELECT Drafts")
	c.expect("x OK")
	c.send("y FETCH * FLAGS")
	c.expect("y BAD")
	c.usable()
}

// TestAppendNUL: NUL in an APPEND's literal is BAD and nothing is stored
// (a literal is CHAR8, which excludes NUL); a literal8 (BINARY) may hold
// it.
func TestAppendNUL(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	c := e.rawLogin(t, testAlice)
	msg := "Subject: nul\r\n\r\na\x00b\r\n"
	c.send("a APPEND Drafts {%d+}\r\n%s", len(msg), msg)
	c.expect("a BAD")
	if ms, _ := e.st.Messages(testAlice, "Drafts"); len(ms) != 0 {
		t.Fatalf("%d messages stored", len(ms))
	}
	c.send("b APPEND Drafts ~{%d+}\r\n%s", len(msg), msg)
	c.expect("b OK")
	c.usable()
	// It goes out with NUL in BINARY's literal8 only; a BODY section's
	// literal has 0x80 in its place (RFC 9051 section 4.3.1), the size
	// kept.
	c.send("s SELECT Drafts")
	c.expect("s OK")
	c.send("f FETCH 1 (BODY.PEEK[] BODY.PEEK[TEXT] BINARY.PEEK[1])")
	got := strings.Join(c.expect("f OK"), "")
	for _, want := range []string{
		fmt.Sprintf("BODY[] {%d}\r\n%s", len(msg), strings.Replace(msg, "\x00", "\x80", 1)),
		"BODY[TEXT] {5}\r\na\x80b\r\n",
		"BINARY[1] ~{5}\r\na\x00b\r\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("FETCH: no %q in %q", want, got)
		}
	}
}

// TestAccountDisabledEndsSessions: user disable ends the account's
// sessions with BYE, as deleting it does; others go on.
func TestAccountDisabledEndsSessions(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	e.deliver(testBob, "INBOX", testMessage(1, "one"))
	selected := e.rawLogin(t, testBob)
	selected.send("s SELECT INBOX")
	selected.expect("s OK")
	authed := e.rawLogin(t, testBob)
	other := e.rawLogin(t, testAlice)
	if err := e.st.SetDisabled(testBob, true); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*rawClient{"selected": selected, "authenticated": authed} {
		if rest := c.closed(); !strings.Contains(rest, "* BYE Account disabled") {
			t.Errorf("%s session: %q", name, rest)
		}
	}
	other.usable()
	// Enabling it again ends nothing.
	again := e.rawLogin(t, testAlice)
	if err := e.st.SetDisabled(testAlice, false); err != nil {
		t.Fatal(err)
	}
	again.usable()
}
