package imap

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
)

// guardConn is the plaintext connection imapserver reads: it runs the
// client's bytes through a literalGuard. dc is the TCP-level wrapper
// (deadlines, corking) under it, possibly below TLS.
//
// On the plaintext listener it also does STARTTLS itself, so that the
// guard keeps seeing the plaintext after the upgrade (imapserver's own
// STARTTLS would wrap the connection above us, leaving us only TLS
// records): when a client that has not logged in sends STARTTLS, the
// guard passes on the commands before it, answers OK, discards whatever
// the client pipelined behind it (RFC 9051 section 6.2.1), makes the TLS
// handshake, and hands the TLS connection to a new imapserver.Server of
// its own, as implicit TLS does; the first one then reads EOF and its
// writes and Close go nowhere. The new server's greeting is dropped: none
// is sent after STARTTLS.
type guardConn struct {
	net.Conn
	dc *deadlineConn
	g  *literalGuard
	s  *Server

	authed     atomic.Bool // a login succeeded: STARTTLS is imapserver's to refuse
	detached   atomic.Bool // handed over to a TLS connection
	closing    atomic.Bool // answered with BYE: nothing more is read or written
	readFailed atomic.Bool // a Read returned an error
	greeting   bool        // drop the first line written (the new server's greeting)

	out outWatch // what the responses written say, for the guard

	// cmdErr is the error imapserver is about to answer with NO
	// [SERVERBUG] (see cmderr.go), under emu.
	emu    sync.Mutex
	cmdErr *commandError

	wmu     sync.Mutex
	corked  bool
	pending []byte

	// Write deadlines while corked (see SetWriteDeadline), under dmu, not
	// wmu: a deadline may be set to end a write that holds wmu.
	dmu      sync.Mutex
	dlCorked bool
	wdl      time.Time // armed on Conn
	wdlWant  time.Time // the last one asked for
}

// corkLimit is how much a corked connection buffers before writing.
const corkLimit = 64 * 1024

// cork makes writes accumulate until uncork (or corkLimit): imapserver
// flushes after every response, which for a 10,000-message FETCH would be
// 10,000 system calls, and over TLS 10,000 records. The buffer is above
// TLS, so that records are full.
func (c *guardConn) cork() {
	c.wmu.Lock()
	c.corked = true
	c.wmu.Unlock()
	c.dmu.Lock()
	c.dlCorked = true
	c.dmu.Unlock()
}

func (c *guardConn) uncork() error {
	c.wmu.Lock()
	c.corked = false
	err := c.flushLocked()
	c.wmu.Unlock()
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.dlCorked = false
	if !c.wdl.Equal(c.wdlWant) && !c.detached.Load() {
		c.wdl = c.wdlWant
		if derr := c.Conn.SetWriteDeadline(c.wdl); err == nil {
			err = derr
		}
	}
	return err
}

func (c *guardConn) flushLocked() error {
	if len(c.pending) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.pending)
	c.pending = c.pending[:0]
	if cap(c.pending) > 2*corkLimit {
		c.pending = nil
	}
	return err
}

