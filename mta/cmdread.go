package mta

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/textproto"
	"reflect"
	"strconv"
	"strings"
	"unsafe"

	"github.com/emersion/go-smtp"
)

// cmdReader is the reader under go-smtp's command line limiter (its
// lineLimitReader): it hands go-smtp its commands a line at a time, and
// their BDAT chunks apart. It mends three things of go-smtp v0.25.1: the
// line limit on BDAT chunks, the bad command limit, and STARTTLS with
// parameters.
//
// It keeps the command line limit off the octets of BDAT chunks (RFC
// 3030). go-smtp v0.25.1 counts line
// lengths in what it reads from the connection, a bufio fill at a time,
// not in the lines it takes, and BDAT broke it twice:
//
//   - the octets of a chunk that came in the same read as the BDAT
//     command line were counted as a line, and the count went on after
//     the chunk (the limit is lifted while the chunk is copied, but the
//     count is not set back): the next command, or the BDAT LAST of the
//     same message, got "500 Too long line" and the session ended (a
//     permanent reply: the sender bounced the message);
//   - a chunk go-smtp refuses (no recipient, over the size limit) is read
//     and dropped with the limit on: a line over it in the chunk ended the
//     session, where RFC 3030 section 2 has the chunk read and dropped.
//
// It sits under the limiter, as the reader the limiter reads. While go-smtp
// reads commands (its limit on), it hands over one line per read, so that
// no chunk octets come with a command line, and it follows the lines: a
// BDAT command go-smtp takes (the same parse) is followed by its chunk,
// whose octets it hands over alone, with the limit off, whether go-smtp
// copies the chunk or drops it. The limit is back on, the count at zero,
// at the first read after the chunk. While go-smtp's limit is off for a
// DATA body (LiftLineLimit), octets go through as they come.
//
// It also counts the session's bad commands in go-smtp's place. go-smtp
// ends a session at its fourth with "500 Too many errors" (a client that
// pipelined takes that 500 for the reply to its MAIL, a permanent one,
// and bounces the message); from EHLO on, it is ended at the
// maxBadCommands'th, as Postfix does at its hard error limit, with a 421
// (go-smtp's reply to a failed read).
//
// And go-smtp starts TLS at any line that begins with STARTTLS; one with
// parameters gets 501 (see startTLSWithArgs).
type cmdReader struct {
	r          io.Reader // what the limiter read before
	limit, cur *int      // the limiter's fields (see lineLimiter)
	max        int       // the limit to put back after a chunk
	held       []byte    // read from r, not handed over yet
	err        error     // r's error, once held is handed over
	line       []byte    // the start of the command line being read
	long       bool      // the line is longer than line holds: no BDAT
	chunk      int64     // chunk octets still to hand over
	owed       bool      // the limit is to be put back
	errCount   *int      // go-smtp's count of bad commands (nil: not found)
	bad        int       // bad commands so far
	host       string    // the server's name, for RCPT TO:<Postmaster>
}

// maxBadCommands ends a session, as Postfix's smtpd_hard_error_limit.
const maxBadCommands = 20

// errTooManyCommands ends a session at its maxBadCommands'th bad command:
// go-smtp answers a failed read with 421 and closes.
var errTooManyCommands = errors.New("too many bad commands")

// maxBDATLine is how much of a command line is kept to recognise BDAT.
const maxBDATLine = 512

// WatchCommands puts a cmdReader under go-smtp's line limiter of c.
// Sessions call it in NewSession (go-smtp's goroutine, no read running);
// after STARTTLS go-smtp makes a new limiter, and a new session. If
// go-smtp's layout changed, it does nothing.
func WatchCommands(c *smtp.Conn) {
	ll, ok := lineLimitReader(c)
	if !ok {
		return
	}
	fr := ll.FieldByName("R")
	if !fr.IsValid() || fr.Type() != reflect.TypeFor[io.Reader]() || !fr.CanSet() {
		return
	}
	if cr, done := fr.Interface().(*cmdReader); done {
		cr.pullBack(c) // a new EHLO in the session
		return
	}
	limit, cur, ok := lineLimiter(c)
	max := c.Server().MaxLineLength
	if !ok || *limit == 0 || max == 0 {
		return
	}
	cr := &cmdReader{r: fr.Interface().(io.Reader), limit: limit, cur: cur, max: max, host: c.Server().Domain}
	if f := reflect.ValueOf(c).Elem().FieldByName("errCount"); f.IsValid() && f.Kind() == reflect.Int {
		cr.errCount = (*int)(unsafe.Pointer(f.UnsafeAddr()))
	}
	fr.Set(reflect.ValueOf(io.Reader(cr)))
	cr.pullBack(c)
}

