package store

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// TestParseGolden compares the ENVELOPE and BODYSTRUCTURE parsed from
// testdata/mime/*.eml with the .golden JSON beside each, and checks that
// the stored encoding round-trips. Run with -update to rewrite them.
func TestParseGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/mime/*.eml")
	if len(files) == 0 {
		t.Fatal("no golden cases")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			bi := parseBlobInfo(body, Options{})
			got, err := json.MarshalIndent(goldenView(bi), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(f, ".eml") + ".golden"
			if *update {
				os.WriteFile(golden, append(got, '\n'), 0o644)
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)) {
				t.Errorf("parse of %s differs from %s:\n%s", f, golden, got)
			}
			back, err := decodeBlobInfo(bi.ID, encodeBlobInfo(bi))
			if err != nil {
				t.Fatal(err)
			}
			again, _ := json.MarshalIndent(goldenView(back), "", "  ")
			if !bytes.Equal(again, got) {
				t.Errorf("encoding does not round-trip:\n%+v\n%+v", back, bi)
			}
		})
	}
}

// goldenView is a BlobInfo with the body structure's type made explicit
// and times in a fixed form.
func goldenView(bi BlobInfo) map[string]any {
	env := *bi.Envelope
	date := ""
	if !env.Date.IsZero() {
		date = env.Date.Format(time.RFC3339)
	}
	env.Date = time.Time{}
	return map[string]any{"Size": bi.Size, "HeaderLen": bi.HeaderLen, "Date": date, "Envelope": env, "BodyStructure": structView(bi.BodyStructure)}
}

func structView(bs imap.BodyStructure) any {
	switch bs := bs.(type) {
	case *imap.BodyStructureMultiPart:
		var children []any
		for _, c := range bs.Children {
			children = append(children, structView(c))
		}
		return map[string]any{"Multipart": bs.Subtype, "Children": children, "Extended": bs.Extended}
	case *imap.BodyStructureSinglePart:
		c := *bs
		v := map[string]any{"Single": c}
		if c.MessageRFC822 != nil {
			m := *c.MessageRFC822
			v["Message"] = map[string]any{"Envelope": m.Envelope, "Lines": m.NumLines, "Body": structView(m.BodyStructure)}
			c.MessageRFC822 = nil
			v["Single"] = c
		}
		return v
	}
	return nil
}

func TestHeaderLen(t *testing.T) {
	for _, c := range []struct {
		msg  string
		want int64
	}{
		{"Subject: a\r\n\r\nbody", 14},
		{"Subject: a\n\nbody", 12},
		{"Subject: a\r\nX: b\r\n", 18}, // no body: all header
		{"\r\nbody", 2},
	} {
		if got := parseBlobInfo([]byte(c.msg), Options{}).HeaderLen; got != c.want {
			t.Errorf("HeaderLen(%q) = %d, want %d", c.msg, got, c.want)
		}
	}
}

func TestParseLimits(t *testing.T) {
	// MaxHeaderFields: fields past the limit are ignored (but still part
	// of the header length), except the first of each field that
	// ENVELOPE and BODYSTRUCTURE describe (TestParsePastFieldLimits).
	var b bytes.Buffer
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&b, "X-F%d: v\r\n", i)
	}
	b.WriteString("Content-Language: de\r\nSubject: late\r\nContent-Language: en\r\n\r\nbody\r\n")
	bi := parseBlobInfo(b.Bytes(), Options{MaxHeaderFields: 10})
	lang := bi.BodyStructure.(*imap.BodyStructureSinglePart).Extended.Language
	if bi.Envelope.Subject != "late" || len(lang) != 1 || lang[0] != "de" || bi.HeaderLen != int64(b.Len()-6) {
		t.Errorf("limited header: subject %q, language %q, len %d", bi.Envelope.Subject, lang, bi.HeaderLen)
	}
	// MaxMIMEDepth: nesting past the limit becomes an opaque part.
	msg := nestedMultipart(10)
	bi = parseBlobInfo(msg, Options{MaxMIMEDepth: 3})
	if d := structDepth(bi.BodyStructure); d != 4 {
		t.Errorf("depth %d, want 3 multiparts and an opaque part", d)
	}
}

func structDepth(bs imap.BodyStructure) int {
	for d := 1; ; d++ {
		mp, ok := bs.(*imap.BodyStructureMultiPart)
		if !ok {
			if sp := bs.(*imap.BodyStructureSinglePart); sp.MediaType() != "application/octet-stream" {
				panic("innermost is " + sp.MediaType())
			}
			return d
		}
		bs = mp.Children[0]
	}
}

func nestedMultipart(depth int) []byte {
	b := []byte("Subject: deep\r\n")
	for i := 0; i < depth; i++ {
		b = append(b, "Content-Type: multipart/mixed; boundary=b"...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, "\r\n\r\n--b"...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Type: text/plain\r\n\r\ncore\r\n"...)
	for i := depth - 1; i >= 0; i-- {
		b = append(b, "--b"...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, "--\r\n"...)
	}
	return b
}

// TestHostileMessages appends messages built to exhaust a naive parser:
// 100,000 levels of MIME nesting, 100,000 levels of message/rfc822, and
// 1,000,000 header fields. Each must be stored, with parsing time and
// memory bounded.
func TestHostileMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("large messages")
	}
	s, _ := openTest(t, Options{NoSync: true})
	var rfc822 bytes.Buffer
	for i := 0; i < 100000; i++ {
		rfc822.WriteString("Content-Type: message/rfc822\r\n\r\n")
	}
	var fields bytes.Buffer
	for i := 0; i < 1000000; i++ {
		fields.WriteString("X-Field: value\r\n")
	}
	fields.WriteString("\r\nbody\r\n")
	cases := map[string][]byte{
		"mime-depth-100000":     nestedMultipart(100000),
		"rfc822-depth-100000":   rfc822.Bytes(),
		"header-fields-1000000": fields.Bytes(),
	}
	for name, msg := range cases {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			bi := parseBlobInfo(msg, s.opts)
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d bytes: parsed in %v, %d bytes allocated", len(msg), elapsed, alloc)
			if alloc > 20*uint64(len(msg))+(64<<20) {
				t.Errorf("parse allocated %d bytes for a %d-byte message", alloc, len(msg))
			}
			if elapsed > 20*time.Second {
				t.Errorf("parse took %v", elapsed)
			}
			if bi.BodyStructure == nil || bi.HeaderLen <= 0 {
				t.Fatalf("no structure: %+v", bi)
			}
			d, err := s.Append(context.Background(), alice, "INBOX", NewMessage{Body: msg})
			if err != nil {
				t.Fatal(err)
			}
			msgs, _ := s.Messages(alice, "INBOX")
			m := msgs[len(msgs)-1]
			if m.UID != d.UID || m.Size != int64(len(msg)) {
				t.Fatalf("stored %+v", m)
			}
			if _, err := s.BlobInfo(m.BlobID); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestEnvelopeFields: the ENVELOPE of fields mail readers write in their
// obsolete or loose forms, as Dovecot shows them: obsolete zone names
// with their offsets and military zones as -0000 (RFC 5322 section 4.3;
// "EST" was taken for +0000), a Message-ID without angle brackets or with
// spaces in them, and the ids of an In-Reply-To with text around them,
// rather than NIL for a field present (RFC 9051 section 7.5.2); and the
// MIME fields with comments (RFC 2045 section 3): "base64 (x)" is base64.
func TestEnvelopeFields(t *testing.T) {
	for _, c := range []struct{ date, want string }{
		{"Tue, 1 Jan 2030 10:00:00 EST", "2030-01-01T10:00:00-05:00"},
		{"Tue, 1 Jan 2030 10:00:00 PDT", "2030-01-01T10:00:00-07:00"},
		{"Tue, 1 Jan 2030 10:00:00 cdt", "2030-01-01T10:00:00-05:00"},
		{"Tue, 1 Jan 2030 10:00:00 GMT", "2030-01-01T10:00:00Z"},
		{"Tue, 1 Jan 2030 10:00:00 Z", "2030-01-01T10:00:00Z"},
		{"Tue, 1 Jan 2030 10:00:00 a", "2030-01-01T10:00:00Z"},
		{"Tue, 1 Jan 2030 10:00:00 +0200 (CEST)", "2030-01-01T10:00:00+02:00"},
		{"1 Jan 2030 10:00 -0330", "2030-01-01T10:00:00-03:30"},
		{"Wed, 04 Jan 2023 10:00:00", "2023-01-04T10:00:00Z"}, // no zone: -0000
		{"Wed, 04 Jan 2023", ""},
		{"next tuesday", ""},
		{"", ""},
	} {
		got := ""
		if d := ParseDate(c.date); !d.IsZero() {
			got = d.Format(time.RFC3339)
		}
		if got != c.want {
			t.Errorf("ParseDate(%q) = %q, want %q", c.date, got, c.want)
		}
	}
	msg := "Date: Tue, 1 Jan 2030 10:00:00 EST\r\nMessage-ID: no-angle-brackets@example.com\r\n" +
		"In-Reply-To: <a@b.example> (Your message of \"Tue, 1 Jan 2030\") <c@d.example>\r\n" +
		"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64 (encoded)\r\n" +
		"Content-Language: en-US (English), fr\r\n\r\naGVsbG8K\r\n"
	bi := parseBlobInfo([]byte(msg), Options{})
	env := bi.Envelope
	if _, off := env.Date.Zone(); off != -5*3600 || env.Date.Hour() != 10 {
		t.Errorf("Date %v, want 10:00 -0500", env.Date)
	}
	if env.MessageID != "no-angle-brackets@example.com" {
		t.Errorf("Message-ID %q", env.MessageID)
	}
	if strings.Join(env.InReplyTo, " ") != "a@b.example c@d.example" {
		t.Errorf("In-Reply-To %q", env.InReplyTo)
	}
	sp := bi.BodyStructure.(*imap.BodyStructureSinglePart)
	if sp.Encoding != "base64" {
		t.Errorf("encoding %q, want base64", sp.Encoding)
	}
	if lang := strings.Join(sp.Extended.Language, ","); lang != "en-US,fr" {
		t.Errorf("language %q, want en-US,fr", lang)
	}
	for _, c := range []struct{ field, want string }{
		{"id3@x", "id3@x"},
		{`<"quoted"@example.com> (comment)`, `"quoted"@example.com`},
		{`Your message of "Tue, 1 Jan 2030"`, ""},
	} {
		bi := parseBlobInfo([]byte("In-Reply-To: "+c.field+"\r\n\r\nx\r\n"), Options{})
		if got := strings.Join(bi.Envelope.InReplyTo, " "); got != c.want {
			t.Errorf("In-Reply-To %s: %q, want %q", c.field, got, c.want)
		}
	}
	for _, id := range []string{"<  spaced@example.com  >", "<a b@c>"} {
		bi := parseBlobInfo([]byte("Message-ID: "+id+"\r\n\r\nx\r\n"), Options{})
		if want := strings.ReplaceAll(strings.Trim(id, "<> "), " ", ""); bi.Envelope.MessageID != want {
			t.Errorf("Message-ID %s: %q, want %q", id, bi.Envelope.MessageID, want)
		}
	}
}

// TestObsoleteFieldName: a field with white space before its colon (RFC
// 5322 section 4.5) is the field of its name in the ENVELOPE.
func TestObsoleteFieldName(t *testing.T) {
	bi := parseBlobInfo([]byte("From: a@example.org\r\nSubject : spaced colon\r\nTo\t: b@example.org\r\n\r\nbody\r\n"), Options{})
	if bi.Envelope.Subject != "spaced colon" || len(bi.Envelope.To) != 1 || bi.Envelope.To[0].Mailbox != "b" {
		t.Errorf("envelope %+v", bi.Envelope)
	}
}

// TestParsePastFieldLimits: a header past the per-block field limit, or
// past the message's budget, still gives its Content-Type (and the
// ENVELOPE fields). They were dropped: a multipart/alternative part
// after 1,100 X- fields was described as text/plain while the IMAP
// section locator, which reads the whole header, found its two parts at
// BODY[1.1] and BODY[1.2]; a Subject after 1,100 Received fields was
// NIL in the ENVELOPE.
func TestParsePastFieldLimits(t *testing.T) {
	var many strings.Builder
	for i := range 1100 {
		fmt.Fprintf(&many, "X-F%d: v\r\n", i)
	}
	msg := "Subject: top\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n" + many.String() +
		"Content-Type: multipart/alternative; boundary=i\r\nContent-Type: text/plain\r\n\r\n" +
		"--i\r\nContent-Type: text/plain\r\n\r\nx\r\n--i\r\nContent-Type: text/html\r\n\r\ny\r\n--i--\r\n--o--\r\n"
	bs, ok := parseBlobInfo([]byte(msg), Options{}).BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || len(bs.Children) != 1 {
		t.Fatalf("BODYSTRUCTURE %#v", bs)
	}
	alt, ok := bs.Children[0].(*imap.BodyStructureMultiPart)
	if !ok || alt.Subtype != "alternative" || len(alt.Children) != 2 {
		t.Errorf("part 1 %#v, want multipart/alternative with two parts (the first Content-Type)", bs.Children[0])
	}

	received := strings.ReplaceAll(many.String(), "X-F", "Received: from h")
	env := parseBlobInfo([]byte(received+"From: a@example.org\r\nSubject: late\r\nSubject: second\r\n\r\nbody\r\n"), Options{}).Envelope
	if env.Subject != "late" || len(env.From) != 1 || env.From[0].Addr() != "a@example.org" {
		t.Errorf("ENVELOPE %+v", env)
	}

	// Past the message's budget of fields, in a later part.
	var parts strings.Builder
	for range 110 {
		parts.WriteString("--o\r\n" + many.String() + "\r\nfiller\r\n")
	}
	parts.WriteString("--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\nx\r\n--i\r\n\r\ny\r\n--i--\r\n--o--\r\n")
	bs, ok = parseBlobInfo([]byte("Content-Type: multipart/mixed; boundary=o\r\n\r\n"+parts.String()), Options{}).BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || len(bs.Children) != 111 {
		t.Fatalf("BODYSTRUCTURE of %d parts", len(bs.Children))
	}
	if last, ok := bs.Children[110].(*imap.BodyStructureMultiPart); !ok || len(last.Children) != 2 {
		t.Errorf("part 111 %#v, want multipart/alternative with two parts", bs.Children[110])
	}
}

// TestParseForwardChain: a message with a 2 MB attachment forwarded as
// an attachment five times over is six multiparts around the attachment,
// each scanned once. With a scanning budget of 4 passes over the
// message, the inner ones were described as an opaque
// application/octet-stream, and the attachment could not be seen.
func TestParseForwardChain(t *testing.T) {
	att := strings.Repeat(strings.Repeat("QUJD", 19)+"\r\n", 2<<20/76)
	msg := "Subject: report\r\nContent-Type: multipart/mixed; boundary=L0\r\n\r\n--L0\r\n\r\nsee attachment\r\n" +
		"--L0\r\nContent-Type: application/pdf; name=report.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + att + "--L0--\r\n"
	for i := 1; i <= 5; i++ {
		msg = fmt.Sprintf("Subject: Fwd %d\r\nContent-Type: multipart/mixed; boundary=F%d\r\n\r\n--F%d\r\n\r\nforwarding\r\n"+
			"--F%d\r\nContent-Type: message/rfc822\r\n\r\n%s--F%d--\r\n", i, i, i, i, msg, i)
	}
	bs := parseBlobInfo([]byte(msg), Options{}).BodyStructure
	for level := 5; level >= 0; level-- {
		mp, ok := bs.(*imap.BodyStructureMultiPart)
		if !ok || len(mp.Children) != 2 {
			t.Fatalf("level %d: %s, want multipart/mixed with two parts", level, bs.MediaType())
		}
		bs = mp.Children[1]
		if level > 0 {
			m, ok := bs.(*imap.BodyStructureSinglePart)
			if !ok || m.MessageRFC822 == nil {
				t.Fatalf("level %d: part 2 is %s, want message/rfc822", level, bs.MediaType())
			}
			bs = m.MessageRFC822.BodyStructure
		}
	}
	if bs.MediaType() != "application/pdf" {
		t.Errorf("innermost attachment: %s, want application/pdf", bs.MediaType())
	}
}
