package mta

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"

	"github.com/posthorn/posthorn/internal/mailsyntax"
)

// TestAuthResMailFromInjection: a quoted MAIL FROM local part holding
// "; dkim=pass ..." became results of their own under our authserv-id
// (F2 of the probe). smtp.mailfrom now carries the local part only when
// it is a dot-atom (RFC 8601 section 2.2 makes it optional).
func TestAuthResMailFromInjection(t *testing.T) {
	z := startZoneDNS(t)
	z.add(t, `spfpass.test. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"`)
	_, st, addr := startTestServer(t, func(s *Server) { s.Resolver = z.resolver() })
	msg := "From: u@nodmarc.test\r\nSubject: x\r\n\r\ny\r\n"
	for i, c := range []struct{ mailFrom, want, helo string }{
		{`<"x; dkim=pass header.d=paypal.example; dmarc=pass header.from=paypal.example; y"@spfpass.test>`, "smtp.mailfrom=spfpass.test;", ""},
		{`<"a\"b"@spfpass.test>`, "smtp.mailfrom=spfpass.test;", ""},
		{`<"x\\"@spfpass.test>`, "smtp.mailfrom=spfpass.test;", ""},
		{`<"x(y"@spfpass.test>`, "smtp.mailfrom=spfpass.test;", ""},
		{`<x@spfpass.test;dkim=pass>`, "spf=none;", ""},
		{`<bob.smith+tag@spfpass.test>`, "smtp.mailfrom=bob.smith+tag@spfpass.test;", ""},
		{`<"bob"@spfpass.test>`, "smtp.mailfrom=bob@spfpass.test;", ""},
		// Address literals are quoted: "[" is a tspecial (P7a of the probe:
		// parsers refused the whole field).
		{`<a@[127.0.0.1]>`, `smtp.mailfrom="a@[127.0.0.1]";`, ""},
		{`<>`, `smtp.helo="[127.0.0.1]";`, "[127.0.0.1]"},
	} {
		helo := c.helo
		if helo == "" {
			helo = "client.example"
		}
		if got := transaction(t, addr, helo, c.mailFrom, msg); !strings.HasPrefix(got, "250") {
			t.Fatalf("MAIL FROM:%s: got %q", c.mailFrom, got)
		}
		ar := ourAuthResults(t, st.bodies[i])
		if !strings.Contains(ar, c.want) || strings.Contains(ar, "paypal") || strings.Contains(ar, "dkim=pass") {
			t.Errorf("MAIL FROM:%s: Authentication-Results %q, want %q", c.mailFrom, ar, c.want)
		}
		id, res, err := authres.Parse(strings.TrimPrefix(ar, "Authentication-Results: "))
		if err != nil || id != "mail.example.test" || len(res) != 3 {
			t.Errorf("MAIL FROM:%s: parsed as %q %d results (%v)", c.mailFrom, id, len(res), err)
		}
	}
}

