package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// txn is one write transaction plus the events to publish after its
// commit.
type txn struct {
	tx     *bolt.Tx
	s      *boltStore
	events []Event
	cache  *decodeCache // shared by the calls of one write transaction; may be nil
	done   []func(committed bool)
}

// onDone has fn run once the transaction has committed or rolled back.
func (t *txn) onDone(fn func(committed bool)) { t.done = append(t.done, fn) }

// decodeCache keeps the decoded account and mailbox records of a write
// transaction: the calls of a group commit mostly update the same ones,
// and decoding the JSON again for each call was a tenth of the commit.
// An entry is used only while the record in the transaction is the very
// value it was decoded from (bbolt returns the slice that was Put).
//
// In a transaction of appends only (deferPut), the records are not
// written back at each call either: putAccount and putMailbox leave the
// new value here, marked dirty, and flush writes each once, after the
// last call. A group commit of N appends to one mailbox then encodes and
// writes its mailbox and account records once rather than N times. Only
// appendMessages and deliver run in such a transaction, and they reach
// the two records only through account, mailbox and their put.
type decodeCache struct {
	accts    map[string]cachedAccount
	mboxes   map[string]cachedMailbox // address NUL name
	deferPut bool
	dirty    []string // keys of dirty entries, in the order first dirtied: "a" address or "m" address NUL name
}

type cachedAccount struct {
	raw   []byte // the record the entry was decoded from; nil when dirty
	a     Account
	dirty bool
}

type cachedMailbox struct {
	raw   []byte
	mb    Mailbox
	dirty bool
}

// flush writes the dirty records into t's transaction.
func (c *decodeCache) flush(t *txn) error {
	for _, k := range c.dirty {
		var err error
		switch k[0] {
		case 'a':
			e := c.accts[k[1:]]
			err = t.writeAccount(e.a)
		case 'm':
			e := c.mboxes[k[1:]]
			addr, _, _ := strings.Cut(k[1:], "\x00")
			err = t.writeMailbox(addr, e.mb)
		}
		if err != nil {
			return err
		}
	}
	c.dirty = c.dirty[:0]
	return nil
}

func newDecodeCache() *decodeCache {
	return &decodeCache{accts: map[string]cachedAccount{}, mboxes: map[string]cachedMailbox{}}
}

// sameBytes tells whether a and b are the same slice (not merely equal).
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func (t *txn) publish(e Event) { t.events = append(t.events, e) }

