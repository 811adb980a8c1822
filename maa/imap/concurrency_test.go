package imap

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/posthorn/posthorn/store"
)

// recorder collects unilateral responses of one client.
type recorder struct {
	mu       sync.Mutex
	exists   []uint32
	expunges []uint32
	fetches  map[uint32][]imapv2.Flag
	ch       chan struct{}
}

func newRecorder() (*recorder, *imapclient.Options) {
	r := &recorder{fetches: map[uint32][]imapv2.Flag{}, ch: make(chan struct{}, 100)}
	return r, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				r.mu.Lock()
				r.exists = append(r.exists, *d.NumMessages)
				r.mu.Unlock()
				r.ch <- struct{}{}
			}
		},
		Expunge: func(seq uint32) {
			r.mu.Lock()
			r.expunges = append(r.expunges, seq)
			r.mu.Unlock()
			r.ch <- struct{}{}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, err := m.Collect()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.fetches[buf.SeqNum] = buf.Flags
			r.mu.Unlock()
			r.ch <- struct{}{}
		},
	}}
}

func (r *recorder) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-r.ch:
	case <-time.After(d):
		t.Fatalf("no update within %v", d)
	}
}

// TestIdleWakesOnDelivery: a delivery through the store reaches an IDLE
// session within 100 ms.
func TestIdleWakesOnDelivery(t *testing.T) {
	e := newTestEnv(t)
	e.deliver(testAlice, "INBOX", testMessage(1, "first"))
	rec, opts := newRecorder()
	c := e.login(testAlice, opts)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Deliver(context.Background(), normalizeCRLF([]byte(testMessage(2, "second"))),
		[]store.Delivery{{Account: testAlice, Mailbox: "INBOX"}}); err != nil {
		t.Fatal(err)
	}
	// Woken by the delivery's event, not by a poll: rec.wait allows two
	// seconds, room for a loaded machine (-race).
	rec.wait(t, 2*time.Second)
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.exists) == 0 || rec.exists[len(rec.exists)-1] != 2 {
		t.Fatalf("EXISTS %v", rec.exists)
	}
}

