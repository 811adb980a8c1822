package store

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

func recv(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("event channel closed")
		}
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return Event{}
}

func TestEvents(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	s.AddAccount("bob@example.test", "h")
	ch, cancel := s.Subscribe("Alice@Example.test")
	defer cancel()
	all, cancelAll := s.Subscribe("")
	defer cancelAll()

	d := mustAppend(t, s, "INBOX", testMessage("e", 10))
	e := recv(t, ch)
	if e.Kind != EventAppend || e.Mailbox != "INBOX" || len(e.UIDs) != 1 || e.UIDs[0] != d.UID || len(e.Messages) != 1 || e.Messages[0].UID != d.UID {
		t.Fatalf("append event %+v", e)
	}
	mods := []uint64{e.ModSeq}
	s.StoreFlags(alice, "INBOX", []uint32{d.UID}, FlagsAdd, []string{`\Flagged`})
	e = recv(t, ch)
	if e.Kind != EventFlags || e.Messages[0].Flags[0] != `\Flagged` {
		t.Fatalf("flags event %+v", e)
	}
	mods = append(mods, e.ModSeq)
	s.Expunge(alice, "INBOX", []uint32{d.UID})
	e = recv(t, ch)
	if e.Kind != EventExpunge || e.UIDs[0] != d.UID {
		t.Fatalf("expunge event %+v", e)
	}
	mods = append(mods, e.ModSeq)
	for i := 1; i < len(mods); i++ {
		if mods[i] <= mods[i-1] {
			t.Fatalf("modseq did not rise: %v", mods)
		}
	}
	s.CreateMailbox(alice, "New", "")
	if e = recv(t, ch); e.Kind != EventMailboxCreate || e.Mailbox != "New" {
		t.Fatalf("create event %+v", e)
	}
	s.RenameMailbox(alice, "New", "Newer")
	if e = recv(t, ch); e.Kind != EventMailboxRename || e.Mailbox != "New" || e.NewName != "Newer" {
		t.Fatalf("rename event %+v", e)
	}
	s.DeleteMailbox(alice, "Newer")
	if e = recv(t, ch); e.Kind != EventMailboxDelete || e.Mailbox != "Newer" {
		t.Fatalf("delete event %+v", e)
	}
	// bob's delivery reaches the all-accounts subscriber only.
	s.Deliver(context.Background(), testMessage("b", 10), []Delivery{{Account: "bob@example.test"}})
	for {
		e := recv(t, all)
		if e.Account == "bob@example.test" {
			break
		}
	}
	select {
	case e := <-ch:
		t.Fatalf("alice's subscriber got %+v", e)
	default:
	}
}

// TestEventsOrderConcurrent: concurrent appends to one mailbox arrive in
// commit order: UIDs and modseqs strictly increasing.
func TestEventsOrderConcurrent(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	ch, cancel := s.Subscribe(alice)
	defer cancel()
	const workers, per = 8, 40
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				s.Append(context.Background(), alice, "INBOX", NewMessage{Body: testMessage(fmt.Sprint(i), 200)})
			}
		}()
	}
	var last uint32
	var lastMod uint64
	for n := 0; n < workers*per; n++ {
		e := recv(t, ch)
		if e.UIDs[0] <= last || e.ModSeq <= lastMod {
			t.Fatalf("event out of order: uid %d after %d, modseq %d after %d", e.UIDs[0], last, e.ModSeq, lastMod)
		}
		last, lastMod = e.UIDs[0], e.ModSeq
	}
	wg.Wait()
}

// TestEventsSlowSubscriber: a subscriber that does not read is dropped
// (channel closed) instead of blocking writers.
func TestEventsSlowSubscriber(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	const buffer = 16
	s.subs.mu.Lock()
	s.subs.buffer = buffer
	s.subs.mu.Unlock()
	ch, cancel := s.Subscribe(alice)
	defer cancel()
	ids := make([]uint32, 0, buffer+10)
	for i := 0; i < buffer+10; i++ {
		d := mustAppend(t, s, "INBOX", testMessage("s", 10))
		ids = append(ids, d.UID)
	}
	// Flag changes do not block either.
	if _, err := s.StoreFlags(alice, "INBOX", ids, FlagsAdd, []string{`\Seen`}); err != nil {
		t.Fatal(err)
	}
	n := 0
	for range ch {
		n++
	}
	if n != buffer {
		t.Fatalf("got %d events before close, want %d", n, buffer)
	}
}

// TestEventSeq: every event carries the next Seq, and EventSeq is the
// last one as soon as the write that published it has returned.
func TestEventSeq(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	all, cancel := s.Subscribe("")
	defer cancel()
	start := s.EventSeq()
	var last uint64
	for i := 0; i < 5; i++ {
		mustAppend(t, s, "INBOX", testMessage("s"+strconv.Itoa(i), 10))
		if got := s.EventSeq(); got <= last && i > 0 || got <= start {
			t.Fatalf("EventSeq %d after append %d (previous %d)", got, i, last)
		}
		e := recv(t, all)
		if e.Seq != s.EventSeq() {
			t.Fatalf("event Seq %d, EventSeq %d", e.Seq, s.EventSeq())
		}
		if last != 0 && e.Seq != last+1 {
			t.Fatalf("Seq %d after %d", e.Seq, last)
		}
		last = e.Seq
	}
}
