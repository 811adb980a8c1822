package hostile

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/store"
)

const literalLimit = 64 << 10 // max_message_bytes in these tests

func startSmallLimit(t *testing.T) *harness.Env {
	return start(t, func(c *config.Config) { c.MaxMessageBytes = literalLimit })
}

// messageOf returns a message of exactly n bytes.
func messageOf(n int) string {
	head := "From: <a@peer.test>\r\nSubject: literal\r\n\r\n"
	return head + strings.Repeat("x", n-len(head))
}

// TestIMAPLiteralLimits sends APPEND literals of exactly the limit and one
// byte over it, synchronizing and non-synchronizing. At the limit the
// message is stored; over it the server never asks for the data (no "+")
// and stays usable, and a non-synchronizing one over the limit is refused
// or ends the connection without its bytes being read as commands.
//
// Memory budget: 8 MiB of growth for the whole test.
func TestIMAPLiteralLimits(t *testing.T) {
	env := startSmallLimit(t)
	tc := imapLogin(t, env)
	mem := watchMem() // after the login: argon2id's memory is not the literal's

	// Exactly at the limit: stored.
	tc.write(fmt.Sprintf("A1 APPEND INBOX {%d}\r\n", literalLimit))
	if l := tc.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND at the limit: want a continuation, got %q", l)
	}
	tc.write(messageOf(literalLimit) + "\r\n")
	if l := tc.imapUntil("A1"); !strings.HasPrefix(l[len(l)-1], "A1 OK") {
		t.Fatalf("APPEND at the limit refused: %q", l)
	}

	// One over: refused before the data, the session goes on.
	tc.write(fmt.Sprintf("A2 APPEND INBOX {%d}\r\n", literalLimit+1))
	l := tc.line()
	if strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND over the limit: the server asked for the data")
	}
	if !strings.HasPrefix(l, "A2 NO") && !strings.HasPrefix(l, "A2 BAD") {
		t.Fatalf("APPEND over the limit: want A2 NO or BAD, got %q", l)
	}
	tc.imapOK("A3", "NOOP")

	// Far over, as a synchronizing literal in another command.
	tc.write("A4 LOGIN {1000000000}\r\n")
	tc.deadline(3 * time.Second)
	l, err := tc.readLine()
	switch {
	case err != nil:
		// go-imap v2 beta.8: Decoder.Literal drops the error of
		// CheckBufferedLiteralFunc, and the server then waits for more
		// input instead of answering NO [TOOBIG].
		t.Errorf("LOGIN with a 1 GB synchronizing literal: no answer within 3 s (%v): the client hangs", err)
	case strings.HasPrefix(l, "+"):
		t.Fatalf("LOGIN with a 1 GB literal: the server asked for the data")
	case !strings.HasPrefix(l, "A4 NO") && !strings.HasPrefix(l, "A4 BAD"):
		t.Errorf("LOGIN with a 1 GB literal: want A4 NO or BAD, got %q", l)
	}
	mem.check(t, "literal limits", 8<<20)
	assertMessages(t, env, "INBOX", 1)
}

// TestIMAPLiteralPlusSmuggling sends APPEND with a non-synchronizing
// literal ({N+}, RFC 7888) whose data is itself a command, once over the
// limit and once within it. Over the limit the server must not run the
// command hidden in the data (go-imap v2 beta.8 did: it rejected the
// APPEND and then parsed the literal's bytes as commands); within it, the
// data is a message and is stored as such.
//
// Memory budget: 8 MiB of growth.
func TestIMAPLiteralPlusSmuggling(t *testing.T) {
	env := startSmallLimit(t)
	tc := imapLogin(t, env)
	tc2 := imapLogin(t, env)
	mem := watchMem() // after the logins: argon2id's memory is not the literal's

	evil := "E1 CREATE Smuggled\r\n"
	data := strings.Repeat(evil, (literalLimit+len(evil))/len(evil)+1)
	// The server may close the connection while this is being written.
	tc.c.Write([]byte(fmt.Sprintf("A1 APPEND INBOX {%d+}\r\n%s\r\nA2 NOOP\r\n", len(data), data)))
	tc.deadline(5 * time.Second)
	var lines []string
	for {
		l, err := tc.readLine()
		if err != nil {
			break // closing the connection is a fine answer
		}
		lines = append(lines, l)
		if strings.HasPrefix(l, "A2 ") || strings.HasPrefix(l, "* BYE") {
			break
		}
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "E1 ") {
			t.Errorf("a command inside the literal's data was answered: %q", l)
			break
		}
	}
	if _, err := env.Server.Store.Mailbox(harness.User, "Smuggled"); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("the mailbox named in the literal's data exists (err %v): the data was run as commands", err)
	}

	// Within the limit the same data is a message, stored byte for byte.
	tc = tc2
	evil2 := "E1 CREATE Smuggled2\r\n"
	msg := "Subject: smuggle\r\n\r\n" + evil2 + evil2
	tc.write(fmt.Sprintf("B1 APPEND INBOX {%d+}\r\n%s\r\nB2 NOOP\r\n", len(msg), msg))
	got := tc.imapUntil("B2")
	for _, l := range got {
		if strings.HasPrefix(l, "E1 ") {
			t.Errorf("a command inside the literal's data was answered: %q", l)
		}
	}
	if _, err := env.Server.Store.Mailbox(harness.User, "Smuggled2"); !errors.Is(err, store.ErrNoSuchMailbox) {
		t.Errorf("the mailbox named in the message exists: the data was run as commands")
	}
	msgs, err := env.Server.Store.Messages(harness.User, "INBOX")
	if err != nil || len(msgs) != 1 {
		t.Fatalf("INBOX: %d messages (err %v), want the appended one", len(msgs), err)
	}
	if msgs[0].Size != int64(len(msg)) {
		t.Errorf("stored %d bytes, sent %d", msgs[0].Size, len(msg))
	}
	mem.check(t, "LITERAL+ smuggling", 8<<20)
}

func assertMessages(t *testing.T, env *harness.Env, mailbox string, n int) {
	t.Helper()
	msgs, err := env.Server.Store.Messages(harness.User, mailbox)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != n {
		t.Errorf("%s holds %d messages, want %d", mailbox, len(msgs), n)
	}
}
