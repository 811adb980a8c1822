package hostile

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/harness"
)

// smtpSend delivers msg (CRLF, no line starting with a dot) over port 25
// to the harness user and returns the reply code to the end of data.
func smtpSend(t *testing.T, env *harness.Env, msg string) (int, []string) {
	t.Helper()
	tc := dial(t, env.Addr("smtp"))
	tc.deadline(time.Minute)
	tc.expectSMTP(220)
	tc.write("EHLO client.peer.test\r\n")
	tc.expectSMTP(250)
	tc.write("MAIL FROM:<sender@peer.test>\r\n")
	tc.expectSMTP(250)
	tc.write("RCPT TO:<" + harness.User + ">\r\n")
	tc.expectSMTP(250)
	tc.write("DATA\r\n")
	tc.expectSMTP(354)
	if _, err := tc.c.Write([]byte(msg + ".\r\n")); err != nil {
		// The server may cut a message it will not take.
		return 0, []string{err.Error()}
	}
	code, lines := tc.smtpReply()
	tc.write("QUIT\r\n")
	return code, lines
}

// checkDelivered checks an accepted hostile message end to end: it is in
// INBOX, and IMAP answers FETCH of its structure and header in time.
func checkDelivered(t *testing.T, env *harness.Env, code int, lines []string, items string) {
	t.Helper()
	switch {
	case code == 250:
	case code >= 550 && code < 560:
		t.Logf("refused: %q", lines)
		assertMessages(t, env, "INBOX", 0)
		return
	default:
		t.Fatalf("want 250 or a permanent refusal (55x), got %d %q", code, lines)
	}
	assertMessages(t, env, "INBOX", 1)
	tc := imapLogin(t, env)
	tc.deadline(30 * time.Second)
	tc.imapOK("S", "SELECT INBOX")
	within(t, "FETCH "+items, 10*time.Second, func() {
		tc.imapOK("F", "FETCH 1 ("+items+")")
	})
}

// TestMIMENestedDeep delivers a message whose MIME parts nest 100,000
// levels deep (about 5 MB). It is either refused with a permanent error
// or stored, and then BODYSTRUCTURE comes back quickly; nothing panics
// and no recursion follows the nesting to the end.
//
// Memory budget: 96 MiB of growth (the message is 5 MB; the SMTP buffer,
// the stored blob and the parsed structure of at most max_mime_depth
// levels together stay far below). Under -race in `make test`: 20,000
// levels.
func TestMIMENestedDeep(t *testing.T) {
	env := start(t, nil)
	depth := size(100_000, 20_000)
	var b strings.Builder
	b.WriteString("From: <sender@peer.test>\r\nSubject: deep\r\nMIME-Version: 1.0\r\n")
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\r\n\r\nbottom\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	mem := watchMem()
	var code int
	var lines []string
	within(t, fmt.Sprintf("delivering %d nested parts", depth), 60*time.Second, func() {
		code, lines = smtpSend(t, env, b.String())
	})
	checkDelivered(t, env, code, lines, "BODYSTRUCTURE ENVELOPE")
	mem.check(t, fmt.Sprintf("MIME nested %d deep", depth), 96<<20)
}

// TestMillionHeaderFields delivers a message with 1,000,000 header fields
// (about 9 MB). It is refused with a permanent error or stored, and then
// ENVELOPE and a header field FETCH come back quickly.
//
// Memory budget: 128 MiB of growth (the message is 9 MB; parsing keeps at
// most max_header_fields fields). Under -race in `make test`: 100,000.
func TestMillionHeaderFields(t *testing.T) {
	env := start(t, nil)
	var b strings.Builder
	b.WriteString("From: <sender@peer.test>\r\nSubject: many fields\r\n")
	fields := size(1_000_000, 100_000)
	for i := 0; i < fields; i++ {
		b.WriteString("X-F: v\r\n")
	}
	b.WriteString("\r\nbody\r\n")
	mem := watchMem()
	var code int
	var lines []string
	within(t, fmt.Sprintf("delivering %d header fields", fields), 60*time.Second, func() {
		code, lines = smtpSend(t, env, b.String())
	})
	checkDelivered(t, env, code, lines, "ENVELOPE BODY.PEEK[HEADER.FIELDS (Subject)]")
	mem.check(t, fmt.Sprintf("%d header fields", fields), 128<<20)
}
