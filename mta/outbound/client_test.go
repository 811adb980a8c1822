package outbound_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/mta/outbound"
	"github.com/posthorn/posthorn/store"
)

// TestStalledBodyTimesOut: a server that answers DATA with 354 and then
// reads nothing must not hold the worker: the write times out (RFC 5321
// section 4.5.3.2.5) and the recipient is deferred.
func TestStalledBodyTimesOut(t *testing.T) {
	m := startRawMX(t, "8BITMIME")
	m.stallData = true
	e := newQueueEnv(t, m.port)
	outbound.SetWriteTimeout(e.Q, 300*time.Millisecond)
	e.Q.RetryInitial, e.Q.RetryMax = time.Hour, time.Hour
	e.mx(t, "remote.test")
	e.run(t)
	// More than the socket buffers of both sides hold.
	body := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 16<<10)
	qe := e.enqueueBody(t, body, nil, "bob@remote.test")
	got := e.waitEntry(t, qe.ID, func(g store.QueueEntry) bool { return g.Attempts > 0 })
	if r := got.Recipients[0]; r.Done || !strings.Contains(r.LastError, "timeout") {
		t.Fatalf("recipient %+v, want deferred with a timeout", r)
	}
}

// TestTooManyRecipientsSendsRestAtOnce: a 452 after some recipients were
// accepted is the server's per-transaction limit: the rest go at once in
// new transactions, not after the retry backoff.
func TestTooManyRecipientsSendsRestAtOnce(t *testing.T) {
	m := startRawMX(t, "8BITMIME")
	m.maxRcpts = 3
	e := newQueueEnv(t, m.port)
	e.Q.RetryInitial, e.Q.RetryMax = time.Hour, time.Hour
	e.mx(t, "remote.test")
	e.run(t)
	var rcpts []string
	for _, r := range []string{"r1", "r2", "r3", "r4", "r5", "r6", "r7"} {
		rcpts = append(rcpts, r+"@remote.test")
	}
	e.enqueueBody(t, "Subject: many\r\n\r\nHello\r\n", nil, rcpts...)
	var got []string
	for _, want := range []int{3, 3, 1} {
		r := m.wait(t)
		if len(r.Rcpts) != want {
			t.Fatalf("transaction with %v, want %d recipients", r.Rcpts, want)
		}
		got = append(got, r.Rcpts...)
	}
	if strings.Join(got, ",") != strings.Join(rcpts, ",") {
		t.Fatalf("delivered to %v", got)
	}
	e.waitEmpty(t)
}

