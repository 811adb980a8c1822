package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"reflect"
	"sync"
	"syscall"
	"time"
	"unsafe"

	bolt "go.etcd.io/bbolt"
)

// Write-ahead log.
//
// bbolt makes a commit durable with two fdatasyncs: the data pages, then
// the meta page that points at them. With the log, the appends that make
// up nearly all of a mail server's writes (Append, AppendMany, Deliver)
// are durable with one: each group commit is applied to bbolt without
// syncing it, its operations are written to the log as one record, and
// the log is fdatasynced before any caller is answered. The log file is
// written over in place, in blocks that were written with zeros before,
// so that its fdatasync carries no file-system metadata. A group's record
// is written and fdatasynced while the group is applied (its operations
// and transaction id are known before), and its callers are answered
// once both are done: the syncer writes the record while the committer
// applies the group, or, for a lone writer, the writer writes its own
// record while the applier applies it (commitSolo). An operation refused
// (no such mailbox, over quota) writes nothing, and its transaction
// commits the rest: at replay it is refused again and skipped. A record
// whose transaction fails is taken back before the next is written
// (wal.unwrite). Logged commits leave bbolt's freelist unwritten, and a
// checkpoint writes it first (syncFreelist).
//
// Every so often (checkpointCommits commits, checkpointBytes of log, or
// checkpointPending pages held from reuse: see canLog; a second of quiet,
// before any write that is not logged, and at Close) a checkpoint
// fdatasyncs the bbolt file and writes a new log header naming
// the checkpoint: its transaction id and a copy of its meta page. Records
// after it belong to the new header's generation.
//
// After a crash, the bbolt file holds the checkpoint's pages intact, but
// perhaps torn writes of later transactions, including a newer meta page.
// Open therefore writes the checkpoint's meta page back into both meta
// slots, opens bbolt at the checkpoint, and replays the log's records of
// that generation in order, re-running the same operations on the same
// state (they are deterministic: dates and parse limits are in the
// record, UIDs and blob ids come from the state). Then it checkpoints.
//
// The checkpoint's pages are intact because, until the next checkpoint
// is durable, a read transaction at the checkpoint stays open: bbolt
// never reuses a page that an open reader can see, so the unsynced
// transactions after it write only to other pages. That reader also
// holds bbolt's mmap lock, and a write that needs a larger map would wait
// for it forever; the file is mapped 1 TiB large (address space only),
// and before each commit the room left in the map is checked: with too
// little, the store checkpoints and leaves log mode for bbolt's own
// synced commits for the rest of the run.
//
// A write over maxLogged bytes, and every write that is not an append
// (flags, expunge, mailbox and account changes, the queue), is made
// durable by a checkpoint instead: two fdatasyncs, as bbolt's own commit.
//
// A reader can see a logged commit from the moment it is applied, a log
// fdatasync (well under a millisecond) before it is durable; bbolt
// without the log has the same window between its meta page write and
// fdatasync. A crash inside it loses a write that was never acknowledged
// but that a session may have seen.
//
// The log grows before a commit is applied (reserveLog), so a full disk
// fails the commit before anything happens. A write of the log or a
// checkpoint that fails otherwise, for any cause but an fsync's, leaves a
// checkpoint owed: the log takes no record, and every write fails, until
// one succeeds; then the store goes on. A failed fsync fails every write
// until a restart recovers. See fail.
//
// The log file also carries the lock that keeps a second process off the
// store while recovery rewrites the meta page, and the data file's inode,
// so that a log is never applied to a file that replaced the one it was
// written for. A clean Close checkpoints and removes the log.
const (
	walSuffix        = "-wal"
	walMagic         = "PHWAL001"
	walSlotSize      = 4096
	walDataStart     = 2 * walSlotSize
	walRecHeaderSize = 24
	walMetaImage     = 128 // bytes of bbolt's meta page kept: page header and meta
	walGrowMin       = 1 << 20

	// With a checkpoint every 64 commits, a lone IMAP APPEND into a
	// 1.6 GB store spent a third of its time waiting for them: a 20 ms
	// fdatasync of the ~900 pages its commits had written all over the
	// file. Every 1024 commits, with the pages reused meanwhile, it went
	// from 870-900 to 1,130-1,230 APPENDs a second.
	checkpointCommits = 1024
	checkpointBytes   = 32 << 20
	checkpointPending = 512 // pages held from reuse (see canLog): 2 MiB

	walMmapSize  = 1 << 40
	pageHdrSize  = 16
	metaMagicOff = pageHdrSize
	metaTxidOff  = pageHdrSize + 48
	// metaFreelistOff is where the meta names the freelist's page, or
	// noFreelist (bbolt's PgidNoFreelist) if its commit wrote none.
	metaFreelistOff = pageHdrSize + 32
	noFreelist      = ^uint64(0)
	boltMagic       = 0xED0CDAED
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// Variables for tests.
var (
	// checkpointQuiet is how long without commits makes a checkpoint.
	checkpointQuiet = time.Second
	// mapHeadroom is the room a commit needs in bbolt's map, besides
	// twice its record, for the store to stay in log mode.
	mapHeadroom int64 = 256 << 20
	// walGrowStep is how much the log grows by when it can.
	walGrowStep int64 = 16 << 20
)

// walHeader is one of the log's two header slots.
type walHeader struct {
	gen      uint64
	clean    bool // the data file is consistent as it is: nothing to restore
	ino      uint64
	txid     uint64 // of the checkpoint
	pageSize uint32
	meta     [walMetaImage]byte // the checkpoint's meta page, from its start
}

func (h *walHeader) encode() []byte {
	b := make([]byte, 0, 200)
	b = append(b, walMagic...)
	b = binary.LittleEndian.AppendUint64(b, h.gen)
	if h.clean {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.LittleEndian.AppendUint32(b, h.pageSize)
	b = binary.LittleEndian.AppendUint64(b, h.ino)
	b = binary.LittleEndian.AppendUint64(b, h.txid)
	b = append(b, h.meta[:]...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32c))
}

func decodeWALHeader(b []byte) (walHeader, bool) {
	var h walHeader
	const n = 8 + 8 + 1 + 4 + 8 + 8 + walMetaImage
	if len(b) < n+4 || string(b[:8]) != walMagic {
		return h, false
	}
	if crc32.Checksum(b[:n], crc32c) != binary.LittleEndian.Uint32(b[n:]) {
		return h, false
	}
	h.gen = binary.LittleEndian.Uint64(b[8:])
	h.clean = b[16] == 1
	h.pageSize = binary.LittleEndian.Uint32(b[17:])
	h.ino = binary.LittleEndian.Uint64(b[21:])
	h.txid = binary.LittleEndian.Uint64(b[29:])
	copy(h.meta[:], b[37:n])
	return h, true
}

// wal is the open log. Its fields are the committer's (under commitMu),
// except off, size and buf, which belong to the syncer while it has
// records to write (boltStore.pending counts them). commitSolo writes
// records only when the syncer has none, under commitMu.
type wal struct {
	f    *os.File
	name string
	hdr  walHeader // the latest durable header
	off  int64     // where the next record goes
	size int64     // bytes of the file written (zeros or records)
	// reserved is where the records handed to the syncer end, off once
	// they are written (see boltStore.reserveLog). The committer's.
	reserved int64
	buf      []byte
}

// openWAL opens (creating) the log of the data file at path and takes
// its lock, waiting up to lockTimeout. The log is removed when the store
// closes cleanly, so a lock obtained on a file no longer at its path
// (removed by the holder meanwhile) is retried on the new one.
func openWAL(path string) (*wal, error) {
	name := path + walSuffix
	deadline := time.Now().Add(lockTimeout)
	var f *os.File
	for {
		var err error
		f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("store: open log: %w", err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			if sameFile(f, name) {
				break
			}
			f.Close()
			continue
		}
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("store: lock %s: %w", name, err)
		}
		if time.Now().After(deadline) {
			return nil, errLocked(path)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	w := &wal{f: f, name: name, size: fi.Size(), off: walDataStart, reserved: walDataStart}
	var slots [2 * walSlotSize]byte
	n, _ := f.ReadAt(slots[:], 0)
	for i := range 2 {
		if (i+1)*walSlotSize > n {
			break
		}
		if h, ok := decodeWALHeader(slots[i*walSlotSize : (i+1)*walSlotSize]); ok && h.gen >= w.hdr.gen {
			w.hdr = h
		}
	}
	return w, nil
}

// sameFile tells whether f is still the file at name.
func sameFile(f *os.File, name string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(name)
	return err == nil && os.SameFile(a, b)
}

// remove deletes the log (before close, so that no other process can
// have locked the file that is removed).
func (w *wal) remove() error { return os.Remove(w.name) }

// close releases the lock and closes the file.
func (w *wal) close() error { return w.f.Close() }

// needsRecovery: the data file may hold unsynced writes after the last
// checkpoint, and the log's records since it are to be replayed.
func (w *wal) needsRecovery() bool { return w.hdr.gen > 0 && !w.hdr.clean }

// records reads the records of the header's generation, in order, up to
// the first that is missing, torn or of another generation.
func (w *wal) records() ([][]byte, error) {
	var out [][]byte
	off := int64(walDataStart)
	want := w.hdr.txid + 1
	hdr := make([]byte, walRecHeaderSize)
	for {
		if _, err := w.f.ReadAt(hdr, off); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		n := int64(binary.LittleEndian.Uint32(hdr))
		sum := binary.LittleEndian.Uint32(hdr[4:])
		gen := binary.LittleEndian.Uint64(hdr[8:])
		txid := binary.LittleEndian.Uint64(hdr[16:])
		if n == 0 || gen != w.hdr.gen || txid != want || off+walRecHeaderSize+n > w.size {
			return out, nil
		}
		rec := make([]byte, walRecHeaderSize+n)
		if _, err := w.f.ReadAt(rec, off); err != nil {
			return out, nil
		}
		if crc32.Checksum(rec[8:], crc32c) != sum {
			return out, nil
		}
		out = append(out, rec[walRecHeaderSize:])
		off += walRecHeaderSize + n
		want++
	}
}

// appendRecords writes the records of consecutive transactions after the
// last one written and fdatasyncs the log; syncs counts the fdatasyncs
// (two when the file had to grow first). Only the syncer and commitSolo
// call it (and tests), never at once.
func (w *wal) appendRecords(recs []walRecord) (syncs int, err error) {
	w.buf = w.buf[:0]
	for _, r := range recs {
		start := len(w.buf)
		w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(r.size()))
		w.buf = binary.LittleEndian.AppendUint32(w.buf, 0)
		w.buf = binary.LittleEndian.AppendUint64(w.buf, w.hdr.gen)
		w.buf = binary.LittleEndian.AppendUint64(w.buf, r.txid)
		for _, p := range r.parts {
			w.buf = append(w.buf, p...)
		}
		binary.LittleEndian.PutUint32(w.buf[start+4:], crc32.Checksum(w.buf[start+8:], crc32c))
	}
	end := w.off + int64(len(w.buf))
	if end > w.size { // not reserved (tests)
		if err := w.grow(end, walGrowStep); err != nil {
			return syncs, err
		}
		syncs++
	}
	if failIO != nil {
		if err := failIO("write", w.f); err != nil {
			return syncs, err
		}
	}
	if _, err := w.f.WriteAt(w.buf, w.off); err != nil {
		return syncs, err
	}
	if err := fdatasync(w.f); err != nil {
		return syncs, err
	}
	w.off = end
	if cap(w.buf) > 4<<20 {
		w.buf = nil
	}
	return syncs + 1, nil
}

// unwrite takes back the last n bytes of records written, those of a
// transaction that failed after its record was written: they are written
// over with zeros (not synced: the next record's fdatasync carries them),
// and the next record starts where they did. Only the committer and
// commitSolo call it, under commitMu, when the syncer is idle.
func (w *wal) unwrite(n int64) error {
	if n > w.off-walDataStart {
		return fmt.Errorf("log: taking back %d bytes of %d", n, w.off-walDataStart)
	}
	for off := w.off - n; off < w.off; off += int64(len(zeroBlock)) {
		if _, err := w.f.WriteAt(zeroBlock[:min(int64(len(zeroBlock)), w.off-off)], off); err != nil {
			return err
		}
	}
	w.off -= n
	w.reserved -= n
	return nil
}

// grow writes zeros from the end of the file to past need, so that the
// records written there later overwrite allocated blocks: step more, or,
// if the file system has not that much room, up to need and walGrowMin
// more, or up to need. No record may be in the writing.
func (w *wal) grow(need, step int64) error {
	var err error
	for _, target := range []int64{max(need, w.size) + step, need + walGrowMin, need} {
		if err = writeZeros(w.f, w.size, target); err == nil {
			w.size = target
			return nil
		}
		var se *syncError
		if errors.As(err, &se) {
			return err
		}
		// Give back what the failed attempt took.
		if terr := w.f.Truncate(w.size); terr != nil {
			return err
		}
	}
	return err
}

// writeHeader makes h the log's header: written to the slot the current
// one is not in, then fdatasynced. Records start over after it. The
// record area is written with zeros when the first records need it
// (appendRecords), not here: a store opened for one CLI command and
// closed again never writes it.
func (w *wal) writeHeader(h walHeader) error {
	if w.size < walDataStart {
		if err := writeZeros(w.f, w.size, walDataStart); err != nil {
			return err
		}
		w.size = walDataStart
	}
	slot := int64(h.gen%2) * walSlotSize
	if _, err := w.f.WriteAt(h.encode(), slot); err != nil {
		return err
	}
	if err := fdatasync(w.f); err != nil {
		return err
	}
	w.hdr = h
	w.off, w.reserved = walDataStart, walDataStart
	return nil
}

// writeZeros writes zeros from from to to and fdatasyncs them, so that
// the file system has allocated the blocks before records overwrite them
// (with delayed allocation it would do so at the records' fdatasync).
func writeZeros(f *os.File, from, to int64) error {
	if failIO != nil {
		if err := failIO("zeros", f); err != nil {
			return err
		}
	}
	zeros := zeroBlock[:]
	for off := from; off < to; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), to-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
	}
	return fdatasync(f)
}

