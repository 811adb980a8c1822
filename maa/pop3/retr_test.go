package pop3

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func TestRETRAndTOP(t *testing.T) {
	srv, st := newTestServer(t)
	st.add(alice, msg1)
	st.add(alice, msg2)
	st.add(alice, msg3)
	c := login(t, serve(t, srv, false))
	for i, m := range []string{msg1, msg2, msg3} {
		if got, want := c.cmdOK(fmt.Sprintf("RETR %d", i+1)), fmt.Sprintf("+OK %d octets", len(m)); got != want {
			t.Errorf("RETR %d: %q, want %q", i+1, got, want)
		}
		body := c.rawMulti()
		want := m
		if !strings.HasSuffix(want, "\r\n") {
			want += "\r\n"
		}
		if got := unstuff(body); got != want {
			t.Errorf("RETR %d: %q, want %q", i+1, got, want)
		}
	}
	c.cmdOK("RETR 1")
	if raw := c.rawMulti(); !strings.Contains(raw, "\r\n..leading dot\r\n") {
		t.Errorf("not dot-stuffed: %q", raw)
	}
	c.cmdOK("TOP 2 0")
	if got := c.rawMulti(); got != "From: b@example.test\r\nSubject: two\r\n\r\n" {
		t.Errorf("TOP 2 0 = %q", got)
	}
	c.cmdOK("TOP 2 2")
	if got := c.rawMulti(); got != "From: b@example.test\r\nSubject: two\r\n\r\nline 1\r\nline 2\r\n" {
		t.Errorf("TOP 2 2 = %q", got)
	}
	// Any non-negative count (RFC 1939 section 7), past 2^31 too.
	for _, n := range []string{"99", "4294967295", "18446744073709551615"} {
		c.cmdOK("TOP 2 " + n)
		if got := c.rawMulti(); got != msg2 {
			t.Errorf("TOP 2 %s = %q", n, got)
		}
	}
	for _, n := range []string{"18446744073709551616", "-1"} {
		if got := c.cmd("TOP 2 " + n); !strings.HasPrefix(got, "-ERR") {
			t.Errorf("TOP 2 %s: %q, want -ERR", n, got)
		}
	}
	c.cmdOK("TOP 1 1")
	if got := c.rawMulti(); got != "From: a@example.test\r\nSubject: one\r\n\r\nHello\r\n" {
		t.Errorf("TOP 1 1 = %q", got)
	}
}

func TestPipelining(t *testing.T) {
	srv, st := newTestServer(t)
	st.add(alice, msg1)
	st.add(alice, msg2)
	c := login(t, serve(t, srv, false))
	io.WriteString(c.conn, "STAT\r\nLIST 1\r\nRETR 2\r\nNOOP\r\n")
	c.expectPrefix("+OK 2 ")
	c.expectPrefix("+OK 1 ")
	c.expectPrefix("+OK ")
	if got := c.rawMulti(); got != msg2 {
		t.Errorf("RETR 2 = %q", got)
	}
	c.expectPrefix("+OK")
}

func TestLineTooLong(t *testing.T) {
	srv, _ := newTestServer(t)
	srv.MaxLineBytes = 1200
	c := dial(t, serve(t, srv, false))
	c.send("NOOP " + strings.Repeat("x", 2000))
	c.expectPrefix("-ERR Command line too long")
	c.expectEOF()
}

func TestIdleTimeout(t *testing.T) {
	srv, _ := newTestServer(t)
	srv.IdleTimeout = 200 * time.Millisecond
	c := dial(t, serve(t, srv, false))
	c.expectPrefix("-ERR Autologout")
	c.expectEOF()
}

func TestShutdownEndsIdleSessions(t *testing.T) {
	srv, _ := newTestServer(t)
	addr := serve(t, srv, false)
	c := login(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	c.expectPrefix("-ERR [SYS/TEMP] Server shutting down")
	c.expectEOF()
}

func TestPanicRecovered(t *testing.T) {
	srv, st := newTestServer(t)
	st.panicOn = alice
	addr := serve(t, srv, false)
	c := dial(t, addr)
	c.starttls()
	c.cmdOK("USER " + alice)
	c.send("PASS " + alicePwd)
	c.expectPrefix("-ERR [SYS/TEMP] Internal error")
	c.expectEOF()
	c = dial(t, addr) // still serving
	c.cmdOK("CAPA")
}

func TestDotWriter(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ".\r\n"},
		{"a\r\n", "a\r\n.\r\n"},
		{".\r\n", "..\r\n.\r\n"},
		{"a\r\n.\r\n", "a\r\n..\r\n.\r\n"},
		{"a\r\n..b\r\n.", "a\r\n...b\r\n..\r\n.\r\n"},
		{"no newline", "no newline\r\n.\r\n"},
		{"bare\n.lf", "bare\n..lf\r\n.\r\n"},
	}
	for _, tc := range cases {
		// Every split of the input into two writes gives the same bytes.
		for cut := 0; cut <= len(tc.in); cut++ {
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			d := &dotWriter{w: w, bol: true}
			d.write([]byte(tc.in[:cut]))
			d.write([]byte(tc.in[cut:]))
			d.finish()
			w.Flush()
			if out.String() != tc.want {
				t.Errorf("%q cut at %d: %q, want %q", tc.in, cut, out.String(), tc.want)
			}
		}
	}
}

func TestDotWriterTOP(t *testing.T) {
	in := "H: 1\r\nH: 2\r\n\r\n.b1\r\nb2\r\nb3\r\n"
	cases := []struct {
		lines int
		want  string
	}{
		{0, "H: 1\r\nH: 2\r\n\r\n.\r\n"},
		{1, "H: 1\r\nH: 2\r\n\r\n..b1\r\n.\r\n"},
		{3, "H: 1\r\nH: 2\r\n\r\n..b1\r\nb2\r\nb3\r\n.\r\n"},
		{9, "H: 1\r\nH: 2\r\n\r\n..b1\r\nb2\r\nb3\r\n.\r\n"},
	}
	for _, tc := range cases {
		for cut := 0; cut <= len(in); cut++ {
			var out bytes.Buffer
			w := bufio.NewWriter(&out)
			d := &dotWriter{w: w, bol: true, top: true, inHeader: true, lines: tc.lines}
			d.write([]byte(in[:cut]))
			if !d.done {
				d.write([]byte(in[cut:]))
			}
			d.finish()
			w.Flush()
			if out.String() != tc.want {
				t.Errorf("TOP %d cut at %d: %q, want %q", tc.lines, cut, out.String(), tc.want)
			}
		}
	}
}
