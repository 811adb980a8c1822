package pop3

import (
	"errors"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/posthorn/posthorn/store"
)

// readBufSize is the size of one read from a Blob: the store's chunk size,
// so each read is one short read transaction.
const readBufSize = store.ChunkSize

const msgGone = "Message %d was removed by another session"

// cmdRETR sends a whole message (RFC 1939 section 5), streamed from the
// store and dot-stuffed.
func (ss *session) cmdRETR(args string) error {
	arg, ok := ss.oneArg(args, "RETR msg")
	if !ok {
		return nil
	}
	n, e := ss.message(arg)
	if e == nil {
		return nil
	}
	if err := ss.send(n, e, -1); err != nil {
		return err
	}
	e.retrieved = true
	return nil
}

// cmdTOP sends the header, the blank line and the first lines of the body
// of a message (RFC 1939 section 7).
func (ss *session) cmdTOP(args string) error {
	f := strings.Fields(args)
	if len(f) != 2 {
		ss.errf("Usage: TOP msg lines")
		return nil
	}
	// Any non-negative number (RFC 1939 section 7); past the body's
	// lines it is the whole body, as Dovecot takes 2^64-1.
	lines, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		ss.errf("Invalid number of lines")
		return nil
	}
	lines = min(lines, math.MaxInt32)
	n, e := ss.message(f[0])
	if e == nil {
		return nil
	}
	return ss.send(n, e, int(lines))
}

// send streams message n: whole if bodyLines < 0, else its header and
// bodyLines lines of its body. A message expunged by another session gets
// a clean -ERR; a failure after the +OK line ends the session, since the
// reply can no longer be told apart from message content.
func (ss *session) send(n int, e *entry, bodyLines int) error {
	if err := ss.drop.sync(); err != nil {
		return err
	}
	if e.gone {
		ss.errf(msgGone, n)
		return nil
	}
	blob, err := ss.srv.Store.OpenMessage(e.Message)
	if errors.Is(err, store.ErrNotFound) {
		e.gone = true
		ss.errf(msgGone, n)
		return nil
	}
	if err != nil {
		return err
	}
	defer blob.Close()
	if bodyLines < 0 {
		ss.okf("%d octets", e.Size)
	} else {
		ss.okf("Top of message follows")
	}
	if ss.buf == nil {
		ss.buf = make([]byte, readBufSize)
	}
	dw := &dotWriter{w: ss.w, bol: true, top: bodyLines >= 0, inHeader: true, lines: bodyLines}
	for !dw.done {
		k, err := blob.Read(ss.buf)
		if k > 0 {
			if werr := dw.write(ss.buf[:k]); werr != nil {
				return connError{werr}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			ss.log.Error("reading a message failed after +OK; closing", "uid", e.UID, "err", err)
			return errAbort
		}
	}
	if err := dw.finish(); err != nil {
		return connError{err}
	}
	return nil
}
