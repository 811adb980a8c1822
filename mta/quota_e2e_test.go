package mta_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/internal/storetest"
	"github.com/posthorn/posthorn/store"
)

// waitMailbox waits until an account's INBOX has n messages.
func waitMailbox(t testing.TB, st store.Store, account string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if got := storetest.Texts(t, st, account, "INBOX"); len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: fewer than %d messages after 30s", account, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startWithFull starts a server with the accounts bob@, carol@ and
// full@example.test, full@ with no room for a message, and delay DSNs at
// once.
func startWithFull(t *testing.T) *harness.Env {
	t.Helper()
	env := harness.Start(t, harness.Options{Configure: func(c *config.Config) {
		c.Outbound.DelayNotice = config.Duration{Duration: time.Millisecond}
	}})
	for _, u := range []string{"bob@example.test", "full@example.test", "carol@example.test"} {
		env.AddUser(u, "pw-"+u)
	}
	storetest.Fill(t, env.Server.Store, "full@example.test")
	return env
}

// TestE2EFullMailboxDoesNotHoldBackOthers: a message without SIZE= to
// three accounts, one of them full, gets 250; the two with room have it at
// once, the sender gets a delay DSN for the full one (4.2.2), and the full
// one gets its copy from the queue when it has room, with its +tag in
// Delivered-To. Before, DATA got 452 4.2.2 and nobody got anything.
func TestE2EFullMailboxDoesNotHoldBackOthers(t *testing.T) {
	env := startWithFull(t)
	st := env.Server.Store
	rcpts := []string{harness.User, "full+news@example.test", "bob@example.test"}
	if err := send(env.Addr("smtp"), "carol@example.test", rcpts, testMessage, nil); err != nil {
		t.Fatalf("one full mailbox failed the message: %v", err)
	}
	for _, acct := range []string{harness.User, "bob@example.test"} {
		if got := storetest.Texts(t, st, acct, "INBOX"); len(got) != 1 || !strings.HasSuffix(got[0], testMessage) {
			t.Errorf("%s has %d messages, want the message at once", acct, len(got))
		}
	}
	dsn := waitMailbox(t, st, "carol@example.test", 1)[0]
	for _, want := range []string{"Return-Path: <>", "Final-Recipient: rfc822; full+news@example.test",
		"Action: delayed", "Status: 4.2.2", "Subject: end to end"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("delay DSN lacks %q:\n%s", want, dsn)
		}
	}
	if got := storetest.Texts(t, st, "full@example.test", "INBOX"); len(got) != 0 {
		t.Fatalf("the full mailbox got %d messages", len(got))
	}
	if err := st.SetQuota("full@example.test", 0); err != nil {
		t.Fatal(err)
	}
	got := waitMailbox(t, st, "full@example.test", 1)
	if !strings.HasPrefix(got[0], "Return-Path: <carol@example.test>\r\nDelivered-To: full+news@example.test\r\n") ||
		!strings.HasSuffix(got[0], testMessage) {
		t.Errorf("queued copy delivered as:\n%s", got[0])
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		es, err := st.QueueEntries()
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue still has %+v", es)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(storetest.Texts(t, st, "carol@example.test", "INBOX")); n != 1 {
		t.Errorf("sender has %d messages, want the one delay DSN", n)
	}
}

// TestE2EDeliveredToKeepsTag: RCPT TO alice+news@ is stored with
// Delivered-To: alice+news@ (as Postfix's local(8) and Dovecot's LMTP
// write it), so that filters can match the tag; a second recipient
// reaching the same account adds no copy.
func TestE2EDeliveredToKeepsTag(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	env.AddUser("bob@example.test", "pw-bob-123456")
	rcpts := []string{"alice+news@example.test", "bob@example.test", harness.User}
	if err := send(env.Addr("smtp"), "x@remote.example", rcpts, testMessage, nil); err != nil {
		t.Fatal(err)
	}
	got := storetest.Texts(t, env.Server.Store, harness.User, "INBOX")
	if len(got) != 1 || !strings.HasPrefix(got[0], "Return-Path: <x@remote.example>\r\nDelivered-To: alice+news@example.test\r\n") {
		t.Errorf("alice has %d messages, the first:\n%s", len(got), got)
	}
}

