package imap

import (
	"net"
	"syscall"
)

// quickAck turns on TCP_QUICKACK for the next segments of c, if it is a
// TCP connection: they are acknowledged at once, not up to 40 ms later.
// A client that writes an APPEND literal and its closing CRLF in two
// writes with Nagle's algorithm on (Python's imaplib, and so many
// migration scripts) holds the CRLF until the literal is acknowledged;
// after our "+" continuation the kernel delays that ACK (it takes the
// session as interactive), and every APPEND then took 45 ms. The
// setting does not last (the kernel returns to delayed ACKs on its own),
// so it is made before every read.
func quickAck(c net.Conn) {
	for range 4 { // under the connection limiter's wrapper
		u, ok := c.(interface{ Unwrap() net.Conn })
		if !ok {
			break
		}
		c = u.Unwrap()
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	if rc, err := tc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
		})
	}
}
