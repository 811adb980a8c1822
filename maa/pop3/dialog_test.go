package pop3

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDialogs replays the protocol dialogs in testdata/dialogs against a
// server whose INBOX holds msg1, msg2 and msg3. A line is one of:
//
//	C: line        sent by the client
//	S: line        expected from the server, exactly
//	S: prefix*     expected from the server, by prefix
//	! starttls     run the TLS handshake (after the STLS reply)
//	! eof          the server closes the connection
//	# comment
func TestDialogs(t *testing.T) {
	files, err := filepath.Glob("testdata/dialogs/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dialogs: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			srv, st := newTestServer(t)
			st.add(alice, msg1)
			st.add(alice, msg2)
			st.add(alice, msg3)
			c := dial(t, serve(t, srv, false))
			for n, line := range strings.Split(string(data), "\n") {
				c.step(t, file, n+1, strings.TrimRight(line, "\r"))
			}
		})
	}
}

func (c *client) step(t *testing.T, file string, n int, line string) {
	t.Helper()
	switch {
	case line == "" || strings.HasPrefix(line, "#"):
	case strings.HasPrefix(line, "C: "):
		c.send(line[3:])
	case strings.HasPrefix(line, "S: "):
		want := line[3:]
		got := c.readLine()
		if p, ok := strings.CutSuffix(want, "*"); ok && strings.HasPrefix(got, p) {
			return
		}
		if got != want {
			t.Fatalf("%s:%d: got %q, want %q", file, n, got, want)
		}
	case line == "! starttls":
		c.handshake()
	case line == "! eof":
		c.expectEOF()
	default:
		t.Fatalf("%s:%d: bad dialog line %q", file, n, line)
	}
}
