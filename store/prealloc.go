package store

import (
	"os"
)

// Preallocation. bbolt grows its file with ftruncate, which leaves a
// sparse tail: every commit that writes a page there makes the file
// system allocate blocks, and its fdatasync must then commit file-system
// metadata (the ext4 journal) besides the data. A commit of overwrites
// in allocated blocks syncs data only and is markedly cheaper. So after a
// commit that brings the high-water mark within preallocMargin of the
// end of the file, the file is extended by preallocStep of written
// zeros. bbolt's grow compares with the real file size and leaves a
// larger file alone. This runs under commitMu, when no bbolt write is in
// progress, so it never races with a page write.
const (
	preallocMargin = 4 << 20
	preallocStep   = 16 << 20
)

// preallocate extends the file if the high-water mark is near its end,
// and the file system has room for it above the reserve (Options.MinFree:
// on a small disk the tail took the last free space, and the room freed
// by the operator was taken again at the next commit). Errors are
// ignored: preallocation is an optimization, and bbolt grows the file
// itself when needed.
func (s *boltStore) preallocate() {
	if s.opts.NoSync {
		return
	}
	hwm := s.hwm // as the last commit left it
	if s.fileSize == 0 {
		// First commit since Open: a previous run may have left a
		// preallocated tail already; extend from what is there.
		if fi, err := os.Stat(s.path); err == nil {
			s.fileSize = fi.Size()
		}
	}
	if s.fileSize-hwm > preallocMargin || !s.spareRoom(preallocStep) {
		return
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return
	}
	size := fi.Size()
	target := max(size, hwm) + preallocStep
	if err := writeZeros(f, size, target); err != nil {
		// Give back what the failed extension took (a full disk):
		// bbolt's pages end at or before size.
		f.Truncate(size)
		return
	}
	s.fileSize = target
}
