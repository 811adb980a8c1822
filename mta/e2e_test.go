package mta_test

import (
	"bytes"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/internal/smtptest"
	"github.com/posthorn/posthorn/internal/storetest"
	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/mta"
)

const testMessage = "From: Bob <bob@remote.example>\r\n" +
	"To: Alice <alice@example.test>\r\n" +
	"Subject: end to end\r\n" +
	"Message-ID: <e2e-1@remote.example>\r\n" +
	"\r\n" +
	"Hello Alice,\r\n" +
	".a line that starts with a dot\r\n" +
	"\r\n" +
	"Bob\r\n"

// checkDelivered checks a stored message: our headers, then the message
// exactly as sent.
func checkDelivered(t *testing.T, got []byte, from, sent, proto, helo string) {
	t.Helper()
	if !bytes.HasSuffix(got, []byte(sent)) {
		t.Fatalf("stored message does not end with the message sent:\n%q", got)
	}
	ours := string(got[:len(got)-len(sent)])
	want := "Return-Path: <" + from + ">\r\nDelivered-To: " + harness.User + "\r\nAuthentication-Results: mail.example.test;"
	if !strings.HasPrefix(ours, want) {
		t.Errorf("headers %q, want prefix %q", ours, want)
	}
	for _, w := range []string{"\r\nReceived: from " + helo + " ([127.0.0.1])\r\n\tby mail.example.test", "with " + proto + " id ", "for <alice@example.test>;", "spf=none", "dkim=none", "dmarc=none"} {
		if !strings.Contains(ours, w) {
			t.Errorf("headers lack %q:\n%s", w, ours)
		}
	}
}

