package store

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// roomTTL is how long a reading of the free space serves: a statfs per
// message was measurable at tens of thousands of appends a second, and
// the reserve (Options.MinFree) absorbs what is written meanwhile.
const roomTTL = 50 * time.Millisecond

// CheckRoom fails with ENOSPC when writing a message of n bytes would
// leave less than Options.MinFree free on the data file's file system.
// The body is counted twice: the log and the data file both take it. A
// file system that cannot be asked is taken to have room.
func (s *boltStore) CheckRoom(n int64) error {
	if s.opts.MinFree <= 0 {
		return nil
	}
	need := s.opts.MinFree + 2*min(max(n, 0), 1<<40) // a client's SIZE= can be anything
	now := time.Now().UnixNano()
	if now-s.roomAt.Load() <= int64(roomTTL) && s.roomFree.Load() >= need {
		return nil
	}
	// Stale, or short: a refusal is worth a fresh look.
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(s.path), &st); err != nil {
		return nil
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	s.roomFree.Store(free)
	s.roomAt.Store(now)
	if free < need {
		return fmt.Errorf("store: %d bytes free on the file system of the data file, %d needed to keep %d in reserve: %w",
			free, need, s.opts.MinFree, &os.PathError{Op: "write", Path: s.path, Err: syscall.ENOSPC})
	}
	return nil
}
