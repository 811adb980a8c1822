package store

import (
	"encoding/binary"
	"fmt"
	"log/slog"

	bolt "go.etcd.io/bbolt"
)

// Bodies being read outlive their last message.
//
// A reader (an IMAP FETCH, a POP3 RETR, an outbound delivery) reads a
// body chunk by chunk, each chunk in its own short read transaction, so
// that no transaction stays open while a slow client drains its socket.
// Expunging the body's last message (from another session) used to free
// the chunks at once: the reader failed in the middle of its answer, and
// a POP3 session, which cannot take back a "+OK" and half a message,
// was closed without its QUIT, losing its DELEs. Dovecot finishes such a
// download, as a process with the file open would.
//
// So a reader pins its blob from OpenBlob to Close. A transaction that
// drops the last reference of a pinned blob does not free it: it writes
// the blob's reference count as 0 (doomed: no message refers to it), and
// the last reader's Close frees it, in a transaction of its own. A
// doomed blob left by a crash or a Close of the store is freed when the
// store is next opened (freeDoomed).
//
// A transaction that frees an unpinned blob marks it as being freed
// until it ends: a reader opening it meanwhile (it still sees the blob,
// in the state before the commit) is refused rather than read a blob
// whose chunks are about to go.
type blobPin struct {
	readers int
	doomed  bool // freed by the last reader's Close
	freeing bool // a write transaction is freeing it: no new reader
}

// pin counts a reader of blob id; it fails if the blob is being freed.
func (s *boltStore) pin(id uint64) error {
	s.pinMu.Lock()
	defer s.pinMu.Unlock()
	p := s.pins[id]
	if p == nil {
		if s.pins == nil {
			s.pins = make(map[uint64]*blobPin)
		}
		p = &blobPin{}
		s.pins[id] = p
	}
	if p.freeing {
		return fmt.Errorf("blob %d: %w", id, ErrNotFound)
	}
	p.readers++
	return nil
}

// unpin ends a reader of blob id; the last reader of a doomed blob frees
// it.
func (s *boltStore) unpin(id uint64) {
	s.pinMu.Lock()
	p := s.pins[id]
	if p == nil || p.readers == 0 {
		s.pinMu.Unlock()
		return
	}
	p.readers--
	free := p.readers == 0 && p.doomed
	if p.readers == 0 && !p.freeing {
		delete(s.pins, id)
	}
	s.pinMu.Unlock()
	if free {
		s.freeDoomedBlob(id)
	}
}

// freeDoomedBlob frees blob id if it is still doomed.
func (s *boltStore) freeDoomedBlob(id uint64) {
	err := s.update(func(t *txn) error {
		v := t.tx.Bucket(bucketBlobRefs).Get(u64Key(id))
		if len(v) != 4 || binary.BigEndian.Uint32(v) != 0 {
			return nil
		}
		return t.freeBlob(id)
	})
	if err != nil {
		// The blob stays doomed: the next Open frees it.
		slog.Warn("store: freeing a body after its last reader", "blob", id, "err", err)
	}
}

// releaseLast handles the last reference of blob id going: freed now,
// unless a reader has it pinned, or doomed (see blobPin).
func (t *txn) releaseLast(id uint64) error {
	s := t.s
	s.pinMu.Lock()
	p := s.pins[id]
	if p != nil && p.readers > 0 {
		s.pinMu.Unlock()
		t.onDone(func(committed bool) {
			if !committed {
				return
			}
			s.pinMu.Lock()
			free := false
			if p := s.pins[id]; p != nil && p.readers > 0 {
				p.doomed = true
			} else {
				free = true // the readers closed while it committed
			}
			s.pinMu.Unlock()
			if free {
				// Not here: the committer holds commitMu.
				s.bgFrees.Add(1)
				go func() {
					defer s.bgFrees.Done()
					s.freeDoomedBlob(id)
				}()
			}
		})
		v := make([]byte, 4) // a count of 0: doomed
		return t.tx.Bucket(bucketBlobRefs).Put(u64Key(id), v)
	}
	if s.pins == nil {
		s.pins = make(map[uint64]*blobPin)
	}
	s.pins[id] = &blobPin{freeing: true}
	s.pinMu.Unlock()
	t.onDone(func(bool) {
		s.pinMu.Lock()
		delete(s.pins, id)
		s.pinMu.Unlock()
	})
	return t.freeBlob(id)
}

// freeBlob deletes blob id: its chunks, info and reference count.
func (t *txn) freeBlob(id uint64) error {
	data := t.tx.Bucket(bucketBlobData)
	for i := uint32(0); ; i++ {
		k := chunkKey(id, i)
		if data.Get(k) == nil {
			break
		}
		if err := data.Delete(k); err != nil {
			return err
		}
	}
	if err := t.tx.Bucket(bucketBlobInfo).Delete(u64Key(id)); err != nil {
		return err
	}
	return t.tx.Bucket(bucketBlobRefs).Delete(u64Key(id))
}

// freeDoomed frees the blobs left doomed when the store was last closed
// (a crash, or readers still open at Close): nothing reads them now.
func (s *boltStore) freeDoomed() error {
	var ids []uint64
	if err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBlobRefs).ForEach(func(k, v []byte) error {
			if len(k) == 8 && len(v) == 4 && binary.BigEndian.Uint32(v) == 0 {
				ids = append(ids, binary.BigEndian.Uint64(k))
			}
			return nil
		})
	}); err != nil || len(ids) == 0 {
		return err
	}
	return s.update(func(t *txn) error {
		for _, id := range ids {
			if err := t.freeBlob(id); err != nil {
				return err
			}
		}
		return nil
	})
}
