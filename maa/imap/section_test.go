package imap

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/posthorn/posthorn/store"
)

func loadCRLF(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return normalizeCRLF(b)
}

// sectionBytes runs our locator the way Fetch does.
func sectionBytes(t *testing.T, msg []byte, s *imapv2.FetchItemBodySection) []byte {
	t.Helper()
	mr := &msgReader{ra: bytes.NewReader(msg), size: int64(len(msg))}
	f := &fetcher{ss: &session{}, opts: &imapv2.FetchOptions{}}
	p, err := f.section(mr, s)
	if err != nil {
		t.Fatalf("%v: %v", s, err)
	}
	var buf bytes.Buffer
	if err := f.write(nopCloser{&buf}, p); err != nil {
		t.Fatal(err)
	}
	if int64(buf.Len()) != p.n {
		t.Fatalf("wrote %d bytes, announced %d", buf.Len(), p.n)
	}
	return buf.Bytes()
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// TestSectionsMatchGoIMAP compares every section of a nested message with
// go-imap's reference extractor (which parses the whole message).
func TestSectionsMatchGoIMAP(t *testing.T) {
	msg := loadCRLF(t, "testdata/nested.eml")
	parts := [][]int{nil, {1}, {2}, {2, 1}, {2, 2}, {3}, {3, 1}, {3, 2}, {4}, {5}, {2, 3}}
	specs := []imapv2.PartSpecifier{imapv2.PartSpecifierNone, imapv2.PartSpecifierHeader,
		imapv2.PartSpecifierText, imapv2.PartSpecifierMIME}
	for _, part := range parts {
		for _, spec := range specs {
			if len(part) == 0 && spec == imapv2.PartSpecifierMIME {
				continue
			}
			if len(part) > 0 && (spec == imapv2.PartSpecifierHeader || spec == imapv2.PartSpecifierText) &&
				!(len(part) == 1 && part[0] == 3) {
				continue // only defined for message/rfc822 parts
			}
			s := &imapv2.FetchItemBodySection{Part: part, Specifier: spec}
			name := fmt.Sprintf("%v.%s", part, spec)
			got := sectionBytes(t, msg, s)
			if missing := len(part) > 0 && (part[0] == 5 || len(part) == 2 && part[1] == 3 && part[0] == 2); missing {
				if len(got) != 0 {
					t.Errorf("%s: missing part gave %q", name, got)
				}
				continue
			}
			if spec == imapv2.PartSpecifierMIME {
				// go-imap re-serialises MIME headers; check the raw ones.
				if !bytes.Contains(got, []byte("Content-Type")) {
					t.Errorf("%s: %q", name, got)
				}
				continue
			}
			want := imapserver.ExtractBodySection(bytes.NewReader(msg), s)
			if spec == imapv2.PartSpecifierHeader {
				// go-imap re-serialises the header; compare field sets.
				if normHeader(got) != normHeader(want) {
					t.Errorf("%s:\ngot  %q\nwant %q", name, got, want)
				}
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s:\ngot  %q\nwant %q", name, got, want)
			}
		}
	}
}

func normHeader(b []byte) string {
	return strings.ReplaceAll(strings.TrimSpace(string(b)), "\r\n", "\n")
}

func TestSectionPartialAndFields(t *testing.T) {
	msg := loadCRLF(t, "testdata/nested.eml")
	got := sectionBytes(t, msg, &imapv2.FetchItemBodySection{Partial: &imapv2.SectionPartial{Offset: 6, Size: 5}})
	if string(got) != "Alice" {
		t.Errorf("partial: %q", got)
	}
	got = sectionBytes(t, msg, &imapv2.FetchItemBodySection{Partial: &imapv2.SectionPartial{Offset: 1 << 30, Size: 5}})
	if len(got) != 0 {
		t.Errorf("partial past end: %q", got)
	}
	got = sectionBytes(t, msg, &imapv2.FetchItemBodySection{Specifier: imapv2.PartSpecifierHeader,
		HeaderFields: []string{"subject", "FROM", "X-Missing"}})
	if string(got) != "From: Alice <alice@example.test>\r\nSubject: nested\r\n\r\n" {
		t.Errorf("HEADER.FIELDS: %q", got)
	}
	got = sectionBytes(t, msg, &imapv2.FetchItemBodySection{Specifier: imapv2.PartSpecifierHeader,
		HeaderFieldsNot: []string{"Content-Type", "MIME-Version", "Message-ID", "Date", "To"}})
	if string(got) != "From: Alice <alice@example.test>\r\nSubject: nested\r\n\r\n" {
		t.Errorf("HEADER.FIELDS.NOT: %q", got)
	}
	got = sectionBytes(t, msg, &imapv2.FetchItemBodySection{Part: []int{3}, Specifier: imapv2.PartSpecifierHeader,
		HeaderFields: []string{"Subject"}})
	if string(got) != "Subject: attached\r\n\r\n" {
		t.Errorf("3.HEADER.FIELDS: %q", got)
	}
}

func TestBinarySection(t *testing.T) {
	msg := loadCRLF(t, "testdata/nested.eml")
	mr := &msgReader{ra: bytes.NewReader(msg), size: int64(len(msg))}
	f := &fetcher{ss: &session{}, opts: &imapv2.FetchOptions{}}
	for _, c := range []struct {
		part []int
		want string
	}{
		{[]int{1}, "Hello été,\r\nsecond line"},
		{[]int{3, 2}, "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09"},
		{[]int{4}, "%PDF-1.4\n%\xc7\xec\x8f\xa2\n1 0 obj\n"},
	} {
		p, err := f.binary(mr, c.part, nil)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := f.write(nopCloser{&buf}, p); err != nil {
			t.Fatal(err)
		}
		if buf.String() != c.want || p.n != int64(len(c.want)) {
			t.Errorf("BINARY%v = %q (n %d), want %q", c.part, buf.String(), p.n, c.want)
		}
		want := imapserver.ExtractBinarySection(bytes.NewReader(msg), &imapv2.FetchItemBinarySection{Part: c.part})
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("BINARY%v differs from go-imap: %q vs %q", c.part, buf.Bytes(), want)
		}
	}
	// A comment in the field (RFC 2045 section 3) does not make the
	// encoding unknown.
	commented := []byte("Content-Type: text/plain\r\nContent-Transfer-Encoding: Base64 (encoded)\r\n\r\naGVsbG8K\r\n")
	if p, err := f.binary(&msgReader{ra: bytes.NewReader(commented), size: int64(len(commented))}, []int{1}, nil); err != nil {
		t.Errorf("BINARY[1] of base64 with a comment: %v", err)
	} else {
		var buf bytes.Buffer
		if f.write(nopCloser{&buf}, p); buf.String() != "hello\n" {
			t.Errorf("BINARY[1] of base64 with a comment: %q", buf.String())
		}
	}
	p, err := f.binary(mr, []int{4}, &imapv2.SectionPartial{Offset: 1, Size: 3})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	f.write(nopCloser{&buf}, p)
	if buf.String() != "PDF" {
		t.Errorf("BINARY[4]<1.3> = %q", buf.String())
	}
}