// TestSMTPUTF8OnlyWhenNeeded: a message flagged SMTPUTF8 whose envelope
// and header are ASCII (once an IDN domain is in A-labels) goes to a
// server without SMTPUTF8; one with a UTF-8 header bounces 5.6.7 with a
// global DSN (RFC 6533) whose report-type names its second part.
func TestSMTPUTF8OnlyWhenNeeded(t *testing.T) {
	m := startRawMX(t, "8BITMIME", "SIZE 100000")
	e := newQueueEnv(t, m.port)
	e.mx(t, "remote.test")
	e.DNS.Add(t, "xn--bcher-kva.test. 300 IN MX 10 mx.remote.test.")
	e.run(t)
	utf8 := func(qe *store.QueueEntry) { qe.SMTPUTF8 = true }
	e.enqueueBody(t, "Subject: plain\r\n\r\nHello\r\n", utf8, "plain@remote.test", "user@bücher.test")
	var rcpts []string
	for range 2 { // one transaction per domain
		r := m.wait(t)
		if strings.Contains(r.From, "SMTPUTF8") {
			t.Errorf("MAIL with SMTPUTF8 to a server without it: %q", r.From)
		}
		rcpts = append(rcpts, r.Rcpts...)
	}
	sort.Strings(rcpts)
	if strings.Join(rcpts, ",") != "plain@remote.test,user@xn--bcher-kva.test" {
		t.Errorf("recipients %v, want the IDN domain in A-labels", rcpts)
	}
	e.waitEmpty(t)

	e.enqueueBody(t, "Subject: Grüße\r\n\r\nHello\r\n", utf8, "jörg@remote.test")
	dsn := e.MDA.wait(t)
	for _, want := range []string{"report-type=global-delivery-status", "Content-Type: message/global-delivery-status",
		"Final-Recipient: utf-8; jörg@remote.test", "Status: 5.6.7"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
	e.waitEmpty(t)
}

// TestEightBitNeeds8BITMIME: RFC 6152: 8-bit content is not sent to a
// server without 8BITMIME but bounced with 5.6.3 (a conversion would
// break the DKIM signature); a 7-bit body declared 8BITMIME goes.
func TestEightBitNeeds8BITMIME(t *testing.T) {
	m := startRawMX(t, "SIZE 100000")
	e := newQueueEnv(t, m.port)
	e.mx(t, "remote.test")
	e.run(t)
	eight := func(qe *store.QueueEntry) { qe.EightBit = true }
	e.enqueueBody(t, "Subject: seven\r\n\r\nHello\r\n", eight, "seven@remote.test")
	if r := m.wait(t); r.Rcpts[0] != "seven@remote.test" {
		t.Fatalf("delivered to %v", r.Rcpts)
	}
	e.waitEmpty(t)
	e.enqueueBody(t, "Subject: eight\r\nContent-Transfer-Encoding: 8bit\r\n\r\nCafé\r\n", eight, "eight@remote.test")
	dsn := e.MDA.wait(t)
	if !strings.Contains(dsn, "Status: 5.6.3") || !strings.Contains(dsn, "8BITMIME") {
		t.Errorf("DSN:\n%s", dsn)
	}
	e.waitEmpty(t)
	for _, c := range m.commands() {
		if strings.Contains(c, "eight@") {
			t.Errorf("the 8-bit message was offered: %q", c)
		}
	}
}

// TestRemoteSizeLimit: a message larger than the server's SIZE is bounced
// with 5.3.4 without being sent (RFC 1870).
func TestRemoteSizeLimit(t *testing.T) {
	m := startRawMX(t, "8BITMIME", "SIZE 100")
	e := newQueueEnv(t, m.port)
	e.mx(t, "remote.test")
	e.run(t)
	e.enqueueBody(t, "Subject: big\r\n\r\n"+strings.Repeat("x", 200)+"\r\n", nil, "bob@remote.test")
	dsn := e.MDA.wait(t)
	if !strings.Contains(dsn, "Status: 5.3.4") {
		t.Errorf("DSN:\n%s", dsn)
	}
	e.waitEmpty(t)
	for _, c := range m.commands() {
		if strings.HasPrefix(c, "MAIL") {
			t.Errorf("the message was offered: %q", c)
		}
	}
}

// TestHELOFallback: a server that refuses EHLO as an unknown command gets
// HELO (RFC 5321 section 3.2: the client SHOULD fall back), as from
// Postfix. The mail was deferred at every attempt, then bounced.
func TestHELOFallback(t *testing.T) {
	m := startRawMX(t)
	m.noEHLO = true
	e := newQueueEnv(t, m.port)
	e.Q.RetryInitial, e.Q.RetryMax = time.Hour, time.Hour
	e.mx(t, "remote.test")
	e.run(t)
	e.enqueueBody(t, "Subject: old\r\n\r\nHello\r\n", nil, "bob@remote.test")
	r := m.wait(t)
	if strings.Join(r.Rcpts, ",") != "bob@remote.test" || !strings.Contains(r.Data, "Hello") {
		t.Fatalf("received %+v", r)
	}
	e.waitEmpty(t)
	helo := false
	for _, c := range m.commands() {
		helo = helo || strings.HasPrefix(c, "HELO ")
		if strings.Contains(c, "BODY=") || strings.Contains(c, "SIZE=") {
			t.Errorf("ESMTP parameter sent after HELO: %q", c)
		}
	}
	if !helo {
		t.Errorf("no HELO in %q", m.commands())
	}
}

// TestClassify: the Diagnostic-Code of a DSN is the reply as the server
// sent it (RFC 3464 section 2.3.6), with no enhanced code made up; a
// connection that could not be made is X.4.1, one lost or timed out after
// it was made X.4.2 (RFC 3463).
func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err          error
		status, diag string
		permanent    bool
	}{
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.NoEnhancedCode, Message: "Mailbox unavailable"}, "5.0.0", "smtp; 550 Mailbox unavailable", true},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}, "5.1.1", "smtp; 550 5.1.1 no such user", true},
		{&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCodeNotSet, Message: "later"}, "4.0.0", "smtp; 451 later", false},
		{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, "4.4.1", "dial tcp: connection refused", false},
		{fmt.Errorf("ending the message: %w", io.EOF), "4.4.2", "ending the message: EOF", false},
	} {
		status, diag, perm := outbound.Classify(c.err)
		if status != c.status || diag != c.diag || perm != c.permanent {
			t.Errorf("%v: %q %q %v, want %q %q %v", c.err, status, diag, perm, c.status, c.diag, c.permanent)
		}
	}
}
