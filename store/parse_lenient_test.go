package store

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
)

// addr builds an ENVELOPE address; group markers have an empty host.
func addr(name, mailbox, host string) imap.Address {
	return imap.Address{Name: name, Mailbox: mailbox, Host: host}
}

var groupEnd = imap.Address{}

// TestEnvelopeLenientAddresses: one address the strict parser refuses no
// longer empties its whole list (probe finding F1), and groups are kept
// as RFC 9051 section 7.5.2 markers (F5).
func TestEnvelopeLenientAddresses(t *testing.T) {
	for _, c := range []struct {
		field string
		want  []imap.Address
	}{
		// F1: raw 8-bit display name (read as Windows-1252).
		{"\"J\xf6rg M\xfcller\" <joerg@example.org>", []imap.Address{addr("Jörg Müller", "joerg", "example.org")}},
		{"J\xf6rg <joerg@example.org>", []imap.Address{addr("Jörg", "joerg", "example.org")}},
		// Raw UTF-8 (RFC 6532) is kept as it is.
		{"Jörg <joerg@example.org>", []imap.Address{addr("Jörg", "joerg", "example.org")}},
		// F1: a local part without domain; the host cannot be NIL, which
		// would make it a group marker.
		{"root, \"x\" <y@example.org>", []imap.Address{addr("", "root", missingDomain), addr("x", "y", "example.org")}},
		{"Cron Daemon <root>", []imap.Address{addr("Cron Daemon", "root", missingDomain)}},
		{"root (Cron Daemon)", []imap.Address{addr("Cron Daemon", "root", missingDomain)}},
		// F1: a malformed address in the middle keeps its neighbours.
		{"a@example.org, broken@@x, b@example.org", []imap.Address{
			addr("", "a", "example.org"), addr("", "broken@", "x"), addr("", "b", "example.org")}},
		// F1: an encoded word in an unknown charset stays undecoded.
		{"=?unknown-8bit?q?J=F6rg?= <joerg@example.org>", []imap.Address{addr("=?unknown-8bit?q?J=F6rg?=", "joerg", "example.org")}},
		{"=?utf-8?q?J=C3=B6rg?= =?x-unknown?q?M=FCller?= <j@example.org>", []imap.Address{addr("Jörg =?x-unknown?q?M=FCller?=", "j", "example.org")}},
		{"=?windows-1252?q?J=F6rg_=80?= <j@example.org>", []imap.Address{addr("Jörg €", "j", "example.org")}},
		// F1: an empty address is no address.
		{"a@example.org, <>, b@example.org", []imap.Address{addr("", "a", "example.org"), addr("", "b", "example.org")}},
		{"<>", nil},
		// F5: groups, empty or not.
		{"Friends: alice@example.org, bob@example.org;, undisclosed-recipients:;", []imap.Address{
			addr("", "Friends", ""), addr("", "alice", "example.org"), addr("", "bob", "example.org"), groupEnd,
			addr("", "undisclosed-recipients", ""), groupEnd}},
		{"Friends: alice@example.org, \"Bob B\" <bob@example.org>;", []imap.Address{
			addr("", "Friends", ""), addr("", "alice", "example.org"), addr("Bob B", "bob", "example.org"), groupEnd}},
		{"\"My Group\": a@example.org; , solo@example.org", []imap.Address{
			addr("", "My Group", ""), addr("", "a", "example.org"), groupEnd, addr("", "solo", "example.org")}},
		{"undisclosed-recipients:", []imap.Address{addr("", "undisclosed-recipients", ""), groupEnd}},
		// A colon in an unquoted display name does not start a group.
		{"http://example.org <a@example.org>", []imap.Address{addr("http://example.org", "a", "example.org")}},
		// What the strict parser already handled stays the same.
		{"\"Doe, John\" <j@example.org>, x@example.org (Doe, Jane)", []imap.Address{
			addr("Doe, John", "j", "example.org"), addr("Doe, Jane", "x", "example.org")}},
		{"\"a b\"@example.org", []imap.Address{addr("", "a b", "example.org")}},
		{"<@route.example:u@example.org>", []imap.Address{addr("", "u", "example.org")}},
		{"", nil},
	} {
		msg := "From: " + c.field + "\r\nTo: " + c.field + "\r\nCc: " + c.field + "\r\nSubject: x\r\n\r\nbody\r\n"
		env := parseBlobInfo([]byte(msg), Options{}).Envelope
		for _, got := range [][]imap.Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc} {
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("%q:\n got  %+v\n want %+v", c.field, got, c.want)
				break
			}
		}
	}
}

