package pop3

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func yieldBriefly() { time.Sleep(time.Millisecond) }

const (
	msg1 = "From: a@example.test\r\nSubject: one\r\n\r\nHello\r\n.leading dot\r\n"
	msg2 = "From: b@example.test\r\nSubject: two\r\n\r\nline 1\r\nline 2\r\nline 3\r\n"
	msg3 = "Subject: three\r\n\r\nno final newline"
)

func TestTransaction(t *testing.T) {
	srv, st := newTestServer(t)
	uids := []uint32{st.add(alice, msg1), st.add(alice, msg2), st.add(alice, msg3)}
	c := login(t, serve(t, srv, false))
	total := len(msg1) + len(msg2) + len(msg3)
	if got, want := c.cmdOK("STAT"), fmt.Sprintf("+OK 3 %d", total); got != want {
		t.Errorf("STAT = %q, want %q", got, want)
	}
	want := []string{fmt.Sprintf("1 %d", len(msg1)), fmt.Sprintf("2 %d", len(msg2)), fmt.Sprintf("3 %d", len(msg3))}
	if got := c.multiCmd("LIST"); !slices.Equal(got, want) {
		t.Errorf("LIST = %q, want %q", got, want)
	}
	if got := c.cmdOK("LIST 2"); got != "+OK "+want[1] {
		t.Errorf("LIST 2 = %q", got)
	}
	for _, bad := range []string{"LIST 0", "LIST 4", "LIST x", "LIST -1", "RETR 9", "DELE", "TOP 1", "TOP 1 x"} {
		c.cmdErr(bad, "-ERR")
	}
	uidl := c.multiCmd("UIDL")
	for i, u := range uids {
		if w := fmt.Sprintf("%d 1234.%d", i+1, u); uidl[i] != w {
			t.Errorf("UIDL line %d = %q, want %q", i, uidl[i], w)
		}
	}
	c.cmdOK("NOOP")
	c.cmdOK("DELE 1")
	c.cmdErr("DELE 1", "-ERR Message 1 is already deleted")
	c.cmdErr("RETR 1", "-ERR")
	c.cmdErr("UIDL 1", "-ERR")
	if got := c.multiCmd("LIST"); len(got) != 2 || got[0] != want[1] {
		t.Errorf("LIST after DELE = %q", got)
	}
	if got := c.cmdOK("STAT"); got != fmt.Sprintf("+OK 2 %d", len(msg2)+len(msg3)) {
		t.Errorf("STAT after DELE = %q", got)
	}
	c.cmdOK("RSET")
	c.cmdOK("STAT")
	c.cmdOK("DELE 2")
	c.cmdOK("RETR 3")
	c.multi()
	c.cmdOK("QUIT")
	c.expectEOF()
	msgs, _ := st.Messages(alice, "INBOX")
	if len(msgs) != 2 || msgs[0].UID != uids[0] || msgs[1].UID != uids[2] {
		t.Fatalf("after QUIT: %+v", msgs)
	}
	if st.expunges != 1 {
		t.Errorf("Expunge called %d times, want 1", st.expunges)
	}
	if !slices.Contains(msgs[1].Flags, `\Seen`) || slices.Contains(msgs[0].Flags, `\Seen`) {
		t.Errorf("flags after RETR 3: %+v", msgs)
	}
}

func TestNoUpdateWithoutQUIT(t *testing.T) {
	srv, st := newTestServer(t)
	st.add(alice, msg1)
	c := login(t, serve(t, srv, false))
	c.cmdOK("DELE 1")
	c.conn.Close()
	waitSessions(t, srv, 0)
	if msgs, _ := st.Messages(alice, "INBOX"); len(msgs) != 1 {
		t.Errorf("a dropped connection expunged: %d messages left", len(msgs))
	}
}

func TestQUITExpungeFails(t *testing.T) {
	srv, st := newTestServer(t)
	st.add(alice, msg1)
	st.add(alice, msg2)
	st.expungeErr = errors.New("disk on fire")
	c := login(t, serve(t, srv, false))
	c.cmdOK("DELE 1")
	c.cmdOK("DELE 2")
	reply := c.cmd("QUIT")
	if !strings.HasPrefix(reply, "-ERR [SYS/TEMP]") || strings.Contains(reply, "fire") {
		t.Errorf("QUIT = %q", reply)
	}
	if msgs, _ := st.Messages(alice, "INBOX"); len(msgs) != 2 {
		t.Errorf("%d messages left, want 2", len(msgs))
	}
}

