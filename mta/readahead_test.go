package mta

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// TestReadAhead: small reads are served in order from one larger read of
// the connection, the buffer is let go once drained, reads as large as the
// buffer go straight through, and the error after the last bytes (here
// EOF) is returned once they are read.
func TestReadAhead(t *testing.T) {
	client, server := net.Pipe()
	c := &readAheadConn{Conn: server}
	data := bytes.Repeat([]byte("0123456789abcdef"), 3000) // 48,000 bytes
	go func() {
		client.Write(data[:10000])
		client.Write(data[10000:])
		client.Close()
	}()
	var got []byte
	p := make([]byte, 4096)
	for len(got) < 10000 {
		n, err := c.Read(p[:700])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p[:n]...)
	}
	if len(got) != 10000 || c.buf != nil {
		t.Fatalf("after the first write: %d bytes read, buffer held %v", len(got), c.buf != nil)
	}
	big := make([]byte, readAheadSize)
	n, err := c.Read(big)
	if err != nil || n == 0 || c.buf != nil {
		t.Fatalf("large read: %d, %v, buffer held %v", n, err, c.buf != nil)
	}
	got = append(got, big[:n]...)
	for {
		n, err := c.Read(p[:100])
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, not the %d written in order", len(got), len(data))
	}
}

// TestReadAheadDeadline: a timeout is returned as the connection's own
// error, so the DATA reader still recognises it.
func TestReadAheadDeadline(t *testing.T) {
	_, server := net.Pipe()
	c := &readAheadConn{Conn: server}
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := c.Read(make([]byte, 10))
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if c.buf != nil {
		t.Fatal("buffer held after a failed read")
	}
}
