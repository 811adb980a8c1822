package store

// The bbolt layout:
//
//	meta      format marker; uidvalidity counter; sequence = mailbox IDs
//	domains   domain -> creation time
//	accounts  address -> JSON Account (UsedBytes kept in step with mail)
//	aliases   address or "@domain" -> JSON targets
//	dkim      domain NUL selector -> JSON DKIMKey
//	mail      address -> { mboxes: name -> JSON Mailbox,
//	                       msgs: mailbox ID -> { UID (4 bytes BE) -> Message } }
//	blobinfo  blob ID (8 bytes BE) -> binary BlobInfo; sequence = blob IDs
//	blobrefs  blob ID -> reference count (4 bytes BE)
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
	bucketBlobRefs = []byte("blobrefs") // id -> uint32 reference count
	bucketBlobData = []byte("blobdata") // id, chunk number -> bytes
	bucketQueue    = []byte("queue")    // entry ID -> JSON QueueEntry

	allBuckets = [][]byte{bucketMeta, bucketDomains, bucketAccounts, bucketAliases,
		bucketDKIM, bucketMail, bucketBlobInfo, bucketBlobRefs, bucketBlobData, bucketQueue}

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
	commitMu sync.Mutex
	commits  atomic.Uint64 // committed write transactions
	writes   atomic.Uint64 // write calls committed (several per batched commit)
	commitNs atomic.Int64  // time spent in write transactions, commit included
	subs     subscribers
	queueSeq atomic.Uint32
	fileSize int64 // as last known to preallocate; under commitMu
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
	var db *bolt.DB
	// bbolt can panic on some corrupt files instead of returning an error.
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				func() { defer func() { recover() }(); db.Close() }()
			}
			st, err = nil, fmt.Errorf("store: %s is corrupt or not a Posthorn data file: %v", path, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      lockTimeout,
		NoSync:       opts.NoSync,
		FreelistType: bolt.FreelistMapType,
		// NoFreelistSync stays false: with it, Open rebuilds the freelist
		// by walking the file in a goroutine of bbolt's own, where a
		// corrupt page panics beyond the reach of our recover.
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("store: %s: %w (lock not obtained within %v: is posthorn serve running?)", path, ErrLocked, lockTimeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("store: %s is corrupt or not a Posthorn data file: %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := initBuckets(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	s := &boltStore{db: db, path: path, opts: opts, calls: make(chan *call), quit: make(chan struct{})}
	s.wg.Add(1)
	go s.committer()
	return s, nil
}

// initBuckets creates the buckets of a new file and checks the format
// marker of an existing one.
func initBuckets(db *bolt.DB) error {
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
		close(s.quit)
		s.wg.Wait()
		s.subs.closeAll()
		err = s.db.Close()
	})
	return err
}

// Backup writes a consistent copy of the database from one read
// transaction.
func (s *boltStore) Backup(w io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Compact copies the store at src into a new, compacted file dst (for
// `posthorn store compact`). src must not be open elsewhere.
func Compact(src, dst string) error {
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
	Commits    uint64        // write transactions committed (bbolt: two fdatasyncs each unless NoSync)
	Writes     uint64        // write calls those commits carried
	CommitTime time.Duration // total time in write transactions, fsyncs included
	FileSize   int64         // bytes of the data file, preallocated tail included
	DataSize   int64         // bytes of the file in use (bbolt's high-water mark)
}

// StatsOf returns the counters of a store opened with Open.
func StatsOf(st Store) (Stats, error) {
	s, ok := st.(*boltStore)
	if !ok {
		return Stats{}, errors.New("store: not a bbolt store")
	}
	var st2 Stats
	st2.Commits = s.commits.Load()
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
