package store

import (
	"context"
	"slices"
	"strings"
)

// StoreFlags changes the flags of the given messages (RFC 9051 6.4.6) and
// returns the entries of all of them that exist, changed or not. Only
// messages whose flags change get a new modseq (RFC 7162 section 3.1.3)
// and appear in the EventFlags event.
func (s *boltStore) StoreFlags(account, mailbox string, uids []uint32, op FlagOp, flags []string) ([]Message, error) {
	addr := strings.ToLower(strings.TrimSpace(account))
	nf := normalizeFlags(flags)
	var out []Message
	err := s.update(func(t *txn) error {
		out = nil
		mb, err := t.mailbox(addr, mailbox)
		if err != nil {
			return err
		}
		msgs := t.messagesBucket(addr, mb.ID)
		var changed []Message
		for _, uid := range sortedUIDs(uids) {
			v := msgs.Get(uidKey(uid))
			if v == nil {
				continue
			}
			m, err := decodeMessage(uidKey(uid), v)
			if err != nil {
				return err
			}
			nflags := applyFlags(m.Flags, op, nf)
			if !slices.Equal(nflags, m.Flags) {
				wasSeen, isSeen := hasFlag(m.Flags, `\Seen`), hasFlag(nflags, `\Seen`)
				if wasSeen && !isSeen {
					mb.Unseen++
				} else if !wasSeen && isSeen {
					mb.Unseen--
				}
				mb.HighestModSeq++
				m.Flags, m.ModSeq = nflags, mb.HighestModSeq
				if err := msgs.Put(uidKey(uid), encodeMessage(m)); err != nil {
					return err
				}
				changed = append(changed, m)
			}
			out = append(out, m)
		}
		if len(changed) == 0 {
			return nil
		}
		t.publish(flagsEvent(addr, mb, changed))
		return t.putMailbox(addr, mb)
	})
	return out, err
}

func flagsEvent(addr string, mb Mailbox, changed []Message) Event {
	e := Event{Kind: EventFlags, Account: addr, Mailbox: mb.Name, Messages: changed, ModSeq: mb.HighestModSeq}
	for _, m := range changed {
		e.UIDs = append(e.UIDs, m.UID)
	}
	return e
}

func applyFlags(cur []string, op FlagOp, flags []string) []string {
	switch op {
	case FlagsSet:
		return flags
	case FlagsAdd:
		return normalizeFlags(append(slices.Clone(cur), flags...))
	case FlagsRemove:
		var out []string
		for _, f := range cur {
			if !slices.ContainsFunc(flags, func(r string) bool { return strings.EqualFold(r, f) }) {
				out = append(out, f)
			}
		}
		return out
	}
	return cur
}

// Expunge removes the given messages (RFC 9051 6.4.3, UID EXPUNGE) and
// returns the UIDs removed, ascending.
func (s *boltStore) Expunge(account, mailbox string, uids []uint32) ([]uint32, error) {
	addr := strings.ToLower(strings.TrimSpace(account))
	var out []uint32
	err := s.update(func(t *txn) error {
		var err error
		out, err = t.expunge(addr, mailbox, uids, true)
		return err
	})
	return out, err
}

// expunge removes messages; release drops their blobs' references (a
// move keeps them: its copies took them over).
func (t *txn) expunge(addr, mailbox string, uids []uint32, release bool) ([]uint32, error) {
	acct, err := t.account(addr)
	if err != nil {
		return nil, err
	}
	mb, err := t.mailbox(addr, mailbox)
	if err != nil {
		return nil, err
	}
	msgs := t.messagesBucket(addr, mb.ID)
	var removed []uint32
	for _, uid := range sortedUIDs(uids) {
		v := msgs.Get(uidKey(uid))
		if v == nil {
			continue
		}
		m, err := decodeMessage(uidKey(uid), v)
		if err != nil {
			return nil, err
		}
		if err := t.removeMessage(addr, &acct, &mb, m, release); err != nil {
			return nil, err
		}
		removed = append(removed, uid)
	}
	if len(removed) == 0 {
		return nil, nil
	}
	mb.HighestModSeq++
	t.publish(Event{Kind: EventExpunge, Account: addr, Mailbox: mb.Name, UIDs: removed, ModSeq: mb.HighestModSeq})
	if err := t.putMailbox(addr, mb); err != nil {
		return nil, err
	}
	return removed, t.putAccount(acct)
}

