package mailio

import (
	"cmp"
	"strings"
	"testing"
	"time"
)

func cut(t *testing.T, mbox string) []mboxMessage {
	t.Helper()
	var out []mboxMessage
	if err := readMbox(strings.NewReader(mbox), func(m mboxMessage) bool {
		out = append(out, m)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReadMbox(t *testing.T) {
	mbox := "\n" +
		"From a@example.test Thu Nov 26 10:00:00 2026\n" +
		"Subject: one\n\nbody\n>From the start\n>>From quoted\nFrom nope: not after an empty line\n\n\n" +
		"From b@example.test Thu Nov 26 11:00:00 2026\r\n" +
		"Subject: two\r\n\r\nline\r\n"
	ms := cut(t, mbox)
	if len(ms) != 2 {
		t.Fatalf("%d messages", len(ms))
	}
	want1 := "Subject: one\r\n\r\nbody\r\nFrom the start\r\n>From quoted\r\nFrom nope: not after an empty line\r\n\r\n"
	if string(ms[0].body) != want1 {
		t.Errorf("message 1 = %q, want %q", ms[0].body, want1)
	}
	if want2 := "Subject: two\r\n\r\nline\r\n"; string(ms[1].body) != want2 {
		t.Errorf("message 2 = %q, want %q", ms[1].body, want2)
	}
	if ms[1].n != 2 || ms[1].line != 11 {
		t.Errorf("message 2 at n=%d line=%d", ms[1].n, ms[1].line)
	}
	if d := fromLineDate(ms[0].from); !d.Equal(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("From line date %v", d)
	}
}

func TestReadMboxNotMbox(t *testing.T) {
	err := readMbox(strings.NewReader("Subject: hi\n\nbody\n"), func(mboxMessage) bool { return true })
	if err == nil || !strings.Contains(err.Error(), "not an mbox") {
		t.Errorf("err = %v", err)
	}
}

func TestParseHeader(t *testing.T) {
	for body, ok := range map[string]bool{
		"Subject: x\r\n\r\nbody\r\n":        true,
		"Subject: x\r\n":                    true, // header only
		"\r\nno header\r\n":                 false,
		"just some text\r\nmore text\r\n":   false,
		"Subject: x\r\nbroken line\r\n\r\n": false,
		"Subject : x\r\nTo\t: y\r\n\r\n":    true, // RFC 5322 section 4.5
		": x\r\n\r\n":                       false,
		"Sub ject: x\r\n\r\n":               false,
	} {
		if _, err := parseHeader([]byte(body)); (err == nil) != ok {
			t.Errorf("%q: err = %v", body, err)
		}
	}
}

func TestCRLF(t *testing.T) {
	for in, want := range map[string]string{
		"a\nb\n":     "a\r\nb\r\n",
		"a\r\nb\r\n": "a\r\nb\r\n",
		"a\r\nb\nc":  "a\r\nb\r\nc",
		"\n":         "\r\n",
	} {
		if got := string(crlf([]byte(in))); got != want {
			t.Errorf("crlf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUTF7(t *testing.T) {
	for _, name := range []string{"Entwürfe", "a&b", "日本語", "plain", "a.b", "x~y"} {
		enc := encodeUTF7(name, func(r rune) bool { return r != '.' })
		if strings.ContainsAny(enc, ".") || strings.ContainsFunc(enc, func(r rune) bool { return r > 0x7e }) {
			t.Errorf("encode(%q) = %q", name, enc)
		}
		dec, err := decodeUTF7(enc)
		if err != nil || dec != name {
			t.Errorf("decode(%q) = %q, %v; want %q", enc, dec, err, name)
		}
	}
	if got, _ := decodeUTF7("Entw&APw-rfe"); got != "Entwürfe" {
		t.Errorf("Dovecot's name decodes to %q", got)
	}
	if f, err := folderName("Sub.Entw&APw-rfe"); err != nil || f != "Sub/Entwürfe" {
		t.Errorf("folderName = %q, %v", f, err)
	}
}

// TestFolderName: Maildir++ folder names map as Dovecot's (empty namespace
// prefix) do, and every mailbox name survives maildirName then folderName.
func TestFolderName(t *testing.T) {
	for dir, want := range map[string]string{
		"Sub":              "Sub",
		"INBOX.Sub":        "INBOX/Sub",
		"inbox.Sub.Deep":   "INBOX/Sub/Deep",
		"INBOX":            "INBOX",
		"Sub.INBOX":        "Sub/INBOX",
		"INBOX.INBOX":      "INBOX/INBOX",
		"Lists.go&AC4-dev": "Lists/go.dev",
	} {
		if got, err := folderName(dir); err != nil || got != want {
			t.Errorf("folderName(%q) = %q, %v; want %q", dir, got, err, want)
		}
	}
	for _, name := range []string{"Sub", "INBOX/Sub", "INBOX/Sub/Deep", "Sub/INBOX", "a.b/c&d", "Entwürfe/日本"} {
		if got, err := folderName(maildirName(name)); err != nil || got != name {
			t.Errorf("%q: exported as %q, imported as %q, %v", name, maildirName(name), got, err)
		}
	}
	// Not valid modified UTF-7: taken as written, as Dovecot lists it.
	if got, err := folderName("Bad&Name"); err != nil || got != "Bad&Name" {
		t.Errorf("folderName(Bad&Name) = %q, %v", got, err)
	}
	for _, bad := range []string{"Sub..x", "Sub.", ".x"} {
		if got, err := folderName(bad); err == nil {
			t.Errorf("folderName(%q) = %q, want an error", bad, got)
		}
	}
}

// TestMaildirOrder: file names sort by the number they start with (the
// delivery time), then naturally.
func TestMaildirOrder(t *testing.T) {
	want := []string{
		"999999999.M1P1.host",
		"1577872800.M55U2.posthorn:2,S",
		"1577872800.M55U0000000003.posthorn:2,",
		"1577872800.M55U010.posthorn:2,", // equal to U10 as numbers: as strings then
		"1577872800.M55U10.posthorn:2,",
		"1577872800.M99999P7.host:2,S",
		"1577872800.M100000P7.host",
		"1577872800.M100000P7.host2",
		"1577872800.M100000P7.hosta",
		"1577872801.M1P1.host",
		"1577872801.M1P1.host:2,S",
		"x",
	}
	for i := range want {
		for j := range want {
			if got := maildirCompare(want[i], want[j]); got != cmp.Compare(i, j) {
				t.Errorf("maildirCompare(%q, %q) = %d", want[i], want[j], got)
			}
		}
	}
}

func TestFileFlags(t *testing.T) {
	kw := map[byte]string{'a': "$Label1", 'c': "Work"}
	got := fileFlags("1700000000.M1U2.host:2,DFPRSTac", kw)
	want := []string{`\Draft`, `\Flagged`, `\Answered`, `\Seen`, `\Deleted`, "$Label1", "Work"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("flags %v, want %v", got, want)
	}
	if f := fileFlags("1700000000.M1U2.host", nil); f != nil {
		t.Errorf("no info suffix: %v", f)
	}
	if s := flagLetters([]string{`\Seen`, `\Answered`, "Work", `\Recent`}, map[string]byte{"Work": 'a'}); s != "RSa" {
		t.Errorf("flagLetters = %q", s)
	}
}

// FuzzReadMbox: any input is cut into messages without panicking, and
// every message comes out with CRLF line endings only.
func FuzzReadMbox(f *testing.F) {
	f.Add("From a Thu Nov 26 10:00:00 2026\nSubject: x\n\nbody\n>From y\n\n")
	f.Add("From a\r\n\r\n\r\nFrom b\nFrom c\n\nFrom d\n")
	f.Add("\n\nFrom \n>>>From \r\r\n\n")
	f.Add("From a\nContent-Length: 5\n\nFrom \n\nFrom b\nContent-Length: 3\n\nab")
	f.Add("From a\nContent-Length: 2\n\n\r\r\nFrom b\nX: y\n")
	f.Fuzz(func(t *testing.T, in string) {
		_ = readMbox(strings.NewReader(in), func(m mboxMessage) bool {
			body := string(m.body)
			if strings.Count(body, "\n") != strings.Count(body, "\r\n") {
				t.Fatalf("bare LF in %q", body)
			}
			if body != "" && !strings.HasSuffix(body, "\r\n") {
				t.Fatalf("no final CRLF in %q", body)
			}
			return true
		})
	})
}
