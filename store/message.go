package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Append stores a message in a mailbox (IMAP APPEND, RFC 9051 6.3.12).
// The body is parsed before the write transaction and written in it; the
// call returns once the commit is durable.
func (s *boltStore) Append(ctx context.Context, account, mailbox string, m NewMessage) (Delivered, error) {
	d, err := s.AppendMany(ctx, account, mailbox, []NewMessage{m})
	if err != nil {
		return Delivered{}, err
	}
	return d[0], nil
}

// AppendMany stores msgs in one mailbox in their order, with ascending
// UIDs, in one durable transaction. It stops at the first message that
// cannot be stored (over quota, say): the deliveries returned are those of
// the messages before it, which are committed, and the error is its own.
// The bodies are parsed in parallel before the transaction.
func (s *boltStore) AppendMany(ctx context.Context, account, mailbox string, msgs []NewMessage) ([]Delivered, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	addr := strings.ToLower(strings.TrimSpace(account))
	size := 0
	for _, m := range msgs {
		size += len(m.Body)
	}
	if err := s.CheckRoom(int64(size)); err != nil {
		return nil, err
	}
	infos := s.parseAll(msgs)
	// Dates are fixed now, so that a replay from the log gives the same.
	now := time.Now()
	msgs = slices.Clone(msgs)
	for i := range msgs {
		if msgs[i].InternalDate.IsZero() {
			msgs[i].InternalDate = now
		}
	}
	var rec [][]byte
	if s.logged(size) {
		rec = appendRecordParts(addr, mailbox, msgs)
	}
	var out []Delivered
	var stopped, refused error
	err := s.batchAppend(ctx, rec, func(t *txn) error {
		var err error
		out, stopped, err = t.appendMessages(addr, mailbox, msgs, infos)
		refused, err = t.refusal(err)
		return err
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		return nil, err
	}
	return out, stopped
}

// refusal is an error of appendMessages or deliver found before they
// wrote anything. In a logged commit their callers let the transaction
// commit, with the other calls of its group, rather than fail it: its
// rollback would walk the whole file (see syncFreelist). Replayed from
// the log, the operation is refused again, by the same state (see
// refused). Elsewhere a rollback is cheap, and a commit of nothing costs
// bbolt's two fdatasyncs, so the refusal fails the transaction as any
// error does.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// refusedBy splits err into a refusal's error and any other.
func refusedBy(err error) (refused, other error) {
	if r, ok := errors.AsType[*refusal](err); ok {
		return r.err, nil
	}
	return nil, err
}

// refusal splits err into the error of a refusal the transaction
// commits without (see refusal), and one that fails the transaction.
func (t *txn) refusal(err error) (refused, failed error) {
	refused, failed = refusedBy(err)
	if refused != nil && !t.s.db.NoFreelistSync {
		return nil, refused
	}
	return refused, failed
}

// appendMessages is AppendMany's transaction: stopped is the error of
// the message it stopped at, err one that fails the transaction.
func (t *txn) appendMessages(addr, mailbox string, msgs []NewMessage, infos []BlobInfo) (out []Delivered, stopped, err error) {
	acct, err := t.account(addr)
	if err != nil {
		return nil, nil, &refusal{err}
	}
	mb, err := t.mailbox(addr, mailbox)
	if err != nil {
		return nil, nil, &refusal{err}
	}
	ev := Event{Kind: EventAppend, Account: addr, Mailbox: mb.Name}
	for i, m := range msgs {
		size := int64(len(m.Body))
		if err := checkQuota(acct, size); err != nil {
			stopped = err
			break
		}
		if err := uidsLeft(mb); err != nil {
			stopped = err
			break
		}
		id, err := t.putBlob(m.Body, infos[i], 1)
		if err != nil {
			return nil, nil, err
		}
		msg, err := t.addMessage(addr, &acct, &mb, Message{Size: size, InternalDate: m.InternalDate, Flags: normalizeFlags(m.Flags), BlobID: id})
		if err != nil {
			return nil, nil, err
		}
		ev.UIDs = append(ev.UIDs, msg.UID)
		ev.Messages = append(ev.Messages, msg)
		out = append(out, Delivered{Account: addr, Mailbox: mb.Name, UIDValidity: mb.UIDValidity, UID: msg.UID})
	}
	if len(out) == 0 {
		return nil, stopped, nil // nothing to write; stopped says why
	}
	if err := t.putMailbox(addr, mb); err != nil {
		return nil, nil, err
	}
	if err := t.putAccount(acct); err != nil {
		return nil, nil, err
	}
	ev.ModSeq = mb.HighestModSeq
	t.publish(ev)
	return out, stopped, nil
}

// parseAll parses the bodies of msgs, several at once when there are many.
func (s *boltStore) parseAll(msgs []NewMessage) []BlobInfo {
	infos := make([]BlobInfo, len(msgs))
	workers := min(len(msgs), runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for i, m := range msgs {
			infos[i] = parseBlobInfo(m.Body, s.opts)
		}
		return infos
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(msgs); i = int(next.Add(1) - 1) {
				infos[i] = parseBlobInfo(msgs[i].Body, s.opts)
			}
		}()
	}
	wg.Wait()
	return infos
}

