package mailio

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/mailsyntax"
	"github.com/posthorn/posthorn/store"
)

// ImportMbox appends every message of an mbox file read from r to mailbox
// of account, creating the mailbox if it does not exist ("" means INBOX);
// quoted "From " lines are read as mboxrd (see ImportMboxFormat).
func ImportMbox(ctx context.Context, st store.Store, r io.Reader, account, mailbox string, progress Progress) (Result, error) {
	return ImportMboxFormat(ctx, st, r, account, mailbox, MboxRD, progress)
}

// ImportMboxFormat appends every message of an mbox file (RFC 4155; see
// the package comment for Content-Length framing and the fields that
// become flags) read from r to mailbox of account, creating the mailbox
// if it does not exist ("" means INBOX). format says how "From " lines in
// bodies were quoted. Malformed messages are skipped and listed in
// Result.Errors; an error is returned only when the import as a whole
// could not go on (not an mbox, account unknown, over quota, read error,
// ctx cancelled), and then Result still counts what was imported. It is
// EncodeMboxFormat and Import joined by a pipe.
func ImportMboxFormat(ctx context.Context, st store.Store, r io.Reader, account, mailbox string, format MboxFormat, progress Progress) (Result, error) {
	return pipeImport(ctx, st, account, progress, func(w io.Writer) error { return EncodeMboxFormat(w, r, mailbox, format) })
}

// EncodeMboxFormat is EncodeMbox for an mbox whose "From " lines were
// quoted as format says. The format is applied here, where the file is
// read (in the CLI), so the import stream does not carry it.
func EncodeMboxFormat(w io.Writer, r io.Reader, mailbox string, format MboxFormat) error {
	if mailbox == "" {
		mailbox = "INBOX"
	}
	iw := newItemWriter(w)
	err := iw.create(mailbox)
	if err == nil {
		err = readMboxFormat(r, format, func(m mboxMessage) bool { return handleMbox(iw, m, mailbox) })
	}
	if werr := iw.end(err); werr != nil {
		return werr
	}
	return err
}

// MboxFormat says how a writer quoted body lines that would look like a
// "From " separator. The two cannot be told apart by reading the file
// (RFC 4155 appendix A): the user has to say which it is.
type MboxFormat int

const (
	// MboxRD: every line matching "^>*From " was quoted with one more '>',
	// so one '>' comes off every line matching "^>+From ". Written by tools
	// that say they write mboxrd.
	MboxRD MboxFormat = iota
	// MboxO: only lines starting "From " were quoted, so only ">From "
	// loses its '>'; ">>From " is the body's own text. mutt, Python's
	// mailbox, Thunderbird and Postfix's local delivery quote this way.
	MboxO
)

// ParseMboxFormat reads "mboxrd" or "mboxo".
func ParseMboxFormat(s string) (MboxFormat, error) {
	switch strings.ToLower(s) {
	case "mboxrd", "":
		return MboxRD, nil
	case "mboxo":
		return MboxO, nil
	}
	return 0, fmt.Errorf("unknown mbox format %q (mboxrd or mboxo)", s)
}

func (f MboxFormat) String() string {
	if f == MboxO {
		return "mboxo"
	}
	return "mboxrd"
}

