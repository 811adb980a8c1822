package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestBoltMapLayout pins the bbolt field the store reads to keep a
// commit from remapping while the checkpoint's reader is open.
func TestBoltMapLayout(t *testing.T) {
	if !mapOffset().ok {
		t.Fatal("bolt.DB has no datasz int field: update mappedSize in wal.go")
	}
	s, _ := openTest(t, Options{})
	if !s.walOn.Load() {
		t.Fatal("store not in log mode")
	}
	if m := mappedSize(s.db); m < walMmapSize {
		t.Fatalf("mapped %d bytes, want at least %d", m, int64(walMmapSize))
	}
}

// walOps runs a mix of writes (Append, AppendMany, Deliver to one and to
// several accounts, one over quota) and returns what each stored:
// "account/mailbox/uid" -> body. Unless large, all are small enough to
// be logged; with large, the AppendMany batches are not (maxLogged).
func walOps(t *testing.T, s *boltStore, seed, n int, large bool) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	want := map[string][]byte{}
	key := func(d Delivered) string { return fmt.Sprintf("%s/%s/%d", d.Account, d.Mailbox, d.UID) }
	for i := range n {
		tag := fmt.Sprintf("s%d-%d", seed, i)
		switch i % 4 {
		case 0:
			body := testMessage(tag, 500+i*37%3000)
			d, err := s.Append(ctx, alice, "INBOX", NewMessage{Body: body, Flags: []string{`\Seen`, "$k" + tag}})
			if err != nil {
				t.Fatal(err)
			}
			want[key(d)] = body
		case 1:
			var msgs []NewMessage
			for j := range 3 {
				size := 5000 + j
				if large {
					size = 2*ChunkSize + j
				}
				msgs = append(msgs, NewMessage{Body: testMessage(fmt.Sprintf("%s-%d", tag, j), size)})
			}
			ds, err := s.AppendMany(ctx, alice, "Archive", msgs)
			if err != nil {
				t.Fatal(err)
			}
			for j, d := range ds {
				want[key(d)] = msgs[j].Body
			}
		case 2:
			body := testMessage(tag, 1500)
			ds, err := s.Deliver(ctx, body, []Delivery{
				{Account: alice, Mailbox: "INBOX", Prefix: []byte("Delivered-To: alice@example.test\r\n")},
				{Account: "bob@example.test", Mailbox: "Junk", Flags: []string{"$Junk"}},
			})
			if err != nil {
				t.Fatal(err)
			}
			want[key(ds[0])] = append([]byte("Delivered-To: alice@example.test\r\n"), body...)
			want[key(ds[1])] = body
		case 3:
			// Over carol's quota: fails, stores nothing, logs nothing.
			if _, err := s.Deliver(ctx, testMessage(tag, 5000), []Delivery{{Account: "carol@example.test"}}); !errors.Is(err, ErrOverQuota) {
				t.Fatalf("over quota: %v", err)
			}
		}
	}
	return want
}

func walSetup(t *testing.T) (*boltStore, string) {
	s, path := openTest(t, Options{})
	if err := s.AddAccount("bob@example.test", "h"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAccount("carol@example.test", "h"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetQuota("carol@example.test", 1000); err != nil {
		t.Fatal(err)
	}
	return s, path
}

// checkStored opens the store at path and checks that it holds exactly
// want, with the UIDs, bodies and flags of the live store, and that
// bbolt finds the file consistent.
func checkStored(t *testing.T, path string, want map[string][]byte, live map[string][]Message) {
	t.Helper()
	st, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("open after crash: %v", err)
	}
	defer st.Close()
	s := st.(*boltStore)
	if err := s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Fatalf("bbolt check: %v", err)
	}
	n := 0
	for mb, msgs := range live {
		acct, name, _ := strings.Cut(mb, "/")
		got, err := st.Messages(acct, name)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(msgs) {
			t.Fatalf("%s: %d messages after recovery, %d before", mb, len(got), len(msgs))
		}
		for i, m := range got {
			l := msgs[i]
			if m.UID != l.UID || m.Size != l.Size || !m.InternalDate.Equal(l.InternalDate) || strings.Join(m.Flags, " ") != strings.Join(l.Flags, " ") || m.ModSeq != l.ModSeq {
				t.Fatalf("%s: message %d after recovery %+v, before %+v", mb, i, m, l)
			}
			body, ok := want[fmt.Sprintf("%s/%d", mb, m.UID)]
			if !ok {
				continue // stored before the checkpoint the test started from
			}
			n++
			b, err := st.OpenMessage(m)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, b.Size())
			if _, err := b.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, body) {
				t.Fatalf("%s/%d: body differs after recovery (%v)", mb, m.UID, err)
			}
		}
	}
	if n != len(want) {
		t.Fatalf("%d of %d acknowledged messages found", n, len(want))
	}
	for _, a := range []string{alice, "bob@example.test", "carol@example.test"} {
		acct, err := st.Account(a)
		if err != nil {
			t.Fatal(err)
		}
		var used int64
		mbs, _ := st.Mailboxes(a)
		for _, mb := range mbs {
			used += mb.Size
		}
		if acct.UsedBytes != used {
			t.Fatalf("%s: used %d, mailboxes hold %d", a, acct.UsedBytes, used)
		}
	}
}

func liveState(t *testing.T, s *boltStore) map[string][]Message {
	t.Helper()
	out := map[string][]Message{}
	for _, a := range []string{alice, "bob@example.test", "carol@example.test"} {
		mbs, err := s.Mailboxes(a)
		if err != nil {
			t.Fatal(err)
		}
		for _, mb := range mbs {
			msgs, err := s.Messages(a, mb.Name)
			if err != nil {
				t.Fatal(err)
			}
			out[a+"/"+mb.Name] = msgs
		}
	}
	return out
}

func copyFile(t *testing.T, src, dst string) []byte {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

// crashCopy copies the data file at path and its log into a new
// directory, as a kill -9 would leave them, and returns the copy's path.
func crashCopy(t *testing.T, path string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "posthorn.db")
	copyFile(t, path, p)
	copyFile(t, path+walSuffix, p+walSuffix)
	adoptLog(t, p)
	return p
}