func checkQuota(a Account, add int64) error {
	if !a.Fits(add) {
		return fmt.Errorf("account %s (%d of %d bytes used, %d more): %w", a.Address, a.UsedBytes, a.QuotaBytes, add, ErrOverQuota)
	}
	return nil
}

// uidsLeft fails when the mailbox has given out its last UID.
func uidsLeft(mb Mailbox) error {
	if mb.UIDNext == 0 || mb.UIDNext == math.MaxUint32 {
		return fmt.Errorf("mailbox %q has used all UIDs", mb.Name)
	}
	return nil
}

// addMessage gives m the mailbox's next UID and a new modseq, writes it
// and updates the mailbox and account counters (which the caller saves).
func (t *txn) addMessage(addr string, acct *Account, mb *Mailbox, m Message) (Message, error) {
	if err := uidsLeft(*mb); err != nil {
		return Message{}, err
	}
	m.UID = mb.UIDNext
	mb.UIDNext++
	mb.HighestModSeq++
	m.ModSeq = mb.HighestModSeq
	mb.Messages++
	if !hasFlag(m.Flags, `\Seen`) {
		mb.Unseen++
	}
	mb.Size += m.Size
	acct.UsedBytes += m.Size
	msgs := t.messagesBucket(addr, mb.ID)
	msgs.FillPercent = 0.9 // UIDs only grow
	return m, msgs.Put(uidKey(m.UID), encodeMessage(m))
}

// removeMessage deletes m from a mailbox, releasing its blob if release.
func (t *txn) removeMessage(addr string, acct *Account, mb *Mailbox, m Message, release bool) error {
	if err := t.messagesBucket(addr, mb.ID).Delete(uidKey(m.UID)); err != nil {
		return err
	}
	mb.Messages--
	if !hasFlag(m.Flags, `\Seen`) {
		mb.Unseen--
	}
	mb.Size -= m.Size
	acct.UsedBytes = max(0, acct.UsedBytes-m.Size)
	if !release {
		return nil
	}
	return t.releaseBlob(m.BlobID)
}

