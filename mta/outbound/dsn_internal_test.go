package outbound

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/store"
)

func TestHumanDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{120 * time.Hour, "5 days"},
		{36 * time.Hour, "1 day 12 hours"},
		{24*time.Hour + 5*time.Minute, "1 day"},
		{4 * time.Hour, "4 hours"},
		{75 * time.Second, "1 minute 15 seconds"},
		{2 * time.Minute, "2 minutes"},
		{300 * time.Millisecond, "less than a second"},
	} {
		if got := humanDuration(tc.d); got != tc.want {
			t.Errorf("humanDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

// TestDSN8bitAndRemoteMTA: a DSN part with octets over 127 (here the
// original's raw header) says 8bit, and so does the whole (RFC 2045
// section 6.1: the default, 7bit, has none); the others say nothing.
// Remote-MTA is given only for a status a remote server reported (RFC
// 3464 section 2.3.5), not for a refusal of ours such as the remote's
// SIZE.
func TestDSN8bitAndRemoteMTA(t *testing.T) {
	e := store.QueueEntry{ID: "q1", From: "alice@local.test", Created: time.Now()}
	header := []byte("From: alice@local.test\r\nX-Note: Grüße\r\n\r\n")
	remote := failAll([]string{"bob@remote.test"}, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no"}, "mx.remote.test")
	ours := failAll([]string{"carol@remote.test"}, &routeError{Status: "5.3.4", Msg: "message too big for the server", Permanent: true}, "mx.remote.test")
	dsn := string(buildDSN("mail.local.test", e, header, append(remote, ours...), actionFailed, time.Now(), time.Time{}))
	head, _, _ := strings.Cut(dsn, "\r\n\r\n")
	if !strings.Contains(head, "\r\nContent-Transfer-Encoding: 8bit") {
		t.Errorf("no 8bit at the top:\n%s", head)
	}
	if !strings.Contains(dsn, "Content-Type: text/rfc822-headers\r\nContent-Transfer-Encoding: 8bit\r\n\r\nFrom:") {
		t.Errorf("the header part is not 8bit:\n%s", dsn)
	}
	if strings.Count(dsn, "Content-Transfer-Encoding: 8bit") != 2 {
		t.Errorf("8bit on an ASCII part:\n%s", dsn)
	}
	if strings.Count(dsn, "Remote-MTA: dns; mx.remote.test") != 1 {
		t.Errorf("Remote-MTA, want it for bob only:\n%s", dsn)
	}
}

// TestCleanHostileReply: a hostile server's reply, however long and with
// whatever octets, becomes one bounded line of valid UTF-8 without
// control characters; in a DSN for mail that is not SMTPUTF8, the
// message/delivery-status part is ASCII (RFC 3464 section 2.1: 7bit).
func TestCleanHostileReply(t *testing.T) {
	reply := strings.Repeat("x", maxDiag-1) + "é" + strings.Repeat("y\x7f\u0085\xff", 5_000_000)
	got := clean(reply)
	if len(got) > maxDiag || !utf8.ValidString(got) || strings.ContainsAny(got, "\x7f\u0085") {
		t.Errorf("clean: %d octets, valid %v: %q", len(got), utf8.ValidString(got), got[len(got)-10:])
	}
	if got := clean("a\u0085b\x7fc\xffd\r\ne"); got != "a b c?d  e" {
		t.Errorf("clean: %q", got)
	}
	e := store.QueueEntry{ID: "q1", From: "alice@local.test", Created: time.Now()}
	rs := failAll([]string{"bob@remote.test"}, &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "Benutzer unbekannt: Müller"}, "mx.remote.test")
	dsn := string(buildDSN("mail.local.test", e, []byte("From: alice@local.test\r\n\r\n"), rs, actionFailed, time.Now(), time.Time{}))
	_, status, _ := strings.Cut(dsn, "Content-Type: message/delivery-status\r\n")
	status, _, _ = strings.Cut(status, "\r\n--")
	if !strings.HasPrefix(status, "\r\n") || !strings.Contains(status, "Diagnostic-Code: smtp; 550 5.1.1 Benutzer unbekannt: M?ller") {
		t.Errorf("delivery-status part not 7bit:\n%s", status)
	}
}

// TestDSNOriginalRecipient: the DSN for a recipient an alias led to names
// the address the sender gave (RFC 3464 section 2.3.1, as Postfix does),
// in the report and in the text; one given as it is has no such field.
func TestDSNOriginalRecipient(t *testing.T) {
	e := store.QueueEntry{ID: "q1", From: "alice@remote.test", Created: time.Now(), Recipients: []store.QueueRecipient{
		{Address: "carol@local.test", Original: "team@local.test"}, {Address: "bob@remote.test"}}}
	rs := failAll([]string{"carol@local.test", "bob@remote.test"}, &routeError{Status: "5.2.2", Msg: "mailbox full", Permanent: true}, "")
	dsn := string(buildDSN("mail.local.test", e, []byte("From: alice@remote.test\r\n\r\n"), rs, actionFailed, time.Now(), time.Time{}))
	for _, want := range []string{"Original-Recipient: rfc822; team@local.test\r\nFinal-Recipient: rfc822; carol@local.test",
		"<carol@local.test> (expanded from <team@local.test>): "} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
	if strings.Count(dsn, "Original-Recipient:") != 1 {
		t.Errorf("Original-Recipient for a recipient given as it is:\n%s", dsn)
	}
}