// TestEnvelopeAddressLimit: a hostile address list is cut, still closing
// its group.
func TestEnvelopeAddressLimit(t *testing.T) {
	l := addressList("G: " + strings.Repeat("a@example.org, ", 3*maxAddresses) + "b@example.org;")
	if len(l) != maxAddresses+1 || l[0] != addr("", "G", "") || l[len(l)-1] != groupEnd {
		t.Errorf("%d addresses, first %+v, last %+v", len(l), l[0], l[len(l)-1])
	}
}

// TestEnvelopeSubject: raw 8-bit text that is not UTF-8 is read as
// Windows-1252 rather than passed on as invalid UTF-8 (F11); encoded words
// decode one by one.
func TestEnvelopeSubject(t *testing.T) {
	for _, c := range []struct{ raw, want string }{
		{"Caf\xe9 raw latin1", "Café raw latin1"},
		{"Caf\xc3\xa9 utf-8", "Café utf-8"},
		{"\x93quoted\x94", "\u201cquoted\u201d"},
		{"=?utf-8?q?Caf=C3=A9?= =?utf-8?q?_ok?=", "Café ok"},
		{"=?unknown-8bit?q?Caf=E9?= and =?iso-8859-1?q?Caf=E9?=", "=?unknown-8bit?q?Caf=E9?= and Café"},
		{"=?utf-8?q?bad=E9?=", "bad\uFFFD"},
		// The charsets of go-message/charset: every IANA one.
		{"=?koi8-r?b?8NLJ18XU?=", "Привет"},
		{"=?iso-2022-jp?b?GyRCRnxLXDhsGyhC?=", "日本語"},
		{"=?ISO-8859-15?q?Gr=FC=DFe?=", "Grüße"},
		{"not =?a word", "not =?a word"},
	} {
		msg := "Subject: " + c.raw + "\r\n\r\n"
		if got := parseBlobInfo([]byte(msg), Options{}).Envelope.Subject; got != c.want {
			t.Errorf("Subject %q = %q, want %q", c.raw, got, c.want)
		}
	}
}

// TestContentTypeLenient: Content-Type fields that Go's strict parser
// refuses keep their structure (F7).
func TestContentTypeLenient(t *testing.T) {
	for _, c := range []struct {
		field, mediaType string
		params           map[string]string
	}{
		{`multipart/mixed; boundary="a" (a comment)`, "multipart/mixed", map[string]string{"boundary": "a"}},
		{`multipart/mixed; (comment) boundary=----=_NextPart_000_0001`, "multipart/mixed", map[string]string{"boundary": "----=_NextPart_000_0001"}},
		{`text/plain; charset=`, "text/plain", map[string]string{"charset": ""}},
		{`Text/HTML; CHARSET="UTF-8"; charset=latin1`, "text/html", map[string]string{"charset": "UTF-8"}},
		{`application/pdf; name*0="a b"; name*1=".pdf"; x=`, "application/pdf", map[string]string{"name": "a b.pdf", "x": ""}},
		{`text/plain; name="=?utf-8?q?Caf=C3=A9?="`, "text/plain", map[string]string{"name": "Café"}},
		// The boundary is never decoded: it must match the body.
		{`multipart/mixed; boundary="=?utf-8?q?b?="`, "multipart/mixed", map[string]string{"boundary": "=?utf-8?q?b?="}},
		// Missing, invalid, or a multipart without boundary: the default.
		{``, "text/plain", map[string]string{"charset": "us-ascii"}},
		{`text`, "text/plain", map[string]string{"charset": "us-ascii"}},
		{`multipart/mixed`, "text/plain", map[string]string{"charset": "us-ascii"}},
		{`multipart/mixed; boundary=""`, "text/plain", map[string]string{"charset": "us-ascii"}},
	} {
		mt, params := ContentType(c.field, false)
		if mt != c.mediaType || !reflect.DeepEqual(params, c.params) {
			t.Errorf("%q: %q %q, want %q %q", c.field, mt, params, c.mediaType, c.params)
		}
	}
	if mt, params := ContentType("", true); mt != "message/rfc822" || params != nil {
		t.Errorf("default in a digest: %q %q", mt, params)
	}
	disp, params, ok := parseParamField(`attachment; filename=my report.pdf (comment)`)
	if !ok || disp != "attachment" || params["filename"] != "my report.pdf" {
		t.Errorf("disposition: %q %q %v", disp, params, ok)
	}
}

