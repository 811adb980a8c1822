package mta

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

// writesConn records each Write; Read returns nothing.
type writesConn struct {
	net.Conn
	writes []string
}

func (c *writesConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, string(p))
	return len(p), nil
}

func (c *writesConn) Read(p []byte) (int, error) { return 0, nil }

// TestSequenceConnOneWritePerReply: the lines of a multi-line reply, each
// written on its own as go-smtp does, leave in one write with the last
// line; a single-line reply goes at once; a read sends what is held; and
// the 502 -> 503 rewrite still applies to held lines.
func TestSequenceConnOneWritePerReply(t *testing.T) {
	rec := &writesConn{}
	c := newSequenceConn(rec)
	for _, l := range []string{"250-mail.example.test\r\n", "250-PIPELINING\r\n", "250-8BITMIME\r\n", "250 SMTPUTF8\r\n"} {
		if n, err := c.Write([]byte(l)); n != len(l) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", l, n, err)
		}
	}
	if len(rec.writes) != 1 || rec.writes[0] != "250-mail.example.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n" {
		t.Fatalf("EHLO reply went out as %q", rec.writes)
	}
	c.Write([]byte("250 2.0.0 Roger, accepting mail from <a@b>\r\n"))
	if len(rec.writes) != 2 {
		t.Fatalf("a one-line reply was held: %q", rec.writes)
	}
	c.Write([]byte("502-5.5.1 Missing MAIL FROM command.\r\n"))
	if len(rec.writes) != 2 {
		t.Fatalf("a continued line went out alone: %q", rec.writes)
	}
	c.Read(make([]byte, 10))
	if len(rec.writes) != 3 || rec.writes[2] != "502-5.5.1 Missing MAIL FROM command.\r\n" {
		t.Fatalf("Read did not send the held line: %q", rec.writes)
	}
	// Held lines are bounded: a reply of many long lines goes out in
	// pieces of at most maxHeldReply bytes.
	long := "250-" + strings.Repeat("x", 994) + "\r\n"
	for range 20 {
		c.Write([]byte(long))
	}
	c.Write([]byte("250 end\r\n"))
	var all bytes.Buffer
	for _, w := range rec.writes[3:] {
		if len(w) > maxHeldReply+len(long) {
			t.Fatalf("one write of %d bytes", len(w))
		}
		all.WriteString(w)
	}
	if want := strings.Repeat(long, 20) + "250 end\r\n"; all.String() != want {
		t.Fatalf("long reply out of order or lost: %d bytes, want %d", all.Len(), len(want))
	}
}