// write is Write after the greeting: corked or not.
func (c *guardConn) write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.corked || len(b) >= corkLimit/4 {
		// Not corked, or a large write (a body literal): no point
		// copying it.
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return c.Conn.Write(b)
	}
	c.pending = append(c.pending, b...)
	if len(c.pending) >= corkLimit {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

func newGuardConn(c net.Conn, dc *deadlineConn, s *Server) *guardConn {
	gc := &guardConn{Conn: c, dc: dc, s: s, g: &literalGuard{appendLimit: s.MaxMessageBytes}}
	gc.g.authed = &gc.authed
	return gc
}

// newPlainGuardConn is newGuardConn for the plaintext (STARTTLS) listener.
func newPlainGuardConn(dc *deadlineConn, s *Server) *guardConn {
	c := newGuardConn(dc, dc, s)
	c.g.interceptTLS = true
	return c
}

// Read passes the client's bytes through the guard, a line at a time
// (see literalGuard). On a violation it answers BAD and BYE and the next
// Read fails, which ends the connection before the parser sees the
// offending line.
func (c *guardConn) Read(p []byte) (int, error) {
	n, err := c.read(p)
	if err != nil {
		c.readFailed.Store(true)
	}
	return n, err
}

func (c *guardConn) read(p []byte) (int, error) {
	g := c.g
	for {
		if c.detached.Load() {
			return 0, io.EOF
		}
		if g.failed != nil {
			return 0, g.failed
		}
		if c.closing.Load() {
			return 0, errGuard
		}
		if g.startTLS != "" {
			if err := c.startTLS(); err != nil {
				return 0, err
			}
			continue
		}
		if g.pend.set {
			g.resolve(c.out.take())
		}
		if c.out.badRun() >= maxBadCommands && !g.contLine && g.skip == 0 && g.drop == 0 {
			c.s.Logger.Info("imap: too many invalid commands, connection closed", "remote", c.RemoteAddr().String())
			c.write([]byte("* BYE Too many invalid IMAP commands\r\n"))
			c.closing.Store(true)
			return 0, errGuard
		}
		if g.skip > 0 && len(g.held) == 0 {
			// Literal data for the parser: straight through.
			n, err := c.Conn.Read(p[:min(int64(len(p)), g.skip)])
			g.skip -= int64(n)
			return n, err
		}
		if len(p) == 0 {
			return 0, nil
		}
		held := g.held
		n := copy(p, held)
		fromHeld := n
		more := g.more
		g.more = false
		if n == 0 || more && n < len(p) {
			m, err := c.Conn.Read(p[n:])
			if m == 0 {
				if err == nil {
					continue
				}
				if n == 0 && timedOut(err) && !g.inLine && !g.contLine && g.skip == 0 && g.drop == 0 {
					// Autologout between commands (RFC 9051 section
					// 5.4), announced with BYE (section 7.1.5) as
					// Dovecot does. imapserver would read again, for a
					// command's time, then close without a word.
					c.s.Logger.Info("imap: autologout, client silent", "remote", c.RemoteAddr().String())
					c.write([]byte("* BYE Autologout: idle for too long\r\n"))
					c.closing.Store(true)
					return 0, errGuard
				}
				return 0, err
			}
			n += m
		}
		out, rest, ref := g.filter(p[:n], n == len(p))
		// What was not scanned is held for the next Read. The filter
		// writes only below rest, so bytes that came from held are still
		// there: pipelined commands are not copied again for each line.
		switch {
		case n == fromHeld:
			held = held[rest:]
		case rest < n:
			held = append(append([]byte(nil), p[rest:n]...), held[fromHeld:]...)
		default:
			held = held[fromHeld:]
		}
		if len(held) == 0 {
			held = nil
		}
		g.held = held
		if len(g.say) > 0 {
			// The guard's own BAD for a line it kept from the parser,
			// which has answered everything before it.
			c.write(g.say)
			c.out.noteBad(bytes.Count(g.say, []byte("\n")))
			g.say = g.say[:0]
		}
		if ref != nil {
			c.refuse(ref)
			if out == 0 {
				return 0, errGuard
			}
			return out, nil
		}
		if out > 0 {
			if g.pend.set {
				c.out.take() // what is written from now on answers this line
			}
			return out, nil
		}
	}
}

// checkAppendEnd reads what follows an APPEND's message literal, which
// the session has just read to its end, up to the end of the line, and
// tells whether APPEND allows it there: nothing, or ")" after a
// "UTF8 (~{n}" literal (RFC 6855). imapserver stores the message before
// it looks, and then answers anything else with nothing at all (or with
// BAD, the message stored all the same): the session asks first. When it
// is not allowed, the line is replaced with the end imapserver expects,
// so that it ends the command with the session's BAD.
func (c *guardConn) checkAppendEnd() bool {
	g := c.g
	if !g.appendLit || g.skip > 0 || g.failed != nil {
		return true
	}
	g.appendLit = false
	buf := make([]byte, 4096)
	// line reads the rest of the line into held and returns its length.
	line := func() (int, bool) {
		for bytes.IndexByte(g.held, '\n') < 0 {
			if len(g.held) > maxCommandBytes {
				return 0, false // the guard refuses it when it scans it
			}
			n, err := c.Conn.Read(buf)
			g.held = append(g.held, buf[:n]...)
			if err != nil && n == 0 {
				return 0, false // the parser gets the error
			}
		}
		return bytes.IndexByte(g.held, '\n') + 1, true
	}
	n, ok := line()
	if !ok {
		return true
	}
	want := "\r\n"
	if g.paren {
		want = ")\r\n"
	}
	if string(g.held[:n]) == want {
		return true
	}
	// The command goes on to where it ends: through the literals that
	// end its lines, when the client sends them without waiting (as a
	// MULTIAPPEND would), the data of which is dropped here.
	for {
		size, nonSync, isLit := literalHeader(bytes.TrimRight(g.held[:n], "\r\n"))
		g.held = g.held[n:]
		if !isLit || !nonSync || size > g.appendLimit {
			break
		}
		drop := min(size, int64(len(g.held)))
		g.held = g.held[drop:]
		if _, err := io.CopyN(io.Discard, c.Conn, size-drop); err != nil {
			break
		}
		if n, ok = line(); !ok {
			break
		}
	}
	g.held = append([]byte(want), g.held...)
	return false
}

// refuse answers the command the guard will not pass on and ends the
// connection: nothing imapserver writes after it goes out, and its next
// Read fails.
func (c *guardConn) refuse(r *refusal) {
	c.s.Logger.Warn("imap: command refused, connection closed", "remote", c.RemoteAddr().String(), "reason", r.bye)
	c.write([]byte(r.reply + "\r\n* BYE " + r.bye + "\r\n"))
	c.closing.Store(true)
}

// startTLS answers a STARTTLS the guard took. Every command before it has
// been read and answered by now (the guard held back the rest of that
// read), so the login state is known: after a login it is refused, as
// RFC 9051 says; otherwise the connection is upgraded and handed to a new
// server, and io.EOF ends the plaintext server's connection.
func (c *guardConn) startTLS() error {
	tag := c.g.startTLS
	c.g.startTLS = ""
	if !c.g.interceptTLS {
		// On implicit TLS, or after STARTTLS: BAD, as RFC 9051 section
		// 6.2.1 has it and Dovecot answers (imapserver says NO, which
		// would mean our TLS is not set up).
		_, err := c.write([]byte(tag + " BAD TLS is already active\r\n"))
		return err
	}
	if c.authed.Load() || c.s.TLS == nil {
		// The lines behind it go on to the parser, as commands.
		_, err := c.write([]byte(tag + " BAD STARTTLS not available\r\n"))
		return err
	}
	// Whatever the client pipelined behind STARTTLS is dropped (RFC 9051
	// section 6.2.1: it must wait for the OK; an attacker's injected
	// plaintext must not run inside the TLS session).
	c.g.held = nil
	c.g.failed = io.EOF
	if _, err := c.Conn.Write([]byte(tag + " OK Begin TLS negotiation now\r\n")); err != nil {
		return err
	}
	c.detached.Store(true)
	tc := tls.Server(c.dc, c.s.TLS)
	c.dc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		c.s.Logger.Info("imap: STARTTLS handshake failed", "remote", c.dc.RemoteAddr().String(), "err", err)
		c.dc.Close()
		return io.EOF
	}
	c.dc.SetDeadline(time.Time{})
	up := newGuardConn(tc, c.dc, c.s)
	up.greeting = true
	c.s.serveOne(up, c.dc.LocalAddr(), false)
	return io.EOF
}

