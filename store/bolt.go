package store

// The bbolt layout:
//
//	meta      format marker; uidvalidity counter; sequence = mailbox IDs
//	domains   domain -> creation time
//	accounts  address -> JSON Account (UsedBytes kept in step with mail)
//	aliases   address or "@domain" -> JSON targets
//	dkim      domain NUL selector -> JSON DKIMKey
//	mail      address -> { mboxes: name -> JSON Mailbox,
//	                       msgs: mailbox ID -> { UID (4 bytes BE) -> Message },
//	                       lapsed: name -> "1", subscribed names deleted (if any) }
//	blobinfo  blob ID (8 bytes BE) -> binary BlobInfo; sequence = blob IDs
//	blobrefs  blob ID -> reference count (4 bytes BE), if over 1 (none: 1)
//	blobdata  blob ID, chunk number (8+4 bytes BE) -> up to ChunkSize bytes
//	queue     entry ID (time-ordered hex) -> JSON QueueEntry
//
// Messages are keyed by mailbox ID, not name, so a rename touches only
// the mboxes records. Group commit is our own committer goroutine rather
// than bbolt's DB.Batch: it holds commitMu across commit and publication
// so that events reach subscribers in commit order, and it adapts how
// long it gathers calls to the number of concurrent writers.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrInUse is returned when something cannot be removed because other
// records still refer to it (a domain with accounts or aliases).
var ErrInUse = errors.New("still in use")

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("store is closed")

// lockTimeout is how long Open waits for another process's lock.
const lockTimeout = time.Second

// errLocked is Open's error when another process holds the store.
func errLocked(path string) error {
	return fmt.Errorf("store: %s: %w (lock not obtained within %v: is posthorn serve running?)", path, ErrLocked, lockTimeout)
}

// formatVersion marks a Posthorn data file in the meta bucket.
const formatVersion = "posthorn-store-1"

// Top-level buckets.
var (
	bucketMeta     = []byte("meta")     // format, counters
	bucketDomains  = []byte("domains")  // domain -> creation time
	bucketAccounts = []byte("accounts") // address -> JSON Account
	bucketAliases  = []byte("aliases")  // address or @domain -> JSON []string
	bucketDKIM     = []byte("dkim")     // domain NUL selector -> JSON DKIMKey
	bucketMail     = []byte("mail")     // address -> {mboxes, msgs}
	bucketBlobInfo = []byte("blobinfo") // id -> encoded BlobInfo
	bucketBlobRefs = []byte("blobrefs") // id -> uint32 reference count, if over 1
	bucketBlobData = []byte("blobdata") // id, chunk number -> bytes
	bucketQueue    = []byte("queue")    // entry ID -> JSON QueueEntry
	bucketSTS      = []byte("sts")      // remote domain -> JSON STSPolicy

	allBuckets = [][]byte{bucketMeta, bucketDomains, bucketAccounts, bucketAliases,
		bucketDKIM, bucketMail, bucketBlobInfo, bucketBlobRefs, bucketBlobData, bucketQueue, bucketSTS}

	keyFormat      = []byte("format")
	keyUIDValidity = []byte("uidvalidity")
	keyMailboxID   = []byte("mailboxid")

	// Per-account sub-buckets of bucketMail.
	bucketMailboxes = []byte("mboxes") // name -> JSON Mailbox
	bucketMessages  = []byte("msgs")   // mailbox ID -> {uid -> message}
)

// maxBatch bounds how many writes share one commit.
const maxBatch = 256

