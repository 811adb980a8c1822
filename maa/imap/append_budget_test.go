package imap

import (
	"fmt"
	"strings"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"

	"github.com/posthorn/posthorn/internal/membudget"
)

// TestAppendBudget: an APPEND holds the shared budget for its literal as
// it comes, starting at no more than 1 MiB whatever size it announces;
// one that finds no room gets NO [UNAVAILABLE] after its literal, and the
// session goes on; a client that drops mid-literal gives its share back.
func TestAppendBudget(t *testing.T) {
	budget := membudget.New(4 << 20)
	e := newTestEnv(t, func(s *Server) {
		s.AllowPlaintextAuth = true
		s.MaxMessageBytes = 40 << 20
		s.Budget = budget
	})
	waitUsed := func(ok func(int64) bool, what string) int64 {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
			if n := budget.Used(); ok(n) {
				return n
			}
			if time.Now().After(deadline) {
				t.Fatalf("budget used %d, want %s", budget.Used(), what)
			}
		}
	}

	// A client announces 30 MB and sends 100 KiB of it.
	conn, r, _ := e.dialPlain()
	fmt.Fprintf(conn, "a LOGIN %s \"%s\"\r\n", testAlice, testPass)
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "a OK") {
		t.Fatalf("LOGIN: %q", line)
	}
	fmt.Fprintf(conn, "b APPEND INBOX {30000000}\r\n")
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "+") {
		t.Fatalf("APPEND: %q, want a continuation", line)
	}
	fmt.Fprintf(conn, "Subject: slow\r\n\r\n%s", strings.Repeat("x", 100<<10))
	held := waitUsed(func(n int64) bool { return n > 0 }, "the slow APPEND's share")
	time.Sleep(20 * time.Millisecond) // its 100 KiB are in
	if held = budget.Used(); held > 1<<20+membudget.Step {
		t.Fatalf("a 30 MB literal of which 100 KiB came holds %d bytes", held)
	}

	// Another session: 3.5 MiB finds no room; 10 KiB does.
	c := e.login(testAlice)
	appendMsg := func(size int) (*imapv2.AppendData, error) {
		msg := "Subject: m\r\n\r\n" + strings.Repeat("y", size)
		cmd := c.Append("INBOX", int64(len(msg)), nil)
		cmd.Write([]byte(msg))
		cmd.Close()
		return cmd.Wait()
	}
	if _, err := appendMsg(3500 << 10); imapCode(err) != imapv2.ResponseCodeUnavailable {
		t.Fatalf("APPEND over the budget: %v, want NO [UNAVAILABLE]", err)
	}
	if d, err := appendMsg(10 << 10); err != nil || d.UID == 0 {
		t.Fatalf("APPEND within the budget: %v, %v", d, err)
	}
	if n := budget.Used(); n != held {
		t.Fatalf("budget used %d after the others ended, want the slow APPEND's %d", n, held)
	}

	// The slow client drops: its share comes back, nothing is stored.
	conn.Close()
	waitUsed(func(n int64) bool { return n == 0 }, "0 once the slow client dropped")
	ms, err := e.st.Messages(testAlice, "INBOX")
	if err != nil || len(ms) != 1 {
		t.Fatalf("%d messages in INBOX (%v), want 1", len(ms), err)
	}
}