// holdCheckpoints keeps the quiet checkpoint away for the test, so that
// its writes stay in the log.
func holdCheckpoints(t *testing.T) {
	old := checkpointQuiet
	checkpointQuiet = time.Hour
	t.Cleanup(func() { checkpointQuiet = old })
}

// adoptLog points a copied log at the copied data file (its header names
// the inode of the file it was written for).
func adoptLog(t *testing.T, path string) {
	t.Helper()
	w, err := openWAL(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	ino, err := fileIno(path)
	if err != nil {
		t.Fatal(err)
	}
	h := w.hdr
	h.ino = ino
	if _, err := w.f.WriteAt(h.encode(), int64(h.gen%2)*walSlotSize); err != nil {
		t.Fatal(err)
	}
}

// TestWALRecovery simulates crashes after a checkpoint followed by
// logged writes: the data file as the checkpoint left it on disk, as the
// page cache held it at the crash (kill -9), and torn mixes of the two
// page by page (a power cut with some of the unsynced writes on disk).
// Every acknowledged write must be back, with the same UIDs, flags,
// dates and bodies, and bbolt must find the file consistent.
func TestWALRecovery(t *testing.T) {
	old := checkpointQuiet
	checkpointQuiet = time.Hour
	defer func() { checkpointQuiet = old }()

	s, path := walSetup(t)
	walOps(t, s, 0, 20, true) // before the checkpoint
	s.commitMu.Lock()
	err := s.checkpointLocked(false)
	s.commitMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	ckpt, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	before := s.checkpoints.Load()
	want := walOps(t, s, 1, 40, false) // logged only
	if s.checkpoints.Load() != before {
		t.Fatal("a checkpoint ran during the logged writes")
	}
	live := liveState(t, s)
	dir := t.TempDir()
	crashed := copyFile(t, path, filepath.Join(dir, "crashed"))
	logCopy := copyFile(t, path+walSuffix, filepath.Join(dir, "log"))
	if bytes.Equal(crashed, ckpt) {
		t.Fatal("the logged writes changed nothing in the data file")
	}

	const page = 4096
	mix := func(name string, pick func(i int) bool) {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "posthorn.db")
			out := make([]byte, max(len(crashed), len(ckpt)))
			for off := 0; off < len(out); off += page {
				src := crashed
				if pick(off / page) {
					src = ckpt
				}
				if off < len(src) {
					copy(out[off:min(off+page, len(out))], src[off:min(off+page, len(src))])
				}
			}
			if err := os.WriteFile(p, out, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p+walSuffix, logCopy, 0o600); err != nil {
				t.Fatal(err)
			}
			adoptLog(t, p)
			checkStored(t, p, want, live)
			// Recovery checkpointed: a second open finds nothing to replay.
			w, err := openWAL(p)
			if err != nil {
				t.Fatal(err)
			}
			needs := w.needsRecovery()
			w.close()
			if needs {
				t.Fatal("log still to replay after a clean close")
			}
		})
	}
	mix("kill9", func(int) bool { return false })
	mix("checkpoint-only", func(int) bool { return true })
	for seed := range 6 {
		r := rand.New(rand.NewPCG(uint64(seed), 1))
		mix(fmt.Sprintf("torn%d", seed), func(int) bool { return r.IntN(2) == 0 })
	}
}

// TestWALTornTail: a record cut short (the crash came during its write,
// so it was never acknowledged) ends the replay; the records before it
// are applied.
func TestWALTornTail(t *testing.T) {
	old := checkpointQuiet
	checkpointQuiet = time.Hour
	defer func() { checkpointQuiet = old }()
	s, path := walSetup(t)
	want := walOps(t, s, 2, 8, false)
	live := liveState(t, s)
	dir := t.TempDir()
	p := filepath.Join(dir, "posthorn.db")
	copyFile(t, path, p)
	logCopy := copyFile(t, path+walSuffix, p+walSuffix)
	// A record after the last one, torn: valid header, payload cut.
	w, err := openWAL(p)
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := w.records()
	w.close()
	if len(recs) == 0 {
		t.Fatal("no records in the log")
	}
	end := int64(walDataStart)
	for _, r := range recs {
		end += walRecHeaderSize + int64(len(r))
	}
	torn := append([]byte(nil), logCopy...)
	copy(torn[end:], logCopy[walDataStart:walDataStart+walRecHeaderSize+len(recs[0])/2])
	if err := os.WriteFile(p+walSuffix, torn, 0o600); err != nil {
		t.Fatal(err)
	}
	adoptLog(t, p)
	checkStored(t, p, want, live)
}

// TestWALForeignLog: a log with writes to replay is not applied to a data
// file other than its own (one put in place after the crash).
func TestWALForeignLog(t *testing.T) {
	old := checkpointQuiet
	checkpointQuiet = time.Hour
	defer func() { checkpointQuiet = old }()
	s, path := walSetup(t)
	walOps(t, s, 3, 4, false)
	p := filepath.Join(t.TempDir(), "posthorn.db")
	copyFile(t, path, p)
	copyFile(t, path+walSuffix, p+walSuffix)
	_, err := Open(p, Options{})
	if err == nil || !strings.Contains(err.Error(), "log of another data file") {
		t.Fatalf("open with a foreign log: %v", err)
	}
}