// boltStore is the bbolt implementation of Store.
type boltStore struct {
	db   *bolt.DB
	path string
	opts Options

	calls chan *call     // group commit requests
	quit  chan struct{}  // closed by Close
	wg    sync.WaitGroup // the committer
	once  sync.Once      // Close
	// commitMu orders commits and event publication: events reach
	// subscribers in commit order.
	commitMu    sync.Mutex
	commits     atomic.Uint64 // committed write transactions
	writes      atomic.Uint64 // write calls committed (several per batched commit)
	commitNs    atomic.Int64  // time spent in write transactions, commit included
	subs        subscribers
	queueSeq    atomic.Uint32
	fileSize    int64 // as last known to preallocate; under commitMu
	fsyncs      atomic.Uint64
	checkpoints atomic.Uint64

	// The write-ahead log (wal.go): always open, for its lock and for
	// recovery; commits go through it only in log mode (walOn). Under
	// commitMu unless noted.
	wal      *wal
	walOn    atomic.Bool // commits are logged (else bbolt syncs them)
	dataFile *os.File    // the data file, read-only: meta pages for checkpoints
	ino      uint64
	pageSize int
	reader   *bolt.Tx // at the last checkpoint, while in log mode
	lastTxid uint64
	hwm      int64 // bbolt's high-water mark at the last commit
	// freelistSynced: the last commit wrote bbolt's freelist (see
	// syncFreelist). True at Open, which leaves one written.
	freelistSynced  bool
	lastCommit      time.Time
	sinceCheckpoint int
	logBytes        int64
	closing         bool
	jobs            chan *syncJob  // to the syncer
	syncBusy        atomic.Bool    // the syncer (or commitSolo) is writing the log
	inflight        atomic.Int32   // jobs handed to the syncer, not yet answered
	committerIdle   atomic.Bool    // the committer waits for a first call
	applies         chan soloApply // to the applier (commitSolo)
	solos           atomic.Uint64  // commits made by commitSolo, for tests
	refWritten      func(uint64)   // sees each blob reference record put or deleted, for tests
	syncDone        chan struct{}  // a log write ended (buffered, 1)
	pending         sync.WaitGroup // jobs not yet answered
	replaySkipped   int            // operations of the log skipped at Open (see refused)
	syncWG          sync.WaitGroup // the syncer
	roomFree        atomic.Int64   // bytes free on the file system, as last seen (CheckRoom)
	roomAt          atomic.Int64   // when, in Unix nanoseconds
	pinMu           sync.Mutex
	pins            map[uint64]*blobPin // blobs being read or freed (see blobPin)
	bgFrees         sync.WaitGroup      // doomed blobs being freed after their readers
	failMu          sync.Mutex
	failErr         error // a failed fsync: every write fails from then on (see fail)
	owed            error // a failed write: a checkpoint is owed (see fail)
}

// Open opens (creating if needed) the bbolt store at path. It fails with
// ErrLocked when another process holds the file.
func Open(path string, opts Options) (st Store, err error) {
	if opts.MaxHeaderFields <= 0 {
		opts.MaxHeaderFields = 1000
	}
	if opts.MaxMIMEDepth <= 0 {
		opts.MaxMIMEDepth = 50
	}
	if fi, serr := os.Stat(path); serr == nil && fi.IsDir() {
		return nil, fmt.Errorf("store: %s is a directory, not a data file", path)
	}
	// The log is opened (and its lock taken) whatever the options: a log
	// left by a crash is replayed before anything else reads the file.
	w, err := openWAL(path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if w.hdr.gen == 0 {
				w.remove() // made by this Open, with nothing in it
			}
			w.close()
		}
	}()
	var records [][]byte
	if w.needsRecovery() {
		if records, err = w.records(); err != nil {
			return nil, fmt.Errorf("store: read log %s%s: %w", path, walSuffix, err)
		}
		if err := restoreMeta(path, w.hdr); err != nil {
			return nil, err
		}
	}
	if err := checkTruncated(path); err != nil {
		return nil, err
	}
	logged := !opts.NoSync && !opts.NoWAL
	db, err := openBolt(path, opts, logged)
	if err != nil {
		return nil, err
	}
	if err := initBuckets(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	s := &boltStore{db: db, path: path, opts: opts, calls: make(chan *call), quit: make(chan struct{}), syncDone: make(chan struct{}, 1)}
	if err := s.startLog(w, records, logged); err != nil {
		db.Close()
		if s.dataFile != nil {
			s.dataFile.Close()
		}
		return nil, err
	}
	s.committerIdle.Store(true) // as it is until a first call comes
	s.wg.Add(1)
	go s.committer()
	if err := s.freeDoomed(); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: %s: freeing bodies of expunged messages: %w", path, err)
	}
	return s, nil
}

