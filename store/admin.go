package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// AddDomain adds a domain we receive mail for.
func (s *boltStore) AddDomain(name string) error {
	d, err := normalizeDomain(name)
	if err != nil {
		return err
	}
	return s.update(func(t *txn) error {
		b := t.tx.Bucket(bucketDomains)
		if b.Get([]byte(d)) != nil {
			return fmt.Errorf("domain %s: %w", d, ErrExists)
		}
		now, _ := time.Now().UTC().MarshalText()
		return b.Put([]byte(d), now)
	})
}

// DeleteDomain removes a domain and its DKIM keys. It fails with ErrInUse
// while accounts or aliases of the domain exist.
func (s *boltStore) DeleteDomain(name string) error {
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	return s.update(func(t *txn) error {
		b := t.tx.Bucket(bucketDomains)
		if b.Get([]byte(d)) == nil {
			return fmt.Errorf("domain %s: %w", d, ErrNotFound)
		}
		for _, bn := range [][]byte{bucketAccounts, bucketAliases} {
			c := t.tx.Bucket(bn).Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				if addressDomain(string(k)) == d {
					return fmt.Errorf("domain %s is used by %s: %w", d, k, ErrInUse)
				}
			}
		}
		// An alias to an address in the domain: once the domain is gone,
		// its mail would be forwarded to whoever has the domain then.
		c := t.tx.Bucket(bucketAliases).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var targets []string
			if err := json.Unmarshal(v, &targets); err != nil {
				return fmt.Errorf("alias %s: %w", k, err)
			}
			for _, tg := range targets {
				if strings.TrimSuffix(strings.ToLower(tg[strings.LastIndexByte(tg, '@')+1:]), ".") == d {
					return fmt.Errorf("domain %s is used by alias %s -> %s: %w", d, k, tg, ErrInUse)
				}
			}
		}
		dk := t.tx.Bucket(bucketDKIM)
		prefix := []byte(d + "\x00")
		var keys [][]byte
		c = dk.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			if err := dk.Delete(k); err != nil {
				return err
			}
		}
		return b.Delete([]byte(d))
	})
}

// Domains lists the domains in order.
func (s *boltStore) Domains() ([]string, error) {
	var out []string
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDomains).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	return out, err
}

// HasDomain reports whether a domain is served here.
func (s *boltStore) HasDomain(name string) (bool, error) {
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	var ok bool
	err := s.view(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketDomains).Get([]byte(d)) != nil
		return nil
	})
	return ok, err
}

// AddAccount creates an account and its DefaultMailboxes.
func (s *boltStore) AddAccount(address, passwordHash string) error {
	a, err := normalizeAddress(address)
	if err != nil {
		return err
	}
	return s.update(func(t *txn) error {
		if t.tx.Bucket(bucketDomains).Get([]byte(addressDomain(a))) == nil {
			return fmt.Errorf("account %s: %w", a, ErrNoSuchDomain)
		}
		if t.tx.Bucket(bucketAccounts).Get([]byte(a)) != nil {
			return fmt.Errorf("account %s: %w", a, ErrExists)
		}
		acct := Account{Address: a, PasswordHash: passwordHash, Created: time.Now().UTC()}
		if err := t.putAccount(acct); err != nil {
			return err
		}
		mail, err := t.tx.Bucket(bucketMail).CreateBucket([]byte(a))
		if err != nil {
			return err
		}
		if _, err := mail.CreateBucket(bucketMailboxes); err != nil {
			return err
		}
		if _, err := mail.CreateBucket(bucketMessages); err != nil {
			return err
		}
		for _, dm := range DefaultMailboxes {
			mb, err := t.createMailbox(a, dm.Name, dm.SpecialUse, true)
			if err != nil {
				return err
			}
			mb.Subscribed = true
			if err := t.putMailbox(a, mb); err != nil {
				return err
			}
		}
		return nil
	})
}

// SetPasswordHash replaces an account's password hash.
func (s *boltStore) SetPasswordHash(address, hash string) error {
	return s.updateAccount(address, func(a *Account) { a.PasswordHash = hash })
}

// SetQuota sets an account's quota in bytes (0: none).
func (s *boltStore) SetQuota(address string, n int64) error {
	if n < 0 {
		return fmt.Errorf("quota %d: %w", n, ErrInvalidName)
	}
	return s.updateAccount(address, func(a *Account) { a.QuotaBytes = n })
}

// SetDisabled enables or disables an account; disabling publishes
// EventAccountDisable.
func (s *boltStore) SetDisabled(address string, disabled bool) error {
	return s.update(func(t *txn) error {
		a, err := t.account(address)
		if err != nil {
			return err
		}
		a.Disabled = disabled
		if err := t.putAccount(a); err != nil {
			return err
		}
		if disabled {
			t.publish(Event{Kind: EventAccountDisable, Account: a.Address})
		}
		return nil
	})
}

func (s *boltStore) updateAccount(address string, f func(*Account)) error {
	return s.update(func(t *txn) error {
		a, err := t.account(address)
		if err != nil {
			return err
		}
		f(&a)
		return t.putAccount(a)
	})
}

