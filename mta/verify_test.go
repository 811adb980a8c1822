package mta

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func loadZoneFile(t *testing.T, z *zoneDNS, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, ";") {
			z.add(t, l)
		}
	}
}

// TestDKIMRFC8463 verifies both signatures of the RFC 8463 appendix A
// example (ed25519-sha256 and rsa-sha256) with the keys published in DNS.
func TestDKIMRFC8463(t *testing.T) {
	z := startZoneDNS(t)
	loadZoneFile(t, z, "testdata/rfc8463-dns.zone")
	msg, err := os.ReadFile("testdata/rfc8463-message.eml")
	if err != nil {
		t.Fatal(err)
	}
	got := checkDKIM(context.Background(), z.resolver(), msg)
	if len(got) != 2 {
		t.Fatalf("got %d verdicts: %+v", len(got), got)
	}
	for _, d := range got {
		if d.result != "pass" || d.domain != "football.example.com" {
			t.Errorf("verdict %+v, want pass for football.example.com", d)
		}
	}

	tampered := bytes.Replace(msg, []byte("We lost the game."), []byte("We won the game."), 1)
	for _, d := range checkDKIM(context.Background(), z.resolver(), tampered) {
		if d.result != "fail" {
			t.Errorf("tampered body: verdict %+v, want fail", d)
		}
	}

	// Without the keys in DNS: permerror (no key), never pass.
	for _, d := range checkDKIM(context.Background(), startZoneDNS(t).resolver(), msg) {
		if d.result == "pass" {
			t.Errorf("no key in DNS but %+v", d)
		}
	}
}

// TestDKIMMaxVerifications: signatures over the limit are not verified,
// and the results say so with one dkim=policy (F16 of the probe: they
// went unmentioned).
func TestDKIMMaxVerifications(t *testing.T) {
	msg, _ := os.ReadFile("testdata/rfc8463-message.eml")
	sig, _, _ := bytes.Cut(msg, []byte("From: "))
	many := append(bytes.Repeat(sig, 20), msg...) // 2 signatures each
	got := checkDKIM(context.Background(), startZoneDNS(t).resolver(), many)
	if len(got) != maxDKIMSignatures+1 {
		t.Fatalf("%d verdicts, want %d and one for the rest", len(got), maxDKIMSignatures)
	}
	last := got[len(got)-1]
	want := sprintf("%d more signatures not verified", 42-maxDKIMSignatures)
	if last.result != "policy" || !strings.Contains(last.reason, want) {
		t.Errorf("last verdict %+v, want policy: %s", last, want)
	}
}

func TestDMARC(t *testing.T) {
	z := startZoneDNS(t)
	z.add(t,
		`_dmarc.reject.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.quarantine.test. 300 IN TXT "v=DMARC1; p=quarantine; sp=reject"`,
		`_dmarc.strict.test. 300 IN TXT "v=DMARC1; p=reject; aspf=s; adkim=s"`,
		// Probe P7a: a bad optional tag, or a keyword in capitals, threw
		// the whole record away (dmarc=permerror, delivered); of two
		// records the first was applied; "v = DMARC1" was not seen.
		`_dmarc.caps.test. 300 IN TXT "v=DMARC1; p=Reject; ASPF=S"`,
		`_dmarc.badpct.test. 300 IN TXT "v=DMARC1; p=reject; pct=abc"`,
		`_dmarc.badfo.test. 300 IN TXT "v=DMARC1; p=reject; fo=x; rf=iodef; ri=-1"`,
		`_dmarc.spaces.test. 300 IN TXT "v = DMARC1 ; p = reject"`,
		`_dmarc.two.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.two.test. 300 IN TXT "v=DMARC1; p=none"`,
		`_dmarc.twoorg.test. 300 IN TXT "v=DMARC1; p=none"`,
		`_dmarc.twoorg.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.nop.test. 300 IN TXT "v=DMARC1; rua=mailto:dmarc@nop.test"`,
		`_dmarc.nopnorua.test. 300 IN TXT "v=DMARC1; pct=50"`,
		`_dmarc.badsp.test. 300 IN TXT "v=DMARC1; p=reject; sp=never"`,
		`_dmarc.v2.test. 300 IN TXT "v=DMARC2; p=reject"`,
		`_dmarc.notfirst.test. 300 IN TXT "p=reject; v=DMARC1"`,
	)
	z.setServfail("_dmarc.broken.test")
	msg := func(from string) []byte {
		return []byte("From: Someone <someone@" + from + ">\r\nSubject: x\r\n\r\nbody\r\n")
	}
	pass := func(d string) spfVerdict { return spfVerdict{result: "pass", domain: d} }
	cases := []struct {
		name        string
		from        string
		spf         spfVerdict
		dkim        []dkimVerdict
		result, pol string
	}{
		{"no record", "norecord.test", spfVerdict{result: "none"}, nil, "none", "none"},
		{"reject, nothing aligned", "reject.test", spfVerdict{result: "none"}, nil, "fail", "reject"},
		{"reject, spf aligned", "reject.test", pass("reject.test"), nil, "pass", "none"},
		{"reject, spf relaxed subdomain", "reject.test", pass("bounces.reject.test"), nil, "pass", "none"},
		{"reject, spf other domain", "reject.test", pass("other.test"), nil, "fail", "reject"},
		// A null reverse path: SPF checked postmaster@HELO (RFC 7208
		// section 2.4), which DMARC aligns as the MAIL FROM identity.
		{"reject, spf helo identity", "reject.test", spfVerdict{result: "pass", domain: "reject.test", helo: true}, nil, "pass", "none"},
		{"reject, spf helo identity, other domain", "reject.test", spfVerdict{result: "pass", domain: "other.test", helo: true}, nil, "fail", "reject"},
		{"reject, dkim policy (l=) is no pass", "reject.test", spfVerdict{result: "fail"}, []dkimVerdict{{result: "policy", domain: "reject.test"}}, "fail", "reject"},
		{"reject, dkim aligned", "reject.test", spfVerdict{result: "fail"}, []dkimVerdict{{result: "pass", domain: "reject.test"}}, "pass", "none"},
		{"reject, dkim failed", "reject.test", spfVerdict{result: "fail"}, []dkimVerdict{{result: "fail", domain: "reject.test"}}, "fail", "reject"},
		{"quarantine", "quarantine.test", spfVerdict{result: "softfail"}, nil, "fail", "quarantine"},
		{"subdomain policy from the organizational domain", "sub.quarantine.test", spfVerdict{result: "none"}, nil, "fail", "reject"},
		{"strict spf alignment", "strict.test", pass("sub.strict.test"), nil, "fail", "reject"},
		{"strict dkim alignment", "strict.test", spfVerdict{}, []dkimVerdict{{result: "pass", domain: "strict.test"}}, "pass", "none"},
		{"dns failure", "broken.test", spfVerdict{}, nil, "temperror", "none"},
		{"keywords in capitals", "caps.test", pass("sub.caps.test"), nil, "fail", "reject"},
		{"bad pct ignored", "badpct.test", spfVerdict{}, nil, "fail", "reject"},
		{"bad fo, rf and ri ignored", "badfo.test", spfVerdict{}, nil, "fail", "reject"},
		{"white space around =", "spaces.test", spfVerdict{}, nil, "fail", "reject"},
		{"two records: no DMARC", "two.test", spfVerdict{}, nil, "none", "none"},
		{"two records the other way: no DMARC", "twoorg.test", spfVerdict{}, nil, "none", "none"},
		{"two records at the organizational domain", "sub.twoorg.test", spfVerdict{}, nil, "none", "none"},
		{"no p= but rua: p=none", "nop.test", spfVerdict{}, nil, "fail", "none"},
		{"no p= nor rua", "nopnorua.test", spfVerdict{}, nil, "permerror", "none"},
		{"bad sp= without rua", "badsp.test", spfVerdict{}, nil, "permerror", "none"},
		{"other version", "v2.test", spfVerdict{}, nil, "none", "none"},
		{"v= not first", "notfirst.test", spfVerdict{}, nil, "none", "none"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := checkDMARC(context.Background(), z.resolver(), msg(c.from), verdicts{spf: c.spf, dkim: c.dkim})
			if d.result != c.result || d.policy != c.pol {
				t.Errorf("got %s/%s, want %s/%s", d.result, d.policy, c.result, c.pol)
			}
		})
	}
}