// Copy copies messages to another mailbox, sharing their blobs (RFC 9051
// 6.4.7; the UIDs for COPYUID, RFC 4315 section 3).
func (s *boltStore) Copy(account, src string, uids []uint32, dst string) (CopyResult, error) {
	return s.copyMessages(account, src, uids, dst, false)
}

// Move copies then expunges in one transaction (RFC 6851). A moved
// message keeps its blob's reference count: adding a reference for the
// copy and dropping it for the expunge wrote, then deleted, one record
// per message in the same transaction, and bbolt deletes from an unsplit
// node by shifting the rest of it, so a move of 100,000 messages took
// 16 s (quadratic) in one transaction that every writer waited for.
func (s *boltStore) Move(account, src string, uids []uint32, dst string) (CopyResult, error) {
	return s.copyMessages(account, src, uids, dst, true)
}

func (s *boltStore) copyMessages(account, src string, uids []uint32, dst string, move bool) (CopyResult, error) {
	addr := strings.ToLower(strings.TrimSpace(account))
	var res CopyResult
	err := s.batch(context.Background(), func(t *txn) error {
		var err error
		res, err = t.copyMessages(addr, src, uids, dst, move)
		if err != nil || !move || len(res.SrcUIDs) == 0 {
			return err
		}
		_, err = t.expunge(addr, src, res.SrcUIDs, false)
		return err
	})
	return res, err
}

// copyMessages copies; the copies must fit the quota and each takes a
// reference to its blob, unless move: a move frees what it adds, and its
// expunge (with release false) hands the source's references over.
func (t *txn) copyMessages(addr, src string, uids []uint32, dst string, move bool) (CopyResult, error) {
	acct, err := t.account(addr)
	if err != nil {
		return CopyResult{}, err
	}
	smb, err := t.mailbox(addr, src)
	if err != nil {
		return CopyResult{}, err
	}
	dmb, err := t.mailbox(addr, dst)
	if err != nil {
		return CopyResult{}, err
	}
	smsgs := t.messagesBucket(addr, smb.ID)
	var srcMsgs []Message
	var total int64
	for _, uid := range sortedUIDs(uids) {
		if v := smsgs.Get(uidKey(uid)); v != nil {
			m, err := decodeMessage(uidKey(uid), v)
			if err != nil {
				return CopyResult{}, err
			}
			srcMsgs = append(srcMsgs, m)
			total += m.Size
		}
	}
	res := CopyResult{UIDValidity: dmb.UIDValidity}
	if len(srcMsgs) == 0 {
		return res, nil
	}
	if !move {
		if err := checkQuota(acct, total); err != nil {
			return CopyResult{}, err
		}
	}
	if !move {
		// In blob order: the records go into one node that bbolt splits
		// only at commit, and an insert before the end of it shifts the
		// rest, so copying a mailbox whose blobs are out of UID order (one
		// filled by moves from several folders) took quadratic time.
		ids := make([]uint64, len(srcMsgs))
		for i, m := range srcMsgs {
			ids[i] = m.BlobID
		}
		slices.Sort(ids)
		for _, id := range ids {
			if err := t.addBlobRef(id); err != nil {
				return CopyResult{}, err
			}
		}
	}
	var added []Message
	for _, m := range srcMsgs {
		nm, err := t.addMessage(addr, &acct, &dmb, Message{Size: m.Size, InternalDate: m.InternalDate, Flags: m.Flags, BlobID: m.BlobID, Prefix: m.Prefix})
		if err != nil {
			return CopyResult{}, err
		}
		res.SrcUIDs = append(res.SrcUIDs, m.UID)
		res.DstUIDs = append(res.DstUIDs, nm.UID)
		added = append(added, nm)
	}
	e := Event{Kind: EventAppend, Account: addr, Mailbox: dmb.Name, UIDs: res.DstUIDs, Messages: added, ModSeq: dmb.HighestModSeq}
	t.publish(e)
	if err := t.putMailbox(addr, dmb); err != nil {
		return CopyResult{}, err
	}
	if err := t.putAccount(acct); err != nil {
		return CopyResult{}, err
	}
	return res, nil
}