// unescape removes the quoting of a body line that f's writers add: one
// '>' from a line matching ^>+From (mboxrd) or ^>From (mboxo).
func (f MboxFormat) unescape(line []byte) []byte {
	i := 0
	for i < len(line) && line[i] == '>' {
		i++
	}
	if i == 0 || (f == MboxO && i > 1) || !bytes.HasPrefix(line[i:], []byte("From ")) {
		return line
	}
	return line[1:]
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
// stopped. The folder's pseudo-message is left out, and the fields that
// belong to the mbox, not to the message, become flags and are removed.
func handleMbox(s sink, m mboxMessage, mailbox string) bool {
	if m.oversize {
		return s.skip(m.where(), fmt.Errorf("larger than %d bytes", maxMessageBytes))
	}
	h, err := parseHeader(m.body)
	if err != nil {
		return s.skip(m.where(), err)
	}
	if m.n == 1 && isFolderData(h) {
		return true
	}
	body := stripMboxFields(m.body)
	if mailsyntax.HeaderLen(body) == 0 {
		return s.skip(m.where(), errNoHeader)
	}
	date := fromLineDate(m.from)
	if date.IsZero() {
		date = headerDate(h)
	}
	return s.add(job{where: m.where(), mailbox: mailbox, msg: store.NewMessage{
		Body: body, Flags: statusFlags(h), InternalDate: date,
	}})
}

// isFolderData says whether the first message of an mbox is the
// "DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA" pseudo-message in
// which UW-IMAP and Dovecot keep the folder's UIDVALIDITY and next UID.
// It is no mail, and is left out without a word: reporting it as skipped
// would make every clean Dovecot mbox look as if something was lost. An
// X-IMAP: field marks it (Dovecot takes that alone as the mark). Both
// also write X-IMAPbase: into a real first message when the folder has
// no pseudo-message, so X-IMAPbase: counts only with the pseudo-message's
// subject.
func isFolderData(h mail.Header) bool {
	if _, ok := h["X-Imap"]; ok {
		return true
	}
	_, ok := h["X-Imapbase"]
	return ok && strings.Contains(strings.ToUpper(h.Get("Subject")), "FOLDER INTERNAL DATA")
}

// isSeparator says whether a line (without its line ending) is an mbox
// "From " line.
func isSeparator(line []byte) bool { return bytes.HasPrefix(line, []byte("From ")) }

// mboxCutter is the state of readMbox.
type mboxCutter struct {
	emit      func(mboxMessage) bool
	format    MboxFormat
	in        mboxInput
	cur       *mboxMessage // nil before the first separator
	buf       bytes.Buffer
	lineNo, n int
	inBody    bool // the current message's header has ended
	// badLengths counts the Content-Lengths of this file that did not
	// hold. After maxBadLengths, the rest is cut at separators only, so
	// that a file whose lengths are all wrong is not read ahead (up to
	// maxMessageBytes) again for every message.
	badLengths   int
	prevEmpty    bool // the previous line was empty (or there was none)
	pendingEmpty bool // an empty line held back: it may be the separator's
}

// readMbox is readMboxFormat for mboxrd.
func readMbox(r io.Reader, emit func(mboxMessage) bool) error {
	return readMboxFormat(r, MboxRD, emit)
}

// readMboxFormat cuts r into messages and calls emit for each until it
// returns false. A message whose header has a Content-Length that holds
// is cut at that length (see frame). Otherwise a "From " line starts a
// message at the top of the file or after an empty line (RFC 4155
// appendix A); the empty line before it is the separator's, not the
// message's; quoted "From " lines are unquoted as format says.
func readMboxFormat(r io.Reader, format MboxFormat, emit func(mboxMessage) bool) error {
	c := &mboxCutter{emit: emit, format: format, in: mboxInput{br: bufio.NewReaderSize(r, 64<<10)}, prevEmpty: true}
	for {
		raw, tooLong, err := c.in.readLine()
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
	line := trimEOL(raw)
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
		c.inBody, c.pendingEmpty, c.prevEmpty = false, false, false
	case c.cur == nil && len(line) == 0:
		// Empty lines before the first message.
	case c.cur == nil:
		return false, fmt.Errorf("line %d: not an mbox file (no \"From \" line before the first message)", c.lineNo)
	case len(line) == 0 && !c.inBody:
		c.inBody = true
		if framed, err := c.frame(); framed || err != nil {
			return err == nil && c.finish(), err
		}
		c.pendingEmpty, c.prevEmpty = true, true
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
		c.write(c.format.unescape(line))
	}
	return true, nil
}

// trimEOL cuts the line ending (LF or CRLF) off a line.
func trimEOL(raw []byte) []byte {
	return bytes.TrimSuffix(bytes.TrimSuffix(raw, []byte("\n")), []byte("\r"))
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

// frame cuts the current message at its header's Content-Length, as mutt
// and Dovecot read an mbox: Dovecot writes bodies without quoting their
// "From " lines and relies on the length. It is called at the empty line
// that ends the header. The length holds when the bytes after that many
// end the file or are a line break and a "From " line, with at most one
// empty line between (the one the writer put before the separator). Then
// the body is those bytes, taken as written (unquoting them would change
// what the length vouches for), the message is complete and true is
// returned. Otherwise (no length, one that does not parse, or that does
// not hold) what was read is given back to be read again as lines.
func (c *mboxCutter) frame() (bool, error) {
	n, ok := contentLength(c.buf.Bytes())
	if !ok || c.cur.oversize || c.badLengths >= maxBadLengths {
		return false, nil
	}
	body, err := c.in.read(n)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("reading mbox at line %d: %w", c.lineNo, err)
	}
	gap := -1
	if err == nil {
		p, eof := c.in.peek(len("\r\n\r\nFrom "))
		gap = bodyGap(p, eof)
	}
	if gap < 0 {
		c.in.unread(body)
		c.badLengths++
		return false, nil
	}
	c.lineNo += bytes.Count(body, []byte("\n")) + bytes.Count(c.in.discard(gap), []byte("\n"))
	c.write(nil)
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line = body[:i+1]
		}
		body = body[len(line):]
		c.write(trimEOL(line))
	}
	return true, nil
}

