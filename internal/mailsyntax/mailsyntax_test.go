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