// TestExtendedParamCharsets: RFC 2231 parameters in charsets other than
// UTF-8 (which Go's parser drops) are decoded into UTF-8; the attachment
// name was missing from BODYSTRUCTURE.
func TestExtendedParamCharsets(t *testing.T) {
	for _, c := range []struct{ field, param, want string }{
		{`attachment; filename*=iso-8859-1''r%E9sum%E9.pdf`, "filename", "résumé.pdf"},
		{`attachment; filename*=ISO-8859-1'fr'r%E9sum%E9.pdf; size=3`, "filename", "résumé.pdf"},
		{`attachment; filename*0*=windows-1252''%80uro; filename*1=".txt"`, "filename", "€uro.txt"},
		{`attachment; filename*1*=%E9.pdf; filename*0*=iso-8859-1''r%E9sum`, "filename", "résumé.pdf"},
		{`attachment; filename*=koi8-r''%F0%D2%C9%D7%C5%D4.txt`, "filename", "Привет.txt"},
		{`attachment; filename*=shift_jis''%93%FA%96%7B.txt`, "filename", "日本.txt"},
		{`attachment; filename*=utf-8''caf%C3%A9.txt`, "filename", "café.txt"},
		// A plain parameter stays; a segment missing, or an unknown
		// charset, adds nothing.
		{`attachment; filename="plain.txt"; filename*=iso-8859-1''other.txt`, "filename", "plain.txt"},
		{`attachment; filename*0*=iso-8859-1''a; filename*2*=c`, "filename", ""},
		{`attachment; filename*=x-no-such-charset''abc`, "filename", ""},
		{`attachment; filename*0*=x-no-such-charset''abc; filename*1=".txt"`, "filename", ""},
	} {
		_, params, ok := parseParamField(c.field)
		if !ok || params[c.param] != c.want {
			t.Errorf("%q: %s = %q, want %q (all: %q)", c.field, c.param, params[c.param], c.want, params)
		}
	}
	if mt, params := ContentType(`application/pdf; name*=iso-8859-1''r%E9sum%E9.pdf`, false); mt != "application/pdf" || params["name"] != "résumé.pdf" {
		t.Errorf("Content-Type: %q %q", mt, params)
	}
}