// TestWALLeaveLogMode: when bbolt's map has too little room for the
// next commit, the store checkpoints and goes on with bbolt's own synced
// commits; what was written before and after survives a reopen.
func TestWALLeaveLogMode(t *testing.T) {
	s, path := walSetup(t)
	want := walOps(t, s, 4, 8, true)
	old := mapHeadroom
	mapHeadroom = 1 << 62
	defer func() { mapHeadroom = old }()
	for k, v := range walOps(t, s, 5, 8, false) {
		want[k] = v
	}
	if s.walOn.Load() {
		t.Fatal("still in log mode")
	}
	st, _ := StatsOf(s)
	walOps(t, s, 6, 1, false)
	st2, _ := StatsOf(s)
	if got := st2.Fsyncs - st.Fsyncs; got != 2 {
		t.Fatalf("%d fsyncs for one commit out of log mode, want bbolt's 2", got)
	}
	live := liveState(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	delete(want, "") // walOps(6) results are in live only
	st3, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for mb, msgs := range live {
		acct, name, _ := strings.Cut(mb, "/")
		got, _ := st3.Messages(acct, name)
		if len(got) != len(msgs) {
			t.Fatalf("%s: %d messages after reopen, want %d", mb, len(got), len(msgs))
		}
	}
	st3.Close()
}

// TestWALLeaveLogModeFailure: when the checkpoint that leaves log mode
// fails, nothing is acknowledged until one succeeds: bbolt's commits are
// not synced before it. Then the store goes on out of log mode, with
// bbolt's two fsyncs per commit, and what it acknowledged survives a
// crash.
func TestWALLeaveLogModeFailure(t *testing.T) {
	holdCheckpoints(t)
	s, path := walSetup(t)
	for i := range 3 {
		mustAppend(t, s, "INBOX", testMessage(fmt.Sprintf("logged-%d", i), 600))
	}
	old := mapHeadroom
	mapHeadroom = 1 << 62
	defer func() { mapHeadroom = old }()
	s.wal.f.Close() // the checkpoint's header cannot be written
	// Both paths: the committer's (commitMu held: the appends queue into
	// one group), then a lone writer's (commitSolo), which owes it.
	s.commitMu.Lock()
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			_, err := s.Append(context.Background(), alice, "INBOX", NewMessage{Body: testMessage(fmt.Sprintf("refused-%d", i), 600)})
			errs <- err
		}()
	}
	time.Sleep(20 * time.Millisecond)
	s.commitMu.Unlock()
	for range 2 {
		if err := <-errs; err == nil {
			t.Fatal("an append was acknowledged while leaving log mode failed")
		}
	}
	if d, err := s.Append(context.Background(), alice, "INBOX", NewMessage{Body: testMessage("refused-alone", 600)}); err == nil {
		t.Fatalf("UID %d acknowledged while the checkpoint is owed", d.UID)
	}
	if s.walOn.Load() || s.owedErr() == nil || s.failure() != nil {
		t.Fatalf("log mode %v, owed %v, failed %v: want out of log mode, a checkpoint owed", s.walOn.Load(), s.owedErr(), s.failure())
	}
	reopenLog(t, s, path)
	mustAppend(t, s, "INBOX", testMessage("after", 600))
	if s.owedErr() != nil || s.db.NoSync {
		t.Fatalf("owed %v, bbolt NoSync %v after the checkpoint owed", s.owedErr(), s.db.NoSync)
	}
	st, _ := StatsOf(s)
	mustAppend(t, s, "INBOX", testMessage("synced", 600))
	st2, _ := StatsOf(s)
	if got := st2.Fsyncs - st.Fsyncs; got != 2 {
		t.Fatalf("%d fsyncs for one commit out of log mode, want bbolt's 2", got)
	}
	checkStored(t, crashCopy(t, path), nil, liveState(t, s))
}

// TestWALOneFsyncPerCommit: a logged write costs one fdatasync.
func TestWALOneFsyncPerCommit(t *testing.T) {
	old := checkpointQuiet
	checkpointQuiet = time.Hour
	defer func() { checkpointQuiet = old }()
	s, _ := walSetup(t)
	// The first logged write also grows the log (TestWALFsyncCount).
	if _, err := s.Append(context.Background(), alice, "INBOX", NewMessage{Body: testMessage("first", 1000)}); err != nil {
		t.Fatal(err)
	}
	st, _ := StatsOf(s)
	for i := range 10 {
		if _, err := s.Append(context.Background(), alice, "INBOX", NewMessage{Body: testMessage(fmt.Sprint(i), 1000)}); err != nil {
			t.Fatal(err)
		}
	}
	st2, _ := StatsOf(s)
	if got := st2.Fsyncs - st.Fsyncs; got != 10 {
		t.Fatalf("%d fsyncs for 10 appends, want 10", got)
	}
	// A message over maxLogged goes to the data file directly: a
	// checkpoint, two fsyncs.
	if _, err := s.Append(context.Background(), alice, "INBOX", NewMessage{Body: testMessage("large", maxLogged+1)}); err != nil {
		t.Fatal(err)
	}
	st3, _ := StatsOf(s)
	if st3.Fsyncs-st2.Fsyncs != 2 || st3.Checkpoints-st2.Checkpoints != 1 {
		t.Fatalf("large append: %d fsyncs, %d checkpoints; want 2 and 1", st3.Fsyncs-st2.Fsyncs, st3.Checkpoints-st2.Checkpoints)
	}
}

// TestDiscardLog: once the log of a crashed store is discarded, another
// data file put in its place opens (posthorn restore does this), and a
// clean Close leaves no log behind.
func TestDiscardLog(t *testing.T) {
	old := checkpointQuiet
	checkpointQuiet = time.Hour
	defer func() { checkpointQuiet = old }()
	s, path := walSetup(t)
	walOps(t, s, 7, 4, false)
	dir := t.TempDir()
	p := filepath.Join(dir, "posthorn.db")
	copyFile(t, path, p)
	copyFile(t, path+walSuffix, p+walSuffix)
	// The replacement: a consistent copy (a backup) of the same store.
	var buf bytes.Buffer
	if _, err := s.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(p, Options{}); err == nil {
		t.Fatal("opened with the old file's log in place")
	}
	if err := DiscardLog(p); err != nil {
		t.Fatal(err)
	}
	st, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	msgs, _ := st.Messages(alice, "INBOX")
	if len(msgs) == 0 {
		t.Fatal("restored store is empty")
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p + walSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("log after a clean close: %v", err)
	}
}

var errInjected = errors.New("injected failure")