// TestE2EMessageLargerThanQuota: a message larger than a recipient's
// whole quota fails permanently for that recipient, where a full mailbox
// is a temporary failure retried for days: alone, at the end of DATA (552
// 5.2.3); with another recipient, it is delivered to the other and the
// sender gets a failure DSN at once.
func TestE2EMessageLargerThanQuota(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	for _, u := range []string{"small@example.test", "carol@example.test"} {
		env.AddUser(u, "pw-"+u)
	}
	st := env.Server.Store
	if err := st.SetQuota("small@example.test", 20); err != nil {
		t.Fatal(err)
	}
	err := send(env.Addr("smtp"), "carol@example.test", []string{"small@example.test"}, testMessage, nil)
	if err == nil || !strings.Contains(err.Error(), "552") {
		t.Fatalf("alone: %v, want 552 5.2.3", err)
	}
	if err := send(env.Addr("smtp"), "carol@example.test", []string{"small@example.test", harness.User}, testMessage, nil); err != nil {
		t.Fatalf("with another recipient: %v", err)
	}
	if n := len(storetest.Texts(t, st, harness.User, "INBOX")); n != 1 {
		t.Errorf("the other recipient has %d messages", n)
	}
	dsn := waitMailbox(t, st, "carol@example.test", 1)[0]
	for _, want := range []string{"Final-Recipient: rfc822; small@example.test", "Action: failed", "Status: 5.2.3"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
	if n := len(storetest.Texts(t, st, "small@example.test", "INBOX")); n != 0 {
		t.Errorf("small@ has %d messages", n)
	}
}

// TestE2EAliasWithFullMember: an alias is refused at RCPT only when every
// target is full (452 4.2.2) or too small for the SIZE announced (552
// 5.2.3). With one full member and one with room, RCPT and DATA get 250,
// with and without SIZE, also when SIZE is larger than the full member's
// whole quota: the member with room has the message at once (probe 8:
// one full member refused the whole list, permanently with such a SIZE).
func TestE2EAliasWithFullMember(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	for _, u := range []string{"bob@example.test", "full@example.test", "small@example.test"} {
		env.AddUser(u, "pw-"+u)
	}
	st := env.Server.Store
	storetest.Fill(t, st, "full@example.test")
	if err := st.SetQuota("small@example.test", 20); err != nil {
		t.Fatal(err)
	}
	for alias, targets := range map[string][]string{
		"team@example.test":    {"full@example.test", "bob@example.test"},
		"allfull@example.test": {"full@example.test"},
		"tiny@example.test":    {"small@example.test"},
	} {
		if err := st.AddAlias(alias, targets); err != nil {
			t.Fatal(err)
		}
	}
	c, err := smtp.Dial(env.Addr("smtp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	rcpt := func(size int64, to string) error {
		if err := c.Reset(); err != nil {
			t.Fatal(err)
		}
		if err := c.Mail("carol@remote.example", &smtp.MailOptions{Size: size}); err != nil {
			t.Fatal(err)
		}
		return c.Rcpt(to, nil)
	}
	acct, err := st.Account("full@example.test")
	if err != nil {
		t.Fatal(err)
	}
	bigSize := acct.QuotaBytes + 1
	for _, size := range []int64{0, 100, bigSize} {
		if err := rcpt(size, "team@example.test"); err != nil {
			t.Fatalf("SIZE=%d: RCPT of the alias with one full member: %v", size, err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, testMessage)
		if err := w.Close(); err != nil {
			t.Fatalf("SIZE=%d: DATA: %v", size, err)
		}
	}
	if n := len(storetest.Texts(t, st, "bob@example.test", "INBOX")); n != 3 {
		t.Errorf("bob has %d messages, want 3", n)
	}
	if err := rcpt(100, "allfull@example.test"); err == nil || !strings.Contains(err.Error(), "452") {
		t.Errorf("an alias to full mailboxes only: %v, want 452 4.2.2", err)
	}
	if err := rcpt(100, "tiny@example.test"); err == nil || !strings.Contains(err.Error(), "552") {
		t.Errorf("an alias to a quota smaller than SIZE: %v, want 552 5.2.3", err)
	}
}

// TestE2EDSNNamesAlias: over port 25, a message to an alias whose member
// is full: the sender's delay DSN names the member and, as
// Original-Recipient, the alias the sender wrote to (RFC 3464 section
// 2.3.1), which is all the sender knows.
func TestE2EDSNNamesAlias(t *testing.T) {
	env := startWithFull(t)
	st := env.Server.Store
	if err := st.AddAlias("team@example.test", []string{"full@example.test", "bob@example.test"}); err != nil {
		t.Fatal(err)
	}
	if err := send(env.Addr("smtp"), "carol@example.test", []string{"team@example.test"}, testMessage, nil); err != nil {
		t.Fatal(err)
	}
	dsn := waitMailbox(t, st, "carol@example.test", 1)[0]
	for _, want := range []string{"Original-Recipient: rfc822; team@example.test\r\nFinal-Recipient: rfc822; full@example.test",
		"<full@example.test> (expanded from <team@example.test>)", "Action: delayed"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
}