// TestFoldAuthRes: results go on lines of their own, and a "; " inside a
// quoted string or a comment stays where it is.
func TestFoldAuthRes(t *testing.T) {
	in := `mail.example.test; spf=pass reason="a; dkim=pass x" smtp.mailfrom=a@b.test (c; d=e (f; g)) ; dkim=none ; dmarc=none`
	want := "mail.example.test;\r\n\tspf=pass reason=\"a; dkim=pass x\" smtp.mailfrom=a@b.test (c; d=e (f; g));\r\n\tdkim=none;\r\n\tdmarc=none"
	if got := foldAuthRes(in); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

// TestDropOurAuthResults: every Authentication-Results field whose
// authserv-id is ours goes, however the grammar lets it be written (RFC
// 8601 section 2.2); F3 of the probe found the forms below kept. Fields
// of other authserv-ids stay, and so does the body.
func TestDropOurAuthResults(t *testing.T) {
	const host = "mail.example.test"
	for _, c := range []struct {
		field string
		drop  bool
	}{
		{"Authentication-Results: mail.example.test; dkim=pass header.d=evil.test", true},
		{"Authentication-Results: mail.example.test;\r\n\tspf=pass", true},
		{"Authentication-Results: MAIL.EXAMPLE.TEST; dkim=pass", true},
		{"authentication-results:mail.example.test;dkim=pass", true},
		{"Authentication-Results: mail.example.test 1; dkim=pass header.d=evil.test", true},
		{"Authentication-Results:\r\n mail.example.test;\r\n dkim=pass header.d=evil.test", true},
		{"Authentication-Results:\r\n\t\r\n mail.example.test\r\n 1\r\n ; dkim=pass", true},
		{"Authentication-Results: mail.example.test (forged); dkim=pass", true},
		{"Authentication-Results: (c) mail.example.test; dkim=pass", true},
		{"Authentication-Results: (a (nested \\) one)\r\n b) mail.example.test; dkim=pass", true},
		{"Authentication-Results: mail.example.test(c);dkim=pass", true},
		{"Authentication-Results: mail.example.test.; dkim=pass", true},
		{`Authentication-Results: "mail.example.test"; dkim=pass`, true},
		{`Authentication-Results: "mail.example.test." 1 (x); dkim=pass`, true},
		{`Authentication-Results: "mail\.example.test"; dkim=pass`, true},
		{`Authentication-Results: "Mail.Example.Test"`, true},
		// P7a: white space inside the quotes, which a reader that trims
		// takes for our authserv-id.
		{"Authentication-Results: \"mail.example.test\r\n \"; dmarc=pass", true},
		{`Authentication-Results: " mail.example.test	"; dmarc=pass`, true},
		{"Authentication-Results: mail.example.test; none", true},
		{"Authentication-Results : mail.example.test; dkim=pass", true},
		{"Authentication-Results: other.example; dkim=pass", false},
		{"Authentication-Results: other.example (mail.example.test); dkim=pass", false},
		{"Authentication-Results: other.example;\r\n mail.example.test; dkim=pass", false},
		{"Authentication-Results: mail.example.test.evil; dkim=pass", false},
		{"Authentication-Results: evil-mail.example.test; dkim=pass", false},
		{`Authentication-Results: "other.example"; dkim=pass`, false},
		{`Authentication-Results: "mail.example.test x"; dkim=pass`, false},
		{"X-Authentication-Results: mail.example.test; dkim=pass", false},
		{"Subject: Authentication-Results: mail.example.test; x", false},
	} {
		for _, at := range []string{"first", "middle", "last"} {
			before, after := "", ""
			switch at {
			case "middle":
				before, after = "From: a@b.test\r\n", "Subject: s\r\n"
			case "last":
				before = "From: a@b.test\r\n"
			case "first":
				after = "Subject: s\r\n"
			}
			body := "\r\nAuthentication-Results: mail.example.test; in the body\r\n"
			in := before + c.field + "\r\n" + after + body
			want := in
			if c.drop {
				want = before + after + body
			}
			if got := string(dropOurAuthResults([]byte(in), host)); got != want {
				t.Errorf("%q (%s): got\n%q\nwant\n%q", c.field, at, got, want)
			}
		}
	}
	if in := "\r\nAuthentication-Results: mail.example.test; x\r\n\r\n"; string(dropOurAuthResults([]byte(in), host)) != in {
		t.Errorf("a message without header lost body text")
	}
}

// TestDropOurAuthResultsOverSMTP: the forged fields are gone from the
// stored message, above which only our own is left.
func TestDropOurAuthResultsOverSMTP(t *testing.T) {
	_, st, addr := startTestServer(t, nil)
	forged := "Authentication-Results: mail.example.test 1; dkim=pass header.d=evil.test\r\n" +
		"Authentication-Results:\r\n mail.example.test;\r\n dkim=pass header.d=evil.test\r\n" +
		"Authentication-Results: (c) \"MAIL.example.test.\" (x); dkim=pass header.d=evil.test\r\n" +
		"Authentication-Results: other.example; dkim=pass header.d=other.example\r\n"
	msg := "From: a@nodmarc.test\r\n" + forged + "Subject: x\r\n\r\ny\r\n"
	if got := transaction(t, addr, "client.example", "<a@nodmarc.test>", msg); !strings.HasPrefix(got, "250") {
		t.Fatalf("got %q", got)
	}
	stored := string(st.bodies[0])
	if strings.Contains(stored, "evil.test") || strings.Count(stored, "mail.example.test") != 2 { // ours, Received
		t.Errorf("forged results kept:\n%s", stored)
	}
	if !strings.HasSuffix(stored, "From: a@nodmarc.test\r\nAuthentication-Results: other.example; dkim=pass header.d=other.example\r\nSubject: x\r\n\r\ny\r\n") {
		t.Errorf("message changed:\n%s", stored)
	}
}

// dkimKey is an Ed25519 DKIM key published in a zoneDNS.
type dkimKey struct {
	priv ed25519.PrivateKey
}

func newDKIMKey(t *testing.T, z *zoneDNS, name string) dkimKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	z.add(t, name+`. 300 IN TXT "v=DKIM1; k=ed25519; p=`+base64.StdEncoding.EncodeToString(pub)+`"`)
	return dkimKey{priv}
}

