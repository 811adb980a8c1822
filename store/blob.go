package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// putBlob stores a body in chunks with its parsed info and refs
// references, in the caller's transaction. The ID comes from the
// transaction, so a retried batch function gets a fresh one.
func (t *txn) putBlob(body []byte, info BlobInfo, refs uint32) (uint64, error) {
	infos := t.tx.Bucket(bucketBlobInfo)
	id, err := infos.NextSequence()
	if err != nil {
		return 0, err
	}
	data := t.tx.Bucket(bucketBlobData)
	data.FillPercent = 1 // keys only grow: pack pages full
	for i := 0; i*ChunkSize < len(body); i++ {
		end := min((i+1)*ChunkSize, len(body))
		if err := data.Put(chunkKey(id, uint32(i)), body[i*ChunkSize:end]); err != nil {
			return 0, err
		}
	}
	info.ID = id
	infos.FillPercent = 1
	if err := infos.Put(u64Key(id), encodeBlobInfo(info)); err != nil {
		return 0, err
	}
	return id, t.setBlobRefs(id, refs)
}

// blobRefs is a blob's reference count: its record in blobrefs, or 1
// for a blob without one (a body stored once, as nearly all are: not
// writing the record saves a page or two per commit), or 0 for no blob.
func (t *txn) blobRefs(id uint64) uint32 {
	v := t.tx.Bucket(bucketBlobRefs).Get(u64Key(id))
	if len(v) == 4 {
		return binary.BigEndian.Uint32(v)
	}
	if t.tx.Bucket(bucketBlobInfo).Get(u64Key(id)) != nil {
		return 1
	}
	return 0
}

// setBlobRefs sets a blob's count, n >= 1: 1 is no record.
func (t *txn) setBlobRefs(id uint64, n uint32) error {
	refs := t.tx.Bucket(bucketBlobRefs)
	if t.s != nil && t.s.refWritten != nil {
		t.s.refWritten(id)
	}
	if n == 1 {
		return refs.Delete(u64Key(id)) // a missing key: nothing written
	}
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, n)
	return refs.Put(u64Key(id), v)
}

// addBlobRef records one more reference (a copy).
func (t *txn) addBlobRef(id uint64) error {
	n := t.blobRefs(id)
	if n == 0 {
		return fmt.Errorf("store: blob %d: %w", id, ErrNotFound)
	}
	return t.setBlobRefs(id, n+1)
}

// releaseBlob drops one reference; the last one frees the chunks and the
// info (or dooms the blob while a reader has it: see blobPin).
func (t *txn) releaseBlob(id uint64) error {
	n := t.blobRefs(id)
	if n > 1 {
		return t.setBlobRefs(id, n-1)
	}
	return t.releaseLast(id)
}

// BlobInfo returns what was parsed of a body when it was stored.
func (s *boltStore) BlobInfo(id uint64) (BlobInfo, error) {
	var bi BlobInfo
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBlobInfo).Get(u64Key(id))
		if v == nil {
			return fmt.Errorf("blob %d: %w", id, ErrNotFound)
		}
		var err error
		bi, err = decodeBlobInfo(id, v)
		return err
	})
	return bi, err
}

// BlobInfos returns the infos of many blobs in one read transaction;
// missing ones are left out of the map.
func (s *boltStore) BlobInfos(ids []uint64) (map[uint64]BlobInfo, error) {
	out := make(map[uint64]BlobInfo, len(ids))
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBlobInfo)
		for _, id := range ids {
			if _, ok := out[id]; ok {
				continue
			}
			v := b.Get(u64Key(id))
			if v == nil {
				continue
			}
			bi, err := decodeBlobInfo(id, v)
			if err != nil {
				return err
			}
			out[id] = bi
		}
		return nil
	})
	return out, err
}

// OpenBlob opens a body for reading.
func (s *boltStore) OpenBlob(id uint64) (Blob, error) {
	return s.openMessageBlob(id, nil)
}

// OpenMessage opens a message's bytes: its Prefix, then its blob.
func (s *boltStore) OpenMessage(m Message) (Blob, error) {
	return s.openMessageBlob(m.BlobID, m.Prefix)
}

func (s *boltStore) openMessageBlob(id uint64, prefix []byte) (Blob, error) {
	// Pinned first: a transaction that frees the blob after this view
	// then dooms it instead (see blobPin).
	if err := s.pin(id); err != nil {
		return nil, err
	}
	var size int64
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBlobInfo).Get(u64Key(id))
		if v == nil {
			return fmt.Errorf("blob %d: %w", id, ErrNotFound)
		}
		if refs := tx.Bucket(bucketBlobRefs).Get(u64Key(id)); len(refs) == 4 && binary.BigEndian.Uint32(refs) == 0 {
			return fmt.Errorf("blob %d: %w", id, ErrNotFound) // doomed: no message has it
		}
		var err error
		size, _, err = blobInfoLens(id, v)
		return err
	})
	if err != nil {
		s.unpin(id)
		return nil, err
	}
	return &blobReader{s: s, id: id, prefix: prefix, size: int64(len(prefix)) + size, cached: -1}, nil
}

