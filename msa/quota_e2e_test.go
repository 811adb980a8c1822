package msa_test

import (
	"strings"
	"testing"

	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/internal/storetest"
)

// TestSubmitPastAFullMailbox: a submission to a local account with room
// and a full one gets 250; the one with room has it at once and the full
// one's copy waits in the queue until it has room. Before, the whole
// message got 452 4.2.2.
func TestSubmitPastAFullMailbox(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	env.AddUser("bob@example.test", "pw-bob-123456")
	env.AddUser("full@example.test", "pw-full-123456")
	st := env.Server.Store
	storetest.Fill(t, st, "full@example.test")
	c, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatal(err)
	}
	rcpts := []string{"full@example.test", "bob@example.test"}
	if err := send(c, harness.User, rcpts, testMessage(harness.User, "bob@example.test", "past full")); err != nil {
		t.Fatalf("one full mailbox failed the message: %v", err)
	}
	if n := len(storetest.Bodies(t, st, "bob@example.test", "INBOX")); n != 1 {
		t.Errorf("bob has %d messages, want 1 at once", n)
	}
	if err := st.SetQuota("full@example.test", 0); err != nil {
		t.Fatal(err)
	}
	msgs := waitMessages(t, st, "full@example.test", 1)
	if !strings.Contains(string(msgs[0]), "Delivered-To: full@example.test\r\n") ||
		!strings.Contains(string(msgs[0]), "Subject: past full") {
		t.Errorf("queued copy delivered as:\n%s", msgs[0])
	}
	waitQueueEmpty(t, env)
}

// TestSubmitRemoteAndFullMailbox: with a remote recipient, a message
// whose every local mailbox is full is accepted all the same: the remote
// copy is queued already, and a 452 would have the client send it again.
// The local copy waits in the queue.
func TestSubmitRemoteAndFullMailbox(t *testing.T) {
	p := startPair(t)
	p.A.AddUser("full@a.test", pairPass)
	st := p.A.Server.Store
	storetest.Fill(t, st, "full@a.test")
	c, err := dial(t, p.A, alice, pairPass)
	if err != nil {
		t.Fatal(err)
	}
	if err := send(c, alice, []string{bob, "full@a.test"}, testMessage(alice, bob, "both")); err != nil {
		t.Fatalf("message refused: %v", err)
	}
	waitMessages(t, p.B.Server.Store, bob, 1)
	if err := st.SetQuota("full@a.test", 0); err != nil {
		t.Fatal(err)
	}
	msgs := waitMessages(t, st, "full@a.test", 1)
	if !strings.Contains(string(msgs[0]), "Subject: both") {
		t.Errorf("queued copy delivered as:\n%s", msgs[0])
	}
	waitQueueEmpty(t, p.A)
	if n := len(storetest.Bodies(t, p.B.Server.Store, bob, "INBOX")); n != 1 {
		t.Errorf("bob has %d copies, want 1", n)
	}
}

// TestSubmitRemoteAndQuotaTooSmall: with a remote recipient queued, a
// local one whose whole quota is smaller than the message does not fail
// the submission (the client would send it again to all): it is bounced.
func TestSubmitRemoteAndQuotaTooSmall(t *testing.T) {
	p := startPair(t)
	p.A.AddUser("small@a.test", pairPass)
	st := p.A.Server.Store
	if err := st.SetQuota("small@a.test", 20); err != nil {
		t.Fatal(err)
	}
	c, err := dial(t, p.A, alice, pairPass)
	if err != nil {
		t.Fatal(err)
	}
	if err := send(c, alice, []string{bob, "small@a.test"}, testMessage(alice, bob, "too big here")); err != nil {
		t.Fatalf("message refused: %v", err)
	}
	waitMessages(t, p.B.Server.Store, bob, 1)
	dsn := string(waitMessages(t, st, alice, 1)[0])
	for _, want := range []string{"Final-Recipient: rfc822; small@a.test", "Action: failed", "Status: 5.2.3"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
}