// sign returns msg with a DKIM-Signature (RFC 6376, ed25519-sha256 of
// RFC 8463, simple/simple) over its From and Subject fields. tags go in
// before h=, e.g. "i=user@signer.test; l=7;": with l=, the body hash
// covers that many bytes of the body.
func (k dkimKey) sign(t *testing.T, d, s, tags, msg string, bodyLen int) string {
	t.Helper()
	hdr, body, ok := strings.Cut(msg, "\r\n\r\n")
	if !ok {
		t.Fatal("message without body")
	}
	hdr += "\r\n"
	if bodyLen >= 0 {
		body = body[:bodyLen]
	}
	bh := sha256.Sum256([]byte(body))
	sig := "DKIM-Signature: v=1; a=ed25519-sha256; c=simple/simple; d=" + d + "; s=" + s + "; " + tags +
		" h=from:subject; bh=" + base64.StdEncoding.EncodeToString(bh[:]) + "; b="
	var from, subject string
	for _, f := range strings.SplitAfter(hdr, "\r\n") {
		switch {
		case strings.HasPrefix(f, "From:"):
			from = f
		case strings.HasPrefix(f, "Subject:"):
			subject = f
		}
	}
	h := sha256.Sum256([]byte(from + subject + sig))
	return sig + base64.StdEncoding.EncodeToString(ed25519.Sign(k.priv, h[:])) + "\r\n" + msg
}

// TestDKIMAuthResults: the DKIM results name the selector (header.s) and
// the AUID when the signature has i= (header.i), and give a reason for a
// failure (F11 of the probe: only header.d was written). A signature
// with l= is dkim=policy, which is no pass for DMARC, not dkim=fail (F7:
// go-msgauth refuses l=, and said so as a broken signature).
func TestDKIMAuthResults(t *testing.T) {
	z := startZoneDNS(t)
	key := newDKIMKey(t, z, "sel._domainkey.signer.test")
	z.add(t, `_dmarc.signer.test. 300 IN TXT "v=DMARC1; p=reject"`)
	_, st, addr := startTestServer(t, func(s *Server) { s.Resolver = z.resolver() })
	msg := "From: Bob <bob@signer.test>\r\nSubject: signed\r\n\r\nHello.\r\n"
	for _, c := range []struct {
		name, signed, want, reply string
	}{
		{"pass with i=", key.sign(t, "signer.test", "sel", "i=bob@signer.test;", msg, -1),
			"dkim=pass header.d=signer.test header.i=bob@signer.test header.s=sel;", "250"},
		{"pass without i=", key.sign(t, "signer.test", "sel", "", msg, -1),
			"dkim=pass header.d=signer.test header.s=sel;", "250"},
		{"quoted i= local part", key.sign(t, "signer.test", "sel", `i="a(b"@signer.test;`, msg, -1),
			"dkim=pass header.d=signer.test header.i=signer.test header.s=sel;", "250"},
		{"body changed", strings.Replace(key.sign(t, "signer.test", "sel", "", msg, -1), "Hello.", "Hello!", 1),
			`dkim=fail reason="body hash did not verify" header.d=signer.test header.s=sel;`, "550 5.7.1"},
		{"unknown selector", key.sign(t, "signer.test", "nokey", "", msg, -1),
			`dkim=permerror reason="no key for signature" header.d=signer.test header.s=nokey;`, "550 5.7.1"},
		{"l=", key.sign(t, "signer.test", "sel", "l=8;", msg, 8),
			`dkim=policy reason="body length tag not accepted" header.d=signer.test header.s=sel;`, "550 5.7.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// An unaligned MAIL FROM, so that DMARC rests on DKIM: the
			// message passes only when the signature does.
			before := st.count()
			if got := transaction(t, addr, "client.example", "<bounce@other.test>", c.signed); !strings.HasPrefix(got, c.reply) {
				t.Fatalf("got %q, want %s", got, c.reply)
			}
			// A refused message is not stored: its results are those
			// checkDKIM gives.
			if c.reply != "250" {
				vs := checkDKIM(context.Background(), z.resolver(), []byte(c.signed))
				ar := foldAuthRes(authres.Format("mail.example.test", verdicts{dkim: vs}.results("h", "")))
				if !strings.Contains(strings.ReplaceAll(ar, "\r\n\t", ""), c.want) {
					t.Errorf("results %q lack %q", ar, c.want)
				}
				return
			}
			if ar := ourAuthResults(t, st.bodies[before]); !strings.Contains(ar, c.want) {
				t.Errorf("Authentication-Results %q lacks %q", ar, c.want)
			}
		})
	}
}