// TestTwoSessions: flags set in one session show in the other; both
// expunge at once and sequence numbers stay right.
func TestTwoSessions(t *testing.T) {
	e := newTestEnv(t)
	for i := 1; i <= 6; i++ {
		e.deliver(testAlice, "INBOX", testMessage(i, "m"))
	}
	recA, optsA := newRecorder()
	a := e.login(testAlice, optsA)
	recB, optsB := newRecorder()
	b := e.login(testAlice, optsB)
	for _, c := range []*imapclient.Client{a, b} {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Store(imapv2.SeqSetNum(3), &imapv2.StoreFlags{Op: imapv2.StoreFlagsAdd, Silent: true,
		Flags: []imapv2.Flag{imapv2.FlagFlagged}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	idle, err := b.Idle()
	if err != nil {
		t.Fatal(err)
	}
	recB.wait(t, time.Second)
	idle.Close()
	idle.Wait()
	recB.mu.Lock()
	f := recB.fetches[3]
	recB.mu.Unlock()
	if !hasImapFlag(f, imapv2.FlagFlagged) {
		t.Fatalf("B saw flags %v", recB.fetches)
	}

	// A expunges 2 and 5, B expunges 3 and 6, concurrently.
	var wg sync.WaitGroup
	for _, x := range []struct {
		c    *imapclient.Client
		uids []imapv2.UID
	}{{a, []imapv2.UID{2, 5}}, {b, []imapv2.UID{3, 6}}} {
		wg.Add(1)
		go func(c *imapclient.Client, uids []imapv2.UID) {
			defer wg.Done()
			set := imapv2.UIDSetNum(uids...)
			if _, err := c.Store(set, &imapv2.StoreFlags{Op: imapv2.StoreFlagsAdd, Silent: true,
				Flags: []imapv2.Flag{imapv2.FlagDeleted}}, nil).Collect(); err != nil {
				t.Error(err)
			}
			if _, err := c.UIDExpunge(set).Collect(); err != nil {
				t.Error(err)
			}
		}(x.c, x.uids)
	}
	wg.Wait()
	for _, c := range []*imapclient.Client{a, b} {
		if err := c.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		msgs, err := c.Fetch(imapv2.SeqSet{{Start: 1, Stop: 0}}, &imapv2.FetchOptions{UID: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var uids []imapv2.UID
		for i, m := range msgs {
			if m.SeqNum != uint32(i+1) {
				t.Fatalf("seq %d at %d", m.SeqNum, i)
			}
			uids = append(uids, m.UID)
		}
		if len(uids) != 2 || uids[0] != 1 || uids[1] != 4 {
			t.Fatalf("client view after expunges: %v", uids)
		}
	}
	_ = recA
}

// TestDeleteRecreate: a session on a deleted mailbox gets NO; a mailbox
// created again under the same name is a new mailbox for new sessions.
func TestDeleteRecreate(t *testing.T) {
	e := newTestEnv(t)
	if _, err := e.st.CreateMailbox(testAlice, "Tmp", ""); err != nil {
		t.Fatal(err)
	}
	e.deliver(testAlice, "Tmp", testMessage(1, "old"))
	a := e.login(testAlice)
	if _, err := a.Select("Tmp", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	b := e.login(testAlice)
	if err := b.Delete("Tmp").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := b.Create("Tmp", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := b.Select("Tmp", nil).Wait()
	if err != nil || sel.NumMessages != 0 {
		t.Fatalf("recreated Tmp: %v %+v", err, sel)
	}
	if _, err := a.Store(imapv2.SeqSetNum(1), &imapv2.StoreFlags{Op: imapv2.StoreFlagsAdd,
		Flags: []imapv2.Flag{imapv2.FlagSeen}}, nil).Collect(); err == nil {
		t.Fatal("STORE on a deleted mailbox succeeded")
	}
}

// raceStore moves the messages of the next Copy or Move to Archive
// just before doing it, as another session (a phone archiving the message
// the laptop archives) would between this session's look at its view and
// the store's work.
type raceStore struct {
	store.Store
	race atomic.Bool
}

func (r *raceStore) first(account, src string, uids []uint32) {
	if r.race.Swap(false) {
		if _, err := r.Store.Move(account, src, uids, "Archive"); err != nil {
			panic(err)
		}
	}
}

func (r *raceStore) Copy(account, src string, uids []uint32, dst string) (store.CopyResult, error) {
	r.first(account, src, uids)
	return r.Store.Copy(account, src, uids, dst)
}

func (r *raceStore) Move(account, src string, uids []uint32, dst string) (store.CopyResult, error) {
	r.first(account, src, uids)
	return r.Store.Move(account, src, uids, dst)
}

// TestMoveCopyRace: when two sessions move the same message, the second
// finds it gone. Its MOVE or COPY gets NO [EXPUNGEISSUED] and the
// connection goes on; it got its tagged reply inside a half-written
// COPYUID line ("* OK [COPYUID 1 a1 NO ..."), and a client hung.
func TestMoveCopyRace(t *testing.T) {
	rs := &raceStore{}
	e := newTestEnv(t, func(s *Server) {
		s.AllowPlaintextAuth = true
		rs.Store = s.Store
		s.Store = rs
	})
	c := e.rawLogin(t, testAlice)
	for _, cmd := range []string{"MOVE 1 Junk", "COPY 1 Junk", "UID MOVE %d Junk", "UID COPY %d Junk"} {
		uid := e.deliver(testAlice, "INBOX", testMessage(1, "one"))
		c.send("s SELECT INBOX")
		c.expect("s OK")
		if strings.Contains(cmd, "%d") {
			cmd = fmt.Sprintf(cmd, uid)
		}
		rs.race.Store(true)
		c.send("r %s", cmd)
		lines := c.expect("r NO [EXPUNGEISSUED]")
		for _, l := range lines {
			if strings.Contains(l, "COPYUID") {
				t.Errorf("%s: COPYUID for nothing copied: %q", cmd, l)
			}
		}
		c.usable()
	}
	if msgs, _ := e.st.Messages(testAlice, "Junk"); len(msgs) != 0 {
		t.Errorf("Junk holds %d messages, want none", len(msgs))
	}
	if msgs, _ := e.st.Messages(testAlice, "Archive"); len(msgs) != 4 {
		t.Errorf("Archive holds %d messages, want the 4 the other session moved", len(msgs))
	}
}

// TestCopyExpungedInView: a COPY or MOVE of messages this session has
// seen expunged but not yet been told of gets NO [EXPUNGEISSUED]; with
// some of them left, those are copied.
func TestCopyExpungedInView(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	e.deliver(testAlice, "INBOX", testMessage(1, "one"))
	e.deliver(testAlice, "INBOX", testMessage(2, "two"))
	e.deliver(testAlice, "INBOX", testMessage(3, "three"))
	a, b := e.twoOnInbox(t, testAlice)
	a.send("a1 MOVE 1 Archive")
	a.expect("a1 OK")
	// b has not been told: its message 1 is the one a moved.
	b.send("b1 MOVE 1 Junk")
	b.expect("b1 NO [EXPUNGEISSUED]")
	b.usable()
	a.send("a2 UID MOVE 2 Archive")
	a.expect("a2 OK")
	b.send("b2 UID COPY 1:3 Junk")
	lines := b.expect("b2 OK")
	if last := lines[len(lines)-1]; !strings.Contains(last, "[COPYUID ") {
		t.Errorf("partial COPY: %q, want COPYUID of the message left", last)
	}
	b.usable()
	if msgs, _ := e.st.Messages(testAlice, "Junk"); len(msgs) != 1 {
		t.Errorf("Junk holds %d messages, want 1", len(msgs))
	}
}

// TestFetchStoreExpungedInView: a FETCH or STORE by sequence number of
// messages that another session expunged, this one not yet told, gets NO
// [EXPUNGEISSUED] (RFC 2180 sections 4.1.2 and 4.2.2), not OK with no data
// and no flags set; with some of them left, those are fetched or stored.
func TestFetchStoreExpungedInView(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	for i := 1; i <= 3; i++ {
		e.deliver(testAlice, "INBOX", testMessage(i, "m"))
	}
	a, b := e.twoOnInbox(t, testAlice)
	a.send("a1 MOVE 2 Archive")
	a.expect("a1 OK")
	b.send("b1 FETCH 2 (UID FLAGS)")
	b.expect("b1 NO [EXPUNGEISSUED]")
	b.send(`b2 STORE 2 +FLAGS (\Flagged)`)
	b.expect("b2 NO [EXPUNGEISSUED]")
	fetches := func(lines []string) (n int) {
		for _, l := range lines {
			if strings.Contains(l, " FETCH (") {
				n++
			}
		}
		return n
	}
	b.send("b3 FETCH 1:3 (UID)")
	if n := fetches(b.expect("b3 OK")); n != 2 {
		t.Errorf("FETCH 1:3 with 2 expunged: %d FETCH responses, want 2", n)
	}
	b.send(`b4 STORE 1:3 +FLAGS (\Flagged)`)
	if n := fetches(b.expect("b4 OK")); n != 2 {
		t.Errorf("STORE 1:3 with 2 expunged: %d FETCH responses, want 2", n)
	}
	// By UID, the expunge is told with the reply, and it is OK (RFC 9051
	// sections 6.4.9 and 7.5.1).
	b.send("b5 UID FETCH 2 (FLAGS)")
	if lines := b.expect("b5 OK"); !slices.Contains(lines, "* 2 EXPUNGE\r\n") || len(lines) != 2 {
		t.Errorf("UID FETCH of the expunged message: %q, want * 2 EXPUNGE and OK", lines)
	}
	a.send("a2 MOVE 2 Archive") // UID 3
	a.expect("a2 OK")
	b.send(`b6 UID STORE 3 +FLAGS (\Seen)`)
	if lines := b.expect("b6 OK"); !slices.Contains(lines, "* 2 EXPUNGE\r\n") || len(lines) != 2 {
		t.Errorf("UID STORE of the expunged message: %q, want * 2 EXPUNGE and OK", lines)
	}
	msgs, _ := e.st.Messages(testAlice, "INBOX")
	if len(msgs) != 1 {
		t.Fatalf("INBOX holds %d messages, want 1", len(msgs))
	}
	for _, m := range msgs {
		if !slices.Contains(m.Flags, `\Flagged`) {
			t.Errorf("UID %d not flagged: %v", m.UID, m.Flags)
		}
	}
}