// maxBadLengths is how many Content-Lengths that do not hold a file may
// have before the rest of it is cut at separators only.
const maxBadLengths = 8

// finish emits a message that frame completed; the next line is a
// separator, or there is none.
func (c *mboxCutter) finish() bool {
	more := c.flush()
	c.cur = nil
	c.inBody, c.pendingEmpty, c.prevEmpty = false, false, true
	return more
}

// contentLength reads the Content-Length field of a header (CRLF lines,
// as the cutter keeps them): false when there is none, more than one, or
// one that is not a number of bytes a message may have.
func contentLength(hdr []byte) (int, bool) {
	v := mailsyntax.Fields(hdr)["Content-Length"]
	if len(v) != 1 {
		return 0, false
	}
	n, err := strconv.ParseUint(v[0], 10, 31)
	if err != nil || n > maxMessageBytes {
		return 0, false
	}
	return int(n), true
}

// bodyGap says where what follows a Content-Length body, p (eof: the file
// ends after p), shows that the length holds: the number of line-break
// bytes before the end of the file or before a "From " line that comes
// after a line break and at most one empty line; -1 if it does not hold.
func bodyGap(p []byte, eof bool) int {
	i := 0
	for breaks := 0; ; breaks++ {
		rest := p[i:]
		switch {
		case len(rest) == 0 && eof:
			return i
		case breaks > 0 && isSeparator(rest):
			return i
		case breaks == 2:
			return -1
		}
		switch {
		case bytes.HasPrefix(rest, []byte("\n")):
			i++
		case bytes.HasPrefix(rest, []byte("\r\n")):
			i += 2
		default:
			return -1
		}
	}
}

// mboxInput is the mbox file read through a bufio.Reader, after bytes that
// were read ahead for a Content-Length that did not hold and given back.
type mboxInput struct {
	br   *bufio.Reader
	back []byte
}

// readLine reads one line as readLine does, the bytes given back first.
func (in *mboxInput) readLine() (line []byte, tooLong bool, err error) {
	if len(in.back) == 0 {
		return readLine(in.br, maxMessageBytes)
	}
	if i := bytes.IndexByte(in.back, '\n'); i >= 0 {
		line, in.back = in.back[:i+1], in.back[i+1:]
		return line, false, nil
	}
	// What was given back ends within a line: its rest is in the file.
	head := in.back
	in.back = nil
	rest, tooLong, err := readLine(in.br, maxMessageBytes-len(head))
	if tooLong {
		return nil, true, err
	}
	return append(head, rest...), false, err
}

// read reads n bytes, or fewer and io.EOF at the end of the file. The
// buffer grows as the bytes come, so a length that lies costs no more
// memory than the file has.
func (in *mboxInput) read(n int) ([]byte, error) {
	var b bytes.Buffer
	k := min(n, len(in.back))
	b.Write(in.back[:k])
	in.back = in.back[k:]
	_, err := io.CopyN(&b, in.br, int64(n-k))
	return b.Bytes(), err
}

// peek returns the next n bytes without reading them; eof when the file
// ends before (or a read error, which the next read reports).
func (in *mboxInput) peek(n int) (p []byte, eof bool) {
	if len(in.back) >= n {
		return in.back[:n], false
	}
	more, err := in.br.Peek(n - len(in.back))
	p = append(append([]byte(nil), in.back...), more...)
	return p, err != nil
}

// discard skips n bytes that peek returned, and returns them.
func (in *mboxInput) discard(n int) []byte {
	p, _ := in.peek(n)
	k := min(n, len(in.back))
	in.back = in.back[k:]
	in.br.Discard(n - k)
	return p
}

// unread gives back bytes that read returned, to be read again.
func (in *mboxInput) unread(b []byte) {
	in.back = append(b, in.back...)
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
