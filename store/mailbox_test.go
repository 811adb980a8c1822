package store

import (
	"errors"
	"strings"
	"testing"
)

func TestMailboxNames(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	mb, err := s.CreateMailbox(alice, "Projects/2026/Q1", "")
	if err != nil || mb.Name != "Projects/2026/Q1" {
		t.Fatalf("create %+v %v", mb, err)
	}
	if _, err := s.Mailbox(alice, "Projects/2026"); err != nil {
		t.Fatalf("parent not created: %v", err)
	}
	if mb.Subscribed {
		t.Error("CREATE subscribed the mailbox")
	}
	if inbox, _ := s.Mailbox(alice, "INBOX"); !inbox.Subscribed {
		t.Error("default mailbox not subscribed")
	}
	if err := s.SetSubscribed(alice, "Projects/2026/Q1", true); err != nil {
		t.Fatal(err)
	}
	if mb, _ := s.Mailbox(alice, "Projects/2026/Q1"); !mb.Subscribed {
		t.Error("SetSubscribed")
	}
	if _, err := s.CreateMailbox(alice, "X", `\Bogus`); !errors.Is(err, ErrInvalidName) {
		t.Errorf("bad special-use: %v", err)
	}
	if _, err := s.CreateMailbox(alice, "inbox", ""); !errors.Is(err, ErrMailboxExists) {
		t.Fatalf("create inbox: %v", err)
	}
	if mb, err := s.CreateMailbox(alice, "inBox/sub", ""); err != nil || mb.Name != "INBOX/sub" {
		t.Fatalf("INBOX child: %+v %v", mb, err)
	}
	for _, bad := range []string{"", "/a", "a/", "a//b", "a\x00b", "a\nb", "a*", "a%b", strings.Repeat("x", 256), strings.Repeat("a/", 20) + "a"} {
		if _, err := s.CreateMailbox(alice, bad, ""); !errors.Is(err, ErrInvalidName) {
			t.Errorf("CreateMailbox(%q) = %v, want ErrInvalidName", bad, err)
		}
	}
	if err := s.DeleteMailbox(alice, "Inbox"); err == nil {
		t.Fatal("INBOX deleted")
	}
	if err := s.RenameMailbox(alice, "Projects", "Work"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mailbox(alice, "Work/2026/Q1"); err != nil {
		t.Fatalf("child not renamed: %v", err)
	}
	if _, err := s.Mailbox(alice, "Projects/2026"); !errors.Is(err, ErrNoSuchMailbox) {
		t.Fatalf("old child still there: %v", err)
	}
	if err := s.RenameMailbox(alice, "Work", "Work/sub"); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("rename into itself: %v", err)
	}
	if err := s.RenameMailbox(alice, "Work", "Sent"); !errors.Is(err, ErrMailboxExists) {
		t.Fatalf("rename onto existing: %v", err)
	}
}

func TestRenameInbox(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	mustAppend(t, s, "INBOX", testMessage("a", 10))
	mustAppend(t, s, "INBOX", testMessage("b", 10), `\Seen`)
	before, _ := s.Mailbox(alice, "INBOX")
	if err := s.RenameMailbox(alice, "INBOX", "Old"); err != nil {
		t.Fatal(err)
	}
	inbox, _ := s.Mailbox(alice, "INBOX")
	old, err := s.Mailbox(alice, "Old")
	if err != nil {
		t.Fatal(err)
	}
	if inbox.Messages != 0 || inbox.UIDValidity != before.UIDValidity || inbox.UIDNext != before.UIDNext || inbox.HighestModSeq <= before.HighestModSeq {
		t.Errorf("INBOX after rename %+v (before %+v)", inbox, before)
	}
	if old.Messages != 2 || old.Unseen != 1 || old.UIDValidity == before.UIDValidity {
		t.Errorf("Old %+v", old)
	}
	if msgs, _ := s.Messages(alice, "Old"); len(msgs) != 2 {
		t.Errorf("Old has %d messages", len(msgs))
	}
	if d := mustAppend(t, s, "INBOX", testMessage("c", 10)); d.UID != 3 {
		t.Errorf("UID reused in INBOX after rename: %d", d.UID)
	}
}

// TestDeleteKeepsSubscription: DELETE keeps the subscription (RFC 9051
// section 6.3.7); the name can be unsubscribed, and a mailbox that takes
// the name again (CREATE, RENAME) is subscribed.
func TestDeleteKeepsSubscription(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	lapsed := func() string {
		t.Helper()
		names, err := s.LapsedSubscriptions(alice)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(names, ",")
	}
	if got := lapsed(); got != "" {
		t.Fatalf("lapsed at start: %q", got)
	}
	for _, n := range []string{"Lists", "Other", "Plain"} {
		if _, err := s.CreateMailbox(alice, n, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"Lists", "Other"} {
		if err := s.SetSubscribed(alice, n, true); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"Lists", "Other", "Plain"} {
		if err := s.DeleteMailbox(alice, n); err != nil {
			t.Fatal(err)
		}
	}
	if got := lapsed(); got != "Lists,Other" {
		t.Fatalf("lapsed after DELETE: %q", got)
	}
	if err := s.SetSubscribed(alice, "Lists", true); err != nil {
		t.Fatalf("subscribe a lapsed name: %v", err)
	}
	if err := s.SetSubscribed(alice, "Plain", true); !errors.Is(err, ErrNoSuchMailbox) {
		t.Fatalf("subscribe a name never subscribed: %v", err)
	}
	if mb, err := s.CreateMailbox(alice, "Lists", ""); err != nil || !mb.Subscribed {
		t.Fatalf("created again: %+v %v", mb, err)
	}
	if mb, _ := s.Mailbox(alice, "Lists"); !mb.Subscribed {
		t.Fatal("created again: not subscribed")
	}
	if got := lapsed(); got != "Other" {
		t.Fatalf("lapsed after CREATE: %q", got)
	}
	if _, err := s.CreateMailbox(alice, "Tmp", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameMailbox(alice, "Tmp", "Other"); err != nil {
		t.Fatal(err)
	}
	if mb, _ := s.Mailbox(alice, "Other"); !mb.Subscribed || lapsed() != "" {
		t.Fatalf("renamed onto a lapsed name: %+v, lapsed %q", mb, lapsed())
	}
	if err := s.DeleteMailbox(alice, "Other"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSubscribed(alice, "Other", false); err != nil {
		t.Fatalf("unsubscribe a lapsed name: %v", err)
	}
	if got := lapsed(); got != "" {
		t.Fatalf("lapsed after UNSUBSCRIBE: %q", got)
	}
	if err := s.SetSubscribed(alice, "Other", false); !errors.Is(err, ErrNoSuchMailbox) {
		t.Fatalf("unsubscribe twice: %v", err)
	}
	if mb, err := s.CreateMailbox(alice, "Other", ""); err != nil || mb.Subscribed {
		t.Fatalf("created after UNSUBSCRIBE: %+v %v", mb, err)
	}
	if _, err := s.LapsedSubscriptions("nobody@example.com"); !errors.Is(err, ErrNoSuchAccount) {
		t.Fatalf("no account: %v", err)
	}
}
