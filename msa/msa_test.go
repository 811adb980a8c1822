package msa_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/dkim"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/internal/smtptest"
	"github.com/posthorn/posthorn/internal/storetest"
	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/msa"
	"github.com/posthorn/posthorn/mta"
)

// dial opens an authenticated submission session on 587 with STARTTLS.
func dial(t testing.TB, env *harness.Env, user, pass string) (*smtp.Client, error) {
	t.Helper()
	c, err := smtp.DialStartTLS(env.Addr("submission"), env.ClientTLS())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, c.Auth(sasl.NewPlainClient("", user, pass))
}

// send submits one message over an authenticated session.
func send(c *smtp.Client, from string, to []string, msg string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	return w.Close()
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func testMessage(from, to, subject string) string {
	return fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nHello.\r\n", from, to, subject)
}

func TestSubmitLocalAddsHeadersAndSigns(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	if _, err := dkim.Ensure(env.Server.Store, harness.Domain); err != nil {
		t.Fatal(err)
	}
	c, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatalf("auth: %v", err)
	}
	if err := send(c, harness.User, []string{harness.User}, testMessage(harness.User, harness.User, "local")); err != nil {
		t.Fatalf("send: %v", err)
	}
	msgs := storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")
	if len(msgs) != 1 {
		t.Fatalf("%d messages in INBOX, want 1", len(msgs))
	}
	m := string(msgs[0])
	for _, h := range []string{"\r\nDate: ", "\r\nMessage-ID: <", "DKIM-Signature: a=ed25519-sha256", "DKIM-Signature: a=rsa-sha256", "with ESMTPSA id"} {
		if !strings.Contains(m, h) {
			t.Errorf("delivered message lacks %q:\n%s", h, m)
		}
	}
	// What the server put on top fits the room kept for it (so the body
	// is not copied: see TestAssemble).
	if added := strings.Index(m, "From: <"); added < 0 || added > msa.HeadRoom {
		t.Errorf("%d bytes of fields added, over the %d kept for them", added, msa.HeadRoom)
	}
	if got := env.Server.Metrics.Value(metrics.Accepted, "via", "submission"); got != 1 {
		t.Errorf("accepted metric = %d, want 1", got)
	}
}

func TestMailBeforeAuth(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c, err := smtp.DialStartTLS(env.Addr("submission"), env.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Mail(harness.User, nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 530 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 0}) {
		t.Fatalf("MAIL before AUTH: %v, want 530 5.7.0", err)
	}
}

func TestAuthNotOfferedWithoutTLS(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c, err := smtp.Dial(env.Addr("submission"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Fatal("AUTH offered before STARTTLS")
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not offered")
	}
	if err := c.Auth(sasl.NewPlainClient("", harness.User, harness.Password)); err == nil {
		t.Fatal("AUTH accepted in clear text")
	}
}

func TestBadPassword(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	_, err := dial(t, env, harness.User, "wrong")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 535 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 8}) {
		t.Fatalf("bad password: %v, want 535 5.7.8", err)
	}
	if got := env.Server.Metrics.Value(metrics.AuthFailures, "protocol", "smtp"); got != 1 {
		t.Fatalf("auth failures = %d, want 1", got)
	}
}

func TestSenderIdentity(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	st := env.Server.Store
	env.AddUser("bob@example.test", "bob password 123")
	if err := st.AddAlias("sales@example.test", []string{harness.User, "bob@example.test"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddAlias("bobs@example.test", []string{"bob@example.test"}); err != nil {
		t.Fatal(err)
	}
	env.AddDomain("other.test")
	if err := st.AddAlias("@other.test", []string{harness.User}); err != nil {
		t.Fatal(err)
	}
	c, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		mailFrom, headerFrom string
		want                 int
	}{
		{harness.User, harness.User, 250},
		{"alice+lists@example.test", "alice+lists@example.test", 250},
		{"sales@example.test", "sales@example.test", 250},
		{"anything@other.test", "anything@other.test", 250},
		{"bob@example.test", harness.User, 550},
		{"bobs@example.test", harness.User, 550},
		{"someone@elsewhere.test", harness.User, 550},
		{harness.User, "bob@example.test", 550},
		{harness.User, "mallory@elsewhere.test", 550},
		{"", harness.User, 250},
	}
	for _, tc := range cases {
		err := send(c, tc.mailFrom, []string{harness.User}, testMessage(tc.headerFrom, harness.User, "id"))
		got := 250
		if err != nil {
			got = code(err)
			var se *smtp.SMTPError
			if errors.As(err, &se) && se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
				t.Errorf("MAIL FROM:<%s> From: %s: %v, want 5.7.1", tc.mailFrom, tc.headerFrom, err)
			}
			c.Reset()
		}
		if got != tc.want {
			t.Errorf("MAIL FROM:<%s> From: %s: %v, want %d", tc.mailFrom, tc.headerFrom, err, tc.want)
		}
	}
}

