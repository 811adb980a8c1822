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
	if free, ok := s.freeBytes(need); ok && free < need {
		return fmt.Errorf("store: %d bytes free on the file system of the data file, %d needed to keep %d in reserve: %w",
			free, need, s.opts.MinFree, &os.PathError{Op: "write", Path: s.path, Err: syscall.ENOSPC})
	}
	return nil
}

// spareRoom tells whether n bytes more than the store needs now (the
// files grown ahead of use) fit above the reserve: the store's own
// growth must not take the room kept for mail, nor, on a file system
// shared with others, the last of it.
func (s *boltStore) spareRoom(n int64) bool {
	if s.opts.MinFree <= 0 {
		return true
	}
	free, ok := s.freeBytes(s.opts.MinFree + n)
	return !ok || free >= s.opts.MinFree+n
}

// freeBytes is the room on the data file's file system: the last reading
// if it is under roomTTL old and shows need, else a new one (a refusal is
// worth a fresh look). ok is false if the file system cannot be asked.
func (s *boltStore) freeBytes(need int64) (free int64, ok bool) {
	now := time.Now().UnixNano()
	if now-s.roomAt.Load() <= int64(roomTTL) {
		if free := s.roomFree.Load(); free >= need {
			return free, true
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(s.path), &st); err != nil {
		return 0, false
	}
	free = int64(st.Bavail) * int64(st.Bsize)
	s.roomFree.Store(free)
	s.roomAt.Store(now)
	return free, true
}