// send delivers a message with go-smtp's client, in the clear (HELO
// client.example) or with STARTTLS (go-smtp then says HELO localhost).
func send(addr, from string, to []string, msg string, tlsConf *tls.Config) error {
	var c *smtp.Client
	var err error
	if tlsConf != nil {
		c, err = smtp.DialStartTLS(addr, tlsConf)
	} else if c, err = smtp.Dial(addr); err == nil {
		err = c.Hello("client.example")
	}
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail(from, to, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

func TestE2EGoSMTPClient(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	for i, tlsConf := range []*tls.Config{nil, env.ClientTLS()} {
		if err := send(env.Addr("smtp"), "bob@remote.example", []string{harness.User}, testMessage, tlsConf); err != nil {
			t.Fatalf("send: %v", err)
		}
		msgs := storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")
		if len(msgs) != i+1 {
			t.Fatalf("%d messages in INBOX, want %d", len(msgs), i+1)
		}
		proto, helo := "ESMTP", "client.example"
		if tlsConf != nil {
			proto, helo = "ESMTPS", "localhost"
		}
		checkDelivered(t, msgs[i], "bob@remote.example", testMessage, proto, helo)
	}
	if n := env.Server.Metrics.Value(metrics.Accepted, "via", "smtp"); n != 2 {
		t.Errorf("accepted metric %d, want 2", n)
	}
	if n := env.Server.Metrics.Value(metrics.Delivered, "to", "local"); n != 2 {
		t.Errorf("delivered metric %d, want 2", n)
	}
}

func TestE2ESwaks(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks is not installed")
	}
	env := harness.Start(t, harness.Options{})
	file := filepath.Join(t.TempDir(), "msg.eml")
	// swaks ends the data with CRLF "." CRLF itself.
	if err := os.WriteFile(file, []byte(strings.TrimSuffix(testMessage, "\r\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(env.Addr("smtp"), ":")
	out, err := exec.Command(swaks, "--server", host, "--port", port, "--helo", "client.example",
		"--from", "carol@remote.example", "--to", harness.User, "--data", file).CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	msgs := storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")
	if len(msgs) != 1 {
		t.Fatalf("%d messages in INBOX\n%s", len(msgs), out)
	}
	checkDelivered(t, msgs[0], "carol@remote.example", testMessage, "ESMTP", "client.example")
}

func TestE2ERelayForms(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	mta.RunRelayForms(t, env.Addr("smtp"), harness.Domain)
	if n := len(storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}

func TestE2ESmuggling(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	count := func() int { return len(storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")) }
	mta.RunSmuggling(t, env.Addr("smtp"), harness.User, count)
	mta.RunPipelinedData(t, env.Addr("smtp"), harness.User, count)
	mta.RunPipelinedDataAtBoundary(t, env.Addr("smtp"), harness.User, count)
	mta.RunBDAT(t, env.Addr("smtp"), harness.User, count)
	mta.RunSmugglingTLS(t, env.Addr("smtp"), harness.User, count)
}

// TestE2EAliasesAndQuota: an alias to two accounts stores one body; a
// full account is refused at RCPT with 452 4.2.2.
func TestE2EAliasesAndQuota(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	env.AddUser("bob@example.test", "pw-bob-123456")
	st := env.Server.Store
	if err := st.AddAlias("team@example.test", []string{harness.User, "bob@example.test"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddAlias("@example.test", []string{"bob@example.test"}); err != nil {
		t.Fatal(err)
	}
	err := send(env.Addr("smtp"), "x@remote.example",
		[]string{"team@example.test", "alice+news@example.test", "whoever@example.test"}, testMessage, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := st.Messages(harness.User, "INBOX")
	b, _ := st.Messages("bob@example.test", "INBOX")
	if len(a) != 1 || len(b) != 1 {
		t.Fatalf("alice has %d, bob %d; want 1 each", len(a), len(b))
	}
	if a[0].BlobID != b[0].BlobID {
		t.Errorf("body stored twice (blobs %d, %d)", a[0].BlobID, b[0].BlobID)
	}
	if err := st.SetQuota("bob@example.test", 1); err != nil {
		t.Fatal(err)
	}
	err = send(env.Addr("smtp"), "x@remote.example", []string{"bob@example.test"}, testMessage, nil)
	var se *smtp.SMTPError
	if !asSMTPError(err, &se) || se.Code != 452 || se.EnhancedCode != (smtp.EnhancedCode{4, 2, 2}) {
		t.Errorf("over quota: %v, want 452 4.2.2", err)
	}
}

func asSMTPError(err error, se **smtp.SMTPError) bool {
	e, ok := err.(*smtp.SMTPError)
	if ok {
		*se = e
	}
	return ok
}

// TestE2EAuthentication runs SPF, DKIM (the RFC 8463 example, both
// signatures) and DMARC through the server's resolver, which the harness
// points at its loopback DNS server (outbound.dns_server).
func TestE2EAuthentication(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	zone, err := os.ReadFile("testdata/rfc8463-dns.zone")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(zone), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, ";") {
			env.DNS.Add(t, l)
		}
	}
	env.DNS.Add(t,
		`football.example.com. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`_dmarc.football.example.com. 300 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.reject.test. 300 IN TXT "v=DMARC1; p=reject"`,
	)
	msg, err := os.ReadFile("testdata/rfc8463-message.eml")
	if err != nil {
		t.Fatal(err)
	}
	if err := send(env.Addr("smtp"), "joe@football.example.com", []string{harness.User}, string(msg), nil); err != nil {
		t.Fatal(err)
	}
	got := storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")
	if len(got) != 1 || !bytes.HasSuffix(got[0], msg) {
		t.Fatalf("RFC 8463 message not stored intact")
	}
	hdr := string(got[0][:len(got[0])-len(msg)])
	for _, w := range []string{"spf=pass smtp.mailfrom=joe@football.example.com", "dkim=pass header.d=football.example.com",
		"dmarc=pass header.from=football.example.com"} {
		if strings.Count(hdr, w) < 1 {
			t.Errorf("Authentication-Results lack %q:\n%s", w, hdr)
		}
	}
	if strings.Count(hdr, "dkim=pass") != 2 {
		t.Errorf("want both signatures verified:\n%s", hdr)
	}

	spoof := "From: <ceo@reject.test>\r\nSubject: wire money\r\n\r\nnow\r\n"
	err = send(env.Addr("smtp"), "ceo@reject.test", []string{harness.User}, spoof, nil)
	var se *smtp.SMTPError
	if !asSMTPError(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Errorf("DMARC p=reject failure: %v, want 550 5.7.1", err)
	}
	if n := len(storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")); n != 1 {
		t.Errorf("%d messages after a DMARC reject", n)
	}
	if n := env.Server.Metrics.Value(metrics.Rejected, "via", "smtp", "reason", "dmarc"); n != 1 {
		t.Errorf("rejected metric %d", n)
	}
}

// TestE2EQuotedSender: a sender whose local part is a Quoted-string keeps
// its quotes in the Return-Path (go-smtp hands it over unquoted, and
// "<john doe@remote.example>" is not an address).
func TestE2EQuotedSender(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c := smtptest.Dial(t, env.Addr("smtp"))
	c.Cmd("EHLO client.example", "250")
	c.Cmd(`MAIL FROM:<"john \"jd\" doe"@remote.example>`, "250")
	c.Cmd("RCPT TO:<"+harness.User+">", "250")
	c.Cmd("DATA", "354")
	c.Cmd("Subject: quoted\r\n\r\nhi\r\n.", "250")
	msgs := storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")
	if len(msgs) != 1 || !strings.HasPrefix(string(msgs[0]), `Return-Path: <"john \"jd\" doe"@remote.example>`+"\r\n") {
		t.Fatalf("delivered: %q", msgs)
	}
}

// TestE2EFailedHandshakeEndsSession: after a STARTTLS whose handshake
// fails, the session ends (as in Postfix) instead of going on in
// plaintext.
func TestE2EFailedHandshakeEndsSession(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c := smtptest.Dial(t, env.Addr("smtp"))
	c.Cmd("EHLO client.example", "250")
	c.Cmd("STARTTLS", "220")
	c.Send("not a client hello\r\n\r\n")
	if rest := c.Rest(); rest != "" {
		t.Fatalf("after a failed handshake the session goes on: %q", rest)
	}
}

// TestE2EHostPostmaster: mail to postmaster at the server's own name, as
// `serve` wires the delivery agent, reaches the postmaster of its domain.
func TestE2EHostPostmaster(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	to := "postmaster@" + env.Config.Hostname
	if err := send(env.Addr("smtp"), "bob@remote.example", []string{to}, testMessage, nil); err != nil {
		t.Fatalf("to %s: %v", to, err)
	}
	if n := len(storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")); n != 1 {
		t.Fatalf("%d messages for %s, want 1", n, harness.User)
	}
	// RCPT TO:<Postmaster>, without a domain, in any case (RFC 5321
	// section 4.5.1: MUST be supported); go-smtp answered 501.
	c := smtptest.Dial(t, env.Addr("smtp"))
	c.Cmd("EHLO client.example", "250")
	c.Cmd("MAIL FROM:<bob@remote.example>", "250")
	c.Cmd("RCPT TO:<Postmaster>", "250")
	c.Cmd("RCPT TO:<POSTMASTER>", "250")
	c.Cmd("RCPT TO:<postmaster.x>", "501")
	// The same in pieces, as a slow client or the network may cut it.
	for _, pieces := range [][]string{{"RCPT TO:<Post", "master>\r\n"}, {"RCPT TO:<postmaster>", "\r\n"}, {"RC", "PT TO:  <postmaster>\r", "\n"}} {
		for _, p := range pieces {
			if _, err := c.Conn.Write([]byte(p)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		c.Expect("250")
	}
	c.Cmd("DATA", "354")
	c.Send(testMessage + ".\r\n")
	c.Expect("250")
	msgs := storetest.Texts(t, env.Server.Store, harness.User, "INBOX")
	if len(msgs) != 2 || !strings.Contains(msgs[1], "Delivered-To: "+harness.User+"\r\n") {
		t.Fatalf("after RCPT TO:<Postmaster>: %d messages, the last:\n%s", len(msgs), msgs[len(msgs)-1])
	}
}

// TestE2EHeaderWithoutEmptyLine: a message whose header runs into its body
// without the empty line between is stored with it put in (as Postfix
// does), and so is an empty message's header: without it, IMAP showed an
// empty body and mbsync skipped the message ("incomplete header").
func TestE2EHeaderWithoutEmptyLine(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c := smtptest.Dial(t, env.Addr("smtp"))
	c.Cmd("EHLO client.example", "250")
	c.Cmd("MAIL FROM:<bob@remote.example>", "250")
	c.Cmd("RCPT TO:<"+harness.User+">", "250")
	c.Cmd("DATA", "354")
	c.Cmd("From: <bob@remote.example>\r\nSubject: no blank\r\nthe body's first line\r\n.", "250")
	c.Cmd("MAIL FROM:<bob@remote.example>", "250")
	c.Cmd("RCPT TO:<"+harness.User+">", "250")
	c.Cmd("BDAT 0 LAST", "250")
	msgs := storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	if !strings.HasSuffix(string(msgs[0]), "Subject: no blank\r\n\r\nthe body's first line\r\n") {
		t.Errorf("stored without the empty line:\n%s", msgs[0])
	}
	if !strings.HasSuffix(string(msgs[1]), "\r\n\r\n") || strings.Count(string(msgs[1]), "\r\n\r\n") != 1 {
		t.Errorf("empty message's header not ended:\n%q", msgs[1])
	}
}