// openBolt opens the bbolt file. In log mode commits are not synced and
// the file is mapped large, so that a commit never has to remap it while
// the checkpoint's reader is open (see wal.go); if a map that large is
// refused, the default is used and the store leaves log mode when the
// map runs short.
func openBolt(path string, opts Options, logged bool) (db *bolt.DB, err error) {
	// bbolt can panic on some corrupt files instead of returning an error.
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				func() { defer func() { recover() }(); db.Close() }()
			}
			db, err = nil, fmt.Errorf("store: %s is corrupt or not a Posthorn data file: %v", path, r)
		}
	}()
	bo := &bolt.Options{
		Timeout:      lockTimeout,
		NoSync:       opts.NoSync || logged,
		FreelistType: bolt.FreelistMapType,
		// NoFreelistSync stays false: with it, Open rebuilds the freelist
		// by walking the file in a goroutine of bbolt's own, where a
		// corrupt page panics beyond the reach of our recover.
	}
	if logged {
		bo.InitialMmapSize = walMmapSize
	}
	db, err = bolt.Open(path, 0o600, bo)
	if err != nil && logged && !errors.Is(err, berrors.ErrTimeout) && !errors.Is(err, berrors.ErrInvalid) &&
		!errors.Is(err, berrors.ErrVersionMismatch) && !errors.Is(err, berrors.ErrChecksum) {
		bo.InitialMmapSize = 0
		db, err = bolt.Open(path, 0o600, bo)
	}
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, errLocked(path)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("store: %s is corrupt or not a Posthorn data file: %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return db, nil
}

// startLog replays the log's records (after a crash), checkpoints and
// starts the syncer. With logged, the store is in log mode from then on;
// otherwise the header written says the data file is consistent as it is.
func (s *boltStore) startLog(w *wal, records [][]byte, logged bool) error {
	s.wal = w
	var err error
	if s.ino, err = fileIno(s.path); err != nil {
		return fmt.Errorf("store: %s: %w", s.path, err)
	}
	if s.dataFile, err = os.Open(s.path); err != nil {
		return fmt.Errorf("store: %s: %w", s.path, err)
	}
	s.pageSize = s.db.Info().PageSize
	if len(records) > 0 {
		if err := s.replay(records); err != nil {
			return fmt.Errorf("store: %s: replaying the log: %w", s.path, err)
		}
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		s.lastTxid, s.hwm = uint64(tx.ID()), tx.Size()
		return nil
	}); err != nil {
		return err
	}
	if logged && mappedSize(s.db) >= 0 && s.hwm+mapHeadroom <= mappedSize(s.db) {
		s.walOn.Store(true)
	}
	s.freelistSynced = true
	s.commitMu.Lock()
	err = s.checkpointLocked(!s.walOn.Load())
	s.commitMu.Unlock()
	if err != nil {
		return err
	}
	if !s.walOn.Load() && !s.opts.NoSync {
		s.db.NoSync = false
	}
	// Logged commits leave bbolt's freelist unwritten (syncFreelist).
	s.db.NoFreelistSync = s.walOn.Load()
	s.jobs = make(chan *syncJob, 4*maxBatch)
	s.applies = make(chan soloApply, 1)
	if s.walOn.Load() {
		s.syncWG.Add(2)
		go s.syncer()
		go s.applier()
	}
	return nil
}

// initBuckets creates the buckets of a new file and checks the format
// marker of an existing one. A file that has them all is not written to
// (after a crash, recovery must make exactly one commit on the
// checkpoint: see replay).
func initBuckets(db *bolt.DB) error {
	complete := false
	err := db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		if v := meta.Get(keyFormat); string(v) != formatVersion {
			return fmt.Errorf("not a Posthorn data file (format %q)", v)
		}
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return nil
			}
		}
		complete = true
		return nil
	})
	if err != nil || complete {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			if v := meta.Get(keyFormat); string(v) != formatVersion {
				return fmt.Errorf("not a Posthorn data file (format %q)", v)
			}
		} else {
			empty := true
			tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return errors.New("not a Posthorn data file (bbolt file with other buckets)")
			}
		}
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta.Get(keyFormat) == nil {
			return meta.Put(keyFormat, []byte(formatVersion))
		}
		return nil
	})
}

