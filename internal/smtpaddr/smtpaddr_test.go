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