// TestWALFailedCallInGroup: a call that fails inside a logged group (an
// error that is not a refusal, injected here) gets its error, the others
// of the group are committed, and a crash afterwards recovers every
// acknowledged write. The group's record was written before the
// transaction ran; it must be taken back, or the failed call's append
// would come back at replay and the retry's record (same transaction id,
// after it) would be lost.
func TestWALFailedCallInGroup(t *testing.T) {
	holdCheckpoints(t)
	s, path := walSetup(t)
	ctx := context.Background()
	key := func(d Delivered) string { return fmt.Sprintf("%s/%s/%d", d.Account, d.Mailbox, d.UID) }
	want := map[string][]byte{}
	var mu sync.Mutex
	before := s.checkpoints.Load()
	for round := range 5 {
		// Hold the committer: the calls queue up and make one group.
		s.commitMu.Lock()
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := testMessage(fmt.Sprintf("r%d-%d", round, i), 700)
				if i == 3 {
					rec := appendRecordParts(alice, "INBOX", []NewMessage{{Body: body, InternalDate: time.Now()}})
					if err := s.batchAppend(ctx, rec, func(*txn) error { return errInjected }); !errors.Is(err, errInjected) {
						t.Errorf("failing call: %v", err)
					}
					return
				}
				d, err := s.Append(ctx, alice, "INBOX", NewMessage{Body: body})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				want[key(d)] = body
				mu.Unlock()
			}()
		}
		time.Sleep(20 * time.Millisecond)
		s.commitMu.Unlock()
		wg.Wait()
	}
	if t.Failed() {
		return
	}
	if s.checkpoints.Load() != before {
		t.Fatal("a checkpoint ran: the test needs the writes in the log")
	}
	checkStored(t, crashCopy(t, path), want, liveState(t, s))
}

// TestWALReplaySkipsRefusedOperation: an append or delivery refused live
// (no such mailbox) committed with its group, its record in the log.
// Replayed, it is refused again and skipped, and the others applied.
func TestWALReplaySkipsRefusedOperation(t *testing.T) {
	holdCheckpoints(t)
	s, path := walSetup(t)
	want := walOps(t, s, 3, 8, false)
	live := liveState(t, s)
	refusedBefore := replayRefusals(t, crashCopy(t, path))
	p := crashCopy(t, path)
	date := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	missing := []NewMessage{{Body: testMessage("lost", 900), InternalDate: date}}
	kept := []NewMessage{{Body: testMessage("kept", 800), InternalDate: date}}
	appendToLog(t, p, append(appendRecord(alice, "NoSuchBox", missing), appendRecord(alice, "INBOX", kept)...))

	st, err := Open(p, Options{})
	if err != nil {
		t.Fatalf("open with a failing operation in the log: %v", err)
	}
	got, err := st.Messages(alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if skipped := st.(*boltStore).replaySkipped; skipped != refusedBefore+1 {
		t.Fatalf("%d operations skipped, want %d", skipped, refusedBefore+1)
	}
	inbox := live[alice+"/INBOX"]
	if len(got) != len(inbox)+1 {
		t.Fatalf("INBOX has %d messages, want %d", len(got), len(inbox)+1)
	}
	last := got[len(got)-1]
	b, err := st.OpenMessage(last)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, b.Size())
	if _, err := b.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, kept[0].Body) || !last.InternalDate.Equal(date) {
		t.Fatalf("the kept operation's message differs (%v)", err)
	}
	st.Close()
	// The writes acknowledged before are all there.
	delete(live, alice+"/INBOX")
	for k := range want {
		if strings.HasPrefix(k, alice+"/INBOX/") {
			delete(want, k)
		}
	}
	checkStored(t, p, want, live)
}

// TestWALReplayFailure: an operation of the log that fails with anything
// but a refusal means the log and the data file disagree, and Open
// refuses rather than skip it.
func TestWALReplayFailure(t *testing.T) {
	holdCheckpoints(t)
	s, path := walSetup(t)
	walOps(t, s, 4, 4, false)
	p := crashCopy(t, path)
	appendToLog(t, p, []byte{opAppend, 0xff, 0xff, 0xff, 0xff, 0x0f})
	if st, err := Open(p, Options{}); err == nil || !errors.Is(err, errBadRecord) {
		if st != nil {
			st.Close()
		}
		t.Fatalf("open with a malformed operation in the log: %v", err)
	}
}

// TestRefusalCommits: in log mode, an append refused (no such mailbox)
// in a group with others fails alone, its transaction committed rather
// than rolled back (bbolt's rollback after a commit without a freelist
// walks the whole file): its record stays in the log (a rolled-back
// one is taken back), where a replay refuses it again and applies the
// rest.
func TestRefusalCommits(t *testing.T) {
	holdCheckpoints(t)
	s, path := walSetup(t)
	walOps(t, s, 2, 4, false)
	refusedBefore := replayRefusals(t, crashCopy(t, path))
	if s.freelistSynced || !s.db.NoFreelistSync {
		t.Fatalf("a logged commit wrote the freelist (synced %v, NoFreelistSync %v)", s.freelistSynced, s.db.NoFreelistSync)
	}
	// A group of three, the middle one refused: held at commitMu so the
	// committer takes them together.
	s.commitMu.Lock()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, box := range []string{"INBOX", "NoSuchBox", "Sent"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Append(context.Background(), alice, box, NewMessage{Body: testMessage(fmt.Sprintf("group %d", i), 700)})
		}()
	}
	time.Sleep(50 * time.Millisecond)
	s.commitMu.Unlock()
	wg.Wait()
	if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], ErrNoSuchMailbox) {
		t.Fatalf("errors %v, want nil, no such mailbox, nil", errs)
	}
	live := liveState(t, s)
	st, err := Open(crashCopy(t, path), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if skipped := st.(*boltStore).replaySkipped; skipped != refusedBefore+1 {
		t.Fatalf("%d operations skipped in the replay, want %d", skipped, refusedBefore+1)
	}
	for _, box := range []string{"INBOX", "Sent"} {
		got, err := st.Messages(alice, box)
		if err != nil || len(got) != len(live[alice+"/"+box]) {
			t.Fatalf("%s after replay: %d messages (%v), want %d", box, len(got), err, len(live[alice+"/"+box]))
		}
	}
}

