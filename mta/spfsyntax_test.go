package mta

import "testing"

// TestValidSPF: the records of the P7a probe that passed although RFC
// 7208 section 4.6 makes them permerror (a syntax error after the term
// that matched, a domain-spec without a top label), and records seen in
// the wild that must stay valid.
func TestValidSPF(t *testing.T) {
	for _, c := range []struct {
		rec  string
		want bool
	}{
		{"v=spf1", true},
		{"v=spf1 -all", true},
		{"V=SPF1 IP4:192.0.2.1 ~ALL", true},
		{"v=spf1 include:_spf.google.com ~all", true},
		{"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx -all", true},
		{"v=spf1 a/24 mx:mail.example.com/28//64 a:example.org//128 ?all", true},
		{"v=spf1  ip4:192.0.2.1   -all  ", true},
		{"v=spf1 exists:%{i}._spf.%{d} redirect=_spf.%{d2}", true},
		{"v=spf1 exists:%{l1r-}.%{ir}.%{v}._spf.example.com -all", true},
		{"v=spf1 include:example.com. -all", true},
		{"v=spf1 ptr ptr:example.com -all", true},
		{"v=spf1 -all exp=explain._spf.%{d} ra=postmaster rp=100", true},
		{"v=spf1 ip4:0.0.0.0/0 ip6:::/0", true},

		{"v=spf1 ip4:127.0.0.1 ip4:1.2.3.4/33 -all", false},
		{"v=spf1 ip4:127.0.0.1 foo:bar -all", false},
		{"v=spf1 ip4:127.0.0.1 include:%{z}.test -all", false},
		{"v=spf1 ip4:127.0.0.0/8 ip6:2001:db8::/129 -all", false},
		{"v=spf1 a:localhost -all", false},
		{"v=spf1 include:d11 -all", false},
		{"v=spf1 a:example.123 -all", false},
		{"v=spf1 mx:example.com:8080 -all", false},
		{"v=spf1 ip4:192.0.2.1/032", false},
		{"v=spf1 ip4:192.0.02.1", false},
		{"v=spf1 ip4:2001:db8::1", false},
		{"v=spf1 ip6:192.0.2.1", false},
		{"v=spf1 ip6:fe80::1%eth0", false},
		{"v=spf1 all/24", false},
		{"v=spf1 all:example.com", false},
		{"v=spf1 ptr/24", false},
		{"v=spf1 a/24/64", false},
		{"v=spf1 include:", false},
		{"v=spf1 redirect=a.example redirect=b.example", false},
		{"v=spf1 exp=a.example exp=b.example -all", false},
		{"v=spf1 -all exp=", false},
		{"v=spf1 -all foo=%{c}", true},
		{"v=spf1 a:%{c}.example.com", false},
		{"v=spf1 a:%{d0}.example.com", false},
		{"v=spf1 a:%{x}.example.com", false},
		{"v=spf1 a:%{d", false},
		{"v=spf1 a:100%.example.com", false},
		{"v=spf1 a:ex\x00ample.com", false},
		{"v=spf1 a:exämple.com", false},
		{"v=spf1 -all 9foo=bar", false},
		{"v=spf1 redirect:example.com", false},
	} {
		if got := validSPF(c.rec); got != c.want {
			t.Errorf("validSPF(%q) = %v, want %v", c.rec, got, c.want)
		}
	}
}

func FuzzValidSPF(f *testing.F) {
	f.Add("v=spf1 a:%{d}.example.com/24//64 -all")
	f.Add("v=spf1 exists:%{l1r-}.%{ir}.x.example")
	f.Fuzz(func(t *testing.T, s string) {
		if isSPFRecord(s) {
			validSPF(s)
		}
	})
}
