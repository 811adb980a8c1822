package mta

import (
	"net"
	"sync"
)

// readAheadSize is how much one read of the socket may take.
const readAheadSize = 32 << 10

// readAheadConn serves the small reads of go-smtp's 4 KiB bufio.Reader
// from one larger read of the socket: a 100 KiB message arrived in 25 or
// more read system calls, now in four or so (about a tenth of the server's
// CPU for 100 KiB messages). The buffer comes from a pool and is held only
// while it holds bytes not yet read, so an idle connection holds none.
//
// Bytes a client pipelines after STARTTLS are discarded with go-smtp's
// buffer as before, or, past the 4 KiB that buffer takes, reach the TLS
// handshake, which fails on them: never are they taken as commands.
type readAheadConn struct {
	net.Conn
	buf  *[]byte // nil when empty
	r, w int     // unread bytes are (*buf)[r:w]
}

var readAheadBufs = sync.Pool{New: func() any { b := make([]byte, readAheadSize); return &b }}

// buffered is the number of bytes read ahead and not yet taken.
func (c *readAheadConn) buffered() int {
	if c.buf == nil {
		return 0
	}
	return c.w - c.r
}

// readAhead is the number of bytes c's read-ahead holds, when c is (or
// wraps) port 25's plaintext connection; 0 otherwise (under TLS, go-smtp's
// connection is the tls.Conn).
func readAhead(c net.Conn) int {
	if w, ok := under[*readAheadConn](c); ok {
		return w.buffered()
	}
	return 0
}

// under finds the connection of type T that c is or wraps, through
// Unwrap methods.
func under[T net.Conn](c net.Conn) (T, bool) {
	for range 8 {
		if w, ok := c.(T); ok {
			return w, true
		}
		u, ok := c.(interface{ Unwrap() net.Conn })
		if !ok {
			break
		}
		c = u.Unwrap()
	}
	var zero T
	return zero, false
}

// Unwrap returns the connection under it.
func (c *readAheadConn) Unwrap() net.Conn { return c.Conn }

func (c *readAheadConn) Read(p []byte) (int, error) {
	if c.buf == nil {
		if len(p) >= readAheadSize {
			return c.Conn.Read(p)
		}
		buf := readAheadBufs.Get().(*[]byte)
		n, err := c.Conn.Read(*buf)
		if n <= 0 {
			readAheadBufs.Put(buf)
			return 0, err
		}
		// A read that returns bytes and an error together: the error
		// (EOF, a timeout, a reset) comes again on the next read.
		c.buf, c.r, c.w = buf, 0, n
	}
	n := copy(p, (*c.buf)[c.r:c.w])
	c.r += n
	if c.r == c.w {
		readAheadBufs.Put(c.buf)
		c.buf = nil
	}
	return n, nil
}