// call is one write waiting for the group committer.
type call struct {
	fn  func(*txn) error
	rec [][]byte // the operation as a log record, in parts; nil: not logged
	// appends: fn is an append or a delivery (see decodeCache)
	appends bool
	err     chan error
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
// once committed. It runs on the caller's goroutine.
func (s *boltStore) update(fn func(*txn) error) error {
	c := &call{fn: fn, err: make(chan error, 1)}
	s.runBatch([]*call{c})
	return <-c.err
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
	return s.hand(ctx, &call{fn: fn, err: make(chan error, 1)})
}

// batchAppend is batch for an append or a delivery, which the log can
// replay: rec is its record (see walops.go), nil when it is not logged.
func (s *boltStore) batchAppend(ctx context.Context, rec [][]byte, fn func(*txn) error) error {
	return s.hand(ctx, &call{fn: fn, rec: rec, appends: true, err: make(chan error, 1)})
}

// hand gives c to the committer and waits for its outcome.
func (s *boltStore) hand(ctx context.Context, c *call) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.commitSolo(c) {
		return <-c.err
	}
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
	var tick <-chan time.Time
	if s.walOn.Load() {
		t := time.NewTicker(checkpointQuiet)
		defer t.Stop()
		tick = t.C
	}
	for {
		var first *call
		s.committerIdle.Store(true)
		select {
		case first = <-s.calls:
			s.committerIdle.Store(false)
		case <-tick:
			s.quietCheckpoint()
			continue
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
			var wait time.Duration
			var synced <-chan struct{} // nil unless in log mode
			if s.walOn.Load() && first.rec != nil {
				// In log mode a commit need not wait for the one before
				// it to be synced, but while the log is being written
				// its record could not be either: gathering more calls
				// meanwhile makes fewer, larger commits, cheaper per
				// call. The wait ends when the log write does.
				if !s.syncBusy.Load() {
					break
				}
				wait, synced = time.Until(deadline), s.syncDone
			} else {
				if len(calls) >= expect || prev1 < 2 {
					break
				}
				wait = min(gatherQuiet, time.Until(deadline))
			}
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
			case <-synced:
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

// runBatch commits calls in one transaction and answers them once it is
// durable. When one fails, the transaction is rolled back; the failing
// call is run alone (to get its own error) and the others are retried.
func (s *boltStore) runBatch(calls []*call) {
	if len(calls) == 0 {
		return
	}
	s.commitMu.Lock()
	failed, err := s.commitLocked(calls)
	s.commitMu.Unlock()
	switch {
	case err == nil:
	case failed < 0 || len(calls) == 1:
		for _, c := range calls {
			c.err <- err
		}
	default:
		s.runBatch(calls[:failed])
		s.runBatch(calls[failed : failed+1])
		s.runBatch(calls[failed+1:])
	}
}

// commitLocked runs calls in one write transaction and commits it. On
// success the calls are answered once the commit is durable: now (bbolt's
// own synced commit, or a checkpoint) or by the syncer once the log
// record is. On failure nothing is answered: failed is the index of the
// call that failed, or -1 when the commit itself did.
//
// In log mode the record goes to the syncer before the transaction runs,
// so that it is written and fdatasynced while the transaction is applied:
// a commit then takes the longer of the two rather than their sum. Both
// the record (the calls' operations) and its transaction id (the
// committer is bbolt's only writer) are known beforehand.
func (s *boltStore) commitLocked(calls []*call) (failed int, err error) {
	if s.closing {
		return -1, ErrClosed
	}
	if err := s.failure(); err != nil {
		return -1, err
	}
	if s.owedErr() != nil {
		if err := s.payOwed(); err != nil {
			return -1, err
		}
	}
	var job *syncJob
	var recLen int
	if s.walOn.Load() {
		rec, logged := s.record(calls)
		recLen = rec.size()
		if err := s.checkMapRoom(recLen); err != nil {
			return -1, err
		}
		if logged && s.canLog(recLen) {
			if err := s.reserveLog(recLen); err != nil {
				return -1, err
			}
			rec.txid = s.lastTxid + 1
			job = &syncJob{rec: rec, calls: calls, applied: make(chan struct{})}
			s.pending.Add(1)
			s.inflight.Add(1)
			s.jobs <- job
			// The syncer was made ready on this P, where it would wait
			// for the transaction below: let it start its write first.
			runtime.Gosched()
		}
	}
	var want uint64
	unlogged := false // a commit is in the log's transaction ids but not in the log
	if job != nil {
		want = job.rec.txid
	} else if s.walOn.Load() {
		// A checkpoint follows, which needs the freelist written, and
		// this transaction may fail: see syncFreelist.
		var err error
		if unlogged, err = s.syncFreelist(); err != nil {
			// Its commit failed: nothing changed.
			return -1, fmt.Errorf("store: write freelist: %w", err)
		}
		s.db.NoFreelistSync = false
		defer func() { s.db.NoFreelistSync = s.walOn.Load() }()
	}
	a := s.apply(calls, want)
	if a.err != nil {
		if job != nil {
			close(job.applied) // not ok: the syncer answers nothing
			s.pending.Wait()
			if err := s.takeBack(recLen); err != nil {
				return -1, err
			}
		}
		if unlogged {
			// The next record's transaction id would not follow the
			// last record's, and a replay stops at such a gap: the
			// checkpoint the commit was to have covers syncFreelist's.
			if err := s.checkpointLocked(false); err != nil {
				return -1, err
			}
		}
		return a.failed, a.err
	}
	s.noteCommit(len(calls), a)
	if !s.walOn.Load() {
		if !s.opts.NoSync {
			s.fsyncs.Add(2)
		}
		s.answer(calls, a.txns, nil)
		s.preallocate()
		return -1, nil
	}
	s.sinceCheckpoint++
	s.logBytes += int64(recLen)
	if job != nil {
		job.txns, job.ok = a.txns, true
		close(job.applied)
		return -1, nil
	}
	// Not logged, or a checkpoint is due: the checkpoint makes this
	// commit durable with all before it.
	err = s.checkpointLocked(false)
	s.answer(calls, a.txns, err)
	s.preallocate()
	return -1, nil
}

// reserveLog makes room in the log for a record of recLen bytes after
// those handed to the syncer, growing the file first if it must. That
// is done before the transaction is applied: a full disk then fails the
// commit before anything happened, rather than leave it applied without
// its record (a checkpoint owed, its callers told of a failure that a
// checkpoint would turn into a success: a client that retries would
// store its message twice). commitMu is held.
func (s *boltStore) reserveLog(recLen int) error {
	n := int64(walRecHeaderSize + recLen)
	if s.wal.reserved+n > s.wal.size {
		s.pending.Wait() // the syncer writes where grow does
		step := walGrowStep
		if !s.spareRoom(step) {
			step = walGrowMin // the room kept for mail is not the log's to take
		}
		if err := s.wal.grow(s.wal.reserved+n, step); err != nil {
			err = fmt.Errorf("store: grow log: %w", err)
			var se *syncError
			if errors.As(err, &se) {
				return s.fail(err)
			}
			return err
		}
		s.fsyncs.Add(1)
	}
	s.wal.reserved += n
	return nil
}

// takeBack takes back the last record written, of recLen bytes, once its
// transaction failed: the record of a transaction that did not happen is
// in the log, under the id of the next commit, and may be durable; the
// next record is written over it. (Replayed after a crash before that,
// its failing operation fails again and is skipped: see refused.) The
// syncer is idle. A store already failed, or owing a checkpoint, is left
// as it is: the log took no record since (see fail), and the checkpoint
// starts it over.
func (s *boltStore) takeBack(recLen int) error {
	if s.blocked() != nil {
		return nil
	}
	if err := s.wal.unwrite(int64(walRecHeaderSize + recLen)); err != nil {
		return s.fail(fmt.Errorf("store: write log: %w", err))
	}
	return nil
}

// noteCommit records a commit of n calls, applied as a.
func (s *boltStore) noteCommit(n int, a applied) {
	s.commits.Add(1)
	s.writes.Add(uint64(n))
	s.lastTxid, s.hwm, s.lastCommit = a.txid, a.hwm, time.Now()
}

// applied is the outcome of apply.
type applied struct {
	txns   []*txn
	failed int // the index of the call that failed, or -1
	txid   uint64
	hwm    int64
	err    error
}

// apply runs calls in one write transaction and commits it (unsynced in
// log mode). want, unless 0, is the transaction id their record was
// logged under. commitMu is held: by the caller, or, for the applier,
// by commitSolo's caller.
func (s *boltStore) apply(calls []*call, want uint64) (a applied) {
	a.txns = make([]*txn, len(calls))
	a.failed = -1
	start := time.Now()
	a.err = s.dbUpdate(func(tx *bolt.Tx) error {
		if want != 0 && uint64(tx.ID()) != want {
			return fmt.Errorf("store: transaction %d, logged as %d", tx.ID(), want)
		}
		cache := newDecodeCache()
		cache.deferPut = true
		for _, c := range calls {
			cache.deferPut = cache.deferPut && c.appends
		}
		for i, c := range calls {
			a.txns[i] = &txn{tx: tx, s: s, cache: cache}
			if err := runFn(c.fn, a.txns[i]); err != nil {
				a.failed = i
				return err
			}
		}
		if err := cache.flush(a.txns[0]); err != nil {
			return err
		}
		a.txid, a.hwm = uint64(tx.ID()), tx.Size()
		return nil
	})
	if a.err == nil {
		s.freelistSynced = !s.db.NoFreelistSync
	}
	for _, t := range a.txns {
		if t != nil {
			for _, fn := range t.done {
				fn(a.err == nil)
			}
		}
	}
	s.commitNs.Add(int64(time.Since(start)))
	return a
}

// syncFreelist makes sure that the last commit wrote bbolt's freelist,
// with a commit of nothing else if it did not.
//
// bbolt writes its whole freelist, free and pending pages sorted, at
// every commit unless NoFreelistSync. In log mode the list grows with
// the pages the checkpoint's reader holds, and writing it was a third
// of the CPU of a lone append's commit. But only a checkpoint's meta is
// ever read back (restoreMeta, or a clean Open), so logged commits leave
// it out (NoFreelistSync is set while in log mode) and the checkpoint
// writes it first, with this.
//
// The rollback of a write transaction after a commit without a freelist
// rebuilds it by walking the whole file. So appends and deliveries commit
// rather than fail on their refusals (see refusal), and any other write,
// which may fail, runs after this, and writes the freelist itself.
//
// The commit it makes, if any (committed), is in no log record: a
// checkpoint must follow before the next logged commit, whose record
// would otherwise not follow the last (see wal.records).
func (s *boltStore) syncFreelist() (committed bool, err error) {
	if s.freelistSynced {
		return false, nil
	}
	saved := s.db.NoFreelistSync
	s.db.NoFreelistSync = false
	defer func() { s.db.NoFreelistSync = saved }()
	var txid uint64
	var hwm int64
	if err := s.dbUpdate(func(tx *bolt.Tx) error {
		txid, hwm = uint64(tx.ID()), tx.Size()
		return nil
	}); err != nil {
		return false, err
	}
	s.lastTxid, s.hwm, s.freelistSynced = txid, hwm, true
	return true, nil
}

// soloApply is a transaction for the applier to run (see commitSolo).
type soloApply struct {
	calls []*call
	want  uint64
	done  chan applied
}

// applier runs the transactions of commitSolo.
func (s *boltStore) applier() {
	defer s.syncWG.Done()
	for j := range s.applies {
		j.done <- s.apply(j.calls, j.want)
	}
}

// commitSolo commits c, a logged append, for a lone writer: when the
// committer is idle and no commit is waiting for the log, the caller
// takes commitMu, writes and fdatasyncs c's record itself while the
// applier applies the transaction, and answers c. The committer's path
// has three goroutine wake-ups in the way of a lone writer (the
// committer's, the syncer's, and the caller's on the answer: 30-70 µs
// each on a VM); this one has one, the applier's, off the way (it runs
// while the log is written). It reports whether it took c: if not, it
// did nothing, and c goes to the committer.
func (s *boltStore) commitSolo(c *call) bool {
	if c.rec == nil || !s.walOn.Load() || !s.committerIdle.Load() || s.inflight.Load() != 0 || !s.commitMu.TryLock() {
		return false
	}
	defer s.commitMu.Unlock()
	if s.closing || s.blocked() != nil || s.inflight.Load() != 0 {
		return false
	}
	rec := walRecord{parts: c.rec}
	recLen := rec.size()
	if s.checkMapRoom(recLen) != nil || !s.canLog(recLen) || s.reserveLog(recLen) != nil {
		return false // the committer answers the failure
	}
	rec.txid = s.lastTxid + 1
	s.solos.Add(1)
	done := make(chan applied, 1)
	s.applies <- soloApply{calls: []*call{c}, want: rec.txid, done: done}
	werr := s.writeLog([]walRecord{rec})
	a := <-done
	if a.err != nil {
		if err := s.takeBack(recLen); err != nil {
			a.err = err
		}
		c.err <- a.err
		return true
	}
	s.noteCommit(1, a)
	s.sinceCheckpoint++
	s.logBytes += int64(recLen)
	s.answer([]*call{c}, a.txns, werr)
	return true
}

// canLog tells whether a commit with a record of recLen bytes can go
// through the log: in log mode, with no checkpoint due.
//
// A checkpoint is due after checkpointCommits commits, checkpointBytes
// of log, or once checkpointPending pages are held from reuse. bbolt
// reuses at once a page that a commit since the checkpoint wrote and a
// later one freed, so the same few pages (the paths to the last leaves
// of the mailbox and blob trees) take a lone writer's commits over and
// over: a checkpoint's fdatasync writes them once, however many commits
// it covers. But a page from the end of the file, or one the
// checkpoint's reader sees, is held until the next checkpoint once
// freed: in a file that grows (no free pages left) most are, and the
// count of held pages ends the interval before the file grows by more
// than checkpointPending pages of them.
func (s *boltStore) canLog(recLen int) bool {
	return s.walOn.Load() && s.reader != nil &&
		s.sinceCheckpoint+1 < checkpointCommits && s.logBytes+int64(recLen) < checkpointBytes &&
		s.db.Stats().PendingPageN < checkpointPending
}

// answer publishes the events of committed calls and answers them. err
// is the failure of the write that was to make the commit durable: the
// commit is applied all the same, and readers see it, so its events go
// out too, for the sessions' view of a mailbox to stay the store's.
func (s *boltStore) answer(calls []*call, txns []*txn, err error) {
	for _, t := range txns {
		s.subs.publish(t.events)
	}
	for _, c := range calls {
		c.err <- err // buffered: the callers go on now
	}
}

// record is the log record of a group of calls, their records one after
// the other (its txid is the caller's to set); logged is false if one of
// them is not logged.
func (s *boltStore) record(calls []*call) (rec walRecord, logged bool) {
	if len(calls) == 1 {
		return walRecord{parts: calls[0].rec}, calls[0].rec != nil
	}
	n := 0
	for _, c := range calls {
		if c.rec == nil {
			return walRecord{}, false
		}
		n += len(c.rec)
	}
	rec.parts = make([][]byte, 0, n)
	for _, c := range calls {
		rec.parts = append(rec.parts, c.rec...)
	}
	return rec, true
}

// syncJob is a commit whose log record the syncer is to make durable
// before answering its calls. The committer closes applied once it has
// run the transaction, with ok and txns set if it committed.
type syncJob struct {
	rec     walRecord
	calls   []*call
	txns    []*txn
	ok      bool
	applied chan struct{}
}

// syncer writes the records of the commits handed to it, several at
// once when they queue up, fdatasyncs the log, then, once each commit is
// applied, publishes its events and answers its calls, in commit order.
func (s *boltStore) syncer() {
	defer s.syncWG.Done()
	var jobs []*syncJob
	var recs []walRecord
	for j := range s.jobs {
		jobs, recs = append(jobs[:0], j), append(recs[:0], j.rec)
	more:
		for len(jobs) < 4*maxBatch {
			select {
			case j, ok := <-s.jobs:
				if !ok {
					break more
				}
				jobs, recs = append(jobs, j), append(recs, j.rec)
			default:
				break more
			}
		}
		err := s.writeLog(recs)
		for _, j := range jobs {
			<-j.applied
			if j.ok {
				s.answer(j.calls, j.txns, err)
			}
			s.inflight.Add(-1)
			s.pending.Done()
		}
		clear(jobs)
		clear(recs)
	}
}

// writeLog writes and fdatasyncs recs, telling the committer while it
// does (syncBusy, syncDone). A failure goes to fail; while the store is
// failed or owes a checkpoint, nothing is written (see fail).
func (s *boltStore) writeLog(recs []walRecord) error {
	s.syncBusy.Store(true)
	err := s.blocked()
	if err == nil {
		var syncs int
		syncs, err = s.wal.appendRecords(recs)
		s.fsyncs.Add(uint64(syncs))
		if err != nil {
			err = s.fail(fmt.Errorf("store: write log: %w", err))
		}
	}
	s.syncBusy.Store(false)
	select {
	case s.syncDone <- struct{}{}:
	default:
	}
	return err
}

// fail records err, a failed write of the log or a failed checkpoint,
// and returns what the write's callers are to get.
//
// After a failed fsync (a syncError) the state on disk is unknown: the
// kernel may have dropped the pages it could not write, and a later
// fsync would succeed without them. Only a restart, recovering from the
// last checkpoint and the log, makes it known again, so every write
// fails from then on.
//
// Any other failure (a full disk, most often) wrote nothing that was
// ever synced, but it may leave a commit applied that its record or
// checkpoint was to make durable, and the next record would then not
// follow the last (a replay stops at such a gap: see wal.records). So a
// checkpoint is owed: the log takes no record until one succeeds, and
// every commit first tries it (payOwed), failing with its error until it
// succeeds. Once the disk has room again the store goes on by itself, as
// Postfix and Dovecot do, with no restart.
func (s *boltStore) fail(err error) error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	if s.failErr != nil {
		return s.failErr
	}
	var se *syncError
	if errors.As(err, &se) {
		s.failErr = err
	} else if s.owed == nil {
		s.owed = err
	}
	return err
}

// failure is the error of a failed fsync, if any.
func (s *boltStore) failure() error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	return s.failErr
}

// owedErr is the failure that made a checkpoint owed, if one is.
func (s *boltStore) owedErr() error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	return s.owed
}