// Deliver writes one body to many mailboxes in one durable transaction;
// the body is stored once with one reference per delivery. A missing
// mailbox falls back to INBOX.
func (s *boltStore) Deliver(ctx context.Context, body []byte, to []Delivery) ([]Delivered, error) {
	if len(to) == 0 {
		return nil, nil
	}
	if err := s.CheckRoom(int64(len(body))); err != nil {
		return nil, err
	}
	info := parseBlobInfo(body, s.opts)
	now := time.Now()
	var rec [][]byte
	if s.logged(len(body)) {
		rec = deliverRecordParts(body, to, now)
	}
	var out []Delivered
	var refused error
	err := s.batchAppend(ctx, rec, func(t *txn) error {
		var err error
		out, err = t.deliver(body, info, to, now)
		refused, err = t.refusal(err)
		return err
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// deliver is Deliver's transaction.
func (t *txn) deliver(body []byte, info BlobInfo, to []Delivery, now time.Time) ([]Delivered, error) {
	w := newWriteSet(t)
	for _, d := range to {
		addr := strings.ToLower(strings.TrimSpace(d.Account))
		acct, err := w.account(addr)
		if err != nil {
			return nil, &refusal{err}
		}
		acct.UsedBytes += int64(len(d.Prefix) + len(body))
	}
	for _, a := range w.accts {
		orig, _ := t.account(a.Address)
		if err := checkQuota(orig, a.UsedBytes-orig.UsedBytes); err != nil {
			return nil, &refusal{err}
		}
		a.UsedBytes = orig.UsedBytes
	}
	id, err := t.putBlob(body, info, uint32(len(to)))
	if err != nil {
		return nil, err
	}
	var out []Delivered
	for _, d := range to {
		res, err := w.deliverOne(d, id, int64(len(body)), now)
		if err != nil {
			return nil, err
		}
		out = append(out, res)
	}
	return out, w.save()
}

// writeSet caches the accounts and mailboxes one transaction changes, so
// several changes to one of them are saved once.
type writeSet struct {
	t      *txn
	accts  map[string]*Account
	mboxes map[string]*Mailbox // addr NUL name
	order  []string
}

func newWriteSet(t *txn) *writeSet {
	return &writeSet{t: t, accts: map[string]*Account{}, mboxes: map[string]*Mailbox{}}
}

func (w *writeSet) account(addr string) (*Account, error) {
	if a, ok := w.accts[addr]; ok {
		return a, nil
	}
	a, err := w.t.account(addr)
	if err != nil {
		return nil, err
	}
	w.accts[addr] = &a
	return &a, nil
}

func (w *writeSet) mailbox(addr, name string) (*Mailbox, error) {
	k := addr + "\x00" + canonicalMailboxName(name)
	if mb, ok := w.mboxes[k]; ok {
		return mb, nil
	}
	mb, err := w.t.mailbox(addr, name)
	if err != nil {
		return nil, err
	}
	w.mboxes[k] = &mb
	w.order = append(w.order, k)
	return &mb, nil
}

func (w *writeSet) deliverOne(d Delivery, blobID uint64, bodyLen int64, now time.Time) (Delivered, error) {
	addr := strings.ToLower(strings.TrimSpace(d.Account))
	acct, err := w.account(addr)
	if err != nil {
		return Delivered{}, err
	}
	name := d.Mailbox
	if name == "" {
		name = "INBOX"
	}
	mb, err := w.mailbox(addr, name)
	if err != nil {
		if mb, err = w.mailbox(addr, "INBOX"); err != nil {
			return Delivered{}, err
		}
	}
	m := Message{
		Size:         int64(len(d.Prefix)) + bodyLen,
		InternalDate: now,
		Flags:        normalizeFlags(d.Flags),
		BlobID:       blobID,
		Prefix:       d.Prefix,
	}
	msg, err := w.t.addMessage(addr, acct, mb, m)
	if err != nil {
		return Delivered{}, err
	}
	w.t.publish(Event{Kind: EventAppend, Account: addr, Mailbox: mb.Name, UIDs: []uint32{msg.UID}, Messages: []Message{msg}, ModSeq: mb.HighestModSeq})
	return Delivered{Account: addr, Mailbox: mb.Name, UIDValidity: mb.UIDValidity, UID: msg.UID}, nil
}

func (w *writeSet) save() error {
	for _, k := range w.order {
		addr, _, _ := strings.Cut(k, "\x00")
		if err := w.t.putMailbox(addr, *w.mboxes[k]); err != nil {
			return err
		}
	}
	for _, a := range w.accts {
		if err := w.t.putAccount(*a); err != nil {
			return err
		}
	}
	return nil
}

// Messages lists a mailbox's index in UID order.
func (s *boltStore) Messages(account, mailbox string) ([]Message, error) {
	return s.listMessages(account, mailbox, func(Message) bool { return true })
}

// ChangedSince lists the messages whose modseq is above modseq (RFC 7162
// section 3.1.4). Expunged messages are not listed.
func (s *boltStore) ChangedSince(account, mailbox string, modseq uint64) ([]Message, error) {
	return s.listMessages(account, mailbox, func(m Message) bool { return m.ModSeq > modseq })
}

func (s *boltStore) listMessages(account, mailbox string, keep func(Message) bool) ([]Message, error) {
	addr := strings.ToLower(strings.TrimSpace(account))
	var out []Message
	err := s.view(func(tx *bolt.Tx) error {
		t := &txn{tx: tx}
		mb, err := t.mailbox(addr, mailbox)
		if err != nil {
			return err
		}
		msgs := t.messagesBucket(addr, mb.ID)
		out = make([]Message, 0, mb.Messages)
		c := msgs.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			m, err := decodeMessage(k, v)
			if err != nil {
				return err
			}
			if keep(m) {
				out = append(out, m)
			}
		}
		return nil
	})
	return out, err
}

// sortedUIDs returns uids ascending without duplicates.
func sortedUIDs(uids []uint32) []uint32 {
	u := slices.Clone(uids)
	slices.Sort(u)
	return slices.Compact(u)
}
