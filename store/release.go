package store

import (
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// ReleaseMapped drops the database pages this process has mapped (bbolt
// reads through a shared, read-only mmap of the file). They stay in the
// kernel's page cache, so the next read finds them there with a minor
// fault; the process just stops being charged for them. After a load
// that read a large part of the file (a POP3 download of everything, a
// full sync) an idle server otherwise shows the whole file as resident.
//
// It runs inside a read transaction: bbolt remaps the file only under
// its mmap lock, which a read transaction holds shared, so the range
// advised is the current mapping and nothing else.
func (s *boltStore) ReleaseMapped() error {
	return s.view(func(tx *bolt.Tx) error {
		info := s.db.Info()
		size := uintptr(tx.Size())
		if info.Data == 0 || size == 0 {
			return nil
		}
		// MADV_DONTNEED on a MAP_SHARED file mapping never loses data: the
		// pages are read again from the page cache (or the file).
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, info.Data, size, unix.MADV_DONTNEED)
		if errno != 0 {
			return errno
		}
		return nil
	})
}