// DeleteAccount removes an account with all its mail, releasing blobs.
func (s *boltStore) DeleteAccount(address string) error {
	addr := strings.ToLower(strings.TrimSpace(address))
	return s.update(func(t *txn) error {
		if _, err := t.account(addr); err != nil {
			return err
		}
		mboxes, err := t.mailboxes(addr)
		if err != nil {
			return err
		}
		for _, mb := range mboxes {
			if err := t.dropMailboxMessages(addr, mb); err != nil {
				return err
			}
			t.publish(Event{Kind: EventMailboxDelete, Account: addr, Mailbox: mb.Name})
		}
		if err := t.tx.Bucket(bucketMail).DeleteBucket([]byte(addr)); err != nil {
			return err
		}
		t.publish(Event{Kind: EventAccountDelete, Account: addr})
		return t.tx.Bucket(bucketAccounts).Delete([]byte(addr))
	})
}

// Account returns one account.
func (s *boltStore) Account(address string) (Account, error) {
	var a Account
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		a, err = (&txn{tx: tx}).account(address)
		return err
	})
	return a, err
}

// Accounts lists all accounts in address order.
func (s *boltStore) Accounts() ([]Account, error) {
	var out []Account
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAccounts).ForEach(func(k, v []byte) error {
			a, err := decodeAccount(v)
			if err != nil {
				return fmt.Errorf("store: account %s: %w", k, err)
			}
			out = append(out, a)
			return nil
		})
	})
	return out, err
}

func (t *txn) account(address string) (Account, error) {
	addr := strings.ToLower(strings.TrimSpace(address))
	v := t.tx.Bucket(bucketAccounts).Get([]byte(addr))
	if v == nil {
		return Account{}, fmt.Errorf("account %s: %w", addr, ErrNoSuchAccount)
	}
	if t.cache != nil {
		if c, ok := t.cache.accts[addr]; ok && (c.dirty || sameBytes(c.raw, v)) {
			return c.a, nil
		}
	}
	a, err := decodeAccount(v)
	if err != nil {
		return Account{}, fmt.Errorf("store: account %s: %w", addr, err)
	}
	if t.cache != nil {
		t.cache.accts[addr] = cachedAccount{raw: v, a: a}
	}
	return a, nil
}

func (t *txn) putAccount(a Account) error {
	if c := t.cache; c != nil && c.deferPut {
		if !c.accts[a.Address].dirty {
			c.dirty = append(c.dirty, "a"+a.Address)
		}
		c.accts[a.Address] = cachedAccount{a: a, dirty: true}
		return nil
	}
	return t.writeAccount(a)
}

// writeAccount is putAccount without deferring.
func (t *txn) writeAccount(a Account) error {
	v, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketAccounts).Put([]byte(a.Address), v); err != nil {
		return err
	}
	if t.cache != nil {
		t.cache.accts[a.Address] = cachedAccount{raw: v, a: a}
	}
	return nil
}

// AddAlias adds or replaces an alias. Its domain must be served here;
// targets may be local or remote addresses.
func (s *boltStore) AddAlias(address string, targets []string) error {
	a, err := normalizeAliasAddress(address)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		return fmt.Errorf("alias %s has no target: %w", a, ErrInvalidName)
	}
	norm := make([]string, 0, len(targets))
	for _, tg := range targets {
		n, err := normalizeTarget(tg)
		if err != nil {
			return fmt.Errorf("alias %s target: %w", a, err)
		}
		norm = append(norm, n)
	}
	v, err := json.Marshal(norm)
	if err != nil {
		return err
	}
	return s.update(func(t *txn) error {
		if t.tx.Bucket(bucketDomains).Get([]byte(addressDomain(a))) == nil {
			return fmt.Errorf("alias %s: %w", a, ErrNoSuchDomain)
		}
		return t.tx.Bucket(bucketAliases).Put([]byte(a), v)
	})
}

// DeleteAlias removes an alias (ErrNotFound).
func (s *boltStore) DeleteAlias(address string) error {
	a := strings.ToLower(strings.TrimSpace(address))
	return s.update(func(t *txn) error {
		b := t.tx.Bucket(bucketAliases)
		if b.Get([]byte(a)) == nil {
			return fmt.Errorf("alias %s: %w", a, ErrNotFound)
		}
		return b.Delete([]byte(a))
	})
}

// Alias returns the targets of an alias (ErrNotFound).
func (s *boltStore) Alias(address string) ([]string, error) {
	a := strings.ToLower(strings.TrimSpace(address))
	var out []string
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketAliases).Get([]byte(a))
		if v == nil {
			return fmt.Errorf("alias %s: %w", a, ErrNotFound)
		}
		return json.Unmarshal(v, &out)
	})
	return out, err
}

// Aliases returns every alias.
func (s *boltStore) Aliases() (map[string][]string, error) {
	out := make(map[string][]string)
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAliases).ForEach(func(k, v []byte) error {
			var tg []string
			if err := json.Unmarshal(v, &tg); err != nil {
				return fmt.Errorf("store: alias %s: %w", k, err)
			}
			out[string(k)] = tg
			return nil
		})
	})
	return out, err
}

