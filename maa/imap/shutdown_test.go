package imap

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestShutdownFinishesAppend: shutting down lets an APPEND whose message
// is still coming finish and be stored, then ends every logged-in
// session with BYE (it used to close the connections at once, cutting
// the APPEND, and said nothing).
func TestShutdownFinishesAppend(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	login := func() (net.Conn, *bufio.Reader) {
		conn, r, _ := e.dialPlain()
		fmt.Fprintf(conn, "l LOGIN %s \"%s\"\r\n", testAlice, testPass)
		expectLine(t, r, "l OK")
		return conn, r
	}
	_, idleR := login()
	conn, r := login()
	msg := "From: a@example.test\r\nSubject: sent copy\r\n\r\n" + strings.Repeat("body line\r\n", 1000)
	fmt.Fprintf(conn, "a APPEND Sent {%d}\r\n", len(msg))
	expectLine(t, r, "+")
	half := len(msg) / 2
	conn.Write([]byte(msg[:half]))
	// The "+" goes out before the server's Append begins: wait for it,
	// or the shutdown may come first and find nothing running.
	for deadline := time.Now().Add(5 * time.Second); e.srv.appending.Open() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the APPEND never began")
		}
		time.Sleep(time.Millisecond)
	}

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	for deadline := time.Now().Add(5 * time.Second); ; {
		c, err := net.Dial("tcp", e.plain)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener still accepts while shutting down")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("shutdown ended (%v) with an APPEND running", err)
	case <-time.After(200 * time.Millisecond):
	}
	conn.Write([]byte(msg[half:] + "\r\n"))
	expectLine(t, r, "a OK [APPENDUID")
	expectLine(t, r, "* BYE Server shutting down")
	expectLine(t, idleR, "* BYE Server shutting down")
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if msgs, err := e.st.Messages(testAlice, "Sent"); err != nil || len(msgs) != 1 {
		t.Errorf("Sent holds %d messages (%v), want the one appended", len(msgs), err)
	}
}

// expectLine reads lines until one that is not an untagged response
// other than BYE, and fails unless it starts with prefix.
func expectLine(t *testing.T, r *bufio.Reader, prefix string) {
	t.Helper()
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("waiting for %q: %v", prefix, err)
		}
		if strings.HasPrefix(l, prefix) {
			return
		}
		if !strings.HasPrefix(l, "* ") || strings.HasPrefix(l, "* BYE") {
			t.Fatalf("got %q, want %q", l, prefix)
		}
	}
}
