package hostile

import (
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"

	"github.com/posthorn/posthorn/harness"
)

// These tests send a command in the same write (one TCP segment) right
// behind STARTTLS or STLS, as in CVE-2011-0411. A server that keeps its
// plaintext read buffer across the handshake runs the injected command as
// if it had come over TLS. RFC 3207 section 4.2 (SMTP), RFC 9051 section
// 6.2.1 (IMAP) and RFC 2595 section 4 (POP3) require the plaintext to be
// discarded. A server may also refuse the STARTTLS or close the
// connection; what it may not do is answer the injected command after the
// handshake.
//
// Each injected command has an effect that the test looks for after the
// handshake: a reply arriving before the reply to the test's own first
// command, or a login it did not make.
//
// Memory budget: none beyond the server's normal per-connection cost;
// these tests are about ordering.

func TestSTARTTLSInjectionSMTP(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	creds := base64.StdEncoding.EncodeToString([]byte("\x00" + harness.User + "\x00" + harness.Password))
	for _, c := range []struct{ listener, injected string }{
		{"smtp", "NOOP"},
		{"submission", "AUTH PLAIN " + creds},
	} {
		t.Run(c.listener, func(t *testing.T) {
			tc := dial(t, env.Addr(c.listener))
			tc.expectSMTP(220)
			tc.write("EHLO client.peer.test\r\n")
			tc.expectSMTP(250)
			tc.write("STARTTLS\r\n" + c.injected + "\r\n")
			code, lines := tc.smtpReply()
			if code != 220 {
				t.Logf("STARTTLS with a pipelined command refused: %q", lines)
				return
			}
			if err := tc.startTLS(env); err != nil {
				if closed(err) {
					t.Logf("the server closed the connection instead of the handshake: %v", err)
					return
				}
				t.Fatalf("TLS handshake after STARTTLS failed (plaintext answer to the injected command?): %v", err)
			}
			tc.write("EHLO client.peer.test\r\n")
			code, lines = tc.smtpReply()
			if code != 250 || len(lines) < 2 {
				t.Fatalf("first reply after the handshake is not the EHLO reply but %q: the injected %q ran", lines, strings.Fields(c.injected)[0])
			}
			if c.listener == "submission" {
				tc.write("MAIL FROM:<" + harness.User + ">\r\n")
				if code, lines := tc.smtpReply(); code < 500 {
					t.Fatalf("MAIL without AUTH after the handshake: %q: the injected AUTH ran", lines)
				}
			}
			tc.write("QUIT\r\n")
			tc.expectSMTP(221)
		})
	}
}

func TestSTARTTLSInjectionIMAP(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	tc := dial(t, env.Addr("imap"))
	tc.line() // greeting
	tc.write(`a STARTTLS` + "\r\n" + `b LOGIN "` + harness.User + `" "` + harness.Password + `"` + "\r\n")
	lines := tc.imapUntil("a")
	if !strings.HasPrefix(lines[len(lines)-1], "a OK") {
		t.Logf("STARTTLS with a pipelined command refused: %q", lines)
		return
	}
	if err := tc.startTLS(env); err != nil {
		if closed(err) {
			t.Logf("the server closed the connection instead of the handshake: %v", err)
			return
		}
		t.Fatalf("TLS handshake after STARTTLS failed (plaintext answer to the injected command?): %v", err)
	}
	tc.write("c SELECT INBOX\r\n")
	lines = tc.imapUntil("c")
	for _, l := range lines {
		if strings.HasPrefix(l, "b ") {
			t.Errorf("the injected LOGIN was answered after the handshake: %q", l)
		}
	}
	if strings.HasPrefix(lines[len(lines)-1], "c OK") {
		t.Errorf("SELECT works without a login over TLS: the injected LOGIN ran")
	}
}

func TestSTLSInjectionPOP3(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	tc := dial(t, env.Addr("pop3"))
	tc.line() // greeting
	tc.write("STLS\r\nUSER " + harness.User + "\r\n")
	if l := tc.line(); !strings.HasPrefix(l, "+OK") {
		t.Logf("STLS with a pipelined command refused: %q", l)
		return
	}
	if err := tc.startTLS(env); err != nil {
		if closed(err) {
			t.Logf("the server closed the connection instead of the handshake: %v", err)
			return
		}
		t.Fatalf("TLS handshake after STLS failed (plaintext answer to the injected command?): %v", err)
	}
	tc.write("PASS " + harness.Password + "\r\n")
	if l := tc.line(); strings.HasPrefix(l, "+OK") {
		t.Errorf("first reply after the handshake is %q: the injected USER ran (or PASS logged in without USER)", l)
	}
}

// closed reports an error that means the server closed the connection
// (rather than answering in plaintext, which breaks the handshake with a
// record-format error).
func closed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF)
}
