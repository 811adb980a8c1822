package msa_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/dkim"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/internal/storetest"
	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/store"
)

const (
	alice     = "alice@a.test"
	bob       = "bob@b.test"
	pairPass  = "pair password 1234"
	waitLimit = 30 * time.Second
)

// pair is two Posthorn instances sharing one DNS server: a serves a.test
// and sends to b, which serves b.test, through MX records on loopback.
type pair struct {
	DNS  *harness.DNS
	A, B *harness.Env
}

func startB(t testing.TB, dns *harness.DNS, dir, smtpAddr string) *harness.Env {
	return harness.Start(t, harness.Options{DNS: dns, Dir: dir, Configure: func(c *config.Config) {
		c.Hostname = "mx.b.test"
		if smtpAddr != "" {
			c.Listen.SMTP = smtpAddr
		}
	}})
}

func startPair(t testing.TB) *pair {
	t.Helper()
	dns := harness.StartDNS(t)
	b := startB(t, dns, "", "")
	b.AddDomain("b.test")
	b.AddUser(bob, pairPass)
	bPort := b.Server.Addr("smtp").(*net.TCPAddr).Port
	a := harness.Start(t, harness.Options{DNS: dns, Configure: func(c *config.Config) {
		c.Hostname = "mx.a.test"
		c.Outbound.MXPort = bPort
	}})
	a.AddDomain("a.test")
	a.AddUser(alice, pairPass)
	keys, err := dkim.Ensure(a.Server.Store, "a.test")
	if err != nil {
		t.Fatal(err)
	}
	lines, err := dkim.ZoneLines(keys)
	if err != nil {
		t.Fatal(err)
	}
	dns.Add(t, lines...)
	dns.Add(t,
		"a.test. 300 IN MX 10 mx.a.test.", "mx.a.test. 300 IN A 127.0.0.1",
		"b.test. 300 IN MX 10 mx.b.test.", "mx.b.test. 300 IN A 127.0.0.1",
		`a.test. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`_dmarc.a.test. 300 IN TXT "v=DMARC1; p=reject"`,
	)
	return &pair{DNS: dns, A: a, B: b}
}

// waitMessages waits until account's INBOX has n messages and returns
// them, woken by the store's events rather than by polling.
func waitMessages(t testing.TB, st store.Store, account string, n int) [][]byte {
	t.Helper()
	ch, cancel := st.Subscribe(account)
	defer cancel()
	timeout := time.After(waitLimit)
	for {
		if msgs := storetest.Bodies(t, st, account, "INBOX"); len(msgs) >= n {
			return msgs
		}
		select {
		case _, ok := <-ch:
			if !ok {
				ch, cancel = st.Subscribe(account)
				defer cancel()
			}
		case <-timeout:
			t.Fatalf("%s: fewer than %d messages after %v", account, n, waitLimit)
		}
	}
}

func TestE2ESubmitToRemoteWithDKIM(t *testing.T) {
	p := startPair(t)
	c, err := dial(t, p.A, alice, pairPass)
	if err != nil {
		t.Fatal(err)
	}
	// One local and one remote recipient: the mda and the queue. The
	// Bcc: field (mutt's write_bcc) is taken out before signing.
	msg := strings.Replace(testMessage(alice, bob, "across"), "Subject:", "Bcc: <alice@a.test>,\r\n <hidden@b.test>\r\nSubject:", 1)
	if err := send(c, alice, []string{bob, alice}, msg); err != nil {
		t.Fatal(err)
	}
	if own := storetest.Bodies(t, p.A.Server.Store, alice, "INBOX"); len(own) != 1 || !strings.Contains(string(own[0]), "Subject: across") {
		t.Fatalf("local copy: %d messages", len(own))
	}
	msgs := waitMessages(t, p.B.Server.Store, bob, 1)
	m := string(msgs[0])
	if !strings.Contains(m, "Subject: across") {
		t.Fatalf("wrong message:\n%s", m)
	}
	ar := headerField(m, "Authentication-Results")
	if !strings.Contains(ar, "dkim=pass") {
		t.Fatalf("b's Authentication-Results %q lacks dkim=pass:\n%s", ar, m)
	}
	t.Logf("b: Authentication-Results: %s", ar)
	if !strings.Contains(ar, "header.d=a.test") {
		t.Errorf("Authentication-Results %q does not name a.test", ar)
	}
	if strings.Contains(m, "Bcc") || strings.Contains(m, "hidden@") {
		t.Errorf("the Bcc: field reached a recipient:\n%s", m)
	}
}

// headerField returns the unfolded value of the first field name.
func headerField(msg, name string) string {
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	for i, l := range lines {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, name) {
			for _, cont := range lines[i+1:] {
				if cont == "" || (cont[0] != ' ' && cont[0] != '\t') {
					break
				}
				v += " " + strings.TrimSpace(cont)
			}
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestE2EQueueWaitsForRemote(t *testing.T) {
	p := startPair(t)
	bAddr, bDir := p.B.Addr("smtp"), p.B.Dir
	p.B.Stop()
	c, err := dial(t, p.A, alice, pairPass)
	if err != nil {
		t.Fatal(err)
	}
	// The domain's trailing dot is not sent on (RFC 5321 section 4.1.2).
	if err := send(c, alice, []string{bob + "."}, testMessage(alice, bob, "patience")); err != nil {
		t.Fatal(err)
	}
	// The entry stays queued, with a failed attempt recorded.
	deadline := time.Now().Add(waitLimit)
	for {
		es, err := p.A.Server.Store.QueueEntries()
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 1 {
			t.Fatalf("%d queue entries, want 1", len(es))
		}
		if got := es[0].Recipients[0].Address; got != bob {
			t.Fatalf("queued for %q, want %q", got, bob)
		}
		if es[0].Attempts > 0 {
			if es[0].Recipients[0].Done || es[0].LastError == "" {
				t.Fatalf("entry after a failed attempt: %+v", es[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no delivery attempt")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := p.A.Server.Metrics.Value(metrics.QueueLength); n != 1 {
		t.Errorf("queue length gauge = %d, want 1", n)
	}
	b := startB(t, p.DNS, bDir, bAddr)
	msgs := waitMessages(t, b.Server.Store, bob, 1)
	if !strings.Contains(string(msgs[0]), "Subject: patience") {
		t.Fatalf("wrong message:\n%s", msgs[0])
	}
	waitQueueEmpty(t, p.A)
}

func waitQueueEmpty(t testing.TB, env *harness.Env) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		es, err := env.Server.Store.QueueEntries()
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue still has %+v", es)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestE2ERefusedRecipientOneDSN(t *testing.T) {
	p := startPair(t)
	c, err := dial(t, p.A, alice, pairPass)
	if err != nil {
		t.Fatal(err)
	}
	if err := send(c, alice, []string{"nobody@b.test", bob}, testMessage(alice, bob, "half")); err != nil {
		t.Fatal(err)
	}
	waitMessages(t, p.B.Server.Store, bob, 1)
	dsns := waitMessages(t, p.A.Server.Store, alice, 1)
	waitQueueEmpty(t, p.A)
	dsns = storetest.Bodies(t, p.A.Server.Store, alice, "INBOX")
	if len(dsns) != 1 {
		t.Fatalf("%d messages in alice's INBOX, want exactly one DSN", len(dsns))
	}
	d := string(dsns[0])
	for _, want := range []string{
		"Return-Path: <>", "report-type=delivery-status", "Final-Recipient: rfc822; nobody@b.test",
		"Action: failed", "Status: 5.1.1", "Diagnostic-Code: smtp; 550", "Subject: half",
	} {
		if !strings.Contains(d, want) {
			t.Errorf("DSN lacks %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, "rfc822; "+bob) {
		t.Errorf("DSN reports the delivered recipient:\n%s", d)
	}
}

// TestE2EAliasForwardsThroughQueue: the delivery agent's remote alias
// targets go to the outbound queue wired by the server.
func TestE2EAliasForwardsThroughQueue(t *testing.T) {
	p := startPair(t)
	if err := p.A.Server.Store.AddAlias("fwd@a.test", []string{bob}); err != nil {
		t.Fatal(err)
	}
	c, err := dial(t, p.A, alice, pairPass)
	if err != nil {
		t.Fatal(err)
	}
	if err := send(c, alice, []string{"fwd@a.test"}, testMessage(alice, "fwd@a.test", "forwarded")); err != nil {
		t.Fatal(err)
	}
	msgs := waitMessages(t, p.B.Server.Store, bob, 1)
	if !strings.Contains(string(msgs[0]), "Subject: forwarded") {
		t.Fatalf("wrong message:\n%s", msgs[0])
	}
	waitQueueEmpty(t, p.A)
}

// TestE2ERemoteLocalPartForms: another host's local parts are its own to
// read (RFC 5321 section 2.4): submission takes "john doe"@ and john%x@
// there (it refused them, 553), and the queue sends them quoted as
// needed. b, for its own domain, refuses both: the DSN shows what went
// over the wire.
func TestE2ERemoteLocalPartForms(t *testing.T) {
	p := startPair(t)
	c, err := dial(t, p.A, alice, pairPass)
	if err != nil {
		t.Fatal(err)
	}
	if err := send(c, alice, []string{`"john doe"@b.test`, "john%x@b.test", bob}, testMessage(alice, bob, "forms")); err != nil {
		t.Fatal(err)
	}
	waitMessages(t, p.B.Server.Store, bob, 1)
	waitMessages(t, p.A.Server.Store, alice, 1)
	waitQueueEmpty(t, p.A)
	dsns := storetest.Bodies(t, p.A.Server.Store, alice, "INBOX")
	if len(dsns) != 1 {
		t.Fatalf("%d messages in alice's INBOX, want one DSN", len(dsns))
	}
	d := string(dsns[0])
	for _, want := range []string{`Final-Recipient: rfc822; "john doe"@b.test`, "Final-Recipient: rfc822; john%x@b.test", "Diagnostic-Code: smtp; 550"} {
		if !strings.Contains(d, want) {
			t.Errorf("DSN lacks %q:\n%s", want, d)
		}
	}
}

// TestE2ELongLinesFoldedForRemote: a line longer than 998 octets (RFC
// 5321 section 4.5.3.1.6, RFC 5322 section 2.1.1) is broken with CRLF SP
// before a message for another host is signed, as Postfix does when it
// sends: the receiver gets no longer line, and the signature holds.
func TestE2ELongLinesFoldedForRemote(t *testing.T) {
	p := startPair(t)
	c, err := dial(t, p.A, alice, pairPass)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("0123456789", 250) // 2,500 octets
	if err := send(c, alice, []string{bob}, testMessage(alice, bob, "long")+long+"\r\nend\r\n"); err != nil {
		t.Fatal(err)
	}
	m := string(waitMessages(t, p.B.Server.Store, bob, 1)[0])
	for _, l := range strings.Split(m, "\r\n") {
		if len(l) > 998 {
			t.Fatalf("a line of %d octets reached the remote", len(l))
		}
	}
	if got := strings.ReplaceAll(m, "\r\n ", ""); !strings.Contains(got, "\r\n"+long+"\r\nend\r\n") {
		t.Errorf("the long line, unfolded, is not the one sent:\n%s", m)
	}
	if ar := headerField(m, "Authentication-Results"); !strings.Contains(ar, "dkim=pass") {
		t.Errorf("b's Authentication-Results %q lacks dkim=pass", ar)
	}
}

// TestE2EAliasForwardsToUTF8Address: an alias to a remote address with a
// non-ASCII local part forwards a message that came without SMTPUTF8 (as
// nearly all mail does) with SMTPUTF8, which the next hop offers (RFC 6531
// section 3.2). Probe 8: the queue used SMTPUTF8 only when the incoming
// transaction had, so every such message failed with a false "does not
// support SMTPUTF8" (and, from a remote sender, without a DSN).
func TestE2EAliasForwardsToUTF8Address(t *testing.T) {
	p := startPair(t)
	const jose = "josé@b.test"
	p.B.AddUser(jose, pairPass)
	if err := p.A.Server.Store.AddAlias("fwd@a.test", []string{jose}); err != nil {
		t.Fatal(err)
	}
	c, err := dial(t, p.A, alice, pairPass)
	if err != nil {
		t.Fatal(err)
	}
	if err := send(c, alice, []string{"fwd@a.test"}, testMessage(alice, "fwd@a.test", "to an EAI mailbox")); err != nil {
		t.Fatal(err)
	}
	msgs := waitMessages(t, p.B.Server.Store, jose, 1)
	if !strings.Contains(string(msgs[0]), "Subject: to an EAI mailbox") {
		t.Fatalf("wrong message:\n%s", msgs[0])
	}
	waitQueueEmpty(t, p.A)
	if n := len(storetest.Bodies(t, p.A.Server.Store, alice, "INBOX")); n != 0 {
		t.Errorf("the sender got %d messages (a DSN?)", n)
	}
}
