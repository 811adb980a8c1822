package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Mailboxes lists an account's mailboxes sorted by name.
func (s *boltStore) Mailboxes(account string) ([]Mailbox, error) {
	var out []Mailbox
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = (&txn{tx: tx}).mailboxes(strings.ToLower(account))
		return err
	})
	return out, err
}

// Mailbox returns one mailbox.
func (s *boltStore) Mailbox(account, name string) (Mailbox, error) {
	var mb Mailbox
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		mb, err = (&txn{tx: tx}).mailbox(strings.ToLower(account), name)
		return err
	})
	return mb, err
}

// CreateMailbox creates a mailbox and any missing parent (RFC 9051
// section 6.3.4: the server SHOULD create superior hierarchical names).
// It is not subscribed: CREATE does not subscribe (the default
// mailboxes made with an account are).
func (s *boltStore) CreateMailbox(account, name, specialUse string) (Mailbox, error) {
	n, err := checkMailboxName(name)
	if err != nil {
		return Mailbox{}, err
	}
	if !validSpecialUse(specialUse) {
		return Mailbox{}, fmt.Errorf("special-use %q: %w", specialUse, ErrInvalidName)
	}
	addr := strings.ToLower(account)
	var mb Mailbox
	err = s.update(func(t *txn) error {
		var err error
		mb, err = t.createMailbox(addr, n, specialUse, true)
		return err
	})
	return mb, err
}

// bucketLapsed is a per-account sub-bucket of bucketMail (created when
// first needed): the subscribed names whose mailbox was deleted, name ->
// "1". A DELETE keeps the subscription (RFC 9051 section 6.3.7: the
// server SHOULD NOT remove a name from the subscription list because its
// mailbox no longer exists); a mailbox created, or renamed, to such a name
// is subscribed again and the name leaves this list.
var bucketLapsed = []byte("lapsed")

// DeleteMailbox removes a mailbox and its messages. Its children stay,
// and so does its subscription (see bucketLapsed).
func (s *boltStore) DeleteMailbox(account, name string) error {
	addr, n := strings.ToLower(account), canonicalMailboxName(name)
	if n == "INBOX" {
		return fmt.Errorf("mailbox INBOX cannot be deleted: %w", ErrInvalidName)
	}
	return s.update(func(t *txn) error {
		mb, err := t.mailbox(addr, n)
		if err != nil {
			return err
		}
		if err := t.dropMailboxMessages(addr, mb); err != nil {
			return err
		}
		if err := t.mailBucket(addr).Bucket(bucketMailboxes).Delete([]byte(n)); err != nil {
			return err
		}
		if mb.Subscribed {
			b, err := t.mailBucket(addr).CreateBucketIfNotExists(bucketLapsed)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(n), []byte("1")); err != nil {
				return err
			}
		}
		t.publish(Event{Kind: EventMailboxDelete, Account: addr, Mailbox: n})
		return nil
	})
}

// RenameMailbox renames a mailbox and its children. Renaming INBOX moves
// its messages to a new mailbox and leaves INBOX empty, and INBOX's
// children are not renamed (RFC 9051 section 6.3.6).
func (s *boltStore) RenameMailbox(account, oldName, newName string) error {
	addr, on := strings.ToLower(account), canonicalMailboxName(oldName)
	nn, err := checkMailboxName(newName)
	if err != nil {
		return err
	}
	if nn == "INBOX" || strings.HasPrefix(nn+"/", on+"/") && on != "INBOX" {
		return fmt.Errorf("cannot rename %q to %q: %w", on, nn, ErrInvalidName)
	}
	return s.update(func(t *txn) error {
		src, err := t.mailbox(addr, on)
		if errors.Is(err, ErrNoSuchMailbox) && on != "INBOX" {
			// A name that is only the parent of others (IMAP lists it
			// \Noselect): its tree is renamed, as Dovecot does.
			all, aerr := t.mailboxes(addr)
			if aerr != nil {
				return aerr
			}
			if slices.ContainsFunc(all, func(mb Mailbox) bool { return strings.HasPrefix(mb.Name, on+"/") }) {
				err = nil
			}
		}
		if err != nil {
			return err
		}
		if _, err := t.mailbox(addr, nn); err == nil {
			return fmt.Errorf("mailbox %q: %w", nn, ErrMailboxExists)
		}
		if on == "INBOX" {
			return t.renameInbox(addr, src, nn)
		}
		return t.renameTree(addr, on, nn)
	})
}

