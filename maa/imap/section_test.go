package imap

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
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
