package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Records read often (messages, blob infos) use a compact hand-written
// binary encoding: a header sync decodes thousands of them, and a
// reflection-based decoder would dominate its cost. Rarely read records
// (accounts, mailboxes, queue entries) are JSON.

const (
	messageVersion  = 1
	blobInfoVersion = 1
)

var errCorrupt = errors.New("store: corrupt record")

// enc appends primitives to a buffer.
type enc struct{ b []byte }

func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) bytes(p []byte)   { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *enc) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) boolean(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.boolean(false)
		return
	}
	e.boolean(true)
	_, off := t.Zone()
	e.varint(t.Unix())
	e.uvarint(uint64(t.Nanosecond()))
	e.varint(int64(off))
}

func (e *enc) strs(l []string) {
	e.uvarint(uint64(len(l)))
	for _, s := range l {
		e.str(s)
	}
}

func (e *enc) params(m map[string]string) {
	if len(m) == 0 {
		e.uvarint(0)
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	e.uvarint(uint64(len(keys)) + 1)
	for _, k := range keys {
		e.str(k)
		e.str(m[k])
	}
}

// dec reads primitives; the first error sticks and later reads return
// zero values.
type dec struct {
	b []byte
	s string // the whole record as one string: str() slices it, so a
	// record costs one string allocation, not one per field
	err error
}

func newDec(v []byte) dec { return dec{b: v, s: string(v)} }

func (d *dec) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) byte1() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *dec) boolean() bool { return d.byte1() == 1 }

// count reads a length that must fit in the remaining bytes (each item
// takes at least one byte), so a corrupt record cannot allocate much.
func (d *dec) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *dec) bytes() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *dec) str() string {
	n := d.count()
	if d.err != nil || n == 0 {
		return ""
	}
	off := len(d.s) - len(d.b)
	d.b = d.b[n:]
	return d.s[off : off+n]
}

func (d *dec) time() time.Time {
	if !d.boolean() {
		return time.Time{}
	}
	sec, nsec, off := d.varint(), d.uvarint(), d.varint()
	if d.err != nil {
		return time.Time{}
	}
	loc := time.UTC
	if off != 0 {
		loc = time.FixedZone("", int(off))
	}
	return time.Unix(sec, int64(nsec)).In(loc)
}

func (d *dec) strs() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = d.str()
	}
	return l
}

func (d *dec) params() map[string]string {
	n := d.count()
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n-1)
	for i := 0; i < n-1 && d.err == nil; i++ {
		k := d.str()
		m[k] = d.str()
	}
	return m
}

// encodeMessage encodes a message index entry; the UID is the key.
func encodeMessage(m Message) []byte {
	e := enc{b: make([]byte, 0, 48+len(m.Prefix))}
	e.b = append(e.b, messageVersion)
	e.varint(m.Size)
	e.time(m.InternalDate)
	e.uvarint(m.ModSeq)
	e.uvarint(m.BlobID)
	e.strs(m.Flags)
	e.bytes(m.Prefix)
	return e.b
}

func decodeMessage(k, v []byte) (Message, error) {
	if len(k) != 4 {
		return Message{}, fmt.Errorf("%w: message key %x", errCorrupt, k)
	}
	d := newDec(v)
	if d.byte1() != messageVersion {
		return Message{}, fmt.Errorf("%w: message version", errCorrupt)
	}
	m := Message{UID: binary.BigEndian.Uint32(k)}
	m.Size = d.varint()
	m.InternalDate = d.time()
	m.ModSeq = d.uvarint()
	m.BlobID = d.uvarint()
	m.Flags = d.strs()
	if p := d.bytes(); len(p) > 0 {
		m.Prefix = append([]byte(nil), p...)
	}
	if d.err != nil {
		return Message{}, fmt.Errorf("message %d: %w", m.UID, d.err)
	}
	return m, nil
}
