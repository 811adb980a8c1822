package imap

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/store"
)

// TestSelectedMailboxDeleted: a mailbox deleted by another session (or
// by the store itself: the CLI) ends the sessions that have it selected
// with a BYE, as Dovecot does, idling or not; the deleting session and
// the sessions on other mailboxes go on, and nothing is logged as an
// error.
func TestSelectedMailboxDeleted(t *testing.T) {
	for _, by := range []string{"session", "store"} {
		t.Run(by, func(t *testing.T) {
			var logs syncBuffer
			e := newTestEnv(t, func(s *Server) {
				s.AllowPlaintextAuth = true
				s.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
			})
			if _, err := e.st.CreateMailbox(testAlice, "cfdel", ""); err != nil {
				t.Fatal(err)
			}
			e.deliver(testAlice, "cfdel", testMessage(1, "one"))
			e.deliver(testAlice, "cfdel", testMessage(2, "two"))

			deleter := e.login(testAlice)
			selected := e.login(testAlice)
			if _, err := selected.Select("cfdel", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			raw := e.rawLogin(t, testAlice)
			raw.send("s SELECT cfdel")
			raw.expect("s OK")
			idling := e.rawLogin(t, testAlice)
			idling.send("s EXAMINE cfdel")
			idling.expect("s OK")
			idling.send("i IDLE")
			if l, _ := idling.r.ReadString('\n'); !strings.HasPrefix(l, "+ ") {
				t.Fatalf("IDLE: %q", l)
			}
			other := e.rawLogin(t, testAlice)
			other.send("s SELECT INBOX")
			other.expect("s OK")

			if by == "session" {
				if err := deleter.Delete("cfdel").Wait(); err != nil {
					t.Fatal(err)
				}
			} else if err := e.st.DeleteMailbox(testAlice, "cfdel"); err != nil {
				t.Fatal(err)
			}
			select {
			case <-selected.Closed():
			case <-time.After(5 * time.Second):
				t.Fatal("the imapclient session was not ended")
			}
			for name, c := range map[string]*rawClient{"selected": raw, "idling": idling} {
				rest := c.closed()
				if !strings.Contains(rest, "* BYE "+byeMailboxDeleted) || strings.Contains(rest, "SERVERBUG") {
					t.Errorf("%s session: %q", name, rest)
				}
			}
			if err := deleter.Noop().Wait(); err != nil {
				t.Fatalf("deleting session: %v", err)
			}
			other.usable()
			if s := logs.String(); strings.Contains(s, "ERROR") {
				t.Errorf("logged: %s", s)
			}
		})
	}
}

// TestDeleteOwnSelectedMailbox: the session that deletes its selected
// mailbox is not ended; it is told that every message is expunged, and
// what it asks of the mailbox afterwards gets clean answers. A mailbox
// created again under the name is another mailbox: it shows nothing of it.
func TestDeleteOwnSelectedMailbox(t *testing.T) {
	var logs syncBuffer
	e := newTestEnv(t, func(s *Server) {
		s.AllowPlaintextAuth = true
		s.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	if _, err := e.st.CreateMailbox(testAlice, "cfdel", ""); err != nil {
		t.Fatal(err)
	}
	e.deliver(testAlice, "cfdel", testMessage(1, "one"))
	e.deliver(testAlice, "cfdel", testMessage(2, "two"))
	c := e.rawLogin(t, testAlice)
	c.send("s SELECT cfdel")
	c.expect("s OK")
	c.send("d DELETE cfdel")
	lines := c.expect("d OK")
	if got := strings.Join(lines[:len(lines)-1], ""); got != "* 2 EXPUNGE\r\n* 1 EXPUNGE\r\n" {
		t.Fatalf("DELETE of the selected mailbox: %q", lines)
	}
	if _, err := e.st.CreateMailbox(testAlice, "cfdel", ""); err != nil {
		t.Fatal(err)
	}
	e.deliver(testAlice, "cfdel", testMessage(3, "three"))
	c.send("a FETCH 1:* (UID FLAGS)")
	c.expect("a BAD") // no message has a sequence number now
	for _, cmd := range []string{"UID FETCH 1:* (UID BODY.PEEK[])", "SEARCH BODY body", "NOOP"} {
		c.send("a " + cmd)
		lines := c.expect("a OK")
		if got := strings.Join(lines[:len(lines)-1], ""); got != "" && got != "* SEARCH\r\n" {
			t.Errorf("%s: %q", cmd, lines)
		}
	}
	c.send("a UID STORE 1 +FLAGS (\\Seen)")
	c.expect("a NO [NONEXISTENT]")
	c.send("a SELECT cfdel")
	if lines := c.expect("a OK"); !strings.Contains(strings.Join(lines, ""), "* 1 EXISTS") {
		t.Fatalf("SELECT of the new cfdel: %q", lines)
	}
	if s := logs.String(); strings.Contains(s, "ERROR") {
		t.Errorf("logged: %s", s)
	}
}

// TestSelectedMailboxDeletedRace: a command that runs after the selected
// mailbox was deleted, but before the session learns of it, gets a clean
// NO, not SERVERBUG, and logs no error; so does one after the mailbox was
// created again (another UIDVALIDITY, the same UIDs).
func TestSelectedMailboxDeletedRace(t *testing.T) {
	var logs syncBuffer
	e := newTestEnv(t, func(s *Server) {
		s.AllowPlaintextAuth = true
		s.Store = dropEvents{s.Store, store.EventMailboxDelete}
		s.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	if _, err := e.st.CreateMailbox(testAlice, "cfdel", ""); err != nil {
		t.Fatal(err)
	}
	e.deliver(testAlice, "cfdel", testMessage(1, "one body"))
	e.deliver(testAlice, "cfdel", testMessage(2, "two body"))
	c := e.rawLogin(t, testAlice)
	c.send("s SELECT cfdel")
	c.expect("s OK")
	if err := e.st.DeleteMailbox(testAlice, "cfdel"); err != nil {
		t.Fatal(err)
	}
	check := func(cmds ...string) {
		t.Helper()
		for _, cmd := range cmds {
			c.send("a " + cmd)
			lines := c.expect("a ")
			if l := lines[len(lines)-1]; strings.Contains(l, "SERVERBUG") {
				t.Errorf("%s: %q", cmd, l)
			}
		}
	}
	check("SEARCH BODY body", "FETCH 1 BODY.PEEK[]", "FETCH 1 (ENVELOPE BODYSTRUCTURE)", "FETCH 1 BODY.PEEK[HEADER]")
	if _, err := e.st.CreateMailbox(testAlice, "cfdel", ""); err != nil {
		t.Fatal(err)
	}
	e.deliver(testAlice, "cfdel", testMessage(3, "three body"))
	e.deliver(testAlice, "cfdel", testMessage(4, "four body"))
	check("FETCH 2 BODY.PEEK[]", "SEARCH BODY body", "UID FETCH 2 BODY.PEEK[TEXT]")
	if s := logs.String(); strings.Contains(s, "ERROR") {
		t.Errorf("logged: %s", s)
	}
}