// TestObsoleteFieldNames: a field with white space before its colon is
// the field of its name (RFC 5322 section 4.5), as readers and verifiers
// take it. "From : other" passed the sender check (Go's net/mail kept it
// apart from "From"), and readers showed that From; a tab before a colon
// or a control character in a field name got 451 every time; "Date :"
// got a second Date.
func TestObsoleteFieldNames(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	if _, err := dkim.Ensure(env.Server.Store, harness.Domain); err != nil {
		t.Fatal(err)
	}
	env.AddUser("bob@example.test", "bob password 123")
	for _, c := range []struct {
		name, header, want string
	}{
		{"other From alone", "From : Other <bob@example.test>\r\n", "550 5.7.1"},
		{"other From and own", "From : Other <bob@example.test>\r\nFrom: <" + harness.User + ">\r\n", "550 5.6.0"},
		{"tab before a colon", "From: <" + harness.User + ">\r\nSubject\t: tabbed\r\n", "250"},
		{"control character", "From: <" + harness.User + ">\r\nX-Ctl\x01: z\r\n", "250"},
		{"Date and Message-ID", "From: <" + harness.User + ">\r\nDate : Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID : <m@x>\r\n", "250"},
	} {
		if got := rawSubmit(t, env, c.header+"To: <"+harness.User+">\r\n\r\nbody"); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want %s", c.name, got, c.want)
		}
	}
	msgs := storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")
	if len(msgs) != 3 {
		t.Fatalf("%d messages delivered, want 3", len(msgs))
	}
	last := string(msgs[2])
	if strings.Count(strings.ToLower(last), "\r\ndate") != 1 || strings.Count(strings.ToLower(last), "\r\nmessage-id") != 1 {
		t.Errorf("a second Date or Message-ID added:\n%s", last)
	}
}

// rawSubmit speaks SMTP by hand on 465 and returns the reply to the end
// of data: go-smtp's client would turn a bare LF into CRLF.
func rawSubmit(t *testing.T, env *harness.Env, body string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", env.Addr("submissions"), env.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tp := textproto.NewConn(conn)
	step := func(cmd string, want int) {
		t.Helper()
		if cmd != "" {
			if err := tp.PrintfLine("%s", cmd); err != nil {
				t.Fatal(err)
			}
		}
		if _, msg, err := tp.ReadResponse(want); err != nil {
			t.Fatalf("%q: %v %s", cmd, err, msg)
		}
	}
	step("", 220)
	step("EHLO client.test", 250)
	step("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00"+harness.User+"\x00"+harness.Password)), 235)
	step("MAIL FROM:<"+harness.User+">", 250)
	step("RCPT TO:<"+harness.User+">", 250)
	step("DATA", 354)
	if _, err := io.WriteString(conn, body+"\r\n.\r\n"); err != nil {
		t.Fatal(err)
	}
	line, err := tp.ReadLine()
	if err != nil {
		t.Fatal(err)
	}
	return line
}

func TestBareLineEndingsRefused(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	head := "From: <" + harness.User + ">\r\nSubject: x\r\n\r\n"
	for _, body := range []string{"a\nb", "a\rb", "a\x00b", "a\r\n.\nMAIL FROM:<x@y.test>"} {
		if got := rawSubmit(t, env, head+body); !strings.HasPrefix(got, "550 5.5.2") {
			t.Errorf("body %q: %q, want 550 5.5.2", body, got)
		}
	}
	if n := len(storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")); n != 0 {
		t.Fatalf("%d messages delivered", n)
	}
	if got := rawSubmit(t, env, head+"fine"); !strings.HasPrefix(got, "250") {
		t.Fatalf("clean body: %q", got)
	}
}