// Close waits for pending writes and closes the file.
func (s *boltStore) Close() error {
	var err error
	s.once.Do(func() {
		s.bgFrees.Wait()
		close(s.quit)
		s.wg.Wait()
		s.commitMu.Lock()
		s.closing = true
		s.pending.Wait()
		close(s.jobs)
		close(s.applies)
		s.syncWG.Wait()
		if s.walOn.Load() || s.owedErr() != nil {
			err = s.checkpointLocked(true)
		}
		s.commitMu.Unlock()
		s.subs.closeAll()
		if s.reader != nil {
			s.reader.Rollback()
		}
		if cerr := s.db.Close(); err == nil {
			err = cerr
		}
		s.dataFile.Close()
		// The data file is consistent on its own now: the log goes.
		// (Were the removal lost in a crash, the log's header says
		// clean, and the next Open has nothing to do.)
		if err == nil && s.failure() == nil {
			s.wal.remove()
		}
		s.wal.close()
	})
	return err
}

// Backup writes a consistent copy of the database from one read
// transaction.
//
// The copy is taken at a commit that wrote bbolt's freelist: a copy of
// one that did not (a logged commit, see syncFreelist) would make its
// first Open walk the whole file to rebuild the list, in a goroutine of
// bbolt's own where a corrupt page panics beyond the reach of recover.
// In log mode that is a checkpoint.
func (s *boltStore) Backup(w io.Writer) (int64, error) {
	s.commitMu.Lock()
	var err error
	switch {
	case s.closing || s.failure() != nil:
	case s.owedErr() != nil:
		err = s.payOwed()
	case !s.freelistSynced:
		err = s.checkpointLocked(false)
	}
	var tx *bolt.Tx
	if err == nil {
		tx, err = s.db.Begin(false)
	}
	s.commitMu.Unlock()
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	return tx.WriteTo(w)
}

// Compact copies the store at src into a new, compacted file dst (for
// `posthorn store compact`). src must not be open elsewhere.
func Compact(src, dst string) error {
	// Replay a log left by a crash first: Open does, and Close leaves the
	// file consistent on its own.
	if _, err := os.Stat(src + walSuffix); err == nil {
		st, err := Open(src, Options{})
		if err != nil {
			return err
		}
		if err := st.Close(); err != nil {
			return err
		}
	}
	if err := checkTruncated(src); err != nil {
		return err
	}
	in, err := bolt.Open(src, 0o600, &bolt.Options{Timeout: lockTimeout, ReadOnly: true})
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("store: %s: %w", src, ErrLocked)
	} else if err != nil {
		return fmt.Errorf("store: open %s: %w", src, err)
	}
	defer in.Close()
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("store: compact: %s: %w", dst, ErrExists)
	}
	out, err := bolt.Open(dst, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return fmt.Errorf("store: create %s: %w", dst, err)
	}
	if err := bolt.Compact(out, in, 64<<20); err != nil {
		out.Close()
		os.Remove(dst)
		return fmt.Errorf("store: compact %s: %w", src, err)
	}
	return out.Close()
}

// Stats are counters for benchmarks and metrics.
type Stats struct {
	Commits     uint64        // write transactions committed
	Fsyncs      uint64        // fdatasyncs for them: log writes, checkpoints, bbolt's own
	Checkpoints uint64        // log checkpoints (wal.go)
	Writes      uint64        // write calls those commits carried
	CommitTime  time.Duration // total time in write transactions, fsyncs included
	FileSize    int64         // bytes of the data file, preallocated tail included
	DataSize    int64         // bytes of the file in use (bbolt's high-water mark)
}

// StatsOf returns the counters of a store opened with Open.
func StatsOf(st Store) (Stats, error) {
	s, ok := st.(*boltStore)
	if !ok {
		return Stats{}, errors.New("store: not a bbolt store")
	}
	var st2 Stats
	st2.Commits = s.commits.Load()
	st2.Fsyncs = s.fsyncs.Load()
	st2.Checkpoints = s.checkpoints.Load()
	st2.Writes = s.writes.Load()
	st2.CommitTime = time.Duration(s.commitNs.Load())
	if fi, err := os.Stat(s.path); err == nil {
		st2.FileSize = fi.Size()
	}
	err := s.db.View(func(tx *bolt.Tx) error { st2.DataSize = tx.Size(); return nil })
	return st2, err
}

// Key encodings: big-endian so that bbolt's byte order is numeric order.

func u64Key(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func uidKey(uid uint32) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, uid)
	return b
}

func chunkKey(id uint64, n uint32) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint64(b, id)
	binary.BigEndian.PutUint32(b[8:], n)
	return b
}
