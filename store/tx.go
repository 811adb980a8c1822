package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// txn is one write transaction plus the events to publish after its
// commit.
type txn struct {
	tx     *bolt.Tx
	s      *boltStore
	events []Event
}

func (t *txn) publish(e Event) { t.events = append(t.events, e) }

// call is one write waiting for the group committer.
type call struct {
	fn  func(*txn) error
	err chan error
}

// errPanic wraps a panic inside a transaction function (a corrupt file
// can make bbolt panic).
var errPanic = errors.New("store: internal error")

// runFn runs fn, turning a panic into an error so the transaction rolls
// back and the committer survives.
func runFn(fn func(*txn) error, t *txn) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: panic in transaction: %v", errPanic, r)
		}
	}()
	return fn(t)
}

// update runs fn in its own write transaction and publishes its events
// once committed.
func (s *boltStore) update(fn func(*txn) error) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	t := &txn{s: s}
	start := time.Now()
	err := s.dbUpdate(func(tx *bolt.Tx) error {
		t.tx, t.events = tx, nil
		return runFn(fn, t)
	})
	s.commitNs.Add(int64(time.Since(start)))
	if err != nil {
		return err
	}
	s.commits.Add(1)
	s.writes.Add(1)
	s.subs.publish(t.events)
	s.preallocate()
	return nil
}

// dbUpdate is db.Update with a panic (bbolt's, on a corrupt page while
// committing) turned into an error; bbolt rolls the transaction back.
func (s *boltStore) dbUpdate(fn func(*bolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: panic in write transaction: %v", errPanic, r)
		}
	}()
	return s.db.Update(fn)
}

// view runs fn in a read transaction, recovering a panic into an error.
func (s *boltStore) view(fn func(tx *bolt.Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: panic in read transaction: %v", errPanic, r)
		}
	}()
	return s.db.View(fn)
}

// batch runs fn in a write transaction shared with other concurrent
// callers (group commit) and returns once that transaction is committed
// and fsynced. fn may run more than once (when another fn of the same
// batch fails), so it must compute everything, IDs included, from the
// transaction and overwrite its results on each run.
func (s *boltStore) batch(ctx context.Context, fn func(*txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c := &call{fn: fn, err: make(chan error, 1)}
	select {
	case s.calls <- c:
	case <-s.quit:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err() // not handed over: nothing was written
	}
	// Once handed over, the write may commit: wait for the outcome
	// whatever ctx says, so that success is never reported as failure.
	return <-c.err
}

// gatherWait bounds how long the committer waits for more calls;
// gatherQuiet is how long it waits for the next one: writers released by a
// commit come back within microseconds of each other, so a pause longer
// than that means the rest are not coming soon.
const (
	gatherWait  = time.Millisecond
	gatherQuiet = 150 * time.Microsecond
)

// committer gathers the calls waiting while the previous commit was
// being fsynced and commits them together.
//
// With N concurrent writers, a plain "take what is waiting" committer
// settles into two alternating halves (one half waits for the commit in
// flight while the other queues), N/2 per commit. So when the last two
// batches suggest more writers are about to come back, it waits for them,
// for at most gatherQuiet after the last arrival and gatherWait in all:
// commits then carry about N calls, and the wait ends as soon as the
// writers stop arriving. A lone writer (batches of one) never waits.
func (s *boltStore) committer() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	prev1, prev2 := 0, 0
	for {
		var first *call
		select {
		case first = <-s.calls:
		case <-s.quit:
			return
		}
		calls := []*call{first}
		expect := min(prev1+prev2, maxBatch)
		deadline := time.Now().Add(gatherWait)
	gather:
		for len(calls) < maxBatch {
			select {
			case c := <-s.calls:
				calls = append(calls, c)
				continue
			default:
			}
			if len(calls) >= expect || prev1 < 2 {
				break
			}
			wait := min(gatherQuiet, time.Until(deadline))
			if wait <= 0 {
				break
			}
			timer.Reset(wait)
			select {
			case c := <-s.calls:
				calls = append(calls, c)
				// Since Go 1.23 a stopped timer's channel never delivers
				// a stale value, so no drain is needed.
				timer.Stop()
			case <-timer.C:
				break gather
			case <-s.quit:
				timer.Stop()
				break gather
			}
		}
		prev2, prev1 = prev1, len(calls)
		s.runBatch(calls)
	}
}

// runBatch commits calls in one transaction. When one fails, the
// transaction is rolled back; the failing call is run alone (to get its
// own error) and the others are retried.
func (s *boltStore) runBatch(calls []*call) {
	switch len(calls) {
	case 0:
		return
	case 1:
		calls[0].err <- s.update(calls[0].fn)
		return
	}
	s.commitMu.Lock()
	txns := make([]*txn, len(calls))
	failed := -1
	start := time.Now()
	err := s.dbUpdate(func(tx *bolt.Tx) error {
		for i, c := range calls {
			txns[i] = &txn{tx: tx, s: s}
			if err := runFn(c.fn, txns[i]); err != nil {
				failed = i
				return err
			}
		}
		return nil
	})
	s.commitNs.Add(int64(time.Since(start)))
	if err == nil {
		s.commits.Add(1)
		s.writes.Add(uint64(len(calls)))
		for _, t := range txns {
			s.subs.publish(t.events)
		}
		for _, c := range calls {
			c.err <- nil // buffered: the callers go on now
		}
		s.preallocate()
	}
	s.commitMu.Unlock()
	switch {
	case err == nil:
	case failed < 0: // the commit itself failed
		for _, c := range calls {
			c.err <- err
		}
	default:
		s.runBatch(calls[:failed])
		calls[failed].err <- s.update(calls[failed].fn)
		s.runBatch(calls[failed+1:])
	}
}