func TestDMARCPolicyOverSMTP(t *testing.T) {
	z := startZoneDNS(t)
	z.add(t,
		`_dmarc.reject.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.quarantine.test. 300 IN TXT "v=DMARC1; p=quarantine"`,
		`good.test. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`_dmarc.good.test. 300 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.sloppy.test. 300 IN TXT "v = DMARC1; p=Reject; pct=abc; fo=x"`,
	)
	_, st, addr := startTestServer(t, func(s *Server) { s.Resolver = z.resolver() })
	send := func(from, want string) {
		t.Helper()
		d := Dial(t, addr)
		d.Cmd("EHLO client.example", "250")
		d.Cmd("MAIL FROM:<bounce@"+from+">", "250")
		d.Cmd("RCPT TO:<alice@example.test>", "250")
		d.Cmd("DATA", "354")
		d.Send("From: <ceo@" + from + ">\r\nSubject: pay\r\n\r\nnow\r\n.\r\n")
		d.Expect(want)
	}
	send("reject.test", "550 5.7.1")
	// P7a: a record with a bad optional tag and "p=Reject" is still
	// p=reject (RFC 7489 section 6.3); it let the spoof into the inbox.
	send("sloppy.test", "550 5.7.1")
	if st.count() != 0 {
		t.Fatalf("p=reject failure stored")
	}
	send("quarantine.test", "250")
	send("good.test", "250")
	if st.count() != 2 {
		t.Fatalf("stored %d, want 2", st.count())
	}
	if mb := st.delivered[0][0].Mailbox; mb != "Junk" {
		t.Errorf("p=quarantine failure went to %s", mb)
	}
	if mb := st.delivered[1][0].Mailbox; mb != "INBOX" {
		t.Errorf("DMARC pass went to %s", mb)
	}
	ar := string(st.bodies[1][:bytes.Index(st.bodies[1], []byte("Received:"))])
	for _, want := range []string{"spf=pass smtp.mailfrom=bounce@good.test", "dkim=none", "dmarc=pass header.from=good.test"} {
		if !strings.Contains(ar, want) {
			t.Errorf("Authentication-Results %q lacks %q", ar, want)
		}
	}
}

func TestTXTCache(t *testing.T) {
	z := startZoneDNS(t)
	z.add(t, `a.test. 300 IN TXT "v=spf1 -all"`)
	z.setServfail("broken.test")
	c := newTXTCache(z.resolver(), time.Minute, 2)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if txt, err := c.LookupTXT(ctx, "a.test"); err != nil || len(txt) != 1 {
			t.Fatalf("lookup: %v %v", txt, err)
		}
		if _, err := c.LookupTXT(ctx, "missing.test"); err == nil {
			t.Fatal("missing name found")
		}
	}
	if n := z.queries.Load(); n != 2 {
		t.Errorf("%d queries for two names looked up three times", n)
	}
	c.LookupTXT(ctx, "broken.test")
	before := z.queries.Load()
	c.LookupTXT(ctx, "broken.test")
	if z.queries.Load() == before {
		t.Errorf("a temporary failure was cached")
	}
}
