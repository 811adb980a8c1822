package mta

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"reflect"
	"sync"
	"unsafe"

	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/internal/membudget"
)

// Why this file reaches into go-smtp: its DATA reader (data.go in go-smtp
// v0.25.1) drops a "." followed by "\r" that is not followed by "\n", so
// "\r\n.\r\r\n" and "\r\n.\rX" reach the backend as "\r\n\r\n" and
// "\r\nX" and a bare CR can no longer be seen. RFC 5321 section 2.3.8
// forbids bare CR and LF, and accepting them is what SMTP smuggling
// exploits. So Data takes the *bufio.Reader under go-smtp's reader and
// reads the raw stream itself, then marks go-smtp's reader as finished.
// rawData checks the layout by reflection and returns ok=false if it ever
// changes; Data then falls back to go-smtp's reader plus a check of its
// output, which still catches every form but "\r\n.\r<X>" (a test pins
// the go-smtp version's behaviour, so an upgrade shows up).

// go-smtp dataReader's stateEOF.
const goSMTPStateEOF = 5

var bufioReaderType = reflect.TypeOf((*bufio.Reader)(nil))

// rawData returns the buffered reader under go-smtp's DATA reader and a
// function that marks that reader as at end of data.
func rawData(r io.Reader) (*bufio.Reader, func(), bool) {
	v := reflect.ValueOf(r)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return nil, nil, false
	}
	st := v.Elem()
	if st.Type().Name() != "dataReader" || st.Type().PkgPath() != "github.com/emersion/go-smtp" {
		return nil, nil, false
	}
	fr, fs := st.FieldByName("r"), st.FieldByName("state")
	if !fr.IsValid() || fr.Type() != bufioReaderType || !fs.IsValid() || fs.Kind() != reflect.Int {
		return nil, nil, false
	}
	br := *(**bufio.Reader)(unsafe.Pointer(fr.UnsafeAddr()))
	state := (*int)(unsafe.Pointer(fs.UnsafeAddr()))
	if br == nil {
		return nil, nil, false
	}
	return br, func() { *state = goSMTPStateEOF }, true
}

// AllowExactSize makes go-smtp's DATA reader r take a message of exactly
// the server's MaxMessageBytes, the SIZE it advertises (RFC 1870 section
// 4): it fails the read that follows the last byte allowed, even when only
// the end-of-data line follows. One byte more is allowed, which the
// caller's own limit refuses. For BDAT, or if go-smtp's layout changed, it
// does nothing. (Port 25 reads the raw stream: see readStrictData.)
func AllowExactSize(r io.Reader) {
	v := reflect.ValueOf(r)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return
	}
	st := v.Elem()
	if st.Type().Name() != "dataReader" || st.Type().PkgPath() != "github.com/emersion/go-smtp" {
		return
	}
	fl, fn := st.FieldByName("limited"), st.FieldByName("n")
	if !fl.IsValid() || fl.Kind() != reflect.Bool || !fn.IsValid() || fn.Kind() != reflect.Int64 {
		return
	}
	if *(*bool)(unsafe.Pointer(fl.UnsafeAddr())) {
		*(*int64)(unsafe.Pointer(fn.UnsafeAddr()))++
	}
}

// LiftLineLimit switches off go-smtp's line limit on c while the DATA
// body is read from r (go-smtp's DATA reader), and returns what switches
// it back on. The limit is for command lines: a message's lines are
// bounded only by its size, as Postfix takes them (RFC 5321 section
// 4.5.3.1 asks for no limits where possible, and bulk and HTML senders
// exceed 998). go-smtp itself lifts it for BDAT chunks (cmdReader keeps
// it off their octets). Bytes of the next
// command pipelined after the final dot passed the limiter uncounted:
// restore counts those of the line they leave open. If go-smtp's layout
// changed, the limit stays on, and a long line fails the DATA.
//
// It also saves CPU: the limiter looks at every byte it passes on, about
// a tenth of what a 100 KiB message costs.
//
// For BDAT, whose reader is a pipe that go-smtp's own goroutine feeds, it
// does nothing: the limit is go-smtp's to lift there.
func LiftLineLimit(c *smtp.Conn, r io.Reader) (restore func()) {
	br, _, isData := rawData(r)
	limit, cur, ok := lineLimiter(c)
	if !isData || !ok || *limit == 0 {
		return func() {}
	}
	saved := *limit
	*limit = 0
	return func() {
		if w, ok := watcher(c); ok {
			*limit = saved
			w.pullBack(c) // the commands after the body come through it
			return
		}
		rest, _ := br.Peek(br.Buffered())
		*limit, *cur = saved, len(rest)-(bytes.LastIndexByte(rest, '\n')+1)
	}
}