// zeroBlock is what writeZeros writes, never written itself. A megabyte
// allocated and cleared per call was a third of writeZeros' CPU (1.6% of
// the server's) under 100 KiB messages, the data file growing 100 MB/s.
var zeroBlock [1 << 20]byte

// failIO, when set by a test, fails the writes of log records ("write"),
// of zeros ("zeros": writeZeros) and the fdatasyncs ("fdatasync") it
// returns an error for, as a disk would.
var failIO func(op string, f *os.File) error

// fdatasync fdatasyncs f; its failure is a syncError (see fail).
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err == nil && failIO != nil {
			err = failIO("fdatasync", f)
		}
		switch err {
		case nil:
			return nil
		case syscall.EINTR:
			continue
		}
		return &syncError{&os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}}
	}
}

// walRecord is the log record of one committed transaction: its
// payload is its parts one after the other (the operations of the calls
// of a group commit, copied only into the log's write buffer).
type walRecord struct {
	txid  uint64
	parts [][]byte
}

func (r walRecord) size() int {
	n := 0
	for _, p := range r.parts {
		n += len(p)
	}
	return n
}

// fileIno is the inode number of the file at path.
func fileIno(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, errors.New("no inode number")
	}
	return st.Ino, nil
}

// readMeta reads the first walMetaImage bytes of the meta page of
// transaction txid. bbolt writes it to slot txid%2, but a file written
// by Tx.WriteTo (a backup) has it in slot 0 with txid-1 in slot 1, so
// both are looked at.
func readMeta(f *os.File, pageSize int, txid uint64) ([walMetaImage]byte, error) {
	var img [walMetaImage]byte
	for _, slot := range []uint64{txid % 2, 1 - txid%2} {
		if _, err := f.ReadAt(img[:], int64(slot)*int64(pageSize)); err != nil {
			return img, err
		}
		if binary.NativeEndian.Uint32(img[metaMagicOff:]) == boltMagic && binary.NativeEndian.Uint64(img[metaTxidOff:]) == txid {
			return img, nil
		}
	}
	return img, fmt.Errorf("meta page of transaction %d not found", txid)
}

