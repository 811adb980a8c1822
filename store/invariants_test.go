package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestInvariantsRandomOps runs random appends, flag changes, copies,
// moves and expunges and checks after each step: UIDs strictly increasing
// and never reused within a UIDVALIDITY, HIGHESTMODSEQ rising on every
// change, counters equal to the messages, blob references equal to the
// messages that use them.
func TestInvariantsRandomOps(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	rng := rand.New(rand.NewSource(1))
	boxes := []string{"INBOX", "Archive", "Trash"}
	everUsed := map[string]map[uint32]bool{}
	maxUID := map[string]uint32{}
	lastMod := map[string]uint64{}
	for _, b := range boxes {
		everUsed[b] = map[uint32]bool{}
	}
	pick := func(box string) []uint32 {
		msgs, _ := s.Messages(alice, box)
		var uids []uint32
		for _, m := range msgs {
			if rng.Intn(3) == 0 {
				uids = append(uids, m.UID)
			}
		}
		return uids
	}
	for step := 0; step < 300; step++ {
		box := boxes[rng.Intn(len(boxes))]
		other := boxes[rng.Intn(len(boxes))]
		changedBoxes := map[string]bool{}
		switch op := rng.Intn(5); op {
		case 0, 1:
			mustAppend(t, s, box, testMessage(fmt.Sprint(step), rng.Intn(2*ChunkSize)))
			changedBoxes[box] = true
		case 2:
			if uids := pick(box); len(uids) > 0 {
				out, _ := s.StoreFlags(alice, box, uids, FlagOp(rng.Intn(3)), []string{`\Seen`, "$x"})
				_ = out
			}
		case 3:
			if uids := pick(box); len(uids) > 0 {
				var err error
				if rng.Intn(2) == 0 {
					_, err = s.Copy(alice, box, uids, other)
				} else {
					_, err = s.Move(alice, box, uids, other)
					changedBoxes[box] = true
				}
				if err != nil {
					t.Fatal(err)
				}
				changedBoxes[other] = true
			}
		case 4:
			if uids := pick(box); len(uids) > 0 {
				s.Expunge(alice, box, uids)
				changedBoxes[box] = true
			}
		}
		for _, b := range boxes {
			mb, _ := s.Mailbox(alice, b)
			if mb.HighestModSeq < lastMod[b] || changedBoxes[b] && mb.HighestModSeq == lastMod[b] {
				t.Fatalf("step %d: %s HIGHESTMODSEQ %d after %d", step, b, mb.HighestModSeq, lastMod[b])
			}
			lastMod[b] = mb.HighestModSeq
			msgs, _ := s.Messages(alice, b)
			var size int64
			var unseen uint32
			for i, m := range msgs {
				if i > 0 && m.UID <= msgs[i-1].UID {
					t.Fatalf("UIDs not increasing")
				}
				if m.UID > maxUID[b] {
					if everUsed[b][m.UID] {
						t.Fatalf("UID %d reused in %s", m.UID, b)
					}
					everUsed[b][m.UID] = true
					maxUID[b] = m.UID
				} else if !everUsed[b][m.UID] {
					t.Fatalf("step %d: new UID %d in %s not above %d", step, m.UID, b, maxUID[b])
				}
				if m.ModSeq > mb.HighestModSeq {
					t.Fatalf("message modseq %d above HIGHESTMODSEQ %d", m.ModSeq, mb.HighestModSeq)
				}
				size += m.Size
				if !hasFlag(m.Flags, `\Seen`) {
					unseen++
				}
			}
			if mb.Messages != uint32(len(msgs)) || mb.Size != size || mb.Unseen != unseen || mb.UIDNext <= maxUID[b] {
				t.Fatalf("step %d: %s counters %+v, have %d msgs %d bytes %d unseen", step, b, mb, len(msgs), size, unseen)
			}
		}
		checkRefcounts(t, s)
	}
}

// checkRefcounts compares each blob's reference count with the messages
// and queue entries that use it.
func checkRefcounts(t *testing.T, s *boltStore) {
	t.Helper()
	uses := map[uint64]uint32{}
	var used int64
	mbs, _ := s.Mailboxes(alice)
	for _, mb := range mbs {
		msgs, _ := s.Messages(alice, mb.Name)
		for _, m := range msgs {
			uses[m.BlobID]++
			used += m.Size
		}
	}
	for id, n := range uses {
		if got := blobRefCount(t, s, id); got != n {
			t.Fatalf("blob %d: refcount %d, used by %d messages", id, got, n)
		}
	}
	shared := 0 // only a count over 1 has a record (blobRefs)
	for _, n := range uses {
		if n > 1 {
			shared++
		}
	}
	if infos, refs, _ := blobCounts(t, s); infos != len(uses) || refs != shared {
		t.Fatalf("%d infos %d refs for %d blobs in use, %d of them shared", infos, refs, len(uses), shared)
	}
	if a, _ := s.Account(alice); a.UsedBytes != used {
		t.Fatalf("UsedBytes %d, messages hold %d", a.UsedBytes, used)
	}
}