// lineLimiter returns the two fields of go-smtp's lineLimitReader (under
// its bufio.Reader): the limit and the length of the current line.
// ok=false if go-smtp's layout changed.
func lineLimiter(c *smtp.Conn) (limit, cur *int, ok bool) {
	st, ok := lineLimitReader(c)
	if !ok {
		return nil, nil, false
	}
	l, n := st.FieldByName("LineLimit"), st.FieldByName("curLineLength")
	if !l.IsValid() || l.Kind() != reflect.Int || !n.IsValid() || n.Kind() != reflect.Int {
		return nil, nil, false
	}
	return (*int)(unsafe.Pointer(l.UnsafeAddr())), (*int)(unsafe.Pointer(n.UnsafeAddr())), true
}

// errBadData is a bare CR, bare LF or NUL seen in the data.
var errBadData = errors.New("bare CR, LF or NUL in data")

// dataLimits bound one DATA transfer.
type dataLimits struct {
	max  int64 // message size limit
	hint int64 // expected size (MAIL FROM SIZE=), 0: unknown
	// headroom is room left free before the body for our trace header
	// fields, so that adding them does not copy the message.
	headroom int
	// budget, if set, is shared by every DATA transfer of the server: the
	// body is kept only while it has room (see package membudget).
	budget *membudget.Budget
	// lineByLine turns off the whole-lines path (cleanLines), for tests
	// that compare the two.
	lineByLine bool
}

// readStrictData reads a DATA body up to and including the end-of-data
// line "." CRLF (RFC 5321 section 4.1.1.4), undoing dot-stuffing (section
// 4.5.2). Every line must end in CRLF; a bare CR, bare LF or NUL anywhere
// makes it return errBadData, but only after the real end of data has been
// read, so the reply is in step with the client. A body over l.max is
// read to its end and errTooBig is returned. The returned buffer is
// l.headroom unused bytes followed by the body, at most l.max bytes.
//
// The buffer is pooled: release gives it back, and neither it nor any
// slice of it may be used after that. release is never nil, so a caller
// can defer it at once, error or not.
func readStrictData(br *bufio.Reader, l dataLimits) (buf []byte, release func(), err error) {
	// The body is gathered in a pooled buffer, after l.headroom bytes, and
	// handed out as it is: no growth by doubling (three copies and ~140 KiB
	// of garbage for a 100 KiB message) and no copy at the end (100 KiB of
	// garbage per message, a third of what a 100 KiB message costs the GC).
	pooled := dataBufs.Get().(*[]byte)
	// The client's SIZE= is only a hint: never preallocate more than 1 MiB
	// on its word.
	want := l.headroom + int(min(max(l.hint, 16<<10), 1<<20, l.max)) + 512
	if cap(*pooled) < want {
		*pooled = make([]byte, 0, want)
	}
	body := bytes.NewBuffer((*pooled)[:l.headroom])
	var held int64 // of l.budget
	release = func() {
		l.budget.Give(held)
		if b := body.Bytes(); cap(b) <= maxPooledData {
			*pooled = b[:0]
			dataBufs.Put(pooled)
		}
		body = nil // a second release panics instead of pooling twice
	}
	var bad, tooBig, noRoom bool
	// The buffer allocated now counts, whatever the client sends.
	if !l.budget.Hold(&held, int64(want)) {
		noRoom = true
	}
	// room says whether n more body bytes may be kept.
	room := func(n int) bool {
		if int64(body.Len()-l.headroom+n) > l.max {
			tooBig = true
		}
		if !tooBig && !noRoom && !l.budget.Hold(&held, int64(body.Len()-l.headroom+n)) {
			noRoom = true
		}
		return !tooBig && !noRoom
	}
	atLineStart, prevCR := true, false
	for {
		if atLineStart && !bad && !l.lineByLine {
			// Whole clean lines already buffered go in one piece; the
			// loop below sees only the rest (a dot-line, a bad line, a
			// line not all read yet).
			rest, _ := br.Peek(br.Buffered())
			if n := cleanLines(rest); n > 0 {
				if room(n) {
					body.Write(rest[:n])
				}
				br.Discard(n)
				continue
			}
		}
		line, err := br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, release, errTimeout
			}
			return nil, release, err
		}
		complete := err == nil
		if atLineStart && complete && string(line) == ".\r\n" {
			break
		}
		if !cleanPiece(line, prevCR) {
			bad = true
		}
		prevCR = !complete && len(line) > 0 && line[len(line)-1] == '\r'
		if atLineStart && len(line) > 0 && line[0] == '.' {
			line = line[1:]
		}
		atLineStart = complete
		if !bad && room(len(line)) {
			body.Write(line)
		}
	}
	switch {
	case bad:
		return nil, release, errBadData
	case tooBig:
		return nil, release, errTooBig
	case noRoom:
		return nil, release, errNoRoom
	}
	return body.Bytes(), release, nil
}