// TestBodyStructureProbeMessages: the probe's messages (F2, F6, F7) are
// described as RFC 2045/2046 say, and as the IMAP section locator reads
// them.
func TestBodyStructureProbeMessages(t *testing.T) {
	single := func(bs imap.BodyStructure) *imap.BodyStructureSinglePart {
		t.Helper()
		sp, ok := bs.(*imap.BodyStructureSinglePart)
		if !ok {
			t.Fatalf("not a single part: %#v", bs)
		}
		return sp
	}
	multi := func(bs imap.BodyStructure, sub string, n int) *imap.BodyStructureMultiPart {
		t.Helper()
		mp, ok := bs.(*imap.BodyStructureMultiPart)
		if !ok || mp.Subtype != sub || len(mp.Children) != n {
			t.Fatalf("want multipart/%s with %d parts, got %#v", sub, n, bs)
		}
		return mp
	}

	// F2: multipart without boundary: text/plain (RFC 2045 section
	// 5.2), the whole body as part 1.
	body := "--foo\r\nContent-Type: text/plain\r\n\r\nbody of no boundary\r\n--foo--\r\n"
	bi := parseBlobInfo([]byte("From: x@example.org\r\nSubject: F2 nobound\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n"+body), Options{})
	sp := single(bi.BodyStructure)
	if sp.MediaType() != "text/plain" || sp.Size != uint32(len(body)) || sp.Text == nil || sp.Text.NumLines != 5 {
		t.Errorf("F2: %+v", sp)
	}
	// The same for a boundary that no line of the body uses.
	bi = parseBlobInfo([]byte("Content-Type: multipart/mixed; boundary=bar\r\n\r\n"+body), Options{})
	if sp := single(bi.BodyStructure); sp.MediaType() != "text/plain" || sp.Size != uint32(len(body)) {
		t.Errorf("F2 without delimiter: %+v", sp)
	}

	// F6: a digest part without Content-Type is message/rfc822 (RFC 2046
	// section 5.1.5).
	bi = parseBlobInfo([]byte("From: d@example.org\r\nSubject: F4 digest\r\nMIME-Version: 1.0\r\nContent-Type: multipart/digest; boundary=\"D\"\r\n\r\n"+
		"--D\r\n\r\nFrom: one@example.org\r\nSubject: first digest item\r\n\r\nbody one\r\n"+
		"--D\r\nContent-Type: text/plain\r\n\r\nnot a message\r\n--D--\r\n"), Options{})
	mp := multi(bi.BodyStructure, "digest", 2)
	sp = single(mp.Children[0])
	if sp.MediaType() != "message/rfc822" || sp.MessageRFC822 == nil || sp.MessageRFC822.Envelope.Subject != "first digest item" {
		t.Errorf("F6: %+v", sp)
	} else if inner := single(sp.MessageRFC822.BodyStructure); inner.MediaType() != "text/plain" {
		t.Errorf("F6 inner: %+v", inner)
	}
	if sp := single(mp.Children[1]); sp.MediaType() != "text/plain" {
		t.Errorf("F6 typed part: %+v", sp)
	}

	// F7: legal comments and unquoted "=" keep the structure.
	for _, ct := range []string{`multipart/mixed; boundary="a" (a comment)`, `multipart/mixed; boundary=a (a comment)`} {
		bi = parseBlobInfo([]byte("From: x@example.org\r\nSubject: F5 comment\r\nMIME-Version: 1.0\r\nContent-Type: "+ct+"\r\n\r\n"+
			"--a\r\nContent-Type: text/plain\r\n\r\npart one\r\n--a--\r\n"), Options{})
		mp = multi(bi.BodyStructure, "mixed", 1)
		if sp := single(mp.Children[0]); sp.MediaType() != "text/plain" || sp.Size != 8 {
			t.Errorf("F7 %q: %+v", ct, sp)
		}
	}
	bi = parseBlobInfo([]byte("Content-Type: multipart/alternative; boundary=----=_NextPart_000_0001\r\n\r\n"+
		"------=_NextPart_000_0001\r\nContent-Type: text/plain; charset=\r\n\r\nplain\r\n"+
		"------=_NextPart_000_0001\r\nContent-Type: text/html; charset=utf-8 (comment)\r\n\r\n<p>html</p>\r\n"+
		"------=_NextPart_000_0001--\r\n"), Options{})
	mp = multi(bi.BodyStructure, "alternative", 2)
	if sp := single(mp.Children[0]); sp.MediaType() != "text/plain" || sp.Params["charset"] != "" || sp.Size != 5 {
		t.Errorf("F7 empty charset: %+v", sp)
	}
	if sp := single(mp.Children[1]); sp.MediaType() != "text/html" || sp.Params["charset"] != "utf-8" {
		t.Errorf("F7 charset with comment: %+v", sp)
	}
}

// TestGroupsRoundTrip: group markers survive the stored encoding.
func TestGroupsRoundTrip(t *testing.T) {
	bi := parseBlobInfo([]byte("From: Cron Daemon <root>\r\nTo: G: a@example.org;, undisclosed-recipients:;\r\n\r\n"), Options{})
	back, err := decodeBlobInfo(1, encodeBlobInfo(bi))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Envelope, bi.Envelope) {
		t.Errorf("round trip:\n%+v\n%+v", back.Envelope, bi.Envelope)
	}
	if len(back.Envelope.To) != 5 || !back.Envelope.To[0].IsGroupStart() || !back.Envelope.To[4].IsGroupEnd() {
		t.Errorf("To: %+v", back.Envelope.To)
	}
}