// TestConcurrentAppendExpunge appends from many goroutines while others
// expunge and read bodies, then checks every append got a distinct UID
// and the counters and references add up.
func TestConcurrentAppendExpunge(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	const writers, per = 8, 25
	var mu sync.Mutex
	uids := map[uint32]bool{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				body := testMessage(fmt.Sprintf("w%d-%d", w, i), (w*997+i*131)%(ChunkSize+5000))
				d, err := s.Append(context.Background(), alice, "INBOX", NewMessage{Body: body})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if uids[d.UID] {
					t.Errorf("UID %d given twice", d.UID)
				}
				uids[d.UID] = true
				mu.Unlock()
			}
		}(w)
	}
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { // expunger
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			msgs, _ := s.Messages(alice, "INBOX")
			if len(msgs) > 3 {
				s.Expunge(alice, "INBOX", []uint32{msgs[0].UID, msgs[2].UID})
			}
		}
	}()
	go func() { // reader: a body is either whole or gone
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			msgs, _ := s.Messages(alice, "INBOX")
			for _, m := range msgs {
				b, err := s.OpenMessage(m)
				if err != nil {
					continue
				}
				data, err := io.ReadAll(b)
				b.Close()
				if err == nil && (int64(len(data)) != m.Size || !bytes.HasPrefix(data, []byte("From: Bob"))) {
					t.Errorf("message %d: read %d bytes, size %d", m.UID, len(data), m.Size)
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	bg.Wait()
	if len(uids) != writers*per {
		t.Fatalf("%d appends acknowledged", len(uids))
	}
	s.bgFrees.Wait()
	checkRefcounts(t, s)
}

// TestGroupCommitRecords: appends and deliveries queued together make
// one group commit, which writes each account and mailbox record once,
// at its end. Some deliveries pass bob's quota: they fail inside their
// group, which is then retried apart. The records must agree with the
// messages, live and after a crash (replayed from the log).
func TestGroupCommitRecords(t *testing.T) {
	holdCheckpoints(t)
	s, path := openTest(t, Options{})
	const bob = "bob@example.test"
	if err := s.AddAccount(bob, "hash"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetQuota(bob, 20_000); err != nil {
		t.Fatal(err)
	}
	before, err := StatsOf(s)
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int32
	const rounds, per = 6, 12
	for round := range rounds {
		// Hold the committer: the calls queue up and make one group.
		s.commitMu.Lock()
		var wg sync.WaitGroup
		for i := range per {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := testMessage(fmt.Sprintf("g%d-%d", round, i), 500+(round*131+i*17)%3000)
				var err error
				switch i % 3 {
				case 0:
					_, err = s.Append(context.Background(), alice, "INBOX", NewMessage{Body: body})
				case 1:
					_, err = s.Append(context.Background(), alice, "Archive", NewMessage{Body: body, Flags: []string{`\Seen`}})
				default:
					_, err = s.Deliver(context.Background(), body, []Delivery{
						{Account: alice, Mailbox: "Junk"},
						{Account: bob, Mailbox: "INBOX", Prefix: []byte("Delivered-To: bob@example.test\r\n")},
					})
				}
				if errors.Is(err, ErrOverQuota) {
					refused.Add(1)
				} else if err != nil {
					t.Error(err)
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		s.commitMu.Unlock()
		wg.Wait()
	}
	after, err := StatsOf(s)
	if err != nil {
		t.Fatal(err)
	}
	if c := after.Commits - before.Commits; c >= rounds*per/2 {
		t.Fatalf("%d commits for %d operations: the calls were not grouped", c, rounds*per)
	}
	if refused.Load() == 0 {
		t.Fatal("no delivery passed bob's quota: the test lost its failing calls")
	}
	check := func(s *boltStore) {
		t.Helper()
		for _, addr := range []string{alice, bob} {
			var used int64
			for _, name := range []string{"INBOX", "Archive", "Junk"} {
				msgs, err := s.Messages(addr, name)
				if err != nil {
					t.Fatal(err)
				}
				mb, err := s.Mailbox(addr, name)
				if err != nil {
					t.Fatal(err)
				}
				var size int64
				var unseen, last uint32
				for _, m := range msgs {
					size += m.Size
					last = max(last, m.UID)
					if !slices.Contains(m.Flags, `\Seen`) {
						unseen++
					}
				}
				if mb.Messages != uint32(len(msgs)) || mb.Size != size || mb.Unseen != unseen || (len(msgs) > 0 && mb.UIDNext != last+1) {
					t.Errorf("%s %s: the record says %d messages, %d bytes, %d unseen, UIDNEXT %d; it holds %d, %d bytes, %d unseen, last UID %d",
						addr, name, mb.Messages, mb.Size, mb.Unseen, mb.UIDNext, len(msgs), size, unseen, last)
				}
				used += size
			}
			a, err := s.Account(addr)
			if err != nil {
				t.Fatal(err)
			}
			if a.UsedBytes != used {
				t.Errorf("%s: UsedBytes %d, messages hold %d", addr, a.UsedBytes, used)
			}
			if a.QuotaBytes > 0 && a.UsedBytes > a.QuotaBytes {
				t.Errorf("%s: %d bytes used, quota %d", addr, a.UsedBytes, a.QuotaBytes)
			}
		}
	}
	check(s)
	if after.Checkpoints != before.Checkpoints {
		t.Fatal("a checkpoint ran: the test needs the writes in the log")
	}
	st2, err := Open(crashCopy(t, path), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	check(st2.(*boltStore))
}