func TestStreamContains(t *testing.T) {
	body := strings.Repeat("x", searchChunk-3) + "NeEdLe" + strings.Repeat("y", 10)
	for _, s := range []string{"needle", "NEEDLE", "xneedley"} {
		ok, err := streamContains(strings.NewReader(body), s)
		if err != nil || !ok {
			t.Errorf("%q across a chunk boundary: %v %v", s, ok, err)
		}
	}
	if ok, _ := streamContains(strings.NewReader(body), "absent"); ok {
		t.Error("found absent")
	}
}

// Messages of the IMAP probe (findings F1, F2, F5, F6, F7) that the store
// and the section locator once read differently.
var probeMessages = []string{
	// F1: addresses the strict parser refuses.
	"From: \"J\xf6rg M\xfcller\" <joerg@example.org>\r\nTo: root, \"x\" <y@example.org>\r\n" +
		"Cc: a@example.org, broken@@x, b@example.org\r\nSubject: F1 addr\r\n" +
		"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nx\r\n",
	// F2: a multipart without boundary.
	"From: x@example.org\r\nSubject: F2 nobound\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n" +
		"--foo\r\nContent-Type: text/plain\r\n\r\nbody of no boundary\r\n--foo--\r\n",
	// F5: groups.
	"From: x@example.org\r\nTo: Friends: alice@example.org, bob@example.org;, undisclosed-recipients:;\r\n" +
		"Subject: F3 groups\r\n\r\nx\r\n",
	// F6: a digest part without Content-Type.
	"From: d@example.org\r\nSubject: F4 digest\r\nMIME-Version: 1.0\r\nContent-Type: multipart/digest; boundary=\"D\"\r\n\r\n" +
		"--D\r\n\r\nFrom: one@example.org\r\nSubject: first digest item\r\n\r\nbody one\r\n" +
		"--D\r\nContent-Type: text/plain\r\n\r\nnot a message\r\n--D--\r\n",
	// F7: a comment after the boundary.
	"From: x@example.org\r\nSubject: F5 comment\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"a\" (a comment)\r\n\r\n" +
		"--a\r\nContent-Type: text/plain\r\n\r\npart one\r\n--a--\r\n",
	// F7: an unquoted boundary with "=", an empty charset.
	"From: x@example.org\r\nSubject: F7 nextpart\r\nContent-Type: multipart/alternative; boundary=----=_NextPart_000_0001\r\n\r\n" +
		"------=_NextPart_000_0001\r\nContent-Type: text/plain; charset=\r\n\r\nplain\r\n" +
		"------=_NextPart_000_0001\r\nContent-Type: text/html; charset=utf-8 (comment)\r\n\r\n<p>html</p>\r\n" +
		"------=_NextPart_000_0001--\r\n",
	// F2: a boundary that no line of the body uses.
	"From: x@example.org\r\nSubject: F2 nodelim\r\nContent-Type: multipart/mixed; boundary=bar\r\n\r\n" +
		"--foo\r\nContent-Type: text/plain\r\n\r\nbody without delimiter\r\n--foo--\r\n",
}

