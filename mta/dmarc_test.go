package mta

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dmarc"
)

// transaction sends msg (without the end-of-data line) in one SMTP
// transaction and returns the reply to the data.
func transaction(t *testing.T, addr, helo, mailFrom, msg string) string {
	t.Helper()
	d := Dial(t, addr)
	d.Cmd("EHLO "+helo, "250")
	d.Cmd("MAIL FROM:"+mailFrom, "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	d.Cmd("DATA", "354")
	d.Send(msg + ".\r\n")
	return d.Reply()
}

// ourAuthResults returns the Authentication-Results field we put on top
// of a stored message, unfolded.
func ourAuthResults(t *testing.T, stored []byte) string {
	t.Helper()
	ar, _, ok := bytes.Cut(stored, []byte("\r\nReceived: "))
	if !ok || !bytes.HasPrefix(ar, []byte("Authentication-Results: ")) {
		t.Fatalf("no Authentication-Results on top:\n%s", stored)
	}
	return strings.ReplaceAll(string(ar), "\r\n", "")
}

// TestDMARCAuthorForms: a From field that net/mail cannot parse made
// DMARC say "none", and a p=reject domain was spoofed into the inbox
// (F1 of the probe). Every form a reader would still show as the p=reject
// domain must be refused, as must a From field with no domain to check;
// several authors are each checked, and the strictest result applies.
// Where no author domain can be told, the reply blames the header (5.6.0),
// not a policy.
func TestDMARCAuthorForms(t *testing.T) {
	z := startZoneDNS(t)
	z.add(t,
		`_dmarc.reject.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`other.test. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`_dmarc.other.test. 300 IN TXT "v=DMARC1; p=reject"`,
	)
	_, st, addr := startTestServer(t, func(s *Server) { s.Resolver = z.resolver() })
	for _, c := range []struct {
		name, from string // the From field(s), "" for none
		want       string
	}{
		{"plain", "From: \"PayPal\" <service@reject.test>\r\n", "550 5.7.1"},
		{"two From fields", "From: \"PayPal\" <service@reject.test>\r\nFrom: x@other.test\r\n", "550 5.6.0"},
		{"two From fields, both aligned", "From: a@other.test\r\nFrom: b@other.test\r\n", "550 5.6.0"},
		{"two addresses", "From: \"PayPal\" <service@reject.test>, x@other.test\r\n", "550 5.7.1"},
		{"two addresses, spoofed second", "From: x@other.test, \"PayPal\" <service@reject.test>\r\n", "550 5.7.1"},
		{"missing >", "From: \"PayPal\" <service@reject.test\r\n", "550 5.7.1"},
		{"trailing dot", "From: \"PayPal\" <service@reject.test.>\r\n", "550 5.7.1"},
		{"upper case, folded", "From: \"PayPal\"\r\n <service@REJECT.test>\r\n", "550 5.7.1"},
		{"comment and broken quote", "From: \"Pay\"Pal\" (x) <service@reject.test>\r\n", "550 5.7.1"},
		// White space before the colon (RFC 5322 section 4.5): a From
		// field as readers show it.
		{"space before the colon", "From : \"PayPal\" <service@reject.test>\r\n", "550 5.7.1"},
		{"tab before the colon, second From", "From: x@other.test\r\nFROM\t: service@reject.test\r\n", "550 5.6.0"},
		{"no domain", "From: PayPal service\r\n", "550 5.6.0"},
		{"empty group", "From: undisclosed-recipients:;\r\n", "550 5.6.0"},
		{"address literal", "From: service@[127.0.0.1]\r\n", "550 5.6.0"},
		{"aligned", "From: x@other.test\r\n", "250"},
		{"two aligned addresses", "From: x@other.test, \"Y\" <y@OTHER.test>\r\n", "250"},
		{"no From field", "", "250"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := st.count()
			got := transaction(t, addr, "client.example", "<bounce@other.test>", c.from+"Subject: pay\r\n\r\nnow\r\n")
			if !strings.HasPrefix(got, c.want) {
				t.Fatalf("got %q, want %s", got, c.want)
			}
			if stored := st.count() - before; (c.want == "250") != (stored == 1) {
				t.Errorf("%d messages stored", stored)
			}
		})
	}
	// The one without From says why there is no DMARC result.
	if ar := ourAuthResults(t, st.bodies[st.count()-1]); !strings.Contains(ar, `dmarc=none reason="no From field"`) {
		t.Errorf("Authentication-Results %q", ar)
	}
}

