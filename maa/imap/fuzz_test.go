package imap

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzCommands feeds arbitrary command lines to a logged-in session with a
// selected mailbox holding a MIME message. The server must answer and
// keep going (or close the connection), never panic.
func FuzzCommands(f *testing.F) {
	var buf syncBuffer
	e := newTestEnv(f, func(s *Server) {
		s.AllowPlaintextAuth = true
		s.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError}))
	})
	e.deliver(testAlice, "INBOX", string(loadCRLF(f, "testdata/nested.eml")))
	for _, seed := range []string{
		"a FETCH 1 (BODY[3.2] BINARY[4] BODYSTRUCTURE ENVELOPE)",
		"a UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (Subject)]<0.10>)",
		"a SEARCH OR BODY x TEXT y NOT HEADER X-A \"\"",
		"a STORE 1 +FLAGS ($Junk)\r\nb EXPUNGE",
		"a LIST \"\" \"*%*%*%*%*%*%*%*%\"",
		"a APPEND INBOX {5}\r\nhello",
		"a COPY 1 Archive\r\nb MOVE 1 Trash",
		"a CREATE \"x/y\"\r\nb RENAME x z\r\nc DELETE z/y",
		"a IDLE\r\nDONE",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		conn, err := net.Dial("tcp", e.plain)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// An unterminated string or literal leaves the server waiting for
		// more, which is right; the client gives up after 2 s.
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		r := bufio.NewReader(conn)
		fmt.Fprintf(conn, "0 LOGIN %s \"%s\"\r\n0b EXAMINE INBOX\r\n", testAlice, testPass)
		in := strings.ReplaceAll(input, "\n", "\r\n")
		io.WriteString(conn, in+"\r\nzz LOGOUT\r\n")
		io.Copy(io.Discard, r) // until the server closes
		if s := buf.String(); strings.Contains(s, "panic") {
			t.Fatalf("server panicked on %q:\n%s", input, s)
		}
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