// TestSectionProbeMessages: the sections of the probe's messages are the
// parts RFC 2045/2046 make of them.
func TestSectionProbeMessages(t *testing.T) {
	for _, c := range []struct {
		msg  int
		part []int
		spec imapv2.PartSpecifier
		want string
	}{
		{1, []int{1}, imapv2.PartSpecifierNone, "--foo\r\nContent-Type: text/plain\r\n\r\nbody of no boundary\r\n--foo--\r\n"},
		{1, []int{2}, imapv2.PartSpecifierNone, ""},
		// A non-multipart message has a part 1 only (RFC 9051 section
		// 6.4.5), and HEADER and TEXT exist only for message/rfc822
		// parts: empty strings, as Dovecot gives (probe 8).
		{1, []int{1, 1}, imapv2.PartSpecifierNone, ""},
		{0, []int{1, 1}, imapv2.PartSpecifierNone, ""},
		{0, []int{1}, imapv2.PartSpecifierHeader, ""},
		{0, []int{1}, imapv2.PartSpecifierText, ""},
		{0, []int{1}, imapv2.PartSpecifierNone, "x\r\n"},
		{3, []int{2}, imapv2.PartSpecifierHeader, ""},
		{3, []int{2, 1}, imapv2.PartSpecifierNone, ""},
		{3, []int{1}, imapv2.PartSpecifierHeader, "From: one@example.org\r\nSubject: first digest item\r\n\r\n"},
		{3, []int{1}, imapv2.PartSpecifierText, "body one"},
		{3, []int{1, 1}, imapv2.PartSpecifierNone, "body one"},
		{3, []int{2}, imapv2.PartSpecifierNone, "not a message"},
		{3, []int{2}, imapv2.PartSpecifierMIME, "Content-Type: text/plain\r\n\r\n"},
		{4, []int{1}, imapv2.PartSpecifierNone, "part one"},
		{4, []int{2}, imapv2.PartSpecifierNone, ""},
		{5, []int{1}, imapv2.PartSpecifierNone, "plain"},
		{5, []int{2}, imapv2.PartSpecifierNone, "<p>html</p>"},
		{6, []int{1}, imapv2.PartSpecifierNone, "--foo\r\nContent-Type: text/plain\r\n\r\nbody without delimiter\r\n--foo--\r\n"},
		{6, []int{2}, imapv2.PartSpecifierNone, ""},
	} {
		s := &imapv2.FetchItemBodySection{Part: c.part, Specifier: c.spec}
		if got := sectionBytes(t, []byte(probeMessages[c.msg]), s); string(got) != c.want {
			t.Errorf("message %d BODY[%v.%s] = %q, want %q", c.msg, c.part, c.spec, got, c.want)
		}
	}
}