// Headers returns each message's header in one read transaction, copying
// only the header bytes out of the first chunk(s). All headers of a call
// share one backing array, so a batch costs a couple of allocations.
func (s *boltStore) Headers(msgs []Message) ([][]byte, error) {
	out := make([][]byte, len(msgs))
	ends := make([]int, len(msgs))
	var buf []byte
	err := s.view(func(tx *bolt.Tx) error {
		infos := tx.Bucket(bucketBlobInfo)
		data := tx.Bucket(bucketBlobData)
		for i, m := range msgs {
			ends[i] = -1
			v := infos.Get(u64Key(m.BlobID))
			if v == nil {
				continue
			}
			size, hlen, err := blobInfoLens(m.BlobID, v)
			if err != nil {
				return err
			}
			if hlen < 0 || hlen > size {
				return fmt.Errorf("store: blob %d: %w: header length %d of %d", m.BlobID, errCorrupt, hlen, size)
			}
			buf = append(buf, m.Prefix...)
			for c := uint32(0); hlen > 0; c++ {
				chunk := data.Get(chunkKey(m.BlobID, c))
				if len(chunk) == 0 {
					return fmt.Errorf("store: blob %d chunk %d: %w: missing", m.BlobID, c, errCorrupt)
				}
				n := min(hlen, int64(len(chunk)))
				buf = append(buf, chunk[:n]...)
				hlen -= n
			}
			ends[i] = len(buf)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	start := 0
	for i, end := range ends {
		if end < 0 {
			continue
		}
		out[i] = buf[start:end:end]
		start = end
	}
	return out, nil
}

// blobReader reads a body chunk by chunk, each chunk in its own short read
// transaction: no transaction stays open while the caller waits on a
// slow client. The blob stays until Close, even if its last message is
// expunged meanwhile (see blobPin).
type blobReader struct {
	s      *boltStore
	id     uint64
	prefix []byte
	size   int64

	mu     sync.Mutex
	off    int64  // for Read and Seek
	cached int64  // chunk number in chunk, -1 for none
	chunk  []byte // copy of the last chunk read
	closed bool
}

func (r *blobReader) Size() int64 { return r.size }
func (r *blobReader) Close() error {
	r.mu.Lock()
	closed := r.closed
	r.closed = true
	r.mu.Unlock()
	if !closed {
		r.s.unpin(r.id)
	}
	return nil
}

func (r *blobReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	off := r.off
	r.mu.Unlock()
	n, err := r.ReadAt(p, off)
	r.mu.Lock()
	r.off = off + int64(n)
	r.mu.Unlock()
	if n > 0 && err == io.EOF {
		err = nil
	}
	return n, err
}

func (r *blobReader) Seek(offset int64, whence int) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.size + offset
	default:
		return 0, errors.New("store: blob seek: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("store: blob seek: negative position")
	}
	r.off = abs
	return abs, nil
}

// ReadAt reads across chunk boundaries; it is safe for parallel use.
func (r *blobReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("store: blob read: negative offset")
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.size {
			return n, io.EOF
		}
		if pos < int64(len(r.prefix)) {
			n += copy(p[n:], r.prefix[pos:])
			continue
		}
		bpos := pos - int64(len(r.prefix))
		chunk, err := r.loadChunk(bpos / ChunkSize)
		if err != nil {
			return n, err
		}
		in := bpos % ChunkSize
		if in >= int64(len(chunk)) {
			return n, fmt.Errorf("store: blob %d: %w: short chunk", r.id, errCorrupt)
		}
		n += copy(p[n:], chunk[in:])
	}
	return n, nil
}

// loadChunk returns chunk i, from the cache or from one read transaction.
func (r *blobReader) loadChunk(i int64) ([]byte, error) {
	r.mu.Lock()
	if r.cached == i {
		c := r.chunk
		r.mu.Unlock()
		return c, nil
	}
	r.mu.Unlock()
	var c []byte
	err := r.s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBlobData).Get(chunkKey(r.id, uint32(i)))
		if v == nil {
			return fmt.Errorf("store: blob %d chunk %d: %w", r.id, i, ErrNotFound)
		}
		c = append([]byte(nil), v...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.cached, r.chunk = i, c
	r.mu.Unlock()
	return c, nil
}
