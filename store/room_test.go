package store

import (
	"context"
	"testing"
)

// TestMinFree: below the reserve, appends, deliveries and queued messages
// fail with NoSpace before anything is written, and the writes that make
// room (an expunge) or change little (flags, a mailbox) still go.
func TestMinFree(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	kept := mustAppend(t, s, "INBOX", testMessage("kept", 600))
	s.opts.MinFree = 1 << 62 // more than any disk has
	if _, err := s.Append(ctx, alice, "INBOX", NewMessage{Body: testMessage("refused", 600)}); !NoSpace(err) {
		t.Fatalf("append below the reserve: %v", err)
	}
	if _, err := s.Deliver(ctx, testMessage("refused", 600), []Delivery{{Account: alice, Mailbox: "INBOX"}}); !NoSpace(err) {
		t.Fatalf("delivery below the reserve: %v", err)
	}
	if _, err := s.Enqueue(ctx, QueueEntry{From: alice, Recipients: []QueueRecipient{{Address: "b@remote.test"}}}, testMessage("refused", 600)); !NoSpace(err) {
		t.Fatalf("queued message below the reserve: %v", err)
	}
	if msgs, _ := s.Messages(alice, "INBOX"); len(msgs) != 1 {
		t.Fatalf("%d messages: something refused was stored", len(msgs))
	}
	if _, err := s.CreateMailbox(alice, "Room", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(alice, "INBOX", []uint32{kept.UID}); err != nil {
		t.Fatal(err)
	}
	s.opts.MinFree = 1 << 20
	s.roomAt.Store(0) // read the file system again
	mustAppend(t, s, "INBOX", testMessage("room again", 600))
	if err := s.CheckRoom(1 << 42); !NoSpace(err) {
		t.Fatalf("a message larger than the disk: %v", err)
	}
}
