package msa_test

import (
	"strings"
	"testing"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/internal/smtptest"
	"github.com/posthorn/posthorn/internal/storetest"
)

// TestNestedMailRefused: a MAIL inside a transaction is 503 5.5.1 and the
// transaction goes on (go-smtp lets it through; taken as a new
// transaction it dropped the recipients already accepted, and the
// message was acknowledged and delivered to nobody).
func TestNestedMailRefused(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(harness.User, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(harness.User, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(harness.User, nil); code(err) != 503 {
		t.Fatalf("nested MAIL: %v, want 503", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(testMessage(harness.User, harness.User, "nested")))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")); n != 1 {
		t.Fatalf("%d messages delivered, want 1", n)
	}
}

// TestExactSize: a message of exactly the SIZE advertised is taken, one
// byte more is 552 (go-smtp's reader refused the former).
func TestExactSize(t *testing.T) {
	const limit = 8192
	env := harness.Start(t, harness.Options{Configure: func(c *config.Config) { c.MaxMessageBytes = limit }})
	c, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatal(err)
	}
	msg := func(n int) string {
		head := testMessage(harness.User, harness.User, "size")
		return head + strings.Repeat("x", n-len(head)-2) + "\r\n"
	}
	if err := send(c, harness.User, []string{harness.User}, msg(limit)); err != nil {
		t.Fatalf("message of exactly %d bytes: %v", limit, err)
	}
	if err := send(c, harness.User, []string{harness.User}, msg(limit+1)); code(err) != 552 {
		t.Fatalf("message of %d bytes: %v, want 552", limit+1, err)
	}
	if n := len(storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")); n != 1 {
		t.Fatalf("%d messages delivered, want 1", n)
	}
}

// TestTwoFromRefused: a second From: field is refused (RFC 5322 section
// 3.6 allows one): only the first was checked against the account, and
// the other, shown by some clients, went out signed with our DKIM key.
func TestTwoFromRefused(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: <" + harness.User + ">\r\nFrom: \"CEO\" <ceo@bank.example>\r\nSubject: x\r\n\r\nbody\r\n"
	if err := send(c, harness.User, []string{harness.User}, msg); code(err) != 550 {
		t.Fatalf("two From: fields: %v, want 550", err)
	}
	if n := len(storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")); n != 0 {
		t.Fatalf("%d messages delivered", n)
	}
}

// TestRemoteRecipientsCase: remote addresses that differ in the case of
// their local part are different mailboxes (RFC 5321 section 2.4) and
// each is queued; ours, and remote domains, are compared without case.
func TestRemoteRecipientsCase(t *testing.T) {
	// A smarthost that refuses connections: the entry stays queued.
	env := harness.Start(t, harness.Options{Configure: func(c *config.Config) { c.Outbound.Smarthost = "127.0.0.1:1" }})
	c, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatal(err)
	}
	to := []string{"John.Smith@remote.test", "john.smith@remote.test", "John.Smith@REMOTE.test",
		harness.User, strings.ToUpper(harness.User)}
	if err := send(c, harness.User, to, testMessage(harness.User, "john.smith@remote.test", "case")); err != nil {
		t.Fatal(err)
	}
	es, err := env.Server.Store.QueueEntries()
	if err != nil || len(es) != 1 {
		t.Fatalf("%d queue entries (%v), want 1", len(es), err)
	}
	var got []string
	for _, r := range es[0].Recipients {
		got = append(got, r.Address)
	}
	if strings.Join(got, " ") != "John.Smith@remote.test john.smith@remote.test" {
		t.Errorf("queued for %q, want John.Smith@ and john.smith@", got)
	}
	if n := len(storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")); n != 1 {
		t.Errorf("%d local copies, want 1", n)
	}
}

// TestAddressCharset: on submission too a non-ASCII recipient needs
// SMTPUTF8 on the MAIL (553 5.6.7).
func TestAddressCharset(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(harness.User, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("jörg@remote.test", nil); code(err) != 553 {
		t.Fatalf("non-ASCII RCPT without SMTPUTF8: %v, want 553", err)
	}
}

// TestPlaintextPartOfSubmission: on 587 before STARTTLS a command out of
// sequence is 503 (go-smtp says 502, "not implemented"), and a failed
// STARTTLS handshake ends the session instead of going on in plaintext.
func TestPlaintextPartOfSubmission(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c := smtptest.Dial(t, env.Addr("submission"))
	c.Cmd("MAIL FROM:<a@b.test>", "503 ")
	c.Cmd("EHLO client.example", "250")
	c.Cmd("STARTTLS", "220")
	c.Send("not a client hello\r\n\r\n")
	if rest := c.Rest(); rest != "" {
		t.Fatalf("after a failed handshake the session goes on: %q", rest)
	}
}