// TestQuitSyncFails: when the maildrop's state cannot be read at QUIT
// (its event stream lost and the store failing), QUIT gets -ERR
// [SYS/TEMP] with an error id, deletes nothing and ends the session; the
// session ended without a word.
func TestQuitSyncFails(t *testing.T) {
	srv, st := newTestServer(t)
	st.add(alice, msg1)
	st.add(alice, msg2)
	c := login(t, serve(t, srv, false))
	c.cmdOK("DELE 1")
	st.mu.Lock()
	st.mailboxErr = errors.New("disk on fire")
	st.mu.Unlock()
	st.dropSubscribers()
	if reply := c.cmd("QUIT"); !strings.HasPrefix(reply, "-ERR [SYS/TEMP]") || strings.Contains(reply, "fire") {
		t.Errorf("QUIT = %q", reply)
	}
	c.expectEOF()
	if msgs, _ := st.Messages(alice, "INBOX"); len(msgs) != 2 || st.expunges != 0 {
		t.Errorf("%d messages left, %d expunges; want 2 and none", len(msgs), st.expunges)
	}
}

// TestUIDLStable: the same message keeps its unique id in a new session,
// and a new message gets a new one.
func TestUIDLStable(t *testing.T) {
	srv, st := newTestServer(t)
	st.add(alice, msg1)
	st.add(alice, msg2)
	addr := serve(t, srv, false)
	c := login(t, addr)
	first := c.multiCmd("UIDL")
	c.cmdOK("DELE 1")
	c.cmdOK("QUIT")
	c.expectEOF()
	st.add(alice, msg3)
	c = login(t, addr)
	second := c.multiCmd("UIDL")
	id := func(l string) string { return strings.Fields(l)[1] }
	if len(second) != 2 || id(second[0]) != id(first[1]) || id(second[1]) == id(first[0]) {
		t.Errorf("UIDL before %q, after %q", first, second)
	}
}

func TestExpungedDuringSession(t *testing.T) {
	srv, st := newTestServer(t)
	st.add(alice, msg1)
	uid := st.add(alice, msg2)
	c := login(t, serve(t, srv, false))
	if _, err := st.Expunge(alice, "INBOX", []uint32{uid}); err != nil {
		t.Fatal(err)
	}
	c.cmdErr("RETR 2", "-ERR Message 2 was removed by another session")
	c.cmdErr("TOP 2 0", "-ERR Message 2 was removed")
	c.cmdOK("RETR 1")
	c.multi()
	c.cmdOK("DELE 2")
	c.cmdOK("QUIT")
	if msgs, _ := st.Messages(alice, "INBOX"); len(msgs) != 1 {
		t.Errorf("%d messages left", len(msgs))
	}
}

// TestExpungedAfterOverflow: the store closes a subscription that fell
// behind; the session resyncs with INBOX.
func TestExpungedAfterOverflow(t *testing.T) {
	srv, st := newTestServer(t)
	var uids []uint32
	for range 10 {
		uids = append(uids, st.add(alice, msg1))
	}
	c := login(t, serve(t, srv, false))
	for _, u := range uids[:8] { // more events than the fake's buffer
		st.Expunge(alice, "INBOX", []uint32{u})
	}
	c.cmdErr("RETR 1", "-ERR Message 1 was removed")
	c.cmdErr("RETR 8", "-ERR Message 8 was removed")
	c.cmdOK("RETR 9")
	c.multi()
}

func TestStateTable(t *testing.T) {
	srv, _ := newTestServer(t)
	c := dial(t, serve(t, srv, false))
	for _, cmd := range []string{"STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 1", "UIDL"} {
		c.cmdErr(cmd, "-ERR "+strings.Fields(cmd)[0]+" is not valid in the AUTHORIZATION state")
	}
	c.cmdErr("XYZZY", "-ERR Unknown command")
	c.cmdOK("quit")
	c.expectEOF()
}

// One message is "1 message", not "1 messages", in the greeting after
// login, after RSET and at QUIT (RFC 1939 section 6's examples).
func TestOneMessageWording(t *testing.T) {
	srv, st := newTestServer(t)
	st.add(alice, msg1)
	c := dial(t, serve(t, srv, false))
	c.starttls()
	c.cmdOK("USER " + alice)
	want := fmt.Sprintf("+OK Maildrop has 1 message (%d octets)", len(msg1))
	if got := c.cmdOK("PASS " + alicePwd); got != want {
		t.Errorf("PASS = %q, want %q", got, want)
	}
	if got := c.cmdOK("RSET"); got != want {
		t.Errorf("RSET = %q, want %q", got, want)
	}
	if got := c.cmdOK("QUIT"); !strings.HasSuffix(got, "(1 message left)") {
		t.Errorf("QUIT = %q", got)
	}
}
