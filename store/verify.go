package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Offsets in bbolt's meta (after the page header): see common.Meta.
const (
	metaPageSizeOff = pageHdrSize + 8
	metaPgidOff     = pageHdrSize + 40
	metaChecksumOff = pageHdrSize + 56
)

// fileMeta is what checkTruncated reads of one of bbolt's meta pages.
type fileMeta struct {
	pageSize int64
	pages    int64 // the high-water mark, in pages
	txid     uint64
	valid    bool
}

// readFileMeta reads the meta page at off; valid is false unless it has
// bbolt's magic and a right checksum.
func readFileMeta(f *os.File, off int64) fileMeta {
	var b [pageHdrSize + 64]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return fileMeta{}
	}
	if binary.NativeEndian.Uint32(b[metaMagicOff:]) != boltMagic {
		return fileMeta{}
	}
	h := fnv.New64a()
	h.Write(b[pageHdrSize:metaChecksumOff])
	if h.Sum64() != binary.NativeEndian.Uint64(b[metaChecksumOff:]) {
		return fileMeta{}
	}
	return fileMeta{
		pageSize: int64(binary.NativeEndian.Uint32(b[metaPageSizeOff:])),
		pages:    int64(binary.NativeEndian.Uint64(b[metaPgidOff:])),
		txid:     binary.NativeEndian.Uint64(b[metaTxidOff:]),
		valid:    true,
	}
}

// newestMeta reads both of bbolt's meta pages of f and returns the valid
// one of the latest transaction (valid is false if neither is).
func newestMeta(f *os.File) fileMeta {
	m := readFileMeta(f, 0)
	second := int64(os.Getpagesize())
	if m.valid {
		second = m.pageSize
	}
	if m1 := readFileMeta(f, second); m1.valid && (!m.valid || m1.txid > m.txid) {
		m = m1
	}
	return m
}

// UsedBytes is how much of the data file at path its pages take (bbolt's
// high-water mark, from its newest meta page): the file itself may be
// longer, preallocated or grown ahead.
func UsedBytes(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	m := newestMeta(f)
	if !m.valid || m.pageSize <= 0 {
		return 0, fmt.Errorf("store: %s has no valid meta page", path)
	}
	return m.pages * m.pageSize, nil
}

// checkTruncated fails for a data file shorter than its own meta page
// says it is. bbolt maps the file and reads its pages from the map: one
// past the end of the file is a SIGBUS, which no recover catches, where a
// clear error is due. A file with no valid meta page is bbolt's to refuse
// (or, empty, to set up).
func checkTruncated(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // Open reports it, or creates the file
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return nil
	}
	m := newestMeta(f)
	if !m.valid || m.pageSize <= 0 {
		return nil
	}
	if need := m.pages * m.pageSize; need > fi.Size() {
		return fmt.Errorf("store: %s is truncated: %d bytes, where its pages take %d", path, fi.Size(), need)
	}
	return nil
}

// Verify checks that the file at path is a whole Posthorn data file (a
// backup about to be restored) without creating or changing anything: it
// exists, is not empty or truncated, opens read-only, passes bbolt's
// consistency check of every page, and has the format marker and the
// buckets of a store.
func Verify(path string) (err error) {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return fmt.Errorf("store: %w", err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("store: %s is not a regular file", path)
	case fi.Size() == 0:
		return fmt.Errorf("store: %s is empty", path)
	}
	if err := checkTruncated(path); err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store: %s is corrupt or not a Posthorn data file: %v", path, r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, ReadOnly: true})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return errLocked(path)
	case err != nil:
		return fmt.Errorf("store: %s is corrupt or not a Posthorn data file: %w", path, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return fmt.Errorf("store: %s is not a Posthorn data file (no meta bucket)", path)
		}
		if v := meta.Get(keyFormat); string(v) != formatVersion {
			return fmt.Errorf("store: %s is not a Posthorn data file (format %q)", path, v)
		}
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("store: %s is not a whole Posthorn data file (no %s bucket)", path, name)
			}
		}
		var first error
		for err := range tx.Check() { // read to the end: the check runs in a goroutine
			if first == nil {
				first = fmt.Errorf("store: %s is corrupt: %w", path, err)
			}
		}
		return first
	})
}
