package mta

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// errClientTimeout is what every read of a timeoutConn gets once one has
// timed out. Its text is what a client may see (go-smtp writes a failed
// BDAT chunk's error into its reply): no socket addresses.
var errClientTimeout error = clientTimeout{}

type clientTimeout struct{}

func (clientTimeout) Error() string   { return "timeout waiting for the client" }
func (clientTimeout) Timeout() bool   { return true }
func (clientTimeout) Temporary() bool { return true }

// timeoutConn makes a read timeout final: once a read has timed out,
// every later read fails at once, and the session ends (go-smtp answers
// 421 4.4.2 and closes). go-smtp v0.25.1 read on after a timeout: a BDAT
// chunk that stalled was answered 554 and the rest of its octets were
// then read as commands (a second message smuggled in by whoever wrote
// the chunk), and a command line whose CRLF had not come was run as if
// whole once the timeout came. Postfix too ends the session at a
// timeout.
//
// In plaintext, a timeout with part of a line read is answered 421 4.4.2
// and closes the connection at once: go-smtp runs that part as if it were
// the whole line (its reader hands over what it has before the error),
// and its reply then goes nowhere. Under TLS (from the start, or once
// sequenceConn saw STARTTLS accepted) the octets read are records, not
// lines, and a reply written here would break the TLS stream: the
// session ends at the next read, with go-smtp's 421.
type timeoutConn struct {
	net.Conn
	timedOut atomic.Bool
	tls      atomic.Bool              // the octets read are TLS records
	secure   atomic.Pointer[tls.Conn] // the TLS over it, once a session runs there (see NoteTLS)
	busy     atomic.Bool              // octets came that no reply has followed yet
	wmu      sync.Mutex               // held while writing: a reply is whole, and Hangup sees it done
	partial  bool                     // the last octet read was not LF
	set      *Conns                   // nil if counted in none
	pace     atomic.Pointer[pace]     // a message transfer's deadlines, while one runs (see PaceData)
}

// pace holds the deadlines of a message transfer (RFC 5321 section
// 4.5.3.2): each read waits at most idle for the next bytes, and the
// transfer as a whole takes at most timeout plus the time its bytes take
// at rate bytes per second. A slow but steady sender of a large message
// is not cut; one that trickles is.
type pace struct {
	start   time.Time
	timeout time.Duration
	rate    int64
	idle    time.Duration
	n       atomic.Int64 // bytes read since start
}

func (p *pace) deadline() time.Time {
	total := p.start.Add(p.timeout + time.Duration(p.n.Load()/p.rate)*time.Second)
	if idle := time.Now().Add(p.idle); idle.Before(total) {
		return idle
	}
	return total
}

// PaceData sets the read deadlines of c's connection for a message
// transfer, until stop is called: every read waits at most idle for
// bytes, and the whole transfer takes at most timeout plus the time the
// bytes received so far take at rate bytes per second (0: 1024). c may
// be the TLS connection over it. Without a timeoutConn under c the
// transfer gets one deadline, timeout from now.
func PaceData(c net.Conn, timeout time.Duration, rate int64, idle time.Duration) (stop func()) {
	if rate <= 0 {
		rate = 1024
	}
	w, ok := timeoutConnOf(c)
	if !ok {
		c.SetReadDeadline(time.Now().Add(timeout))
		return func() {}
	}
	p := &pace{start: time.Now(), timeout: timeout, rate: rate, idle: idle}
	w.pace.Store(p)
	return func() { w.pace.CompareAndSwap(p, nil) }
}

// timeoutConnOf finds the timeoutConn under c, through TLS too.
func timeoutConnOf(c net.Conn) (*timeoutConn, bool) {
	for range 8 {
		switch t := c.(type) {
		case *timeoutConn:
			return t, true
		case *tls.Conn:
			c = t.NetConn()
		case interface{ Unwrap() net.Conn }:
			c = t.Unwrap()
		default:
			return nil, false
		}
	}
	return nil, false
}