// TestDMARCFromAfterBrokenHeader: a From field after a line that ends the
// header (EndHeader puts the empty line there) is body text once stored;
// the From field DMARC checks is the one a reader sees.
func TestDMARCFromAfterBrokenHeader(t *testing.T) {
	z := startZoneDNS(t)
	z.add(t, `_dmarc.reject.test. 300 IN TXT "v=DMARC1; p=reject"`)
	msg := []byte("From: a@norecord.test\r\nnot a field\r\nFrom: b@reject.test\r\n\r\nx\r\n")
	if d := checkDMARC(context.Background(), z.resolver(), msg, verdicts{}); d.result != "none" || d.from != "norecord.test" {
		t.Errorf("got %+v, want none for norecord.test", d)
	}
}

// TestDMARCIDN: a From domain written as a U-label is looked up, and
// aligned, as its A-label (F4 of the probe: it was never looked up).
func TestDMARCIDN(t *testing.T) {
	z := startZoneDNS(t)
	z.add(t,
		`_dmarc.xn--bcher-kva.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`other.test. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
	)
	_, st, addr := startTestServer(t, func(s *Server) { s.Resolver = z.resolver() })
	for _, from := range []string{"u@xn--bcher-kva.test", "u@bücher.test", "u@BÜCHER.test"} {
		got := transaction(t, addr, "client.example", "<u@other.test> SMTPUTF8 BODY=8BITMIME",
			"From: "+from+"\r\nSubject: x\r\n\r\ny\r\n")
		if !strings.HasPrefix(got, "550 5.7.1") {
			t.Errorf("From %s: got %q, want the p=reject refusal", from, got)
		}
	}
	if st.count() != 0 {
		t.Errorf("%d messages stored", st.count())
	}

	// Either form of the domain aligns with the other.
	rec := &dmarc.Record{}
	for _, c := range [][2]string{{"bücher.test", "xn--bcher-kva.test"}, {"mail.xn--bcher-kva.test", "Bücher.test."}} {
		if !alignedDomain(c[0], c[1], dmarc.AlignmentRelaxed) || !alignedDomain(c[0], c[1], rec.SPFAlignment) {
			t.Errorf("%s and %s not aligned", c[0], c[1])
		}
	}
	if !alignedDomain("bücher.test", "xn--bcher-kva.test", dmarc.AlignmentStrict) {
		t.Errorf("U-label and A-label not strictly aligned")
	}
	d := checkDMARC(context.Background(), z.resolver(), []byte("From: u@bücher.test\r\n\r\nx\r\n"),
		verdicts{dkim: []dkimVerdict{{result: "pass", domain: "bücher.test"}}})
	if d.result != "pass" || d.from != "xn--bcher-kva.test" {
		t.Errorf("DKIM d=bücher.test for From bücher.test: %+v", d)
	}
}

// TestDMARCNullSenderHELO: a bounce (MAIL FROM:<>) whose SPF passes for
// its HELO domain passes DMARC for that domain (F5 of the probe: it was
// refused under p=reject). SPF then checked postmaster@HELO, the MAIL
// FROM identity of RFC 7208 section 2.4.
func TestDMARCNullSenderHELO(t *testing.T) {
	z := startZoneDNS(t)
	z.add(t,
		`bounce.test. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`_dmarc.bounce.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.reject.test. 300 IN TXT "v=DMARC1; p=reject"`,
	)
	_, st, addr := startTestServer(t, func(s *Server) { s.Resolver = z.resolver() })
	dsn := "From: Mail Delivery System <MAILER-DAEMON@bounce.test>\r\nSubject: Undelivered Mail\r\n\r\nsorry\r\n"
	if got := transaction(t, addr, "bounce.test", "<>", dsn); !strings.HasPrefix(got, "250") {
		t.Fatalf("DSN from the HELO domain: got %q", got)
	}
	ar := ourAuthResults(t, st.bodies[0])
	for _, want := range []string{"spf=pass smtp.helo=bounce.test", "dmarc=pass header.from=bounce.test"} {
		if !strings.Contains(ar, want) {
			t.Errorf("Authentication-Results %q lacks %q", ar, want)
		}
	}
	// The HELO domain is not a pass for another author domain.
	spoof := "From: <ceo@reject.test>\r\nSubject: x\r\n\r\ny\r\n"
	if got := transaction(t, addr, "bounce.test", "<>", spoof); !strings.HasPrefix(got, "550 5.7.1") {
		t.Errorf("bounce from bounce.test claiming reject.test: got %q", got)
	}
}