// restoreMeta writes the checkpoint's meta page into both meta slots of
// the data file at path and fdatasyncs it, so that bbolt opens at the
// checkpoint.
func restoreMeta(path string, h walHeader) error {
	ino, err := fileIno(path)
	if err != nil {
		return fmt.Errorf("store: %s has a log to replay, but: %w", path, err)
	}
	if ino != h.ino {
		return fmt.Errorf("store: %s%s is the log of another data file (was %s replaced after a crash?); "+
			"move the log away to open the file as it is, losing the deliveries it holds", path, walSuffix, path)
	}
	if binary.NativeEndian.Uint32(h.meta[metaMagicOff:]) != boltMagic || binary.NativeEndian.Uint64(h.meta[metaTxidOff:]) != h.txid {
		return fmt.Errorf("store: %s%s: checkpoint meta page is not valid", path, walSuffix)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("store: restore %s: %w", path, err)
	}
	defer f.Close()
	for slot := range 2 {
		img := h.meta
		binary.NativeEndian.PutUint64(img[0:], uint64(slot)) // the page header's id
		if _, err := f.WriteAt(img[:], int64(slot)*int64(h.pageSize)); err != nil {
			return fmt.Errorf("store: restore %s: %w", path, err)
		}
	}
	if err := fdatasync(f); err != nil {
		return fmt.Errorf("store: restore %s: %w", path, err)
	}
	return nil
}

