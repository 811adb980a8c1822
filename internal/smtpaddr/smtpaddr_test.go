package smtpaddr

import "testing"

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "",
		"alice@example.org":     "alice@example.org",
		"a.b+tag@example.org":   "a.b+tag@example.org",
		"jörg@example.org":      "jörg@example.org",
		"john doe@example.org":  `"john doe"@example.org`,
		`a"b\c@example.org`:     `"a\"b\\c"@example.org`,
		".lead@example.org":     `".lead"@example.org`,
		"two..dots@example.org": `"two..dots"@example.org`,
		"at@sign@example.org":   `"at@sign"@example.org`,
		"@example.org":          `""@example.org`,
		"postmaster":            "postmaster",
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestALabels(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"jörg@bücher.test", "jörg@xn--bcher-kva.test"},
		{"jörg@Bücher.TEST", "jörg@xn--bcher-kva.test"},
		{"a@example.test", "a@example.test"}, // nothing to do
		{"a@b\u2488.test", "a@b\u2488.test"}, // not convertible: as it is
		{"no-at-sign", "no-at-sign"},
	} {
		if got := ALabelAddress(c.in); got != c.want {
			t.Errorf("ALabelAddress(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if _, ok := ALabels("example.test"); ok {
		t.Error("ALabels of an ASCII name reports a conversion")
	}
}
