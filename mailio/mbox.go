package mailio

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/posthorn/posthorn/store"
)

// ImportMbox appends every message of an mbox file (mboxo or mboxrd,
// RFC 4155) read from r to mailbox of account, creating the mailbox if it
// does not exist ("" means INBOX). Malformed messages are skipped and
// listed in Result.Errors; an error is returned only when the import as a
// whole could not go on (not an mbox, account unknown, over quota, read
// error, ctx cancelled), and then Result still counts what was imported.
// It is EncodeMbox and Import joined by a pipe.
func ImportMbox(ctx context.Context, st store.Store, r io.Reader, account, mailbox string, progress Progress) (Result, error) {
	return pipeImport(ctx, st, account, progress, func(w io.Writer) error { return EncodeMbox(w, r, mailbox) })
}

// mboxMessage is one message cut out of an mbox file.
type mboxMessage struct {
	n        int    // 1-based number in the file
	line     int    // line of its "From " separator
	from     string // the separator line
	body     []byte // CRLF line endings, unescaped
	oversize bool
}

func (m mboxMessage) where() string {
	return fmt.Sprintf("message %d (line %d)", m.n, m.line)
}

// handleMbox parses one message and hands it on; false once the import
// stopped.
func handleMbox(s sink, m mboxMessage, mailbox string) bool {
	if m.oversize {
		return s.skip(m.where(), fmt.Errorf("larger than %d bytes", maxMessageBytes))
	}
	h, err := parseHeader(m.body)
	if err != nil {
		return s.skip(m.where(), err)
	}
	date := fromLineDate(m.from)
	if date.IsZero() {
		date = headerDate(h)
	}
	return s.add(job{where: m.where(), mailbox: mailbox, msg: store.NewMessage{
		Body: m.body, Flags: statusFlags(h), InternalDate: date,
	}})
}

// isSeparator says whether a line (without its line ending) is an mbox
// "From " line.
func isSeparator(line []byte) bool { return bytes.HasPrefix(line, []byte("From ")) }

// unescapeFrom removes one '>' from a line matching ^>+From (mboxrd; for
// mboxo, where only "From " was quoted, this is the best guess).
func unescapeFrom(line []byte) []byte {
	i := 0
	for i < len(line) && line[i] == '>' {
		i++
	}
	if i > 0 && bytes.HasPrefix(line[i:], []byte("From ")) {
		return line[1:]
	}
	return line
}

// mboxCutter is the state of readMbox.
type mboxCutter struct {
	emit         func(mboxMessage) bool
	cur          *mboxMessage // nil before the first separator
	buf          bytes.Buffer
	lineNo, n    int
	prevEmpty    bool // the previous line was empty (or there was none)
	pendingEmpty bool // an empty line held back: it may be the separator's
}

// readMbox cuts r into messages and calls emit for each until it returns
// false. A "From " line starts a message at the top of the file or after
// an empty line (RFC 4155 appendix A); the empty line before it is the
// separator's, not the message's.
func readMbox(r io.Reader, emit func(mboxMessage) bool) error {
	br := bufio.NewReaderSize(r, 64<<10)
	c := &mboxCutter{emit: emit, prevEmpty: true}
	for {
		raw, tooLong, err := readLine(br, maxMessageBytes)
		if len(raw) > 0 || tooLong {
			c.lineNo++
			more, lerr := c.line(raw, tooLong)
			if lerr != nil || !more {
				return lerr
			}
		}
		if errors.Is(err, io.EOF) {
			c.flush()
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading mbox at line %d: %w", c.lineNo, err)
		}
	}
}

// line handles one line; false once emit asked to stop.
func (c *mboxCutter) line(raw []byte, tooLong bool) (bool, error) {
	line := bytes.TrimSuffix(bytes.TrimSuffix(raw, []byte("\n")), []byte("\r"))
	switch {
	case tooLong && c.cur != nil:
		c.cur.oversize = true
		c.pendingEmpty, c.prevEmpty = false, false
	case tooLong:
		return false, fmt.Errorf("line %d: not an mbox file (a line of more than %d bytes)", c.lineNo, maxMessageBytes)
	case isSeparator(line) && c.prevEmpty:
		if !c.flush() {
			return false, nil
		}
		c.n++
		c.cur = &mboxMessage{n: c.n, line: c.lineNo, from: string(line)}
		c.pendingEmpty, c.prevEmpty = false, false
	case c.cur == nil && len(line) == 0:
		// Empty lines before the first message.
	case c.cur == nil:
		return false, fmt.Errorf("line %d: not an mbox file (no \"From \" line before the first message)", c.lineNo)
	case len(line) == 0:
		if c.pendingEmpty {
			c.write(nil)
		}
		c.pendingEmpty, c.prevEmpty = true, true
	default:
		if c.pendingEmpty {
			c.write(nil)
		}
		c.pendingEmpty, c.prevEmpty = false, false
		c.write(unescapeFrom(line))
	}
	return true, nil
}

// write appends a line and CRLF to the current message. line is a slice
// of the reader's buffer: never append to it.
func (c *mboxCutter) write(line []byte) {
	if c.cur.oversize || c.buf.Len()+len(line)+2 > maxMessageBytes {
		c.cur.oversize = true
		c.buf.Reset()
		return
	}
	c.buf.Write(line)
	c.buf.WriteString("\r\n")
}

// flush emits the current message, if any.
func (c *mboxCutter) flush() bool {
	if c.cur == nil {
		return true
	}
	c.cur.body = bytes.Clone(c.buf.Bytes())
	c.buf.Reset()
	return c.emit(*c.cur)
}

// readLine reads one line with its line ending. The slice is valid until
// the next read. A line longer than limit is consumed but not returned
// (tooLong), so that memory stays bounded.
func readLine(br *bufio.Reader, limit int) (line []byte, tooLong bool, err error) {
	var long []byte
	for {
		b, err := br.ReadSlice('\n')
		if !errors.Is(err, bufio.ErrBufferFull) {
			switch {
			case tooLong:
				return nil, true, err
			case long != nil:
				return append(long, b...), false, err
			}
			return b, false, err
		}
		if !tooLong {
			long = append(long, b...)
			if len(long) > limit {
				tooLong, long = true, nil
			}
		}
	}
}

// fromLineDate reads the date of a "From sender date" line, in the
// asctime form most writers use; zero if there is none.
func fromLineDate(line string) time.Time {
	f := strings.Fields(line)
	if len(f) < 3 {
		return time.Time{}
	}
	s := strings.Join(f[2:], " ")
	for _, layout := range []string{time.ANSIC, "Mon Jan _2 15:04:05 -0700 2006", "Mon Jan _2 15:04:05 MST 2006", time.UnixDate} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}
