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
