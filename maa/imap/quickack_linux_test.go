package imap

import (
	"net"
	"syscall"
	"testing"
)

// limited stands for the connection limiter's wrapper (connlimit), which
// quickAck must see through.
type limited struct{ net.Conn }

func (c limited) Unwrap() net.Conn { return c.Conn }

// TestQuickAckBeforeRead: every read of an IMAP connection first turns on
// TCP_QUICKACK, so that a literal is acknowledged at once. A client with
// Nagle's algorithm on that writes the literal and its CRLF apart (Python's
// imaplib) waited for a delayed ACK on each APPEND: 45 ms (probe 8; see
// BenchmarkAppendNagleClient).
func TestQuickAckBeforeRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	quickAckOn := func() int {
		rc, err := server.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		v := -1
		rc.Control(func(fd uintptr) { v, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK) })
		return v
	}
	dc := &deadlineConn{Conn: limited{server}, s: &Server{}}
	buf := make([]byte, 16)
	for i := range 20 {
		// An interactive exchange puts the server side in delayed-ACK
		// (ping-pong) mode, where TCP_QUICKACK reads 0.
		client.Write([]byte("a NOOP\r\n"))
		if _, err := dc.Read(buf); err != nil {
			t.Fatal(err)
		}
		if v := quickAckOn(); v != 1 {
			t.Fatalf("exchange %d: TCP_QUICKACK %d after a read, want 1", i, v)
		}
		server.Write([]byte("a OK\r\n"))
		client.Read(buf)
	}
}
