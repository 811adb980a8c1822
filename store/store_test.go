package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

func TestAccountsAndMailboxes(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	if err := s.AddAccount("Bob@Example.Test", "h"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Account("bob@example.test"); err != nil {
		t.Fatalf("lower-cased account not found: %v", err)
	}
	if err := s.AddAccount("bob@example.test", "h"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate account: %v", err)
	}
	if err := s.AddAccount("x@other.test", "h"); !errors.Is(err, ErrNoSuchDomain) {
		t.Fatalf("foreign domain: %v", err)
	}
	for _, bad := range []string{"nodomain", "a@", "@b.test", "a b@example.test", "a@exa mple.test", "a..b@example.test"} {
		if err := s.AddAccount(bad, "h"); !errors.Is(err, ErrInvalidName) {
			t.Errorf("AddAccount(%q) = %v, want ErrInvalidName", bad, err)
		}
	}
	mbs, err := s.Mailboxes("alice@example.test")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, d := range DefaultMailboxes {
		want[d.Name] = d.SpecialUse
	}
	if len(mbs) != len(want) {
		t.Fatalf("mailboxes %v", mbs)
	}
	seenValidity := map[uint32]bool{}
	for _, mb := range mbs {
		if su, ok := want[mb.Name]; !ok || su != mb.SpecialUse {
			t.Errorf("mailbox %q special-use %q", mb.Name, mb.SpecialUse)
		}
		if seenValidity[mb.UIDValidity] || mb.UIDNext != 1 {
			t.Errorf("mailbox %q: UIDVALIDITY %d UIDNEXT %d", mb.Name, mb.UIDValidity, mb.UIDNext)
		}
		seenValidity[mb.UIDValidity] = true
	}
	if err := s.DeleteDomain("example.test"); !errors.Is(err, ErrInUse) {
		t.Fatalf("DeleteDomain in use: %v", err)
	}
}

func TestAppendReadBack(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	body := testMessage("hello", 3*ChunkSize+100)
	d := mustAppend(t, s, "inbox", body, `\seen`, "$Label", `\SEEN`)
	if d.UID != 1 || d.Mailbox != "INBOX" {
		t.Fatalf("delivered %+v", d)
	}
	msgs, err := s.Messages("alice@example.test", "INBOX")
	if err != nil || len(msgs) != 1 {
		t.Fatalf("messages %v %v", msgs, err)
	}
	m := msgs[0]
	if len(m.Flags) != 2 || m.Flags[0] != "$Label" || m.Flags[1] != `\Seen` {
		t.Errorf("flags %q", m.Flags)
	}
	b, err := s.OpenMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read back %d bytes, err %v", len(got), err)
	}
	bi, err := s.BlobInfo(m.BlobID)
	if err != nil {
		t.Fatal(err)
	}
	if bi.Envelope.Subject != "hello" || bi.Envelope.MessageID != "hello@example.org" || bi.Envelope.From[0].Host != "example.org" {
		t.Errorf("envelope %+v", bi.Envelope)
	}
	mb, _ := s.Mailbox("alice@example.test", "INBOX")
	if mb.Messages != 1 || mb.Unseen != 0 || mb.Size != int64(len(body)) || mb.UIDNext != 2 {
		t.Errorf("mailbox %+v", mb)
	}
	if _, err := s.Append(context.Background(), "alice@example.test", "Nope", NewMessage{Body: body}); !errors.Is(err, ErrNoSuchMailbox) {
		t.Errorf("append to missing mailbox: %v", err)
	}
}
