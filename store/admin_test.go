package store

import (
	"bytes"
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"
)

func TestDomainsAliasesDKIM(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	if err := s.AddDomain("Example.ORG."); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDomain("example.org"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate domain: %v", err)
	}
	for _, bad := range []string{"", "-a.test", "a..test", "a_b.test", "exa mple.test"} {
		if err := s.AddDomain(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("AddDomain(%q) = %v", bad, err)
		}
	}
	if ok, _ := s.HasDomain("EXAMPLE.org"); !ok {
		t.Fatal("HasDomain")
	}
	if ds, _ := s.Domains(); len(ds) != 2 || ds[0] != "example.org" {
		t.Fatalf("domains %v", ds)
	}
	if err := s.AddAlias("Sales@example.org", []string{"alice@example.test", "Remote@Elsewhere.net"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAlias("@example.org", []string{"alice@example.test"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAlias("x@notours.test", []string{"alice@example.test"}); !errors.Is(err, ErrNoSuchDomain) {
		t.Fatalf("alias in foreign domain: %v", err)
	}
	if err := s.AddAlias("y@example.org", []string{"not an address"}); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("bad target: %v", err)
	}
	if tg, err := s.Alias("sales@EXAMPLE.org"); err != nil || len(tg) != 2 || tg[1] != "remote@elsewhere.net" {
		t.Fatalf("alias %v %v", tg, err)
	}
	if all, _ := s.Aliases(); len(all) != 2 || len(all["@example.org"]) != 1 {
		t.Fatalf("aliases %v", all)
	}
	if err := s.DeleteDomain("example.org"); !errors.Is(err, ErrInUse) {
		t.Fatalf("delete domain with aliases: %v", err)
	}

	k1 := DKIMKey{Domain: "example.org", Selector: "s1", Algorithm: "ed25519", PrivateKey: []byte{1}}
	k2 := DKIMKey{Domain: "example.org", Selector: "s2", Algorithm: "ed25519", PrivateKey: []byte{2}}
	k3 := DKIMKey{Domain: "example.org", Selector: "r1", Algorithm: "rsa", PrivateKey: []byte{3}}
	for _, k := range []DKIMKey{k1, k3, k2} {
		if err := s.AddDKIMKey(k); err != nil {
			t.Fatal(err)
		}
	}
	keys, _ := s.DKIMKeys("example.org")
	active := map[string]bool{}
	for _, k := range keys {
		active[k.Selector] = k.Active
	}
	if len(keys) != 3 || active["s1"] || !active["s2"] || !active["r1"] {
		t.Fatalf("active keys %v", active)
	}
	if err := s.AddDKIMKey(DKIMKey{Domain: "nope.test", Selector: "s", Algorithm: "rsa"}); !errors.Is(err, ErrNoSuchDomain) {
		t.Fatalf("DKIM key for foreign domain: %v", err)
	}
	if err := s.DeleteDKIMKey("example.org", "s1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDKIMKey("example.org", "s1"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	s.DeleteAlias("sales@example.org")
	s.DeleteAlias("@example.org")
	if err := s.DeleteDomain("example.org"); err != nil {
		t.Fatal(err)
	}
	if keys, _ := s.DKIMKeys("example.org"); len(keys) != 0 {
		t.Fatalf("DKIM keys left after DeleteDomain: %v", keys)
	}
}

func TestDeliverErrorsLeaveNothing(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	_, err := s.Deliver(context.Background(), testMessage("x", 10), []Delivery{{Account: alice}, {Account: "ghost@example.test"}})
	if !errors.Is(err, ErrNoSuchAccount) {
		t.Fatalf("deliver to unknown account: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(ctx, alice, "INBOX", NewMessage{Body: testMessage("x", 10)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("append with canceled context: %v", err)
	}
	if infos, _, _ := blobCounts(t, s); infos != 0 {
		t.Fatalf("failed writes left %d blobs", infos)
	}
	if mb, _ := s.Mailbox(alice, "INBOX"); mb.Messages != 0 || mb.UIDNext != 1 {
		t.Fatalf("INBOX %+v", mb)
	}
}

func TestFlagsAndChangedSince(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	d1 := mustAppend(t, s, "INBOX", testMessage("1", 10))
	d2 := mustAppend(t, s, "INBOX", testMessage("2", 10))
	mb, _ := s.Mailbox(alice, "INBOX")
	out, err := s.StoreFlags(alice, "INBOX", []uint32{d2.UID, d1.UID, 77}, FlagsAdd, []string{`\SEEN`, "Work"})
	if err != nil || len(out) != 2 || out[0].UID != d1.UID {
		t.Fatalf("store %v %v", out, err)
	}
	mb2, _ := s.Mailbox(alice, "INBOX")
	if mb2.Unseen != 0 || mb2.HighestModSeq <= mb.HighestModSeq {
		t.Fatalf("after store %+v", mb2)
	}
	// No change: no new modseq (RFC 7162 3.1.3).
	s.StoreFlags(alice, "INBOX", []uint32{d1.UID}, FlagsAdd, []string{`\Seen`})
	if mb3, _ := s.Mailbox(alice, "INBOX"); mb3.HighestModSeq != mb2.HighestModSeq {
		t.Fatalf("no-op STORE raised HIGHESTMODSEQ")
	}
	s.StoreFlags(alice, "INBOX", []uint32{d1.UID}, FlagsRemove, []string{`\seen`, "work"})
	ch, _ := s.ChangedSince(alice, "INBOX", mb2.HighestModSeq)
	if len(ch) != 1 || ch[0].UID != d1.UID || len(ch[0].Flags) != 0 {
		t.Fatalf("changed since %v", ch)
	}
	if mb4, _ := s.Mailbox(alice, "INBOX"); mb4.Unseen != 1 {
		t.Fatalf("unseen %d", mb4.Unseen)
	}
	out, _ = s.StoreFlags(alice, "INBOX", []uint32{d2.UID}, FlagsSet, []string{"$Junk", `\Recent`, `\Flagged`})
	if len(out[0].Flags) != 2 || out[0].Flags[0] != "$Junk" || out[0].Flags[1] != `\Flagged` {
		t.Fatalf("set flags %q", out[0].Flags)
	}
}

func TestBackupCompact(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	body := testMessage("keep", 2*ChunkSize)
	mustAppend(t, s, "INBOX", body)
	var buf bytes.Buffer
	if n, err := s.Backup(&buf); err != nil || n != int64(buf.Len()) {
		t.Fatalf("backup %d %v", n, err)
	}
	s.Close()
	dir := t.TempDir()
	restored := filepath.Join(dir, "restored.db")
	if err := writeFile(restored, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	compacted := filepath.Join(dir, "compacted.db")
	if err := Compact(path, compacted); err != nil {
		t.Fatal(err)
	}
	if err := Compact(path, compacted); !errors.Is(err, ErrExists) {
		t.Fatalf("compact onto existing file: %v", err)
	}
	for _, p := range []string{restored, compacted} {
		st, err := Open(p, Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		msgs, _ := st.Messages(alice, "INBOX")
		if len(msgs) != 1 {
			t.Fatalf("%s: %d messages", p, len(msgs))
		}
		b, _ := st.OpenMessage(msgs[0])
		got := make([]byte, b.Size())
		if _, err := b.ReadAt(got, 0); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%s: body differs: %v", p, err)
		}
		st.Close()
	}
}

// TestRaiseUIDNext: after a restore every mailbox gives out UIDs past any
// given before, under the same UIDVALIDITY; one whose UIDs would run out
// gets a new UIDVALIDITY instead, keeping its UIDNEXT.
func TestRaiseUIDNext(t *testing.T) {
	s, _ := openTest(t, Options{})
	mustAppend(t, s, "INBOX", testMessage("a", 100))
	inbox, _ := s.Mailbox("alice@example.test", "INBOX")
	// Archive near the end of its UIDs.
	if err := s.update(func(t *txn) error {
		mb, err := t.mailbox("alice@example.test", "Archive")
		if err != nil {
			return err
		}
		mb.UIDNext = math.MaxUint32 - 10
		return t.writeMailbox("alice@example.test", mb)
	}); err != nil {
		t.Fatal(err)
	}
	archive, _ := s.Mailbox("alice@example.test", "Archive")
	n, err := RaiseUIDNext(s, RestoreUIDMargin)
	if err != nil {
		t.Fatal(err)
	}
	boxes, _ := s.Mailboxes("alice@example.test")
	if n != len(boxes) {
		t.Errorf("RaiseUIDNext changed %d mailboxes, want all %d", n, len(boxes))
	}
	in2, _ := s.Mailbox("alice@example.test", "INBOX")
	if in2.UIDValidity != inbox.UIDValidity || in2.UIDNext != inbox.UIDNext+RestoreUIDMargin || in2.HighestModSeq < inbox.HighestModSeq+RestoreUIDMargin {
		t.Errorf("INBOX %+v after raising %+v", in2, inbox)
	}
	if d := mustAppend(t, s, "INBOX", testMessage("b", 100)); d.UID != inbox.UIDNext+RestoreUIDMargin {
		t.Errorf("next message got UID %d, want %d", d.UID, inbox.UIDNext+RestoreUIDMargin)
	}
	ar2, _ := s.Mailbox("alice@example.test", "Archive")
	if ar2.UIDValidity == archive.UIDValidity || ar2.UIDNext != archive.UIDNext {
		t.Errorf("Archive %+v after raising %+v: want a new UIDVALIDITY, the same UIDNEXT", ar2, archive)
	}
}