// Conns is the set of an SMTP server's open connections, which it wraps
// (see timeoutConn), so that a shutdown ends them itself. go-smtp's Close
// ended them under running commands (a MAIL being handled met a nil
// session: a panic go-smtp recovered, the client cut) and told an idle
// client nothing. The zero value is ready.
type Conns struct {
	mu sync.Mutex
	m  map[*timeoutConn]struct{}
}

// Wrap wraps c, the connection under any TLS; tls says it starts with
// TLS (implicit TLS, port 465).
func (cs *Conns) Wrap(c net.Conn, tls bool) net.Conn {
	t := &timeoutConn{Conn: c, set: cs}
	t.tls.Store(tls)
	cs.mu.Lock()
	if cs.m == nil {
		cs.m = map[*timeoutConn]struct{}{}
	}
	cs.m[t] = struct{}{}
	cs.mu.Unlock()
	return t
}

// Hangup ends every connection of the set. A client that has had the
// reply to all it sent is told 421 4.3.2 first (RFC 5321 section 3.8):
// in plaintext written here, under the write lock, so that it follows a
// reply whole; under TLS through the TLS connection, whose writes are
// whole records, once a session runs over it (a client between its
// handshake and EHLO sees the connection close). Each session then ends
// on its own goroutine, as at any closed connection.
func (cs *Conns) Hangup() {
	cs.mu.Lock()
	conns := make([]*timeoutConn, 0, len(cs.m))
	for c := range cs.m {
		conns = append(conns, c)
	}
	cs.mu.Unlock()
	// A write stuck on a client that reads nothing ends within a second.
	deadline := time.Now().Add(time.Second)
	for _, c := range conns {
		c.Conn.SetWriteDeadline(deadline)
	}
	for _, c := range conns {
		c.wmu.Lock()
		idle := !c.busy.Load()
		if idle && !c.tls.Load() {
			io.WriteString(c.Conn, formatReply(ErrShuttingDown))
		}
		c.wmu.Unlock()
		// The TLS connection's write comes down to Write, which takes
		// wmu: a command read meanwhile may get the 421 as its reply,
		// which is one it may always get.
		if sc := c.secure.Load(); idle && c.tls.Load() && sc != nil {
			io.WriteString(sc, formatReply(ErrShuttingDown))
		}
		c.Close()
	}
}

// NoteTLS tells the connection set of a session that runs over TLS the
// TLS connection, for Hangup to write its 421 through; go-smtp makes a
// new session after STARTTLS. Backends call it in NewSession.
func NoteTLS(c *smtp.Conn) {
	sc, ok := c.Conn().(*tls.Conn)
	if !ok {
		return
	}
	if w, ok := under[*timeoutConn](sc.NetConn()); ok {
		w.secure.Store(sc)
	}
}

// Write writes a reply (or TLS records): whatever came before it is
// answered.
func (c *timeoutConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n, err := c.Conn.Write(p)
	c.busy.Store(false)
	return n, err
}

// Close closes the connection and counts it out of its set.
func (c *timeoutConn) Close() error {
	if c.set != nil {
		c.set.mu.Lock()
		delete(c.set.m, c)
		c.set.mu.Unlock()
	}
	return c.Conn.Close()
}

// startTLS tells the timeoutConn under c, if any, that TLS starts.
func startTLS(c net.Conn) {
	if w, ok := under[*timeoutConn](c); ok {
		w.tls.Store(true)
	}
}

// Unwrap returns the connection under it.
func (c *timeoutConn) Unwrap() net.Conn { return c.Conn }

func (c *timeoutConn) Read(p []byte) (int, error) {
	if c.timedOut.Load() {
		return 0, errClientTimeout
	}
	pc := c.pace.Load()
	if pc != nil {
		c.Conn.SetReadDeadline(pc.deadline())
	}
	n, err := c.Conn.Read(p)
	if pc != nil {
		pc.n.Add(int64(n))
	}
	if n > 0 {
		c.busy.Store(true)
		c.partial = p[n-1] != '\n'
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		c.timedOut.Store(true)
		if c.partial && !c.tls.Load() {
			c.wmu.Lock()
			c.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(c.Conn, formatReply(errTimeout))
			c.wmu.Unlock()
			c.Close()
		}
		return n, errClientTimeout
	}
	return n, err
}