// replayRefusals opens the crash copy at p and tells how many refused
// operations its replay skipped.
func replayRefusals(t *testing.T, p string) int {
	t.Helper()
	st, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	return st.(*boltStore).replaySkipped
}

// appendToLog adds records after the last one in the log of the data file
// at p, as commits after them would have written them.
func appendToLog(t *testing.T, p string, payloads ...[]byte) {
	t.Helper()
	w, err := openWAL(p)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	recs, err := w.records()
	if err != nil || len(recs) == 0 {
		t.Fatalf("records: %d, %v", len(recs), err)
	}
	w.off = walDataStart
	for _, r := range recs {
		w.off += walRecHeaderSize + int64(len(r))
	}
	var add []walRecord
	for i, pl := range payloads {
		add = append(add, walRecord{txid: w.hdr.txid + uint64(len(recs)+i) + 1, parts: [][]byte{pl}})
	}
	if _, err := w.appendRecords(add); err != nil {
		t.Fatal(err)
	}
}

// TestWALFsyncCount: Stats.Fsyncs counts the log's fdatasyncs, the one
// that makes its new zeroed blocks durable when it grows included.
func TestWALFsyncCount(t *testing.T) {
	st, err := Open(filepath.Join(t.TempDir(), "posthorn.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.AddDomain("example.test")
	st.AddAccount(alice, "h")
	body := testMessage("count", 512)
	before, _ := StatsOf(st)
	// The first logged append grows the log (zeros, fdatasync), then
	// writes its record (fdatasync); the second only writes.
	for i, want := range []uint64{2, 1} {
		if _, err := st.Append(context.Background(), alice, "INBOX", NewMessage{Body: body}); err != nil {
			t.Fatal(err)
		}
		after, _ := StatsOf(st)
		if got := after.Fsyncs - before.Fsyncs; got != want || after.Checkpoints != before.Checkpoints {
			t.Fatalf("append %d: %d fdatasyncs (checkpoints %d -> %d), want %d", i+1, got, before.Checkpoints, after.Checkpoints, want)
		}
		before = after
	}
}

// TestWALSoloCommit: a lone writer's appends are committed by the caller
// (commitSolo), which logs each while the applier applies it. Appends
// refused (a missing mailbox, over quota) get their error, and commit
// nothing; one whose transaction fails (an injected error) gets its
// error and its record is taken back. A crash afterwards recovers every
// acknowledged append and nothing else.
func TestWALSoloCommit(t *testing.T) {
	holdCheckpoints(t)
	s, path := walSetup(t)
	ctx := context.Background()
	want := map[string][]byte{}
	before := s.checkpoints.Load()
	solos := s.solos.Load()
	for i := range 30 {
		body := testMessage(fmt.Sprintf("solo-%d", i), 300+i*37)
		switch i % 5 {
		case 2:
			rec := appendRecordParts(alice, "INBOX", []NewMessage{{Body: body, InternalDate: time.Now()}})
			if err := s.batchAppend(ctx, rec, func(*txn) error { return errInjected }); !errors.Is(err, errInjected) {
				t.Fatalf("failing append: %v", err)
			}
			continue
		case 3:
			if _, err := s.Append(ctx, alice, "NoSuchBox", NewMessage{Body: body}); !errors.Is(err, ErrNoSuchMailbox) {
				t.Fatalf("append to a missing mailbox: %v", err)
			}
			continue
		case 4:
			big := testMessage(fmt.Sprintf("solo-%d", i), 2000)
			if _, err := s.Append(ctx, "carol@example.test", "INBOX", NewMessage{Body: big}); !errors.Is(err, ErrOverQuota) {
				t.Fatalf("append over quota: %v", err)
			}
			continue
		}
		d, err := s.Append(ctx, alice, "INBOX", NewMessage{Body: body, Flags: []string{`\Seen`}})
		if err != nil {
			t.Fatal(err)
		}
		want[fmt.Sprintf("%s/%s/%d", d.Account, d.Mailbox, d.UID)] = body
	}
	if n := s.solos.Load() - solos; n != 30 {
		t.Fatalf("%d of 30 lone appends went through commitSolo", n)
	}
	if s.checkpoints.Load() != before {
		t.Fatal("a checkpoint ran: the test needs the writes in the log")
	}
	checkStored(t, crashCopy(t, path), want, liveState(t, s))
}

// TestCloseDuringAppends: Close while appends are under way, from one
// writer (commitSolo) and from several (group commits). Every append
// returns either its delivery or ErrClosed, Close returns, and the
// reopened store holds exactly the acknowledged appends.
func TestCloseDuringAppends(t *testing.T) {
	for _, writers := range []int{1, 6} {
		t.Run(fmt.Sprintf("%d-writers", writers), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "posthorn.db")
			st, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			s := st.(*boltStore)
			if err := s.AddDomain("example.test"); err != nil {
				t.Fatal(err)
			}
			if err := s.AddAccount(alice, "h"); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			acked := map[uint32][]byte{}
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						body := testMessage(fmt.Sprintf("c%d-%d", w, i), 400+i%700)
						d, err := s.Append(context.Background(), alice, "INBOX", NewMessage{Body: body})
						if errors.Is(err, ErrClosed) {
							return
						}
						if err != nil {
							t.Errorf("append: %v", err)
							return
						}
						mu.Lock()
						acked[d.UID] = body
						mu.Unlock()
					}
				}()
			}
			time.Sleep(100 * time.Millisecond)
			if err := s.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			wg.Wait()
			if len(acked) == 0 {
				t.Fatal("no append was acknowledged before Close")
			}
			if writers == 1 && s.solos.Load() == 0 {
				t.Fatal("the lone writer's appends did not go through commitSolo")
			}
			st2, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st2.Close()
			msgs, err := st2.Messages(alice, "INBOX")
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != len(acked) {
				t.Fatalf("%d messages after reopen, %d acknowledged", len(msgs), len(acked))
			}
			for _, m := range msgs {
				want, ok := acked[m.UID]
				if !ok {
					t.Fatalf("UID %d stored but never acknowledged", m.UID)
				}
				b, err := st2.OpenMessage(m)
				if err != nil {
					t.Fatal(err)
				}
				got := make([]byte, b.Size())
				if _, err := b.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("UID %d: body differs after reopen (%v)", m.UID, err)
				}
			}
		})
	}
}

