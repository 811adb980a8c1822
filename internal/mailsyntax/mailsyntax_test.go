package mailsyntax

import "testing"

func TestSkip(t *testing.T) {
	for _, c := range []struct {
		s    string
		at   int
		want int
		f    func(string, int) int
	}{
		{`"a\"b" x`, 0, 5, SkipQuoted},
		{`"open`, 0, 5, SkipQuoted},
		{`x "" y`, 2, 3, SkipQuoted},
		{`(a (b) \) c) d`, 0, 11, SkipComment},
		{`(open (nested)`, 0, 14, SkipComment},
		{`()`, 0, 1, SkipComment},
	} {
		if got := c.f(c.s, c.at); got != c.want {
			t.Errorf("%q at %d: %d, want %d", c.s, c.at, got, c.want)
		}
	}
}

func TestStripComments(t *testing.T) {
	for in, want := range map[string]string{
		" base64 (encoded)":      "base64",
		"BASE64(x (nested) y)":   "BASE64",
		`en-US (English), fr`:    "en-US  , fr",
		`"(not a comment)" (is)`: `"(not a comment)"`,
		"quoted-printable":       "quoted-printable",
		"7bit (open comment":     "7bit",
		`x \( (a \) b) y`:        `x \(   y`,
	} {
		if got := StripComments(in); got != want {
			t.Errorf("StripComments(%q) = %q, want %q", in, got, want)
		}
	}
	if got := TransferEncoding(" Base64 (encoded)\r\n"); got != "base64" {
		t.Errorf("TransferEncoding: %q", got)
	}
}

func TestFields(t *testing.T) {
	h := Fields([]byte("From : a@x\r\nfrom\t: b@y\r\nSubject: one\r\n two\r\nX-Ctl\x01: z\r\nno colon\r\n: empty\r\n"))
	if got := h["From"]; len(got) != 2 || got[0] != "a@x" || got[1] != "b@y" {
		t.Errorf("From: %q", got)
	}
	if got := h["Subject"]; len(got) != 1 || got[0] != "one two" {
		t.Errorf("Subject: %q", got)
	}
	if len(h) != 3 {
		t.Errorf("fields %q, want From, Subject and the control one", h)
	}
}