// dataBufs holds DATA buffers between messages; one over maxPooledData is
// left to the GC instead of being kept.
var dataBufs = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

const maxPooledData = 1 << 20

// cleanLines returns the length of the longest prefix of b made of whole
// lines that readStrictData can take as they are: each ends in CRLF, holds
// no other CR or LF and no NUL, and does not start with a dot
// (dot-stuffed, or the end of data). It returns 0 if a stray CR or a NUL is among those lines: the
// line-by-line path then finds it.
func cleanLines(b []byte) int {
	end, lines := 0, 0
	for end < len(b) && b[end] != '.' {
		i := bytes.IndexByte(b[end:], '\n')
		if i < 1 || b[end+i-1] != '\r' {
			break
		}
		end += i + 1
		lines++
	}
	if end == 0 || bytes.Count(b[:end], crByte) != lines || bytes.IndexByte(b[:end], 0) >= 0 {
		return 0
	}
	return end
}

var crByte = []byte{'\r'}

// cleanPiece checks one piece of a line (a whole line, or part of one
// longer than the buffer): no NUL, every CR followed by LF and every LF
// preceded by CR. A CR ending a partial piece is judged with the next
// piece, whose prevCR is then true.
func cleanPiece(p []byte, prevCR bool) bool {
	// The common case, a whole line ending in CRLF with no other CR or
	// LF and no NUL, in three vectorised scans.
	if n := len(p); !prevCR && n >= 2 && p[n-1] == '\n' && p[n-2] == '\r' &&
		bytes.IndexByte(p[:n-2], '\r') < 0 && bytes.IndexByte(p[:n-1], '\n') < 0 && bytes.IndexByte(p, 0) < 0 {
		return true
	}
	if prevCR && (len(p) == 0 || p[0] != '\n') {
		return false
	}
	for i, c := range p {
		switch c {
		case 0:
			return false
		case '\r':
			if i+1 < len(p) && p[i+1] != '\n' {
				return false
			}
		case '\n':
			if (i == 0 && !prevCR) || (i > 0 && p[i-1] != '\r') {
				return false
			}
		}
	}
	return true
}

// checkLineEndings is the check of a body that did not come through
// readStrictData (BDAT chunks, or go-smtp's own reader as a fallback):
// every CR is followed by LF, every LF preceded by CR, and no NUL.
func checkLineEndings(b []byte) error {
	if !cleanPiece(b, false) || (len(b) > 0 && b[len(b)-1] == '\r') {
		return errBadData
	}
	return nil
}

// readBounded reads r to its end into b[room:], keeping at most max
// bytes; more is errTooBig, and more than budget has room for is
// errNoRoom (after draining r, so a BDAT client stays in step). release
// returns the budget held; it is never nil.
func readBounded(r io.Reader, room int, max int64, budget *membudget.Budget) (b []byte, release func(), err error) {
	b, release, err = budget.ReadAll(r, room, max, 0, errTooBig)
	if err == membudget.ErrNoRoom {
		err = errNoRoom
	}
	return b, release, err
}