// blocked is why the log may take no record now, if it may not.
func (s *boltStore) blocked() error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	if s.failErr != nil {
		return s.failErr
	}
	return s.owed
}

// payOwed makes the checkpoint that is owed: a clean one if the store
// has left log mode meanwhile (see checkMapRoom), after which bbolt's
// commits are synced again. commitMu is held.
func (s *boltStore) payOwed() error {
	clean := !s.walOn.Load()
	if err := s.checkpointLocked(clean); err != nil {
		return err
	}
	if clean {
		s.db.NoSync = s.opts.NoSync
	}
	return nil
}

// syncError is a failed fsync of the log or the data file (see fail).
type syncError struct{ err error }

func (e *syncError) Error() string { return "fsync: " + e.err.Error() }
func (e *syncError) Unwrap() error { return e.err }

// checkMapRoom leaves log mode when bbolt's map has too little room left
// for the next commit: growing it would wait for the checkpoint's reader.
// If the clean checkpoint that leaves it fails, the next commit must not
// go on: bbolt's commits are not synced until one succeeds (payOwed).
func (s *boltStore) checkMapRoom(recBytes int) error {
	m := mappedSize(s.db)
	if m >= 0 && s.hwm+mapHeadroom+2*int64(recBytes) <= m {
		return nil
	}
	s.walOn.Store(false)
	s.db.NoFreelistSync = false
	s.pending.Wait()
	if err := s.checkpointLocked(true); err != nil {
		return fmt.Errorf("store: leave log mode: %w", err)
	}
	s.db.NoSync = false
	return nil
}