// pullBack takes back into the reader what go-smtp's buffer holds past
// the command line it has just taken (commands pipelined behind an EHLO,
// or behind the end of a DATA body), so that those commands too come a
// line at a time, followed and counted: go-smtp would run them out of
// its buffer without reading. The limiter counts them again as they
// come: its count starts at zero, at the start of a line.
func (r *cmdReader) pullBack(c *smtp.Conn) {
	br, ok := textReader(c)
	if !ok || br.Buffered() == 0 {
		return
	}
	rest, _ := br.Peek(br.Buffered())
	r.held = append(bytes.Clone(rest), r.held...)
	br.Discard(len(rest))
	*r.cur = 0
	r.line, r.long = r.line[:0], false
}

// watcher returns the cmdReader of c, if it has one.
func watcher(c *smtp.Conn) (*cmdReader, bool) {
	ll, ok := lineLimitReader(c)
	if !ok {
		return nil, false
	}
	if fr := ll.FieldByName("R"); fr.IsValid() && fr.CanInterface() {
		r, ok := fr.Interface().(*cmdReader)
		return r, ok
	}
	return nil, false
}

// heldBack is the number of octets read from the connection that the
// cmdReader of c holds back from go-smtp, if it has one.
func heldBack(c *smtp.Conn) int {
	if r, ok := watcher(c); ok {
		return len(r.held)
	}
	return 0
}

func (r *cmdReader) Read(p []byte) (int, error) {
	if r.owed && r.chunk == 0 {
		*r.limit, *r.cur, r.owed = r.max, 0, false
	}
	if r.chunk > 0 {
		*r.limit, r.owed = 0, true
		n, err := r.fill(p[:min(int64(len(p)), r.chunk)])
		r.chunk -= int64(n)
		return n, err
	}
	if *r.limit != 0 && r.errCount != nil {
		// The command before has been answered.
		r.bad += *r.errCount
		*r.errCount = 0
		if r.bad >= maxBadCommands {
			return 0, errTooManyCommands
		}
	}
	n, err := r.fill(p)
	if *r.limit == 0 || n == 0 {
		return n, err // a DATA body
	}
	// A line that may be RCPT TO:<Postmaster> is taken whole, however it
	// comes in pieces, to be rewritten (see postmasterRcpt).
	for len(r.line) == 0 && r.host != "" && err == nil && n < len(p) &&
		bytes.IndexByte(p[:n], '\n') < 0 && mayBePostmasterRcpt(p[:n]) {
		m, ferr := r.fill(p[n:])
		n += m
		if m == 0 {
			r.err = ferr // after what was read (fill returns it again)
			break
		}
	}
	if i := bytes.IndexByte(p[:n], '\n'); i >= 0 && i+1 < n {
		r.held = append(bytes.Clone(p[i+1:n]), r.held...)
		n = i + 1
	}
	if len(r.line) == 0 && startTLSWithArgs(p[:n]) {
		// go-smtp starts TLS at any line that begins with STARTTLS
		// ("STARTTLS foo", "STARTTLSX"); RFC 3207 section 4 has no
		// parameters, and such a line gets 501. Changed so, go-smtp
		// refuses it as a bad command (501 5.5.2).
		p[7] = '_'
	}
	if len(r.line) == 0 && r.host != "" {
		if q, ok := postmasterRcpt(p[:n], r.host); ok && len(q) <= len(p) {
			n = copy(p, q)
		}
	}
	r.follow(p[:n])
	return n, err
}

// postmasterRcpt rewrites a whole command line "RCPT TO:<Postmaster>"
// (any case, parameters kept) as "RCPT TO:<postmaster@host>": RFC 5321
// sections 4.1.1.3 and 4.5.1 have every server take that form, without a
// domain, for its postmaster, and go-smtp's parser refuses an address
// without "@" (501).
func postmasterRcpt(line []byte, host string) ([]byte, bool) {
	const verb, pm = "RCPT TO:", "<postmaster>"
	if !bytes.HasSuffix(line, []byte("\n")) || len(line) < len(verb) || !bytes.EqualFold(line[:len(verb)], []byte(verb)) {
		return nil, false
	}
	rest := bytes.TrimLeft(line[len(verb):], " ")
	if len(rest) < len(pm) || !bytes.EqualFold(rest[:len(pm)], []byte(pm)) {
		return nil, false
	}
	return append([]byte(verb+"<postmaster@"+host+">"), rest[len(pm):]...), true
}