func TestMissingFromRefused(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatal(err)
	}
	err = send(c, harness.User, []string{harness.User}, "Subject: x\r\n\r\nbody\r\n")
	if code(err) != 550 {
		t.Fatalf("no From: %v, want 550", err)
	}
}

func TestImplicitTLS(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c, err := smtp.DialTLS(env.Addr("submissions"), env.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered on the implicit-TLS port")
	}
	if err := c.Auth(sasl.NewPlainClient("", harness.User, harness.Password)); err != nil {
		t.Fatal(err)
	}
	if err := send(c, harness.User, []string{harness.User}, testMessage(harness.User, harness.User, "465")); err != nil {
		t.Fatal(err)
	}
	if n := len(storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
}

func TestUnknownLocalRecipient(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(harness.User, nil); err != nil {
		t.Fatal(err)
	}
	err = c.Rcpt("nobody@example.test", nil)
	if code(err) != 550 {
		t.Fatalf("unknown local rcpt: %v, want 550", err)
	}
	// One trailing dot is a fully qualified name; two are no domain.
	if err := c.Rcpt("x@remote.example..", nil); code(err) != 553 {
		t.Fatalf("x@remote.example..: %v, want 553", err)
	}
}

func TestLimits(t *testing.T) {
	env := harness.Start(t, harness.Options{Configure: func(c *config.Config) {
		c.Limits.MaxRecipients = 2
		c.MaxMessageBytes = 2048
	}})
	c, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatal(err)
	}
	err = send(c, harness.User, []string{harness.User, "a@remote.test", "b@remote.test"}, testMessage(harness.User, harness.User, "x"))
	if code(err) != 452 {
		t.Errorf("third recipient: %v, want 452", err)
	}
	c.Reset()
	big := testMessage(harness.User, harness.User, "big") + strings.Repeat("0123456789abcdef\r\n", 200)
	if err := send(c, harness.User, []string{harness.User}, big); code(err) != 552 {
		t.Errorf("oversized message: %v, want 552", err)
	}
	if n := len(storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")); n != 0 {
		t.Errorf("%d messages delivered", n)
	}
}

func TestThrottledAuth(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	l := env.Server.Auth.Limiter
	l.Free, l.RefuseAfter = 1, 2
	l.Sleep = func(context.Context, time.Duration) error { return nil }
	var last error
	for range 4 {
		_, last = dial(t, env, harness.User, "wrong")
	}
	var se *smtp.SMTPError
	if !errors.As(last, &se) || se.Code != 454 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 0}) {
		t.Fatalf("after repeated failures: %v, want 454 4.7.0", last)
	}
}

func TestHeaderOnlyMessage(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatal(err)
	}
	if err := send(c, harness.User, []string{harness.User}, "From: <"+harness.User+">\r\nSubject: no body\r\n"); err != nil {
		t.Fatalf("header-only message: %v", err)
	}
	msgs := storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")
	if len(msgs) != 1 || !strings.HasSuffix(string(msgs[0]), "Subject: no body\r\n\r\n") {
		t.Fatalf("stored: %q", msgs)
	}
}

// TestLongLines: a message line longer than limits.max_line_bytes (a
// command-line limit) is taken as it is, and the session goes on; a
// command line that long is still refused.
func TestLongLines(t *testing.T) {
	env := harness.Start(t, harness.Options{Configure: func(c *config.Config) { c.Limits.MaxLineBytes = 1000 }})
	c, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("<td>cell</td>", 2000) // 26,000 bytes
	msg := testMessage(harness.User, harness.User, "html") + long + "\r\nend\r\n"
	if err := send(c, harness.User, []string{harness.User}, msg); err != nil {
		t.Fatalf("message with a 26,000-byte line: %v", err)
	}
	got := storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")
	if len(got) != 1 || !strings.Contains(string(got[0]), "\r\n"+long+"\r\nend\r\n") {
		t.Fatalf("%d messages; the long line not kept as sent", len(got))
	}
	if err := send(c, harness.User, []string{harness.User}, testMessage(harness.User, harness.User, "next")); err != nil {
		t.Fatalf("the next message in the session: %v", err)
	}
	if err := c.Mail(harness.User+"?"+strings.Repeat("x", 1100), nil); err == nil {
		t.Fatal("a 1,100-byte MAIL FROM line accepted")
	}
}