// TestWALWriteFailure: when the log cannot be written (here its file is
// closed; a full disk does the same), the appends of that write get an
// error, from a lone writer (commitSolo) and from a group alike, and so
// does every write after it while the checkpoint owed cannot be made.
// Once the log can be written again, the next write makes it and goes
// on: no restart. The appends that failed were applied all the same, so
// their events went out; the checkpoint made them durable, and a crash
// after it recovers everything, the records after the failure included.
func TestWALWriteFailure(t *testing.T) {
	for _, writers := range []int{1, 4} {
		t.Run(fmt.Sprintf("%d-writers", writers), func(t *testing.T) {
			holdCheckpoints(t)
			s, path := walSetup(t)
			ctx := context.Background()
			events, cancel := s.Subscribe(alice)
			defer cancel()
			for i := range 5 {
				mustAppend(t, s, "INBOX", testMessage(fmt.Sprintf("ok-%d", i), 600))
			}
			s.wal.f.Close() // the next log write fails
			solos := s.solos.Load()
			if writers > 1 {
				s.commitMu.Lock() // the appends queue into one group
			}
			errs := make(chan error, writers)
			for i := range writers {
				go func() {
					_, err := s.Append(ctx, alice, "INBOX", NewMessage{Body: testMessage(fmt.Sprintf("failed-%d", i), 600)})
					errs <- err
				}()
			}
			if writers > 1 {
				time.Sleep(20 * time.Millisecond)
				s.commitMu.Unlock()
			}
			for range writers {
				if err := <-errs; err == nil || !strings.Contains(err.Error(), walSuffix) {
					t.Fatalf("append while the log cannot be written: %v", err)
				}
			}
			if writers == 1 && s.solos.Load() == solos {
				t.Fatal("the lone append did not go through commitSolo")
			}
			if s.failure() != nil || s.owedErr() == nil {
				t.Fatalf("failed %v, owed %v: want a checkpoint owed", s.failure(), s.owedErr())
			}
			// Still not writable: the checkpoint owed fails, and so do
			// the writes that try it.
			if _, err := s.Append(ctx, alice, "INBOX", NewMessage{Body: testMessage("refused", 600)}); err == nil {
				t.Fatal("an append went through with the log closed")
			}
			if _, err := s.CreateMailbox(alice, "Early", ""); err == nil {
				t.Fatal("a mailbox was created with the log closed")
			}
			reopenLog(t, s, path)
			checkpoints := s.checkpoints.Load()
			after := mustAppend(t, s, "INBOX", testMessage("after", 600))
			if s.owedErr() != nil || s.checkpoints.Load() != checkpoints+1 {
				t.Fatalf("owed %v, %d checkpoints: want the one owed made", s.owedErr(), s.checkpoints.Load()-checkpoints)
			}
			if _, err := s.CreateMailbox(alice, "After", ""); err != nil {
				t.Fatal(err)
			}
			for i := range 3 { // logged again, after the checkpoint
				mustAppend(t, s, "INBOX", testMessage(fmt.Sprintf("logged-%d", i), 600))
			}
			live := liveState(t, s)
			// Of the failed appends, those that reached a commit before
			// the failure was known were applied: one at least.
			inbox := live[alice+"/INBOX"]
			if len(inbox) < 5+1+1+3 || len(inbox) > 5+writers+1+3 || inbox[len(inbox)-4].UID != after.UID {
				t.Fatalf("INBOX holds %d messages, want 5 + 1 to %d failed + 4, UID %d fourth from last", len(inbox), writers, after.UID)
			}
			seen := map[uint32]bool{}
		drain:
			for {
				select {
				case e := <-events:
					for _, uid := range e.UIDs {
						if e.Kind == EventAppend && e.Mailbox == "INBOX" {
							seen[uid] = true
						}
					}
				default:
					break drain
				}
			}
			for _, m := range inbox {
				if !seen[m.UID] {
					t.Fatalf("no append event for UID %d: the sessions would not see it", m.UID)
				}
			}
			checkStored(t, crashCopy(t, path), nil, live)
		})
	}
}

// TestWALWriteFailureQueued: a log write fails while the next group's
// record waits behind it. That record must not be written: it would not
// follow the last one written, and a replay stops at such a gap (the
// checkpoint owed would close it, but a crash may come first). Its
// appends fail too, and a crash before any other write recovers every
// acknowledged append.
func TestWALWriteFailureQueued(t *testing.T) {
	holdCheckpoints(t)
	s, path := walSetup(t)
	ctx := context.Background()
	for i := range 5 {
		mustAppend(t, s, "INBOX", testMessage(fmt.Sprintf("ok-%d", i), 600))
	}
	var once sync.Once
	failIO = func(op string, f *os.File) error {
		var err error
		if op == "write" {
			once.Do(func() {
				time.Sleep(30 * time.Millisecond) // the next groups are applied and queued meanwhile
				err = errInjected
			})
		}
		return err
	}
	defer func() { failIO = nil }()
	var mu sync.Mutex
	acked := map[uint32]bool{}
	var wg sync.WaitGroup
	appendSome := func(name string, n int) {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := s.Append(ctx, alice, "INBOX", NewMessage{Body: testMessage(fmt.Sprintf("%s-%d", name, i), 600)})
				if err == nil {
					mu.Lock()
					acked[d.UID] = true
					mu.Unlock()
				}
			}()
		}
	}
	s.commitMu.Lock() // the first appends queue into one group, for the committer
	appendSome("first", 4)
	time.Sleep(10 * time.Millisecond)
	s.commitMu.Unlock()
	time.Sleep(10 * time.Millisecond) // its record is being written
	appendSome("next", 4)
	wg.Wait()
	if s.owedErr() == nil {
		t.Fatal("no checkpoint owed after a failed log write")
	}
	_, got := recovered(t, path)
	have := map[uint32]bool{}
	for _, m := range got {
		have[m.UID] = true
	}
	for uid := range acked {
		if !have[uid] {
			t.Fatalf("UID %d was acknowledged and is gone after a crash (%d acknowledged, %d recovered)", uid, len(acked), len(got))
		}
	}
}