// renameTree renames a mailbox and all names below it.
func (t *txn) renameTree(addr, on, nn string) error {
	all, err := t.mailboxes(addr)
	if err != nil {
		return err
	}
	b := t.mailBucket(addr).Bucket(bucketMailboxes)
	for _, mb := range all {
		if mb.Name != on && !strings.HasPrefix(mb.Name, on+"/") {
			continue
		}
		to := nn + strings.TrimPrefix(mb.Name, on)
		if len(to) > maxMailboxNameLen || strings.Count(to, "/") >= maxMailboxNameLevels {
			return fmt.Errorf("mailbox name %q: %w", to, ErrInvalidName)
		}
		if b.Get([]byte(to)) != nil {
			return fmt.Errorf("mailbox %q: %w", to, ErrMailboxExists)
		}
		if err := b.Delete([]byte(mb.Name)); err != nil {
			return err
		}
		old := mb.Name
		mb.Name = to
		if lapsed, err := t.takeLapsed(addr, to); err != nil {
			return err
		} else if lapsed {
			mb.Subscribed = true
		}
		if err := t.putMailbox(addr, mb); err != nil {
			return err
		}
		t.publish(Event{Kind: EventMailboxRename, Account: addr, Mailbox: old, NewName: to})
	}
	return t.createParents(addr, nn)
}

// renameInbox creates newName holding INBOX's messages (same UIDs, new
// UIDVALIDITY); INBOX keeps its identity and sees them expunged.
func (t *txn) renameInbox(addr string, inbox Mailbox, nn string) error {
	dst, err := t.createMailbox(addr, nn, SpecialNone, true)
	if err != nil {
		return err
	}
	srcB, dstB := t.messagesBucket(addr, inbox.ID), t.messagesBucket(addr, dst.ID)
	var uids []uint32
	c := srcB.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := dstB.Put(append([]byte(nil), k...), append([]byte(nil), v...)); err != nil {
			return err
		}
		uids = append(uids, binary.BigEndian.Uint32(k))
	}
	if err := t.mailBucket(addr).Bucket(bucketMessages).DeleteBucket(u64Key(inbox.ID)); err != nil {
		return err
	}
	if _, err := t.mailBucket(addr).Bucket(bucketMessages).CreateBucket(u64Key(inbox.ID)); err != nil {
		return err
	}
	dst.UIDNext = inbox.UIDNext
	dst.HighestModSeq = max(dst.HighestModSeq, inbox.HighestModSeq) + 1
	dst.Messages, dst.Unseen, dst.Size = inbox.Messages, inbox.Unseen, inbox.Size
	inbox.Messages, inbox.Unseen, inbox.Size = 0, 0, 0
	inbox.HighestModSeq++
	if err := t.putMailbox(addr, dst); err != nil {
		return err
	}
	if err := t.putMailbox(addr, inbox); err != nil {
		return err
	}
	if len(uids) > 0 {
		t.publish(Event{Kind: EventExpunge, Account: addr, Mailbox: "INBOX", UIDs: uids, ModSeq: inbox.HighestModSeq})
	}
	return nil
}

// SetSubscribed marks a mailbox subscribed or not (RFC 9051 6.3.7). A
// name whose mailbox was deleted while subscribed (LapsedSubscriptions)
// stays subscribed (true: nothing to do) or is unsubscribed (false);
// another name that is not a mailbox is ErrNoSuchMailbox.
func (s *boltStore) SetSubscribed(account, name string, subscribed bool) error {
	addr := strings.ToLower(account)
	return s.update(func(t *txn) error {
		mb, err := t.mailbox(addr, name)
		if errors.Is(err, ErrNoSuchMailbox) {
			n := canonicalMailboxName(name)
			if b := t.mailBucket(addr).Bucket(bucketLapsed); b != nil && b.Get([]byte(n)) != nil {
				if subscribed {
					return nil
				}
				return b.Delete([]byte(n))
			}
		}
		if err != nil {
			return err
		}
		mb.Subscribed = subscribed
		return t.putMailbox(addr, mb)
	})
}