// TestAuthValues: what goes into our Authentication-Results from the
// sender holds nothing that could end a quoted string or a result (the
// library quotes, but does not escape a backslash).
func TestAuthValues(t *testing.T) {
	for _, c := range [][2]string{
		{"signer.test", "signer.test"},
		{"bücher.test", "bücher.test"},
		{"[192.0.2.1]", "[192.0.2.1]"},
		{"[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]"},
		{`a\";dkim=pass;x=\"`, ""},
		{"a b.test", ""},
		{"a(b).test", ""},
		{"[1.2.3.4\"]", ""},
		{"", ""},
	} {
		if got := authDomain(c[0]); got != c[1] {
			t.Errorf("authDomain(%q) = %q, want %q", c[0], got, c[1])
		}
	}
	for _, c := range [][2]string{
		{"bob@signer.test", "bob@signer.test"},
		{"a.b+c=d@signer.test", "a.b+c=d@signer.test"},
		{"@signer.test", "@signer.test"},
		{`"x y"@signer.test`, "signer.test"},
		{`x\@signer.test`, "signer.test"},
		{"a..b@signer.test", "signer.test"},
		{"a@b@signer.test", "signer.test"},
		{`bob@signer.test"`, ""},
	} {
		if got := authMailbox(c[0]); got != c[1] {
			t.Errorf("authMailbox(%q) = %q, want %q", c[0], got, c[1])
		}
	}
	if got := authReason(`key "x\"; dkim=pass (y)`); got != "key x dkimpass y" {
		t.Errorf("authReason: %q", got)
	}
}

// FuzzAuthResFields: whatever the header, none of our Authentication-
// Results fields survives dropOurAuthResults, and whatever the sender's
// address and From field, our own field reads as exactly our three
// results.
func FuzzAuthResFields(f *testing.F) {
	for _, seed := range [][2]string{
		{"Authentication-Results: (c)\r\n \"mail.example.test.\" 1; dkim=pass\r\n\r\nx", `"x; dkim=pass"@a.test`},
		{"From: \"P\" <s@reject.test\r\nFrom: a@b.test, (c) d@e.test.\r\n\r\n", `a\"b@c.test`},
		{"DKIM-Signature: d=a.test; s=x; i=\"q;\"@a.test; l=1\r\n\r\n", "b@[1.2.3.4]"},
	} {
		f.Add(seed[0], seed[1])
	}
	const host = "mail.example.test"
	f.Fuzz(func(t *testing.T, hdr, mailFrom string) {
		out := dropOurAuthResults([]byte(hdr), host)
		for _, fl := range mailsyntax.HeaderFields(out[:mailsyntax.HeaderLen(out)]) {
			name, value, _ := strings.Cut(string(fl), ":")
			if strings.EqualFold(strings.TrimSpace(name), "Authentication-Results") &&
				strings.EqualFold(strings.TrimSuffix(authservID(value), "."), host) {
				t.Fatalf("kept %q of %q", fl, hdr)
			}
		}
		if domains, err := authorDomains([]byte(hdr)); err == nil {
			for _, d := range domains {
				if a, ok := asciiDomain(d); !ok || a != d {
					t.Fatalf("author domain %q of %q", d, hdr)
				}
			}
		}
		sigs := dkimSignatures([]byte(hdr))
		v := verdicts{spf: spfVerdict{result: "pass"}, dmarc: dmarcVerdict{result: "none"}}
		for _, s := range sigs {
			v.dkim = append(v.dkim, dkimVerdict{result: "fail", domain: s.domain, selector: s.selector,
				identifier: s.identifier, reason: hdr})
		}
		if len(v.dkim) > 3 {
			v.dkim = v.dkim[:3]
		}
		ar := foldAuthRes(authres.Format(host, v.results("helo.test", mailFrom)))
		id, res, err := authres.Parse(strings.ReplaceAll(ar, "\r\n", ""))
		if err != nil || id != host || len(res) != 2+max(len(v.dkim), 1) {
			t.Fatalf("from %q and %q: %q parsed as %q, %d results (%v)", hdr, mailFrom, ar, id, len(res), err)
		}
		if strings.Count(ar, "\r\n") != len(res) {
			t.Fatalf("%q folded inside a result", ar)
		}
	})
}