// checkpointLocked makes everything committed durable in the data file
// and writes a log header naming the last commit; records start over.
// Unless clean, a reader at that commit keeps its pages from reuse until
// the next checkpoint. It waits for the syncer first.
func (s *boltStore) checkpointLocked(clean bool) error {
	s.pending.Wait()
	if err := s.failure(); err != nil {
		return err
	}
	if err := s.checkpointData(clean); err != nil {
		return s.fail(fmt.Errorf("store: checkpoint: %w", err))
	}
	s.failMu.Lock()
	owed := s.owed
	s.owed = nil
	s.failMu.Unlock()
	if owed != nil {
		slog.Warn("store: writing again after a failed write", "failed", owed)
	}
	return nil
}

func (s *boltStore) checkpointData(clean bool) error {
	if _, err := s.syncFreelist(); err != nil {
		return err
	}
	if err := s.db.Sync(); err != nil {
		return &syncError{err}
	}
	img, err := readMeta(s.dataFile, s.pageSize, s.lastTxid)
	if err != nil {
		return err
	}
	if binary.NativeEndian.Uint64(img[metaFreelistOff:]) == noFreelist {
		return fmt.Errorf("the meta page of transaction %d has no freelist", s.lastTxid)
	}
	h := walHeader{gen: s.wal.hdr.gen + 1, clean: clean, ino: s.ino, txid: s.lastTxid, pageSize: uint32(s.pageSize), meta: img}
	if err := s.wal.writeHeader(h); err != nil {
		return err
	}
	s.fsyncs.Add(2)
	s.checkpoints.Add(1)
	if s.reader != nil {
		s.reader.Rollback()
		s.reader = nil
	}
	s.sinceCheckpoint, s.logBytes = 0, 0
	if clean {
		return nil
	}
	r, err := s.db.Begin(false)
	if err != nil {
		return err
	}
	if uint64(r.ID()) != s.lastTxid {
		r.Rollback()
		return fmt.Errorf("reader at transaction %d, not %d", r.ID(), s.lastTxid)
	}
	s.reader = r
	return nil
}

// quietCheckpoint checkpoints when commits are in the log and none came
// for checkpointQuiet, so that a quiet store's data file is up to date.
func (s *boltStore) quietCheckpoint() {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if s.closing || s.failure() != nil {
		return
	}
	if s.owedErr() != nil {
		s.payOwed() // a failure is the next write's to report
	} else if s.walOn.Load() && s.sinceCheckpoint > 0 && time.Since(s.lastCommit) >= checkpointQuiet {
		s.checkpointLocked(false)
	}
}