func dkimKey(domain, selector string) []byte { return []byte(domain + "\x00" + selector) }

// AddDKIMKey stores a key (replacing one with the same selector) and makes
// it the active key of its algorithm for the domain; a Pending key is
// stored inactive, and the active ones stay.
func (s *boltStore) AddDKIMKey(k DKIMKey) error {
	d, err := normalizeDomain(k.Domain)
	if err != nil {
		return err
	}
	if k.Selector == "" || !validDomain(strings.ToLower(k.Selector)) {
		return fmt.Errorf("DKIM selector %q: %w", k.Selector, ErrInvalidName)
	}
	k.Domain, k.Active = d, !k.Pending
	if k.Created.IsZero() {
		k.Created = time.Now().UTC()
	}
	return s.update(func(t *txn) error {
		if t.tx.Bucket(bucketDomains).Get([]byte(d)) == nil {
			return fmt.Errorf("DKIM key for %s: %w", d, ErrNoSuchDomain)
		}
		keys, err := dkimKeys(t.tx, d)
		if err != nil {
			return err
		}
		b := t.tx.Bucket(bucketDKIM)
		for _, o := range keys {
			if k.Active && o.Algorithm == k.Algorithm && o.Active && o.Selector != k.Selector {
				o.Active = false
				if err := putJSON(b, dkimKey(d, o.Selector), o); err != nil {
					return err
				}
			}
		}
		return putJSON(b, dkimKey(d, k.Selector), k)
	})
}

// DKIMKeys returns a domain's keys in selector order.
func (s *boltStore) DKIMKeys(domain string) ([]DKIMKey, error) {
	d := strings.ToLower(strings.TrimSpace(domain))
	var out []DKIMKey
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = dkimKeys(tx, d)
		return err
	})
	return out, err
}

// DeleteDKIMKey removes a key (ErrNotFound).
func (s *boltStore) DeleteDKIMKey(domain, selector string) error {
	k := dkimKey(strings.ToLower(strings.TrimSpace(domain)), selector)
	return s.update(func(t *txn) error {
		b := t.tx.Bucket(bucketDKIM)
		if b.Get(k) == nil {
			return fmt.Errorf("DKIM key %s for %s: %w", selector, domain, ErrNotFound)
		}
		return b.Delete(k)
	})
}

func dkimKeys(tx *bolt.Tx, domain string) ([]DKIMKey, error) {
	var out []DKIMKey
	prefix := []byte(domain + "\x00")
	c := tx.Bucket(bucketDKIM).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var dk DKIMKey
		if err := json.Unmarshal(v, &dk); err != nil {
			return nil, fmt.Errorf("store: DKIM key %q: %w", k, err)
		}
		out = append(out, dk)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Selector < out[j].Selector })
	return out, nil
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, data)
}

// RestoreUIDMargin is how far RaiseUIDNext moves every mailbox's next UID
// after a restore: more messages than any one mailbox gets between a
// backup and its restore, and little of the 32-bit UID space (4,096
// restores).
const RestoreUIDMargin = 1 << 20

// RaiseUIDNext moves the next UID of every mailbox of every account by
// by, for a store restored from a backup. The server gave out UIDs after
// the backup was taken, and clients (IMAP caches, mbsync, POP3 UIDLs)
// know them; within one UIDVALIDITY a UID must never name another message
// (RFC 9051 section 2.3.1.1, RFC 1939 section 7), so the restored store
// must not give them out again. Raising UIDNEXT keeps UIDVALIDITY, so
// clients keep what they have of the messages the backup holds and see
// the later ones as expunged. A mailbox whose UIDs would run out gets a
// new UIDVALIDITY instead (its clients sync it again from scratch). It
// returns the number of mailboxes changed.
func RaiseUIDNext(st Store, by uint32) (int, error) {
	s, ok := st.(*boltStore)
	if !ok {
		return 0, errors.New("store: not a bbolt store")
	}
	n := 0
	err := s.update(func(t *txn) error {
		n = 0
		var addrs []string
		if err := t.tx.Bucket(bucketAccounts).ForEach(func(k, _ []byte) error {
			addrs = append(addrs, string(k))
			return nil
		}); err != nil {
			return err
		}
		for _, addr := range addrs {
			mail := t.mailBucket(addr)
			if mail == nil {
				continue
			}
			var boxes []Mailbox
			if err := mail.Bucket(bucketMailboxes).ForEach(func(k, v []byte) error {
				mb, err := decodeMailbox(v)
				if err != nil {
					return fmt.Errorf("store: mailbox %q of %s: %w", k, addr, err)
				}
				boxes = append(boxes, mb)
				return nil
			}); err != nil {
				return err
			}
			for _, mb := range boxes {
				if uint64(mb.UIDNext)+uint64(by) < math.MaxUint32 {
					mb.UIDNext += by
				} else {
					mb.UIDValidity = t.nextUIDValidity()
				}
				mb.HighestModSeq += uint64(by)
				if err := t.writeMailbox(addr, mb); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	return n, err
}
