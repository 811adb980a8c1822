package store

import (
	"context"
	"os"
	"testing"
	"time"
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

// TestGrowthKeepsReserve: the store grows its files ahead of use (the
// data file's preallocated tail, the log's zeroed blocks) only with room
// to spare above the reserve. On a small disk the tail took the last free
// space, and took again whatever the operator freed.
func TestGrowthKeepsReserve(t *testing.T) {
	s, path := openTest(t, Options{})
	mustAppend(t, s, "INBOX", testMessage("one", 600))
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before, hwm := size(), s.hwm
	defer func() { s.hwm = hwm }()
	s.hwm = before - 1<<20 // near the end: a tail is due

	s.opts.MinFree = 1 << 62 // more than any disk has
	s.roomAt.Store(0)
	s.preallocate()
	if got := size(); got != before {
		t.Errorf("the data file grew from %d to %d bytes into the reserve", before, got)
	}
	logSize := s.wal.size
	n := int(s.wal.size-s.wal.reserved) + 1
	short := s.wal.reserved + int64(walRecHeaderSize+n) - logSize // what the record lacks
	if err := s.reserveLog(n); err != nil {
		t.Fatal(err)
	}
	if grown := s.wal.size - logSize; grown > short+walGrowMin {
		t.Errorf("the log grew by %d bytes with no room above the reserve, want at most what it needs and %d", grown, walGrowMin)
	}
	s.wal.reserved -= int64(walRecHeaderSize + n)

	s.opts.MinFree = 1 << 20
	s.roomAt.Store(0)
	s.preallocate()
	if got := size(); got != before+preallocStep {
		t.Errorf("with room, the data file is %d bytes, want %d", got, before+preallocStep)
	}
}

// TestReportNoSpace: one report a minute, with the count of the refusals
// left unlogged since the last.
func TestReportNoSpace(t *testing.T) {
	noSpaceLast.Store(0)
	noSpaceMissed.Store(0)
	if ok, missed := ReportNoSpace(); !ok || missed != 0 {
		t.Fatalf("first: %v %d", ok, missed)
	}
	for range 3 {
		if ok, _ := ReportNoSpace(); ok {
			t.Fatal("a second report within the minute")
		}
	}
	noSpaceLast.Store(time.Now().Add(-2 * noSpaceEvery).UnixNano())
	if ok, missed := ReportNoSpace(); !ok || missed != 3 {
		t.Fatalf("a minute later: %v %d, want a report of 3 missed", ok, missed)
	}
}