// TestSectionsAgreeWithBodyStructure: over IMAP, every part that
// BODYSTRUCTURE describes is as long as BODY[part] (F2, F6, F7), and the
// addresses of F1 and F5 are in ENVELOPE and found by SEARCH.
func TestSectionsAgreeWithBodyStructure(t *testing.T) {
	e := newTestEnv(t)
	msgs := append(probeMessages, string(loadCRLF(t, "testdata/nested.eml")))
	for _, m := range msgs {
		e.deliver(testAlice, "INBOX", m)
	}
	c := e.login(testAlice)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got, err := c.Fetch(imapv2.SeqSet{{Start: 1, Stop: 0}}, &imapv2.FetchOptions{
		Envelope: true, BodyStructure: &imapv2.FetchItemBodyStructure{Extended: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("%d messages", len(got))
	}
	for i, m := range got {
		var sections []*imapv2.FetchItemBodySection
		sizes := map[string]uint32{}
		// walk lists the parts; a non-multipart body of a message is its
		// part 1 (RFC 9051 section 6.4.5).
		var walk func(bs imapv2.BodyStructure, path []int, messageBody bool)
		walk = func(bs imapv2.BodyStructure, path []int, messageBody bool) {
			switch bs := bs.(type) {
			case *imapv2.BodyStructureMultiPart:
				for j, child := range bs.Children {
					walk(child, append(slices.Clone(path), j+1), false)
				}
			case *imapv2.BodyStructureSinglePart:
				if messageBody {
					path = append(slices.Clone(path), 1)
				}
				sections = append(sections, &imapv2.FetchItemBodySection{Peek: true, Part: path})
				sizes[fmt.Sprint(path)] = bs.Size
				if bs.MessageRFC822 != nil {
					walk(bs.MessageRFC822.BodyStructure, path, true)
				}
			}
		}
		walk(m.BodyStructure, nil, true)
		parts, err := c.Fetch(imapv2.SeqSetNum(m.SeqNum), &imapv2.FetchOptions{BodySection: sections}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sections {
			if n := len(parts[0].FindBodySection(s)); uint32(n) != sizes[fmt.Sprint(s.Part)] {
				t.Errorf("message %d: BODY[%v] has %d bytes, BODYSTRUCTURE says %d", i+1, s.Part, n, sizes[fmt.Sprint(s.Part)])
			}
		}
	}

	env := got[0].Envelope
	if len(env.From) != 1 || env.From[0].Name != "Jörg Müller" || env.From[0].Addr() != "joerg@example.org" ||
		len(env.To) != 2 || env.To[0].Mailbox != "root" || env.To[0].Host == "" || env.To[1].Addr() != "y@example.org" ||
		len(env.Cc) != 3 || env.Cc[2].Addr() != "b@example.org" {
		t.Errorf("F1 ENVELOPE: %+v", env)
	}
	if to := got[2].Envelope.To; len(to) != 6 || !to[0].IsGroupStart() || to[0].Mailbox != "Friends" || !to[3].IsGroupEnd() ||
		to[4].Mailbox != "undisclosed-recipients" || !to[4].IsGroupStart() || !to[5].IsGroupEnd() {
		t.Errorf("F5 ENVELOPE To: %+v", to)
	}
	for _, q := range []imapv2.SearchCriteriaHeaderField{
		{Key: "From", Value: "joerg"}, {Key: "From", Value: "Müller"}, {Key: "To", Value: "y@example.org"},
		{Key: "To", Value: "root"}, {Key: "Cc", Value: "b@example.org"},
	} {
		res, err := c.Search(&imapv2.SearchCriteria{Header: []imapv2.SearchCriteriaHeaderField{q}}, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if nums := res.AllSeqNums(); len(nums) != 1 || nums[0] != 1 {
			t.Errorf("SEARCH %s %q: %v", q.Key, q.Value, nums)
		}
	}
	res, err := c.Search(&imapv2.SearchCriteria{Header: []imapv2.SearchCriteriaHeaderField{{Key: "To", Value: "Friends"}}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if nums := res.AllSeqNums(); len(nums) != 1 || nums[0] != 3 {
		t.Errorf("SEARCH TO Friends: %v", nums)
	}
}

// FuzzSectionsAgree: for any message, each part that the store's
// BODYSTRUCTURE describes is as long as the section this package locates
// for it.
func FuzzSectionsAgree(f *testing.F) {
	for _, m := range probeMessages {
		f.Add([]byte(m))
	}
	f.Add(loadCRLF(f, "testdata/nested.eml"))
	for _, m := range []string{
		"0\n\r\n0",
		"Content-Type : multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b--\r\n",
		"X: a\r\n\rjunk\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b--\r\n",
		"Content-Type\v: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b--\r\n",
		" folded\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b--\r\n",
		"Content-Type: multipart/mixed;\r\n boundary=\"b\r\n c\"\r\n\r\n--b c\r\n\r\none\r\n--b c--\r\n",
		"Content-Type: multipart/mixed;\r\n boundary=\"b\r\n\t  c\"\r\n\r\n--b\t  c\r\n\r\none\r\n--b\t  c--\r\n",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: x\n\r\r\nbody\r\n--b--\r\n",
		"Content-Type: multipart/digest; boundary=b\r\n\r\n--b\r\n\r\n\r\n--b\r\nContent-Type: multipart/mixed\r\n\r\nx\r\n--b--\r\n",
		"Content-Type: message/global\r\n\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\ninner\r\n--c\r\n\r\ntwo\r\n--c--\r\n",
	} {
		f.Add([]byte(m))
	}
	st := sectionsStore(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		checkSectionsAgree(t, st, msg)
	})
}

// TestSectionsAgreeOnLongLines: a delimiter line longer than the section
// locator's read buffer is one line, as the store's parser sees it. The
// locator took its first 8 KiB alone: trailing white space past them
// ended up in the next part's header (BODY[1.MIME]), and a line of
// "--b", 9,000 spaces and a word was a delimiter for the locator but
// not for BODYSTRUCTURE, so BODY[1] was shorter than BODYSTRUCTURE said.
func TestSectionsAgreeOnLongLines(t *testing.T) {
	st := sectionsStore(t)
	ws := strings.Repeat(" ", 9000)
	for _, msg := range []string{
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b" + ws + "\r\nContent-Type: text/plain\r\n\r\none\r\n--b--\r\n",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b" + ws + "x\r\nstill one\r\n--b\r\n\r\ntwo\r\n--b--\r\n",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b--" + ws + "\r\nepilogue\r\n",
	} {
		checkSectionsAgree(t, st, []byte(msg))
	}
	msg := "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b" + ws + "\r\nContent-Type: text/plain\r\n\r\none\r\n--b--\r\n"
	got := sectionBytes(t, []byte(msg), &imapv2.FetchItemBodySection{Part: []int{1}, Specifier: imapv2.PartSpecifierMIME})
	if want := "Content-Type: text/plain\r\n\r\n"; string(got) != want {
		t.Errorf("BODY[1.MIME] = %.40q..., want %q", got, want)
	}
}

// TestSectionsAgreeOnHugeHeaders: a part header longer than the
// maxHeaderBytes the locator reads ends at its blank line for both
// parsers, and both read the fields of its first maxHeaderBytes only.
// The locator took the header to end at 1 MiB: BODY[1] of a part with
// 1.5 MB of header fields began inside them, and BODY[1.1] and
// BODY[1.2], which BODYSTRUCTURE described, were empty.
func TestSectionsAgreeOnHugeHeaders(t *testing.T) {
	st := sectionsStore(t)
	var big strings.Builder
	for i := range 10 {
		fmt.Fprintf(&big, "X-Big%d: %s\r\n", i, strings.Repeat("v", 150000))
	}
	alt := "--i\r\nContent-Type: text/plain\r\n\r\nx\r\n--i\r\nContent-Type: text/html\r\n\r\ny\r\n--i--\r\n"
	for _, msg := range []string{
		// Content-Type within the first MiB, the blank line past it.
		"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/alternative; boundary=i\r\n" +
			big.String() + "\r\n" + alt + "--o\r\n\r\nlast\r\n--o--\r\n",
		// Content-Type past it: not read by either.
		"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n" + big.String() +
			"Content-Type: multipart/alternative; boundary=i\r\n\r\n" + alt + "--o\r\n\r\nlast\r\n--o--\r\n",
		// The top-level header, and a blank line of CRs split by the 1 MiB mark.
		big.String() + strings.Repeat("x", maxHeaderBytes-big.Len()%maxHeaderBytes-1) + "\n\r\r\nbody\r\n",
	} {
		checkSectionsAgree(t, st, []byte(msg))
	}
	msg := "Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/alternative; boundary=i\r\n" +
		big.String() + "\r\n" + alt + "--o--\r\n"
	if got := sectionBytes(t, []byte(msg), &imapv2.FetchItemBodySection{Part: []int{1, 2}}); string(got) != "y" {
		t.Errorf("BODY[1.2] = %.40q, want \"y\"", got)
	}
}

// sectionsStore opens a store with one account for checkSectionsAgree.
func sectionsStore(tb testing.TB) store.Store {
	tb.Helper()
	st, err := store.Open(filepath.Join(tb.TempDir(), "posthorn.db"), store.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	if err := st.AddDomain("example.test"); err != nil {
		tb.Fatal(err)
	}
	if err := st.AddAccount(testAlice, "x"); err != nil {
		tb.Fatal(err)
	}
	return st
}

// checkSectionsAgree appends msg and checks that each part the store's
// BODYSTRUCTURE describes is as long as the section this package locates
// for it.
func checkSectionsAgree(t *testing.T, st store.Store, msg []byte) {
	t.Helper()
	d, err := st.Append(context.Background(), testAlice, "INBOX", store.NewMessage{Body: msg})
	if err != nil {
		t.Skip(err)
	}
	msgs, err := st.Messages(testAlice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[len(msgs)-1]
	if m.UID != d.UID {
		t.Fatalf("UID %d, appended %d", m.UID, d.UID)
	}
	info, err := st.BlobInfo(m.BlobID)
	if err != nil {
		t.Fatal(err)
	}
	var walk func(bs imapv2.BodyStructure, path []int, messageBody bool)
	walk = func(bs imapv2.BodyStructure, path []int, messageBody bool) {
		switch bs := bs.(type) {
		case *imapv2.BodyStructureMultiPart:
			for j, child := range bs.Children {
				walk(child, append(slices.Clone(path), j+1), false)
			}
		case *imapv2.BodyStructureSinglePart:
			if messageBody {
				path = append(slices.Clone(path), 1)
			}
			got := sectionBytes(t, msg, &imapv2.FetchItemBodySection{Part: path})
			if uint32(len(got)) != bs.Size {
				t.Fatalf("BODY[%v] has %d bytes, BODYSTRUCTURE %s says %d", path, len(got), bs.MediaType(), bs.Size)
			}
			if bs.MessageRFC822 != nil {
				walk(bs.MessageRFC822.BodyStructure, path, true)
			}
		}
	}
	walk(info.BodyStructure, nil, true)
}
