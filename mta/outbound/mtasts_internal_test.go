package outbound

import (
	"strings"
	"testing"
)

func TestParseSTSPolicy(t *testing.T) {
	p, err := parseSTSPolicy([]byte("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\nextension: ignored\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.mode != "enforce" || p.maxAge != 604800 || strings.Join(p.mx, ",") != "mail.example.com,*.example.net,backupmx.example.com" {
		t.Fatalf("parsed %+v", p)
	}
	if p, err := parseSTSPolicy([]byte("version: STSv1\nmode: none\nmax_age: 0\n")); err != nil || p.mode != "none" {
		t.Fatalf("mode none without mx: %+v %v", p, err)
	}
	for _, bad := range []string{
		"",
		"version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
		"version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmx: a.example\n",
		"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
		"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999999\n",
		"version: STSv1\nmode: enforce\nmx: a example\nmax_age: 1\n",
		"version: STSv1\nmode enforce\nmx: a.example\nmax_age: 1\n",
	} {
		if p, err := parseSTSPolicy([]byte(bad)); err == nil {
			t.Errorf("%q parsed: %+v", bad, p)
		}
	}
}

// TestSTSMatches: RFC 8461 section 4.1's examples; a wildcard stands for
// exactly one label.
func TestSTSMatches(t *testing.T) {
	p := &stsPolicy{mx: []string{"mail.example.com", "*.example.net"}}
	for name, want := range map[string]bool{
		"mail.example.com":      true,
		"MAIL.Example.COM.":     true,
		"mx1.example.net":       true,
		"example.net":           false,
		"a.b.example.net":       false,
		"mail.example.com.evil": false,
		"other.example.com":     false,
		".example.net":          false,
	} {
		if got := p.matches(name); got != want {
			t.Errorf("matches(%q) = %v, want %v", name, got, want)
		}
	}
}

// FuzzParseSTSPolicy: a policy from a remote server never panics, and one
// that parses has a known mode and, unless none, an mx.
func FuzzParseSTSPolicy(f *testing.F) {
	f.Add([]byte("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n"))
	f.Add([]byte("version: STSv1\nmode: none\nmax_age: 0\n"))
	f.Add([]byte("version:STSv1\nmode:testing\nmx:*.x\nmax_age:1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseSTSPolicy(b)
		if err != nil {
			return
		}
		if p.mode != "enforce" && p.mode != "testing" && p.mode != "none" || p.mode != "none" && len(p.mx) == 0 || p.maxAge < 0 {
			t.Fatalf("%q parsed to %+v", b, p)
		}
	})
}