// Write drops the new server's greeting after STARTTLS, and whatever the
// plaintext server writes once the connection has been handed over or
// refused. What goes out is watched (c.out), for the guard.
func (c *guardConn) Write(p []byte) (int, error) {
	if c.detached.Load() || c.closing.Load() {
		return len(p), nil
	}
	if c.greeting {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			return len(p), nil
		}
		c.greeting = false
		if rest := p[i+1:]; len(rest) > 0 {
			n, err := c.emit(rest)
			return i + 1 + n, err
		}
		return len(p), nil
	}
	return c.emit(p)
}

// emit writes a response, the one for a command error imapserver could
// not classify replaced (see cmderr.go).
func (c *guardConn) emit(p []byte) (int, error) {
	if q, bye, ok := c.replaceServerBug(p); ok {
		var err error
		if len(q) > 0 {
			c.out.see(q)
			_, err = c.write(q)
		}
		if bye {
			c.closing.Store(true)
		}
		return len(p), err
	}
	var tag string
	if c.g != nil { // nil: a bare guardConn of a test
		tag, _ = c.g.saveOnly.Load().(string)
	}
	if tag != "" {
		if q, ok := dropESearch(p, tag); ok {
			c.out.see(q)
			if _, err := c.write(q); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	if c.g != nil {
		c.g.noteEnabled(p, c.out.lineStart)
	}
	if q, ok := hideCaps(p, c.out.lineStart); ok {
		c.out.see(q)
		if _, err := c.write(q); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	c.out.see(p)
	return c.write(p)
}

// hiddenCap is a capability imapserver announces that the server does not
// offer: UTF8=ACCEPT (RFC 6855). Once a client enables it, go-imap beta.8
// still reads mailbox names as modified UTF-7 and writes "&" as "&-",
// where the names are then plain UTF-8 (section 3): a folder "R&D" is
// listed as "R&-D", and "Q&A" cannot be created or selected. Thunderbird
// enables it when offered. Without it, clients use modified UTF-7, which
// beta.8 reads and writes right.
const hiddenCap = " UTF8=ACCEPT"

// hideCaps removes hiddenCap from the capability list that p starts with
// ("* CAPABILITY ..." or a "[CAPABILITY ...]" response code), when p
// starts a response line (start, asked only then: every write comes here)
// and holds that line whole; go-imap writes each such response at once.
func hideCaps(p []byte, start func() bool) ([]byte, bool) {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		return p, false
	}
	line := p[:i+1]
	if !bytes.HasPrefix(line, []byte("* CAPABILITY ")) && !bytes.Contains(line, []byte(" [CAPABILITY ")) || !start() {
		return p, false
	}
	for j := 0; ; {
		k := bytes.Index(line[j:], []byte(hiddenCap))
		if k < 0 {
			return p, false
		}
		k += j
		if end := k + len(hiddenCap); end < len(line) && (line[end] == ' ' || line[end] == ']' || line[end] == '\r') {
			return append(append(make([]byte, 0, len(p)), p[:k]...), p[end:]...), true
		}
		j = k + 1
	}
}

// Close, and the deadlines, belong to the TLS connection once handed over.
// What a cork holds goes out first (a BYE written in the middle of a long
// FETCH, with the end of the response before it), within closeFlushWait,
// unless a write is stuck on the connection.
func (c *guardConn) Close() error {
	if c.detached.Load() {
		return nil
	}
	if c.wmu.TryLock() {
		if len(c.pending) > 0 {
			c.Conn.SetWriteDeadline(time.Now().Add(closeFlushWait))
			c.flushLocked()
		}
		c.wmu.Unlock()
	}
	return c.Conn.Close()
}

// closeFlushWait bounds Close's flush of a cork to a client that reads
// nothing.
const closeFlushWait = 5 * time.Second

func (c *guardConn) SetDeadline(t time.Time) error {
	if c.detached.Load() {
		return nil
	}
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.wdl, c.wdlWant = t, t
	return c.Conn.SetDeadline(t)
}

func (c *guardConn) SetReadDeadline(t time.Time) error {
	if c.detached.Load() {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline: imapserver sets a 30 s write deadline before each
// response and clears it after, which for a 10,000-message FETCH is
// 20,000 timer changes, a sixth of the server's time for a flags resync.
// While corked (such a FETCH), a deadline asked for is armed only when it
// is over a second later than the one armed, and clearing waits for
// uncork: the deadline in force is never more than a second earlier than
// asked, and a stuck client is still cut off.
func (c *guardConn) SetWriteDeadline(t time.Time) error {
	if c.detached.Load() {
		return nil
	}
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.wdlWant = t
	if c.dlCorked && (t.IsZero() || !c.wdl.IsZero() && !t.Before(c.wdl) && t.Sub(c.wdl) < time.Second) {
		return nil
	}
	c.wdl = t
	return c.Conn.SetWriteDeadline(t)
}

// markLoggedIn tells the guard of the connection under an imapserver.Conn
// that a login succeeded.
func markLoggedIn(nc net.Conn) {
	if gc, ok := nc.(*guardConn); ok {
		gc.authed.Store(true)
	}
}

// literalGuard watches the plaintext a client sends, before imapserver's
// parser sees it, and keeps what the parser reads in step with what the
// client meant, around the hazards of go-imap v2 beta.8:
//
//   - a command that fails before it reads its non-synchronising literal
//     ({N+} or {N-}; a syntax error, or a size imapserver refuses) is
//     answered, and then the literal's data would be parsed as commands:
//     imapserver only discards the rest of the line;
//   - a synchronising literal over 4096 bytes outside APPEND makes beta.8
//     drop its own TOOBIG error and wait for data that never comes;
//   - a command over 50 KiB outside literals fails without the rest of its
//     line being discarded, and a line without a tag and a command name
//     ends the connection without a word.
//
// To know whether a literal was read, the guard passes the client's bytes
// on a line at a time: after a line end it passes nothing more until the
// parser asks for more, by which time the parser has either answered the
// command (a tagged response was written: the literal announced at the end
// of that line was not read, and it is skipped, with the rest of the
// command) or has asked for the data (a synchronising literal after a "+";
// a non-synchronising one without a word). The responses are watched for
// this (outWatch). The guard also answers an empty or tagless line with
// BAD itself; and it refuses, with BAD and BYE before closing the
// connection, a command over maxCommandBytes, a non-synchronising literal
// that imapserver would refuse without draining it (over 4096 bytes before
// login and outside APPEND, RFC 7888 section 4; in APPEND over the append
// limit; APPEND after login takes any size within it, LITERAL+, RFC 7888
// section 3), and a synchronising one over 4096 bytes outside APPEND.
//
// Apart from literals and lines it skips, and the end of an APPEND it
// refuses (checkAppendEnd), the guard never changes the bytes. It stops at STARTTLS, after which the bytes it sees are TLS
// records. Its state is the reading goroutine's, but for emptyHeaderList.
type literalGuard struct {
	appendLimit int64
	authed      *atomic.Bool // a login succeeded (nil: never)

	held []byte // read from the connection, not scanned yet
	more bool   // held is the undecided start of a command line: read more behind it

	skip    int64 // literal bytes to pass on
	drop    int64 // literal bytes of an answered command, never passed on
	discard bool  // the current command was answered: its lines are not passed on

	inLine   bool   // within a line
	contLine bool   // the next line continues the current command
	plusLine bool   // the current line answers a "+" (read with bufio's ReadLine)
	line     []byte // the end of the current line, up to guardLineMax bytes
	lineLen  int64  // bytes of the current line
	cmdLen   int64  // bytes of the current command, outside literals
	cmd      []byte // the start of the command's first line, up to cmdPrefixMax
	fetch    bool   // the command is a FETCH
	enable   bool   // the command is an ENABLE
	// rev2: imapserver enabled IMAP4rev2 (see noteEnabled): no \Recent
	// then (RFC 9051 removed it).
	rev2 atomic.Bool
	win  []byte // the end of the FETCH command, for an empty header list

	// appendLit: the literal being passed on is an APPEND's, and paren:
	// its header followed "UTF8 (~", so ")" must follow it. The guard
	// stops at its end (see checkAppendEnd). lit8: it is a literal8
	// ("~{n}", RFC 3516), which may hold NUL.
	appendLit, paren, lit8 bool

	pend pending // the line end last passed on, until the parser asks for more
	say  []byte  // the guard's own replies, written before anything goes on

	// saveOnly is the tag (string) of the current command when it is a
	// SEARCH RETURN (SAVE), whose ESEARCH response must not be sent
	// (RFC 5182 section 2.1): imapserver turns the options into (SAVE
	// ALL) and sends it. Read by emit.
	saveOnly atomic.Value

	// emptyHeaderList: the current command is a FETCH of HEADER.FIELDS
	// () or HEADER.FIELDS.NOT (), which imapserver takes for HEADER: the
	// session refuses it.
	emptyHeaderList atomic.Bool

	failed error
	// interceptTLS: STARTTLS is done by guardConn (the plaintext
	// listener). startTLS is the tag of a STARTTLS taken, until it is
	// answered: on a TLS connection with BAD (no upgrade can happen above
	// the guard).
	interceptTLS bool
	startTLS     string
}

// pending is a line end passed on to the parser: a literal header, or the
// end of a line without one.
type pending struct {
	set, lit, nonSync bool
	n                 int64
}

// refusal is the guard's answer to a command it will not pass on: the
// tagged reply, and the text of the BYE that follows.
type refusal struct{ reply, bye string }

const (
	guardLineMax   = 128
	cmdPrefixMax   = 64
	maxNonSyncLit  = 4096 // RFC 7888 LITERAL-
	maxBufferedLit = 4096 // imapserver's limit outside APPEND
	// maxCommandBytes bounds a command outside its literals. imapserver
	// fails one at 50 KiB (maxCommandSize) and then parses the rest of
	// its line as the next command; the guard refuses first.
	maxCommandBytes = 48 << 10
	// maxPlusLine bounds a line sent after a "+" (a SASL response, IDLE's
	// DONE), which imapserver reads with bufio's ReadLine in a 4096-byte
	// buffer: it would take the rest of a longer one for a command.
	maxPlusLine = 4000
	// fetchWindow is how much of a FETCH command is kept to recognise an
	// empty header list ("HEADER.FIELDS.NOT ()" is 20 bytes).
	fetchWindow      = 24
	errLiteralTooBig = "BAD [TOOBIG] Literal too large for this command"
)

var errGuard = errors.New("imap: command refused, connection closed")

// timedOut: err is a read deadline passing.
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// resolve settles the line end last passed on, now that the parser asks
// for more: cont and tagged say whether a continuation request ("+") and a
// tagged response were written since.
func (g *literalGuard) resolve(cont, tagged bool) {
	p := g.pend
	g.pend = pending{}
	switch {
	case p.lit && p.nonSync && tagged:
		// Answered before its literal was read: the literal, and the
		// rest of the command, never reach the parser.
		g.drop, g.discard, g.contLine = p.n, true, true
	case p.lit && (p.nonSync || cont && !tagged):
		g.skip, g.contLine = p.n, true
	case p.lit:
		// Refused before the "+": the client sends no data.
		g.contLine = false
	default:
		// A "+" asks for a line that is not a command (AUTHENTICATE,
		// IDLE); otherwise the command has ended.
		g.contLine = cont && !tagged
		g.plusLine = g.contLine
	}
}

// filter scans in (read from the connection, or held back before) in
// place: what goes to the parser is moved to in[:out]; in[rest:] is not
// scanned yet and is held for the next Read. It stops after the first
// line end it passes on (see resolve). full: in fills the reader's buffer
// (the start of a command is then judged on what there is).
// A refusal ends the connection; in[:out] still goes to the parser, and
// holds nothing of the refused line that it has not had already.
func (g *literalGuard) filter(in []byte, full bool) (out, rest int, ref *refusal) {
	i, w := 0, 0
	lineOut := 0 // where the current line starts in in[:w]
	for i < len(in) {
		if g.skip > 0 {
			k := int(min(g.skip, int64(len(in)-i)))
			copy(in[w:], in[i:i+k])
			w, i = w+k, i+k
			g.skip -= int64(k)
			lineOut = w
			if g.skip == 0 && g.appendLit {
				// What follows is for checkAppendEnd to see first.
				return w, i, nil
			}
			continue
		}
		if g.drop > 0 {
			k := int(min(g.drop, int64(len(in)-i)))
			i += k
			g.drop -= int64(k)
			continue
		}
		if !g.inLine && !g.contLine && !g.discard {
			// A command starts. imapserver ends the connection without a
			// word when it does not start with a tag and a name: such a
			// line gets BAD here instead, as Dovecot answers it.
			valid, decided, why := commandStart(in[i:])
			if !decided {
				if len(in)-i < cmdPrefixMax && !(full && i == 0) {
					// Held, and read again with what follows.
					g.more = w == 0
					return w, i, nil
				}
				valid = true // a tag or name too long to judge: imapserver's
			}
			g.newCommand()
			if !valid {
				g.say = append(g.say, why...)
				g.discard = true
			}
		}
		if !g.inLine {
			g.inLine, lineOut = true, w
		}
		j := bytes.IndexByte(in[i:], '\n')
		end := len(in)
		if j >= 0 {
			end = i + j + 1
		}
		seg := in[i:end]
		g.lineLen += int64(len(seg))
		if !g.discard {
			g.cmdLen += int64(len(seg))
			if g.cmdLen > maxCommandBytes || g.plusLine && g.lineLen > maxPlusLine {
				return lineOut, len(in), &refusal{g.tag() + " BAD [TOOBIG] Command line too long", "Command line too long"}
			}
		}
		g.see(seg)
		if !g.discard {
			copy(in[w:], seg)
			w += len(seg)
		}
		i = end
		if j < 0 {
			break
		}
		n, nonSync, isLit, ref := g.endOfLine()
		if g.discard {
			if isLit && nonSync {
				g.drop, g.contLine = n, true
			} else {
				// The command ends here (a client waiting for a "+"
				// has its answer already).
				g.discard, g.contLine = false, false
			}
			continue
		}
		if ref != nil {
			return lineOut, len(in), ref
		}
		if g.startTLS != "" {
			return lineOut, i, nil // the STARTTLS line is not passed on
		}
		g.pend = pending{set: true, lit: isLit, nonSync: nonSync, n: n}
		return w, i, nil
	}
	return w, i, nil
}

// newCommand resets the per-command state at the start of a command.
func (g *literalGuard) newCommand() {
	g.cmd = g.cmd[:0]
	g.cmdLen = 0
	g.fetch, g.enable = false, false
	g.win = g.win[:0]
	g.plusLine = false
	g.emptyHeaderList.Store(false)
}

// see records a piece of the current line: its end, the start of the
// command, and in a FETCH an empty header list.
func (g *literalGuard) see(seg []byte) {
	if len(seg) >= guardLineMax {
		g.line = append(g.line[:0], seg[len(seg)-guardLineMax:]...)
	} else {
		g.line = append(g.line, seg...)
		if k := len(g.line) - guardLineMax; k > 0 {
			g.line = g.line[:copy(g.line, g.line[k:])]
		}
	}
	if g.contLine || g.discard {
		if g.fetch && !g.discard {
			g.watchFetch(seg)
		}
		return
	}
	if len(g.cmd) < cmdPrefixMax {
		g.cmd = append(g.cmd, seg[:min(len(seg), cmdPrefixMax-len(g.cmd))]...)
		c := g.command()
		g.fetch = c == "FETCH" || c == "UID FETCH"
		g.enable = c == "ENABLE"
	}
	if g.fetch {
		g.watchFetch(seg)
	}
	if g.enable {
		g.watchEnable(seg)
	}
}

// watchEnable keeps an ENABLE command from enabling UTF8=ACCEPT, which the
// server does not offer (see hiddenCap): imapserver enables it whatever
// CAPABILITY said, and then reads names as modified UTF-7 all the same,
// so that a client in UTF-8 mode could not name "R&D" (mutt and neomutt
// send the ENABLE to any server with ENABLE). The last octet of the
// capability is changed, in seg, before it reaches the parser: imapserver
// then takes it for one it does not know and leaves it out of ENABLED, as
// Dovecot answers. The command may come in pieces: the capability is
// recognised at its last octet, which is in seg.
func (g *literalGuard) watchEnable(seg []byte) {
	const utf8Accept = " UTF8=ACCEPT"
	for k, b := range seg {
		if len(g.win) == fetchWindow {
			g.win = g.win[:copy(g.win, g.win[1:])]
		}
		g.win = append(g.win, b)
		if hasSuffixFold(g.win, utf8Accept) {
			seg[k] = '_'
		}
	}
}

// noteEnabled sets rev2 when p starts a response (start, asked only
// then) that is an ENABLED naming IMAP4rev2: imapserver enabled it (a
// refused ENABLE gets none).
func (g *literalGuard) noteEnabled(p []byte, start func() bool) {
	const enabled = "* ENABLED "
	if len(p) < len(enabled) || !bytes.EqualFold(p[:len(enabled)], []byte(enabled)) || !start() {
		return
	}
	line, _, _ := bytes.Cut(p, []byte("\n"))
	for _, f := range bytes.Fields(line[len(enabled):]) {
		if bytes.EqualFold(f, []byte("IMAP4rev2")) {
			g.rev2.Store(true)
		}
	}
}

// watchFetch looks for "HEADER.FIELDS ()" and "HEADER.FIELDS.NOT ()"
// (the space is optional to imapserver) in a FETCH command: header-list
// has at least one name (RFC 9051 section 9), and imapserver would take
// the empty list for BODY[HEADER].
func (g *literalGuard) watchFetch(seg []byte) {
	for _, b := range seg {
		if len(g.win) == fetchWindow {
			g.win = g.win[:copy(g.win, g.win[1:])]
		}
		g.win = append(g.win, b)
		if b != ')' {
			continue
		}
		w := bytes.TrimSuffix(g.win, []byte("()"))
		if len(w) == len(g.win) {
			continue
		}
		w = bytes.TrimSuffix(w, []byte(" "))
		if hasSuffixFold(w, "HEADER.FIELDS") || hasSuffixFold(w, "HEADER.FIELDS.NOT") {
			g.emptyHeaderList.Store(true)
		}
	}
}

func hasSuffixFold(b []byte, suffix string) bool {
	return len(b) >= len(suffix) && bytes.EqualFold(b[len(b)-len(suffix):], []byte(suffix))
}

// endOfLine ends the line in g.line: a literal header at its end, a
// refusal, or a STARTTLS taken (g.startTLS).
func (g *literalGuard) endOfLine() (n int64, nonSync, isLit bool, ref *refusal) {
	line := bytes.TrimRight(g.line, "\r\n")
	first := !g.contLine
	g.line, g.lineLen, g.inLine, g.plusLine = g.line[:0], 0, false, false
	if first && !g.discard {
		if f := bytes.Fields(g.cmd); len(f) == 2 && bytes.EqualFold(f[1], []byte("STARTTLS")) {
			g.startTLS = string(f[0])
			return 0, false, false, nil
		}
	}
	if first && !g.discard {
		g.saveOnly.Store(saveOnlyTag(g.cmd))
	}
	n, nonSync, isLit = literalHeader(line)
	if !isLit || g.discard {
		return n, nonSync, isLit, nil
	}
	isAppend := g.command() == "APPEND"
	g.appendLit = isAppend
	if i := bytes.LastIndexByte(line, '{'); isAppend && i >= 0 {
		g.paren = bytes.HasSuffix(line[:i], []byte("(~"))
		g.lit8 = bytes.HasSuffix(line[:i], []byte("~"))
	}
	switch {
	case nonSync && isAppend && g.authed != nil && g.authed.Load():
		// LITERAL+ (advertised once logged in): the message may be as
		// large as APPEND allows; over that, imapserver would refuse it
		// without draining it.
		if n > g.appendLimit {
			ref = &refusal{g.tag() + " " + errLiteralTooBig, "Literal too large"}
		}
	case nonSync && n > maxNonSyncLit:
		ref = &refusal{g.tag() + " " + errLiteralTooBig, "Literal too large"}
	case !nonSync && !isAppend && n > maxBufferedLit:
		ref = &refusal{g.tag() + " " + errLiteralTooBig, "Literal too large"}
	}
	return n, nonSync, true, ref
}

// saveOnlyTag returns the tag of cmd, the start of a command line, when
// it is a SEARCH (or UID SEARCH) RETURN (SAVE), and "" otherwise.
func saveOnlyTag(cmd []byte) string {
	f := bytes.Fields(cmd)
	i := 1
	if len(f) > i && bytes.EqualFold(f[i], []byte("UID")) {
		i++
	}
	if len(f) > i+2 && bytes.EqualFold(f[i], []byte("SEARCH")) &&
		bytes.EqualFold(f[i+1], []byte("RETURN")) && bytes.EqualFold(f[i+2], []byte("(SAVE)")) {
		return string(f[0])
	}
	return ""
}

// dropESearch removes from p the line of the ESEARCH response to the
// command tagged tag, if p holds it whole.
func dropESearch(p []byte, tag string) ([]byte, bool) {
	prefix := []byte("* ESEARCH (TAG \"" + tag + "\")")
	for i := 0; i < len(p); {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		if bytes.HasPrefix(p[i:], prefix) {
			return append(append([]byte(nil), p[:i]...), p[i+j+1:]...), true
		}
		i += j + 1
	}
	return p, false
}

// commandStart judges the start of a command line as imapserver reads it:
// a tag (atom), SP, a command name (atom), and for UID, SP and another
// atom. A tag with "+" is refused too (RFC 9051 section 9): the response
// to it would look like a continuation request to outWatch. decided is
// false while b is too short to tell; why is the BAD to send when it is
// not valid.
func commandStart(b []byte) (valid, decided bool, why string) {
	tag := atomLen(b)
	switch {
	case tag == len(b):
		return false, false, ""
	case tag == 0:
		if b[0] == '\r' || b[0] == '\n' {
			return false, true, "* BAD [CLIENTBUG] Empty command line\r\n"
		}
		return false, true, "* BAD [CLIENTBUG] Invalid tag\r\n"
	case bytes.IndexByte(b[:tag], '+') >= 0:
		return false, true, "* BAD [CLIENTBUG] Invalid tag\r\n"
	}
	bad := string(b[:tag]) + " BAD [CLIENTBUG] Missing command name\r\n"
	rest := b[tag:]
	for k := 0; k < 2; k++ {
		if rest[0] != ' ' {
			return false, true, bad
		}
		name := atomLen(rest[1:])
		switch {
		case name == len(rest)-1:
			return false, false, ""
		case name == 0:
			return false, true, bad
		}
		if k == 1 || !strings.EqualFold(string(rest[1:1+name]), "UID") {
			return true, true, ""
		}
		rest = rest[1+name:]
	}
	return true, true, ""
}

// atomLen is the length of the atom at the start of b (imapwire's
// IsAtomChar).
func atomLen(b []byte) int {
	for i, c := range b {
		switch c {
		case '(', ')', '{', ' ', '%', '*', '"', '\\', ']':
			return i
		}
		if unicode.IsControl(rune(c)) {
			return i
		}
	}
	return len(b)
}

// literalHeader parses "{N}", "{N+}" or "{N-}" at the end of a line.
func literalHeader(line []byte) (n int64, nonSync, ok bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false, false
	}
	num := line[open+1 : len(line)-1]
	if k := len(num); k > 0 && (num[k-1] == '+' || num[k-1] == '-') {
		nonSync, num = true, num[:k-1]
	}
	v, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || v < 0 {
		return 0, false, false
	}
	return v, nonSync, true
}

func (g *literalGuard) tag() string {
	f := bytes.Fields(g.cmd)
	if len(f) == 0 {
		return "*"
	}
	return string(f[0])
}

func (g *literalGuard) command() string {
	f := bytes.Fields(g.cmd)
	if len(f) < 2 {
		return ""
	}
	name := string(bytes.ToUpper(f[1]))
	if name == "UID" && len(f) > 2 {
		return "UID " + string(bytes.ToUpper(f[2]))
	}
	return name
}

// outWatch follows the responses written to the client for the guard: it
// records whether a continuation request ("+") or a tagged response began
// since the last take. It skips the data of the literals in them, so that
// a message body is never taken for either.
type outWatch struct {
	mu     sync.Mutex
	mid    bool  // within a line
	skip   int64 // literal data still to come
	tail   []byte
	head   []byte // the start of the line, up to outHeadMax bytes
	cont   bool
	tagged bool
	bad    int // tagged BAD responses in a row (see maxBadCommands)
}

// outHeadMax is how much of a response line is kept to tell a BAD.
const outHeadMax = 64

// maxBadCommands is how many commands answered BAD in a row end a
// connection, as in Dovecot: what sends them is not an IMAP client (an
// HTTP request sent to the port, say), or has lost its way.
const maxBadCommands = 20

// noteBad counts n BAD responses the guard wrote itself.
func (o *outWatch) noteBad(n int) {
	o.mu.Lock()
	o.bad += n
	o.mu.Unlock()
}

// badRun is the number of BAD responses in a row so far.
func (o *outWatch) badRun() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bad
}

// endLine counts the response line in head: a tagged BAD adds one, any
// other tagged response (the command was understood) starts again.
func (o *outWatch) endLine() {
	if len(o.head) == 0 || o.head[0] == '*' || o.head[0] == '+' {
		return
	}
	if _, rest, ok := bytes.Cut(o.head, []byte(" ")); ok && bytes.HasPrefix(rest, []byte("BAD")) {
		o.bad++
	} else {
		o.bad = 0
	}
}

// outTailMax keeps enough of a line's end for "{4294967295}\r\n".
const outTailMax = 24

func (o *outWatch) see(p []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for len(p) > 0 {
		if o.skip > 0 {
			k := min(o.skip, int64(len(p)))
			o.skip -= k
			p = p[k:]
			continue
		}
		if !o.mid {
			switch p[0] {
			case '+':
				o.cont = true
			case '*':
			default:
				o.tagged = true
			}
			o.mid = true
		}
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i+1]
		}
		if k := outHeadMax - len(o.head); k > 0 {
			o.head = append(o.head, seg[:min(k, len(seg))]...)
		}
		if len(seg) >= outTailMax {
			o.tail = append(o.tail[:0], seg[len(seg)-outTailMax:]...)
		} else {
			o.tail = append(o.tail, seg...)
			if k := len(o.tail) - outTailMax; k > 0 {
				o.tail = o.tail[:copy(o.tail, o.tail[k:])]
			}
		}
		if i < 0 {
			return
		}
		p = p[i+1:]
		// A literal's data follows its header, and the line goes on
		// after it.
		n, _, ok := literalHeader(bytes.TrimRight(o.tail, "\r\n"))
		o.mid, o.skip, o.tail = ok, n, o.tail[:0]
		if !ok {
			o.endLine()
			o.head = o.head[:0]
		}
	}
}

// lineStart tells whether what is written next starts a response line.
func (o *outWatch) lineStart() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.mid && o.skip == 0
}

// take returns what began since the last take.
func (o *outWatch) take() (cont, tagged bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	cont, tagged = o.cont, o.tagged
	o.cont, o.tagged = false, false
	return cont, tagged
}
