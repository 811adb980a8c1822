package imap

import (
	"strconv"
	"sync/atomic"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
)

// The flags resync: Thunderbird, on opening a folder it has synced
// before, asks for the flags of every message (UID FETCH 1:* (FLAGS)).
// Through imapserver's encoder each of those responses costs a dozen
// allocations, two write-deadline changes and a flush; for 10,000
// messages that was most of the command. fetchFast writes such responses
// itself, byte for byte what the encoder would write, in blocks of whole
// lines on the connection imapserver writes to.
//
// This is safe because imapserver flushes after every response it writes
// (its buffer is empty when a command handler runs and between its
// responses) and, while this command runs, nothing else on this
// connection writes but a BYE at shutdown, which guardConn's write lock
// keeps between two blocks of whole lines.

// fastWriteTimeout is the write deadline of a block, as imapserver's per
// response.
const fastWriteTimeout = 30 * time.Second

// fastBlock is how many bytes of responses go to the connection at once.
const fastBlock = 16 * 1024

// noFastFetch turns fetchFast off, for tests that compare its responses
// with the encoder's.
var noFastFetch atomic.Bool

// fastItems reports whether a FETCH asks only for items fetchFast writes:
// UID, FLAGS and RFC822.SIZE.
func fastItems(o *imapv2.FetchOptions) bool {
	return !noFastFetch.Load() && (o.UID || o.Flags || o.RFC822Size) &&
		o.BodyStructure == nil && !o.Envelope && !o.InternalDate && !o.ModSeq && o.ChangedSince == 0 &&
		len(o.BodySection)+len(o.BinarySection)+len(o.BinarySectionSize) == 0
}

// fetchFast writes the FETCH responses of entries for the items of
// fastItems to gc. A message with a flag the encoder would refuse goes
// through f (imapserver's encoder) instead, so that it fails the same way.
func (ss *session) fetchFast(gc *guardConn, f *fetcher, entries []entry) error {
	o := f.opts
	buf := make([]byte, 0, min(fastBlock, 64*len(entries))+512)
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		gc.SetWriteDeadline(time.Now().Add(fastWriteTimeout))
		_, err := gc.Write(buf)
		gc.SetWriteDeadline(time.Time{})
		buf = buf[:0]
		return err
	}
	rev2 := ss.rev2()
	for _, e := range entries {
		if e.m == nil {
			continue // expunged meanwhile; reported at the next chance
		}
		e.recent = e.recent && !rev2 // \Recent is gone from IMAP4rev2
		line, ok := appendFastFetch(buf, e, o)
		if !ok {
			if err := flush(); err != nil {
				return err
			}
			if err := f.message(e); err != nil {
				return err
			}
			continue
		}
		buf = line
		if len(buf) >= fastBlock {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// appendFastFetch appends the FETCH response of e to b, as imapserver's
// FetchResponseWriter writes it: "* seq FETCH (UID u FLAGS (f ...)
// RFC822.SIZE n)". ok is false, and b unchanged, if a flag is not one
// the encoder writes.
func appendFastFetch(b []byte, e entry, o *imapv2.FetchOptions) (out []byte, ok bool) {
	start := len(b)
	b = append(b, "* "...)
	b = strconv.AppendUint(b, uint64(e.seq), 10)
	b = append(b, " FETCH ("...)
	sep := false
	if o.UID {
		b = append(b, "UID "...)
		b = strconv.AppendUint(b, uint64(e.uid), 10)
		sep = true
	}
	if o.Flags {
		if sep {
			b = append(b, ' ')
		}
		b = append(b, "FLAGS ("...)
		for i, fl := range e.m.Flags {
			if !wireFlag(fl) {
				return b[:start], false
			}
			if i > 0 {
				b = append(b, ' ')
			}
			b = append(b, fl...)
		}
		if e.recent {
			if len(e.m.Flags) > 0 {
				b = append(b, ' ')
			}
			b = append(b, `\Recent`...)
		}
		b = append(b, ')')
		sep = true
	}
	if o.RFC822Size {
		if sep {
			b = append(b, ' ')
		}
		b = append(b, "RFC822.SIZE "...)
		b = strconv.AppendInt(b, e.m.Size, 10)
	}
	return append(b, ")\r\n"...), true
}

// wireFlag reports whether the encoder writes fl as it is: an atom,
// perhaps after one leading backslash (imapwire's isValidFlag), in
// ASCII. Anything else goes the encoder's way.
func wireFlag(fl string) bool {
	if fl == "" {
		return false
	}
	for i := 0; i < len(fl); i++ {
		switch c := fl[i]; {
		case c == '\\':
			if i != 0 {
				return false
			}
		case c <= ' ' || c >= 0x7f, c == '(', c == ')', c == '{', c == '%', c == '*', c == '"', c == ']':
			return false
		}
	}
	return true
}
