package imap

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	imapv2 "github.com/emersion/go-imap/v2"

	"github.com/posthorn/posthorn/store"
)

// TestFetchFastMatchesEncoder runs flag and size FETCHes over TCP with
// fetchFast and with imapserver's encoder, and wants the same bytes.
func TestFetchFastMatchesEncoder(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	flagSets := [][]string{nil, {`\Seen`}, {`\Seen`, `\Flagged`}, {"$Junk"}, {`\Answered`, `\Draft`, "NonJunk", "$label1"}, {`\Deleted`}}
	const n = 700 // over two blocks of fastBlock
	for i := range n {
		body := testMessage(i, strings.Repeat("s", i%50))
		e.deliver(testAlice, "INBOX", body, flagSets[i%len(flagSets)]...)
	}
	// An expunged message in the middle: sequence numbers shift.
	uids, err := e.st.Messages(testAlice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Expunge(testAlice, "INBOX", []uint32{uids[10].UID}); err != nil {
		t.Fatal(err)
	}
	conn, r, _ := e.dialPlain()
	tag := 0
	run := func(c string) string {
		t.Helper()
		tag++
		tg := fmt.Sprintf("t%d", tag)
		fmt.Fprintf(conn, "%s %s\r\n", tg, c)
		var out bytes.Buffer
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", c, err)
			}
			if strings.HasPrefix(line, tg+" ") {
				if !strings.HasPrefix(line, tg+" OK") {
					t.Fatalf("%s: %s", c, line)
				}
				return out.String()
			}
			out.WriteString(line)
		}
	}
	run("LOGIN " + testAlice + " \"" + testPass + "\"")
	run("SELECT INBOX")
	cmds := []string{
		"UID FETCH 1:* (FLAGS)",
		"FETCH 1:* FLAGS",
		"FETCH 1:* (UID FLAGS RFC822.SIZE)",
		"FETCH 3,5:9 (RFC822.SIZE)",
		"UID FETCH 20:40 (RFC822.SIZE FLAGS)",
		"FETCH * UID",
	}
	for _, c := range cmds {
		fast := run(c)
		noFastFetch.Store(true)
		slow := run(c)
		noFastFetch.Store(false)
		if fast != slow {
			t.Errorf("%s: fetchFast differs from the encoder\nfast: %.300q\nencoder: %.300q", c, fast, slow)
		}
		if strings.Count(fast, "\r\n") == 0 {
			t.Errorf("%s: no responses", c)
		}
	}
	if got := strings.Count(run("UID FETCH 1:* (FLAGS)"), "\r\n"); got != n-1 {
		t.Errorf("UID FETCH 1:* (FLAGS): %d responses, want %d", got, n-1)
	}
	want := fmt.Sprintf("* 5 FETCH (UID 5 FLAGS ($label1 NonJunk \\Answered \\Draft) RFC822.SIZE %d)\r\n", len(normalizeCRLF([]byte(testMessage(4, strings.Repeat("s", 4))))))
	if got := run("FETCH 5 (UID FLAGS RFC822.SIZE)"); got != want {
		t.Errorf("FETCH 5: %q, want %q", got, want)
	}
}

func TestAppendFastFetchRefusesBadFlag(t *testing.T) {
	o := &imapv2.FetchOptions{UID: true, Flags: true}
	for _, fl := range []string{"", "a b", `a\b`, "caf\xc3\xa9", "x)", "\x01"} {
		b := []byte("keep")
		m := storeMessage([]string{`\Seen`, fl})
		out, ok := appendFastFetch(b, entry{seq: 1, uid: 1, m: &m}, o)
		if ok || string(out) != "keep" {
			t.Errorf("flag %q: ok=%v out=%q", fl, ok, out)
		}
	}
	m := storeMessage([]string{`\Seen`, "$Junk"})
	out, ok := appendFastFetch(nil, entry{seq: 7, uid: 9, m: &m}, o)
	if !ok || string(out) != "* 7 FETCH (UID 9 FLAGS (\\Seen $Junk))\r\n" {
		t.Errorf("got %q, %v", out, ok)
	}
}

func storeMessage(flags []string) store.Message { return store.Message{Flags: flags, Size: 10} }
