package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// newQueueID returns an ID that sorts by creation: the creation time in
// nanoseconds and a per-process counter, in fixed-width hex.
func (s *boltStore) newQueueID(now time.Time) string {
	return fmt.Sprintf("%016x%04x", uint64(now.UnixNano()), uint16(s.queueSeq.Add(1)))
}

// Enqueue stores an outbound message and its body durably, sharing a
// commit with concurrent writers. It sets ID, BlobID, Size and, when
// zero, Created and NextAttempt.
func (s *boltStore) Enqueue(ctx context.Context, e QueueEntry, body []byte) (QueueEntry, error) {
	now := time.Now().UTC()
	if e.Created.IsZero() {
		e.Created = now
	}
	if e.NextAttempt.IsZero() {
		e.NextAttempt = now
	}
	e.Size = int64(len(body))
	if err := s.CheckRoom(int64(len(body))); err != nil {
		return QueueEntry{}, err
	}
	info := parseBlobInfo(body, s.opts)
	var out QueueEntry
	err := s.batch(ctx, func(t *txn) error {
		q := t.tx.Bucket(bucketQueue)
		e.ID = s.newQueueID(now)
		for q.Get([]byte(e.ID)) != nil {
			e.ID = s.newQueueID(now)
		}
		id, err := t.putBlob(body, info, 1)
		if err != nil {
			return err
		}
		e.BlobID = id
		out = e
		return putJSON(q, []byte(e.ID), e)
	})
	return out, err
}

// QueueEntries lists the queue in ID (creation) order.
func (s *boltStore) QueueEntries() ([]QueueEntry, error) {
	var out []QueueEntry
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQueue).ForEach(func(k, v []byte) error {
			var e QueueEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("store: queue entry %s: %w", k, err)
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// QueueEntry returns one entry (ErrNotFound).
func (s *boltStore) QueueEntry(id string) (QueueEntry, error) {
	var e QueueEntry
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		e, err = queueEntry(tx, id)
		return err
	})
	return e, err
}

func queueEntry(tx *bolt.Tx, id string) (QueueEntry, error) {
	v := tx.Bucket(bucketQueue).Get([]byte(strings.TrimSpace(id)))
	if v == nil {
		return QueueEntry{}, fmt.Errorf("queue entry %q: %w", id, ErrNotFound)
	}
	var e QueueEntry
	if err := json.Unmarshal(v, &e); err != nil {
		return QueueEntry{}, fmt.Errorf("store: queue entry %s: %w", id, err)
	}
	return e, nil
}

// UpdateQueueEntry saves an entry's delivery state. The body it refers to
// (BlobID, Size) cannot change.
func (s *boltStore) UpdateQueueEntry(e QueueEntry) error {
	return s.update(func(t *txn) error {
		old, err := queueEntry(t.tx, e.ID)
		if err != nil {
			return err
		}
		e.BlobID, e.Size, e.Created = old.BlobID, old.Size, old.Created
		return putJSON(t.tx.Bucket(bucketQueue), []byte(e.ID), e)
	})
}

// SetQueueNextAttempt makes the entries ids due at at and changes nothing
// else. Each entry is read and written back in one write transaction, so
// that a delivery worker's UpdateQueueEntry, which may commit at any time
// while an admin retries the queue, is never overwritten by a copy read
// before it (which would undo delivered recipients and send them the
// message again). Ids not found (dropped or delivered meanwhile) are
// skipped; n counts the entries changed.
func (s *boltStore) SetQueueNextAttempt(ids []string, at time.Time) (n int, err error) {
	err = s.update(func(t *txn) error {
		n = 0
		for _, id := range ids {
			e, err := queueEntry(t.tx, id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			e.NextAttempt = at
			if err := putJSON(t.tx.Bucket(bucketQueue), []byte(e.ID), e); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// DeleteQueueEntry removes an entry and releases its body.
func (s *boltStore) DeleteQueueEntry(id string) error {
	return s.update(func(t *txn) error {
		e, err := queueEntry(t.tx, id)
		if err != nil {
			return err
		}
		if err := t.releaseBlob(e.BlobID); err != nil {
			return err
		}
		return t.tx.Bucket(bucketQueue).Delete([]byte(e.ID))
	})
}