// TestBDATLongLinesTLS: after STARTTLS, a BDAT chunk that starts inside a
// long line, in the write of its command, leaves the next command alone
// (go-smtp counted the chunk's octets as a command line: see
// mta.WatchCommands).
func TestBDATLongLinesTLS(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c := smtptest.Dial(t, env.Addr("submission"))
	c.Cmd("EHLO client.example", "250")
	s := c.StartTLS(env.ClientTLS())
	s.Cmd("EHLO client.example", "250")
	s.Cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00"+harness.User+"\x00"+harness.Password)), "235")
	msg := testMessage(harness.User, harness.User, "bdat") + strings.Repeat("Y", 9000) + "\r\nend\r\n"
	s.Cmd("MAIL FROM:<"+harness.User+">", "250")
	s.Cmd("RCPT TO:<"+harness.User+">", "250")
	s.Send(fmt.Sprintf("BDAT 100\r\n%s", msg[:100]))
	s.Expect("250")
	s.Send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)-100, msg[100:]))
	s.Expect("250")
	s.Cmd("MAIL FROM:<"+harness.User+">", "250")
	s.Cmd("QUIT", "221")
	got := storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")
	if len(got) != 1 || !strings.HasSuffix(string(got[0]), strings.Repeat("Y", 9000)+"\r\nend\r\n") {
		t.Fatalf("%d messages; the BDAT message not kept as sent", len(got))
	}
}

// TestDisabledMidSession: a session authenticated before its account was
// disabled (posthorn user disable) sends nothing more: MAIL gets 550
// 5.7.1. It went on sending, to outside addresses too.
func TestDisabledMidSession(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatal(err)
	}
	if err := send(c, harness.User, []string{harness.User}, testMessage(harness.User, harness.User, "before")); err != nil {
		t.Fatalf("before the disable: %v", err)
	}
	if err := env.Server.Store.SetDisabled(harness.User, true); err != nil {
		t.Fatal(err)
	}
	err = send(c, harness.User, []string{"someone@remote.example"}, testMessage(harness.User, "someone@remote.example", "after"))
	if code(err) != 550 {
		t.Fatalf("MAIL after the disable: %v, want 550", err)
	}
}

// TestTooManyHops: submission refuses a looping message too (554 5.4.6).
func TestTooManyHops(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	head := "From: <" + harness.User + ">\r\nSubject: x\r\n" + strings.Repeat("Received: from a by b; Fri, 27 Nov 2026 10:00:00 +0000\r\n", mta.MaxHops) + "\r\n"
	if got := rawSubmit(t, env, head+"body"); !strings.HasPrefix(got, "554 5.4.6") {
		t.Errorf("%d Received fields: %q, want 554 5.4.6", mta.MaxHops, got)
	}
	if n := len(storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")); n != 0 {
		t.Fatalf("%d messages delivered", n)
	}
}

// TestSignsUTF8FromDomain: a From whose domain is written in U-labels
// (jörg@bücher.test, the natural form in an SMTPUTF8 message, RFC 6532)
// is signed with its domain's keys, which the store keeps under the
// A-labels; the user logs in with that form too. Probe 8: such mail went
// out unsigned (failing DMARC), and the login failed.
func TestSignsUTF8FromDomain(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	const domain, user, uFrom = "xn--bcher-kva.test", "jörg@xn--bcher-kva.test", "jörg@bücher.test"
	env.AddDomain(domain)
	env.AddUser(user, "pw-jörg-123")
	if _, err := dkim.Ensure(env.Server.Store, domain); err != nil {
		t.Fatal(err)
	}
	c, err := dial(t, env, uFrom, "pw-jörg-123")
	if err != nil {
		t.Fatalf("login as %s: %v", uFrom, err)
	}
	if err := c.Mail(uFrom, &smtp.MailOptions{UTF8: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(user, nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "From: <"+uFrom+">\r\nTo: <"+uFrom+">\r\nSubject: idn\r\n\r\nHallo.\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	msgs := storetest.Bodies(t, env.Server.Store, user, "INBOX")
	if len(msgs) != 1 {
		t.Fatalf("%d messages in INBOX, want 1", len(msgs))
	}
	if m := string(msgs[0]); !strings.Contains(m, "DKIM-Signature: ") || !strings.Contains(m, "d="+domain) {
		t.Errorf("not signed for %s:\n%s", domain, m)
	}
}
