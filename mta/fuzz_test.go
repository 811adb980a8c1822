package mta

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzConnection feeds arbitrary client input to a running server: it
// must never crash, must keep serving, and whatever it stores has clean
// CRLF line endings.
func FuzzConnection(f *testing.F) {
	for _, seed := range []string{
		"EHLO a.example\r\nMAIL FROM:<b@c.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nx\r\n.\r\n",
		"EHLO a.example\r\nMAIL FROM:<b@c.example>\r\nRCPT TO:<alice@example.test>\r\nBDAT 3 LAST\r\nx\r\n",
		"HELO a\r\nMAIL FROM:<>\r\nRCPT TO:<\"a@b\"@example.test>\r\n",
		"EHLO a\r\nMAIL FROM:<b@c> SIZE=99999999999\r\nRCPT TO:<@x:alice@example.test>\r\nDATA\r\na\n.\n\r\n.\r\n",
		"\x00\xff\r\n\r\n.\r\nAUTH PLAIN AGFsaWNlAHB3\r\nSTARTTLS\r\n",
	} {
		f.Add([]byte(seed))
	}
	_, st, addr := startTestServer(f, func(s *Server) {
		s.CommandTimeout = 200 * time.Millisecond
		s.DataTimeout = 200 * time.Millisecond
	})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		c.Write(in)
		c.Write([]byte("\r\n.\r\nQUIT\r\n"))
		io.Copy(io.Discard, c)

		c2, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		c2.SetDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 3)
		if _, err := io.ReadFull(c2, buf); err != nil || string(buf) != "220" {
			t.Fatalf("server not serving after input %q: %q %v", in, buf, err)
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		for _, b := range st.bodies {
			if checkLineEndings(b) != nil || strings.Contains(string(b), "\x00") {
				t.Fatalf("stored %q", b)
			}
		}
	})
}
