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

// TestShutdownDuringFetch: a FETCH streaming to a slow reader when the
// server shuts down gets its BYE between two whole responses; it was cut
// inside a literal after a second, with no BYE (P7l of the probe).
func TestShutdownDuringFetch(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("y", 98)+"\r\n", 2000)
	for i := 0; i < 40; i++ {
		e.deliver(testAlice, "INBOX", big)
	}
	conn, r, _ := e.dialPlain()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "l LOGIN %s \"%s\"\r\n", testAlice, testPass)
	expectLine(t, r, "l OK")
	fmt.Fprintf(conn, "s SELECT INBOX\r\n")
	expectLine(t, r, "s OK")
	fmt.Fprintf(conn, "f FETCH 1:* BODY.PEEK[]\r\n")
	done := make(chan error, 1)
	started := false
	whole := 0
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("connection ended after %d whole responses without BYE: %v", whole, err)
		}
		if strings.HasPrefix(l, "* BYE") {
			break
		}
		if i := strings.LastIndexByte(l, '{'); i >= 0 && strings.HasSuffix(l, "}\r\n") {
			var n int
			fmt.Sscanf(l[i:], "{%d}", &n)
			for left := n; left > 0; {
				k, err := r.Discard(min(left, 4096))
				if err != nil {
					t.Fatalf("literal cut after %d of %d bytes (response %d): %v", n-left+k, n, whole+1, err)
				}
				left -= k
				time.Sleep(time.Millisecond) // a slow reader
			}
			if l, err = r.ReadString('\n'); err != nil || l != ")\r\n" {
				t.Fatalf("response %d ends with %q (%v)", whole+1, l, err)
			}
			whole++
			if !started {
				started = true
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					done <- e.srv.Shutdown(ctx)
				}()
			}
		}
	}
	if !started || whole == 40 {
		t.Fatalf("%d responses before BYE: the shutdown did not come during the FETCH", whole)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