// reopenLog gives s its log file again, after a test closed it to make
// the log's writes fail.
func reopenLog(t *testing.T, s *boltStore, path string) {
	t.Helper()
	f, err := os.OpenFile(path+walSuffix, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.commitMu.Lock()
	s.wal.f = f
	s.commitMu.Unlock()
}

// recovered opens a crash copy of the store at path (closed when the
// test ends) and returns it with alice's INBOX as recovered.
func recovered(t *testing.T, path string) (Store, []Message) {
	t.Helper()
	st, err := Open(crashCopy(t, path), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	msgs, err := st.Messages(alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return st, msgs
}

// TestWALGrowFailure: when the log must grow and the disk has no room,
// the append fails before anything is applied (no checkpoint owed, no
// message that its client was told had failed), from a lone writer and
// from a group alike, and the store goes on. With a little room, the
// log grows by what fits rather than by walGrowStep.
func TestWALGrowFailure(t *testing.T) {
	holdCheckpoints(t)
	s, path := walSetup(t)
	ctx := context.Background()
	noSpace := &os.PathError{Op: "write", Path: path + walSuffix, Err: syscall.ENOSPC}
	var mu sync.Mutex
	fails := -1 // how many more zeros writes of the log fail; -1: all
	failIO = func(op string, f *os.File) error {
		mu.Lock()
		defer mu.Unlock()
		if op != "zeros" || !strings.HasSuffix(f.Name(), walSuffix) || fails == 0 {
			return nil
		}
		if fails > 0 {
			fails--
		}
		return noSpace
	}
	defer func() { failIO = nil }()
	events, cancel := s.Subscribe(alice)
	defer cancel()

	if s.wal.size > walDataStart {
		t.Fatalf("the log has %d bytes already: nothing to grow", s.wal.size)
	}
	if _, err := s.Append(ctx, alice, "INBOX", NewMessage{Body: testMessage("alone", 600)}); !NoSpace(err) {
		t.Fatalf("lone append with no room for the log: %v", err)
	}
	s.commitMu.Lock() // a group, for the committer
	errs := make(chan error, 3)
	for i := range 3 {
		go func() {
			_, err := s.Append(ctx, alice, "INBOX", NewMessage{Body: testMessage(fmt.Sprintf("group-%d", i), 600)})
			errs <- err
		}()
	}
	time.Sleep(20 * time.Millisecond)
	s.commitMu.Unlock()
	for range 3 {
		if err := <-errs; !NoSpace(err) {
			t.Fatalf("grouped append with no room for the log: %v", err)
		}
	}
	if msgs, _ := s.Messages(alice, "INBOX"); len(msgs) != 0 {
		t.Fatalf("%d messages stored by appends that failed", len(msgs))
	}
	if s.owedErr() != nil || s.failure() != nil {
		t.Fatalf("owed %v, failed %v: nothing was applied, nothing is owed", s.owedErr(), s.failure())
	}
	select {
	case e := <-events:
		t.Fatalf("an event for appends that failed: %+v", e)
	default:
	}

	mu.Lock()
	fails = 1 // walGrowStep does not fit, less does
	mu.Unlock()
	d := mustAppend(t, s, "INBOX", testMessage("fits", 600))
	if grown := s.wal.size - walDataStart; grown <= 0 || grown >= walGrowStep {
		t.Fatalf("the log grew by %d bytes, want less than walGrowStep (%d)", grown, walGrowStep)
	}
	for i := range 3 {
		mustAppend(t, s, "INBOX", testMessage(fmt.Sprintf("more-%d", i), 600))
	}
	live := liveState(t, s)
	if msgs := live[alice+"/INBOX"]; len(msgs) != 4 || msgs[0].UID != d.UID {
		t.Fatalf("INBOX after: %d messages", len(msgs))
	}
	checkStored(t, crashCopy(t, path), nil, live)
}

// TestWALSyncFailure: after a failed fdatasync of the log, the state on
// disk is unknown (the kernel may have dropped the pages it could not
// write), so every write fails from then on, also once the disk works
// again; a restart recovers exactly the appends acknowledged before.
func TestWALSyncFailure(t *testing.T) {
	holdCheckpoints(t)
	s, path := walSetup(t)
	ctx := context.Background()
	want := map[string][]byte{}
	for i := range 5 {
		body := testMessage(fmt.Sprintf("ok-%d", i), 600)
		d := mustAppend(t, s, "INBOX", body)
		want[fmt.Sprintf("%s/%s/%d", d.Account, d.Mailbox, d.UID)] = body
	}
	errEIO := errors.New("injected EIO")
	failIO = func(op string, f *os.File) error {
		if op == "fdatasync" && strings.HasSuffix(f.Name(), walSuffix) {
			return errEIO
		}
		return nil
	}
	_, err := s.Append(ctx, alice, "INBOX", NewMessage{Body: testMessage("lost", 600)})
	failIO = nil
	if !errors.Is(err, errEIO) {
		t.Fatalf("append with a failing fdatasync: %v", err)
	}
	if _, err := s.Append(ctx, alice, "INBOX", NewMessage{Body: testMessage("after", 600)}); !errors.Is(err, errEIO) {
		t.Fatalf("append after a failed fdatasync: %v", err)
	}
	if _, err := s.CreateMailbox(alice, "After", ""); !errors.Is(err, errEIO) {
		t.Fatalf("create after a failed fdatasync: %v", err)
	}
	// The failed append's record may or may not be on disk: the
	// acknowledged ones are, and nothing after the failure.
	st, got := recovered(t, path)
	if len(got) < len(want) || len(got) > len(want)+1 {
		t.Fatalf("%d messages after recovery, want the %d acknowledged and perhaps the failed one", len(got), len(want))
	}
	for _, m := range got[:len(want)] {
		if _, ok := want[fmt.Sprintf("%s/INBOX/%d", alice, m.UID)]; !ok {
			t.Fatalf("UID %d after recovery was not acknowledged", m.UID)
		}
	}
	if _, err := st.Mailbox(alice, "After"); err == nil {
		t.Fatal("the mailbox created after the failure is there after recovery")
	}
}

// TestFailedWriteBetweenLoggedCommits: a write that is not logged runs
// after a commit that wrote bbolt's freelist (see syncFreelist), made for
// it when the last logged commit did not. When the write then fails,
// that commit is in no record: the records after it must still be
// replayed, every acknowledged append back after a crash.
func TestFailedWriteBetweenLoggedCommits(t *testing.T) {
	holdCheckpoints(t)
	s, path := walSetup(t)
	want := walOps(t, s, 1, 8, false)
	if s.freelistSynced {
		t.Fatal("the logged commits wrote the freelist")
	}
	if _, err := s.CreateMailbox(alice, "Sent", ""); !errors.Is(err, ErrMailboxExists) {
		t.Fatalf("create an existing mailbox: %v", err)
	}
	for k, v := range walOps(t, s, 2, 8, false) {
		want[k] = v
	}
	checkStored(t, crashCopy(t, path), want, liveState(t, s))
}

// TestRefusalRollsBackWithoutLog: without the log, a refused append fails
// its transaction, which costs nothing, rather than commit nothing, which
// would cost bbolt's two fdatasyncs.
func TestRefusalRollsBackWithoutLog(t *testing.T) {
	st, err := Open(filepath.Join(t.TempDir(), "posthorn.db"), Options{NoWAL: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.AddDomain("example.test")
	st.AddAccount(alice, "h")
	before, _ := StatsOf(st)
	if _, err := st.Append(context.Background(), alice, "NoSuchBox", NewMessage{Body: testMessage("refused", 600)}); !errors.Is(err, ErrNoSuchMailbox) {
		t.Fatalf("append to a missing mailbox: %v", err)
	}
	after, _ := StatsOf(st)
	if after.Commits != before.Commits || after.Fsyncs != before.Fsyncs {
		t.Fatalf("a refused append committed: commits %d -> %d, fsyncs %d -> %d", before.Commits, after.Commits, before.Fsyncs, after.Fsyncs)
	}
}

// TestBackupHasFreelist: in log mode the last commit may have left
// bbolt's freelist unwritten (see syncFreelist); a backup is taken at a
// commit that wrote it, so that opening the copy does not walk the file.
func TestBackupHasFreelist(t *testing.T) {
	holdCheckpoints(t)
	s, _ := walSetup(t)
	walOps(t, s, 5, 8, false)
	if s.freelistSynced {
		t.Fatal("the logged commits wrote the freelist")
	}
	var buf bytes.Buffer
	if _, err := s.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	var txid, freelist uint64
	for i := range 2 {
		m := b[i*s.pageSize:]
		if id := binary.NativeEndian.Uint64(m[metaTxidOff:]); id >= txid {
			txid, freelist = id, binary.NativeEndian.Uint64(m[metaFreelistOff:])
		}
	}
	if txid == 0 || freelist == noFreelist {
		t.Fatalf("the backup's meta (transaction %d) names no freelist", txid)
	}
	// And the store goes on logging after it.
	walOps(t, s, 6, 4, false)
}

// TestCheckpointInterval: in a file that grows, whose freed pages are
// held until the next checkpoint, the count of held pages ends the
// interval long before checkpointCommits, so the file does not grow by
// more than about checkpointPending pages of them; once pages are free to
// reuse, a lone writer's commits go on past that count without a
// checkpoint, up to checkpointCommits.
func TestCheckpointInterval(t *testing.T) {
	holdCheckpoints(t)
	s, _ := walSetup(t)
	ctx := context.Background()
	appendOne := func(i int) {
		t.Helper()
		if _, err := s.Append(ctx, alice, "INBOX", NewMessage{Body: testMessage(fmt.Sprint(i), 2000)}); err != nil {
			t.Fatal(err)
		}
	}
	st0, _ := StatsOf(s)
	maxHeld := 0
	const n = 600
	for i := range n {
		appendOne(i)
		maxHeld = max(maxHeld, s.db.Stats().PendingPageN)
	}
	st1, _ := StatsOf(s)
	if st1.Checkpoints-st0.Checkpoints < 2 {
		t.Fatalf("%d checkpoints in %d appends to a growing file, want several", st1.Checkpoints-st0.Checkpoints, n)
	}
	// A commit frees at most a few dozen pages past the bound.
	if maxHeld > checkpointPending+64 {
		t.Fatalf("%d pages held from reuse, want at most about %d", maxHeld, checkpointPending)
	}

	// Expunging everything leaves free pages (and, held until the
	// checkpoints of the next commits, the pages it freed); from then on
	// a lone writer's commits reuse the pages freed since the checkpoint.
	msgs, err := s.Messages(alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	uids := make([]uint32, len(msgs))
	for i, m := range msgs {
		uids[i] = m.UID
	}
	if _, err := s.Expunge(alice, "INBOX", uids); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		appendOne(n + i)
	}
	st2, _ := StatsOf(s)
	for i := range n {
		appendOne(2*n + i)
	}
	st3, _ := StatsOf(s)
	if got := st3.Checkpoints - st2.Checkpoints; got != 0 {
		t.Fatalf("%d checkpoints in %d appends reusing free pages, want none (checkpointCommits %d)", got, n, checkpointCommits)
	}
}