// mapOffset is the offset of bbolt's DB.datasz (the size mapped), read to
// know whether a commit can grow the file without remapping (which would
// wait for the checkpoint's reader forever). ok is false if bbolt's
// layout changed; TestBoltMapLayout pins it.
var mapOffset = sync.OnceValue(func() (o struct {
	off uintptr
	ok  bool
}) {
	f, ok := reflect.TypeFor[bolt.DB]().FieldByName("datasz")
	if ok && f.Type.Kind() == reflect.Int {
		o.off, o.ok = f.Offset, true
	}
	return o
})

// mappedSize is the size of db's map, or -1 if it cannot be known. Only
// the committer calls it, between transactions (bbolt changes it only
// in a write transaction).
func mappedSize(db *bolt.DB) int64 {
	o := mapOffset()
	if !o.ok {
		return -1
	}
	return int64(*(*int)(unsafe.Add(unsafe.Pointer(db), o.off)))
}

// DiscardLog removes the write-ahead log of the data file at path, and
// with it any writes it holds that the file lacks (after a crash): for a
// data file about to be replaced by another (posthorn restore), which
// the log must not be applied to.
func DiscardLog(path string) error {
	w, err := openWAL(path)
	if err != nil {
		return err
	}
	defer w.close()
	return w.remove()
}