// LapsedSubscriptions lists, sorted, the subscribed names that have no
// mailbox: mailboxes deleted while subscribed (see bucketLapsed). LIST
// (SUBSCRIBED) shows them as \NonExistent and LSUB as \Noselect.
func (s *boltStore) LapsedSubscriptions(account string) ([]string, error) {
	addr := strings.ToLower(account)
	var out []string
	err := s.view(func(tx *bolt.Tx) error {
		mail := (&txn{tx: tx}).mailBucket(addr)
		if mail == nil {
			return fmt.Errorf("account %s: %w", addr, ErrNoSuchAccount)
		}
		b := mail.Bucket(bucketLapsed)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// takeLapsed removes name from the lapsed subscriptions and reports
// whether it was there: a mailbox that takes the name is subscribed.
func (t *txn) takeLapsed(addr, name string) (bool, error) {
	b := t.mailBucket(addr).Bucket(bucketLapsed)
	if b == nil || b.Get([]byte(name)) == nil {
		return false, nil
	}
	return true, b.Delete([]byte(name))
}

// mailBucket returns an account's mail bucket, nil if there is none.
func (t *txn) mailBucket(addr string) *bolt.Bucket {
	return t.tx.Bucket(bucketMail).Bucket([]byte(addr))
}

func (t *txn) messagesBucket(addr string, id uint64) *bolt.Bucket {
	return t.mailBucket(addr).Bucket(bucketMessages).Bucket(u64Key(id))
}

func (t *txn) mailboxes(addr string) ([]Mailbox, error) {
	mail := t.mailBucket(addr)
	if mail == nil {
		return nil, fmt.Errorf("account %s: %w", addr, ErrNoSuchAccount)
	}
	var out []Mailbox
	err := mail.Bucket(bucketMailboxes).ForEach(func(k, v []byte) error {
		mb, err := decodeMailbox(v)
		if err != nil {
			return fmt.Errorf("store: mailbox %q: %w", k, err)
		}
		out = append(out, mb)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

func (t *txn) mailbox(addr, name string) (Mailbox, error) {
	mail := t.mailBucket(addr)
	if mail == nil {
		return Mailbox{}, fmt.Errorf("account %s: %w", addr, ErrNoSuchAccount)
	}
	n := canonicalMailboxName(name)
	v := mail.Bucket(bucketMailboxes).Get([]byte(n))
	if v == nil {
		return Mailbox{}, fmt.Errorf("mailbox %q: %w", n, ErrNoSuchMailbox)
	}
	key := addr + "\x00" + n
	if t.cache != nil {
		if c, ok := t.cache.mboxes[key]; ok && (c.dirty || sameBytes(c.raw, v)) {
			return c.mb, nil
		}
	}
	mb, err := decodeMailbox(v)
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: mailbox %q: %w", n, err)
	}
	if t.cache != nil {
		t.cache.mboxes[key] = cachedMailbox{raw: v, mb: mb}
	}
	return mb, nil
}

func (t *txn) putMailbox(addr string, mb Mailbox) error {
	if c := t.cache; c != nil && c.deferPut {
		key := addr + "\x00" + mb.Name
		if !c.mboxes[key].dirty {
			c.dirty = append(c.dirty, "m"+key)
		}
		c.mboxes[key] = cachedMailbox{mb: mb, dirty: true}
		return nil
	}
	return t.writeMailbox(addr, mb)
}

// writeMailbox is putMailbox without deferring.
func (t *txn) writeMailbox(addr string, mb Mailbox) error {
	v, err := json.Marshal(mb)
	if err != nil {
		return err
	}
	if err := t.mailBucket(addr).Bucket(bucketMailboxes).Put([]byte(mb.Name), v); err != nil {
		return err
	}
	if t.cache != nil {
		t.cache.mboxes[addr+"\x00"+mb.Name] = cachedMailbox{raw: v, mb: mb}
	}
	return nil
}

// createMailbox creates one mailbox (name already checked) and, with
// parents, its missing superiors.
func (t *txn) createMailbox(addr, name, specialUse string, parents bool) (Mailbox, error) {
	mail := t.mailBucket(addr)
	if mail == nil {
		return Mailbox{}, fmt.Errorf("account %s: %w", addr, ErrNoSuchAccount)
	}
	if mail.Bucket(bucketMailboxes).Get([]byte(name)) != nil {
		return Mailbox{}, fmt.Errorf("mailbox %q: %w", name, ErrMailboxExists)
	}
	if parents {
		if err := t.createParents(addr, name); err != nil {
			return Mailbox{}, err
		}
	}
	meta := t.tx.Bucket(bucketMeta)
	id, err := meta.NextSequence()
	if err != nil {
		return Mailbox{}, err
	}
	subscribed, err := t.takeLapsed(addr, name)
	if err != nil {
		return Mailbox{}, err
	}
	mb := Mailbox{
		Name:          name,
		ID:            id,
		UIDValidity:   t.nextUIDValidity(),
		UIDNext:       1,
		HighestModSeq: 1,
		SpecialUse:    specialUse,
		Subscribed:    subscribed,
	}
	if _, err := mail.Bucket(bucketMessages).CreateBucket(u64Key(id)); err != nil {
		return Mailbox{}, err
	}
	if err := t.putMailbox(addr, mb); err != nil {
		return Mailbox{}, err
	}
	t.publish(Event{Kind: EventMailboxCreate, Account: addr, Mailbox: name})
	return mb, nil
}

func validSpecialUse(su string) bool {
	switch su {
	case SpecialNone, SpecialSent, SpecialDrafts, SpecialTrash, SpecialJunk, SpecialArchive, SpecialAll, SpecialFlagged:
		return true
	}
	return false
}

// createParents creates the missing superiors of name.
func (t *txn) createParents(addr, name string) error {
	boxes := t.mailBucket(addr).Bucket(bucketMailboxes)
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		if p := name[:i]; boxes.Get([]byte(p)) == nil {
			if _, err := t.createMailbox(addr, p, SpecialNone, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// nextUIDValidity returns a UIDVALIDITY unique in this store: a counter
// seeded with the clock, so a mailbox re-created after a restore still
// gets a new value (RFC 9051 section 2.3.1.1).
func (t *txn) nextUIDValidity() uint32 {
	meta := t.tx.Bucket(bucketMeta)
	var next uint32
	if v := meta.Get(keyUIDValidity); len(v) == 4 {
		next = binary.BigEndian.Uint32(v) + 1
	}
	if now := uint32(time.Now().Unix()); now > next {
		next = now
	}
	if next == 0 {
		next = 1
	}
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, next)
	meta.Put(keyUIDValidity, b)
	return next
}

// dropMailboxMessages deletes a mailbox's messages, releasing their blobs
// and their bytes from the account's usage, and removes its message
// bucket.
func (t *txn) dropMailboxMessages(addr string, mb Mailbox) error {
	msgs := t.messagesBucket(addr, mb.ID)
	var freed int64
	if msgs != nil {
		c := msgs.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			m, err := decodeMessage(k, v)
			if err != nil {
				return err
			}
			if err := t.releaseBlob(m.BlobID); err != nil {
				return err
			}
			freed += m.Size
		}
		if err := t.mailBucket(addr).Bucket(bucketMessages).DeleteBucket(u64Key(mb.ID)); err != nil {
			return err
		}
	}
	if freed == 0 {
		return nil
	}
	a, err := t.account(addr)
	if err != nil {
		return err
	}
	a.UsedBytes = max(0, a.UsedBytes-freed)
	return t.putAccount(a)
}