// mayBePostmasterRcpt: b, the start of a command line, may be the start
// of "RCPT TO:<Postmaster>" (any case, spaces after the colon), or is it
// with the rest of the line still to come.
func mayBePostmasterRcpt(b []byte) bool {
	const verb, pm = "RCPT TO:", "<POSTMASTER>"
	if len(b) <= len(verb) {
		return bytes.EqualFold(b, []byte(verb[:len(b)]))
	}
	if !bytes.EqualFold(b[:len(verb)], []byte(verb)) {
		return false
	}
	rest := bytes.TrimLeft(b[len(verb):], " ")
	if len(rest) <= len(pm) {
		return bytes.EqualFold(rest, []byte(pm[:len(rest)]))
	}
	return bytes.EqualFold(rest[:len(pm)], []byte(pm))
}

// startTLSWithArgs: a whole command line that starts with STARTTLS and is
// not STARTTLS alone.
func startTLSWithArgs(line []byte) bool {
	if !bytes.HasSuffix(line, []byte("\n")) || len(line) < 8 || !bytes.EqualFold(line[:8], []byte("STARTTLS")) {
		return false
	}
	return len(bytes.TrimRight(line[8:], " \t\r\n")) > 0
}

// fill reads what is held, or else from r.
func (r *cmdReader) fill(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(r.held) > 0 {
		n := copy(p, r.held)
		r.held = r.held[n:]
		if len(r.held) == 0 {
			r.held = nil
		}
		return n, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.r.Read(p)
	if err != nil && n > 0 {
		r.err, err = err, nil // after the octets, which may be split
	}
	return n, err
}

// follow takes the octets of a command line handed over (one line at
// most, its end last); at the end of a BDAT line, the chunk follows.
func (r *cmdReader) follow(b []byte) {
	end := b[len(b)-1] == '\n'
	if !r.long {
		if len(r.line)+len(b) > maxBDATLine {
			r.long = true
		} else {
			r.line = append(r.line, b...)
		}
	}
	if !end {
		return
	}
	if !r.long {
		if size, ok := bdatSize(string(r.line)); ok {
			r.chunk = size
		}
	}
	r.line, r.long = r.line[:0], false
}

// bdatSize parses a command line as go-smtp v0.25.1 does (parseCmd and
// handleBdat, which reads and drops the chunk once the command parses):
// ok when it is a BDAT that a chunk of size octets follows.
func bdatSize(line string) (size int64, ok bool) {
	line = strings.TrimRight(line, "\r\n")
	if len(line) < 6 || !strings.EqualFold(line[:4], "BDAT") || line[4] != ' ' {
		return 0, false
	}
	args := strings.Fields(strings.TrimSpace(line[5:]))
	if len(args) == 0 || len(args) > 2 || len(args) == 2 && !strings.EqualFold(args[1], "LAST") {
		return 0, false
	}
	n, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		return 0, false
	}
	return int64(n), true
}

// textReader returns the bufio.Reader go-smtp reads commands from;
// ok=false if go-smtp's layout changed.
func textReader(c *smtp.Conn) (*bufio.Reader, bool) {
	f := reflect.ValueOf(c).Elem().FieldByName("text")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*textproto.Conn]() {
		return nil, false
	}
	tc := *(**textproto.Conn)(unsafe.Pointer(f.UnsafeAddr()))
	if tc == nil || tc.R == nil {
		return nil, false
	}
	return tc.R, true
}

// lineLimitReader returns go-smtp's lineLimitReader of c, addressable;
// ok=false if go-smtp's layout changed.
func lineLimitReader(c *smtp.Conn) (reflect.Value, bool) {
	v := reflect.ValueOf(c)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return reflect.Value{}, false
	}
	f := v.Elem().FieldByName("lineLimitReader")
	if !f.IsValid() || f.Kind() != reflect.Pointer || f.Type().Elem().Name() != "lineLimitReader" ||
		f.Type().Elem().PkgPath() != "github.com/emersion/go-smtp" || f.IsNil() {
		return reflect.Value{}, false
	}
	return reflect.NewAt(f.Type().Elem(), *(*unsafe.Pointer)(unsafe.Pointer(f.UnsafeAddr()))).Elem(), true
}