// FuzzAddressList: any field gives well-formed ENVELOPE addresses: valid
// UTF-8 names, a host on every address (an empty host is a group marker),
// group markers in pairs, and no more than the limit.
func FuzzAddressList(f *testing.F) {
	for _, s := range []string{
		"\"J\xf6rg M\xfcller\" <joerg@example.org>", "root, \"x\" <y@example.org>", "Cron Daemon <root>",
		"a@example.org, broken@@x, b@example.org", "=?unknown-8bit?q?J=F6rg?= <joerg@example.org>", "a@x, <>, b@y",
		"Friends: alice@example.org, bob@example.org;, undisclosed-recipients:;", "G: a@x", "\"unclosed <u@h>, v@h",
		"(nested (comment) \\) here) a@b", "<@r1,@r2:u@h>", "a:b:c;;;", "=?utf-8?q?=E9?= <a@b>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		l := addressList(v)
		if len(l) > maxAddresses+1 {
			t.Fatalf("%d addresses", len(l))
		}
		inGroup := false
		for _, a := range l {
			if !utf8.ValidString(a.Name) || !utf8.ValidString(a.Mailbox) || !utf8.ValidString(a.Host) {
				t.Fatalf("invalid UTF-8 in %q", a)
			}
			switch {
			case a.IsGroupStart():
				if inGroup || a.Name != "" {
					t.Fatalf("group start %+v in %+v", a, l)
				}
				inGroup = true
			case a.IsGroupEnd():
				if !inGroup || a.Name != "" {
					t.Fatalf("group end %+v in %+v", a, l)
				}
				inGroup = false
			}
		}
		if inGroup {
			t.Fatalf("open group in %+v", l)
		}
	})
}

// FuzzContentType: any field gives a type/subtype, and a multipart always
// has a boundary.
func FuzzContentType(f *testing.F) {
	for _, s := range []string{
		`multipart/mixed; boundary="a" (a comment)`, `multipart/mixed; boundary=----=_NextPart_000`, `text/plain; charset=`,
		`multipart/mixed`, `text/plain; name*0="a"; name*1="b"`, `attachment; filename="x\"y"; filename=z`, `a/b; c="`,
	} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, v string, inDigest bool) {
		mt, params := ContentType(v, inDigest)
		typ, sub, ok := strings.Cut(mt, "/")
		if !ok || !isToken(typ) || !isToken(sub) || mt != strings.ToLower(mt) {
			t.Fatalf("%q: media type %q", v, mt)
		}
		if typ == "multipart" && params["boundary"] == "" {
			t.Fatalf("%q: multipart without boundary", v)
		}
	})
}

// TestHeaderAsSectionsReadIt: header details where the store and the IMAP
// section locator must read a message alike: white space before the
// colon (RFC 5322 section 4.5), a boundary folded inside its quotes
// (unfolding keeps the white space, section 2.2.3), and a blank line
// after a bare LF line.
func TestHeaderAsSectionsReadIt(t *testing.T) {
	bi := parseBlobInfo([]byte("Subject : obsolete\r\nContent-Type\t: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b--\r\n"), Options{})
	if bi.Envelope.Subject != "obsolete" {
		t.Errorf("Subject: %q", bi.Envelope.Subject)
	}
	if mp, ok := bi.BodyStructure.(*imap.BodyStructureMultiPart); !ok || len(mp.Children) != 1 {
		t.Errorf("obsolete Content-Type: %#v", bi.BodyStructure)
	}
	bi = parseBlobInfo([]byte("Content-Type: multipart/mixed;\r\n boundary=\"b\r\n\t c\"\r\n\r\n--b\t c\r\n\r\none\r\n--b\t c--\r\n"), Options{})
	if mp, ok := bi.BodyStructure.(*imap.BodyStructureMultiPart); !ok || mp.Extended.Params["boundary"] != "b\t c" {
		t.Errorf("folded boundary: %#v", bi.BodyStructure)
	}
	if bi := parseBlobInfo([]byte("0\n\r\n0"), Options{}); bi.HeaderLen != 4 {
		t.Errorf("HeaderLen %d", bi.HeaderLen)
	}
}
