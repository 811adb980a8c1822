package mta

import (
	"context"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"blitiri.com.ar/go/spf"
)

// SPF record syntax (RFC 7208 section 12).
//
// blitiri.com.ar/go/spf (v1.6.0) reads a record a term at a time and stops
// at the first that matches, so a syntax error after it goes unseen
// ("ip4:192.0.2.1 ip4:1.2.3.4/33 -all" passes 192.0.2.1), and it takes any
// domain-spec ("a:localhost"). Section 4.6 says otherwise: "If there are
// any syntax errors anywhere in the record, check_host() returns
// immediately with the result "permerror", without further
// interpretation." spfResolver checks each SPF record the library fetches
// (the sender's, and those of include: and redirect=) against the grammar
// first, and hands on a record that is not valid as one the library
// refuses at its first term, so that its result is permerror wherever it
// is met, as the RFC's test suite and pyspf have it.

// invalidSPF stands for a record that failed validSPF: the library takes
// its only term for an unknown mechanism (permerror).
const invalidSPF = "v=spf1 invalid-record"

// spfResolver is the resolver given to the SPF library.
type spfResolver struct{ spf.DNSResolver }

func (r spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txts, err := r.DNSResolver.LookupTXT(ctx, name)
	for i, txt := range txts {
		if isSPFRecord(txt) && !validSPF(txt) {
			txts[i] = invalidSPF
		}
	}
	return txts, err
}

// isSPFRecord tells whether txt is an SPF record, as the library picks
// them (section 4.5).
func isSPFRecord(txt string) bool {
	return len(txt) >= 6 && strings.EqualFold(txt[:6], "v=spf1") && (len(txt) == 6 || txt[6] == ' ')
}

// validSPF checks an SPF record against the grammar of section 12:
// record = version terms *SP, terms = *( 1*SP ( directive / modifier ) ).
func validSPF(txt string) bool {
	var redirect, exp bool
	for _, term := range strings.Split(txt[6:], " ") {
		if term == "" {
			continue // the separators are 1*SP
		}
		if name, value, ok := strings.Cut(term, "="); ok && validModifierName(name) {
			switch strings.ToLower(name) {
			case "redirect":
				if redirect || !validDomainSpec(value) {
					return false
				}
				redirect = true
			case "exp":
				if exp || !validDomainSpec(value) {
					return false
				}
				exp = true
			default:
				if !validMacroString(value, false) {
					return false
				}
			}
			continue
		}
		if !validDirective(term) {
			return false
		}
	}
	return true
}

// validModifierName: name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ).
func validModifierName(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// validDirective: [ qualifier ] mechanism.
func validDirective(t string) bool {
	if t != "" && strings.IndexByte("+-?~", t[0]) >= 0 {
		t = t[1:]
	}
	n := strings.IndexAny(t, ":/")
	if n < 0 {
		n = len(t)
	}
	name, rest := strings.ToLower(t[:n]), t[n:]
	arg, hasArg := strings.CutPrefix(rest, ":")
	switch name {
	case "all":
		return rest == ""
	case "include", "exists":
		return hasArg && validDomainSpec(arg)
	case "ptr":
		return rest == "" || hasArg && validDomainSpec(arg)
	case "ip4", "ip6":
		addr, cidr, hasCIDR := strings.Cut(arg, "/")
		a, err := netip.ParseAddr(addr)
		if !hasArg || err != nil || a.Zone() != "" {
			return false
		}
		if name == "ip4" {
			return a.Is4() && (!hasCIDR || validCIDR(cidr, 32))
		}
		return a.Is6() && (!hasCIDR || validCIDR(cidr, 128))
	case "a", "mx":
		// name [ ":" domain-spec ] [ dual-cidr-length ]
		m := dualCIDR.FindStringSubmatch(rest)
		if m == nil || m[1] != "" && !validDomainSpec(m[1][1:]) {
			return false
		}
		return (m[2] == "" || validCIDR(m[2], 32)) && (m[3] == "" || validCIDR(m[3], 128))
	}
	return false
}

// dualCIDR splits what follows "a" or "mx": [ ":" domain-spec ] [
// ip4-cidr-length ] [ "/" ip6-cidr-length ], the lengths taken from the
// end (a domain-spec may hold "/").
var dualCIDR = regexp.MustCompile(`^(:.*?)?(?:/([0-9]+))?(?://([0-9]+))?$`)

// validCIDR: "0" / %x31-39 *DIGIT, at most max.
func validCIDR(s string, max int) bool {
	if s == "" || len(s) > 3 || s[0] == '0' && len(s) > 1 {
		return false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n <= max
}

// validDomainSpec: domain-spec = macro-string domain-end, domain-end =
// ( "." toplabel [ "." ] ) / macro-expand. The macro letters c, r and t
// are for exp text only (section 7.3).
func validDomainSpec(s string) bool {
	if !validMacroString(s, true) {
		return false
	}
	if endsWithMacro(s) {
		return true
	}
	s = strings.TrimSuffix(s, ".")
	i := strings.LastIndexByte(s, '.')
	if i < 0 || strings.Contains(s[i:], "%") {
		return false
	}
	return validTopLabel(s[i+1:])
}

// endsWithMacro tells whether the macro-string s (valid) ends with a
// macro-expand: "%{...}", "%%", "%_" or "%-".
func endsWithMacro(s string) bool {
	last := false
	for i := 0; i < len(s); i++ {
		last = false
		if s[i] != '%' {
			continue
		}
		if s[i+1] == '{' {
			i += strings.IndexByte(s[i:], '}')
		} else {
			i++
		}
		last = true
	}
	return last
}

// validTopLabel: ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *(
// alphanum / "-" ) alphanum ).
func validTopLabel(s string) bool {
	if s == "" || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	alpha, hyphen := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isAlpha(c):
			alpha = true
		case c == '-':
			hyphen = true
		case !isDigit(c):
			return false
		}
	}
	return alpha || hyphen
}

// validMacroString: *( macro-expand / macro-literal ), macro-literal =
// %x21-24 / %x26-7E, macro-expand = ( "%{" macro-letter transformers
// *delimiter "}" ) / "%%" / "%_" / "%-".
func validMacroString(s string, inDomain bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if c < 0x21 || c > 0x7e {
				return false
			}
			continue
		}
		if i+1 >= len(s) {
			return false
		}
		switch s[i+1] {
		case '%', '_', '-':
			i++
			continue
		case '{':
		default:
			return false
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 || !validMacro(s[i+2:i+end], inDomain) {
			return false
		}
		i += end
	}
	return true
}

// validMacro: macro-letter transformers *delimiter, transformers = *DIGIT
// [ "r" ].
func validMacro(m string, inDomain bool) bool {
	if m == "" {
		return false
	}
	letter := m[0] | 0x20
	if !strings.ContainsRune("sloidphv", rune(letter)) && (inDomain || !strings.ContainsRune("crt", rune(letter))) {
		return false
	}
	i := 1
	for i < len(m) && isDigit(m[i]) {
		i++
	}
	if i > 1 {
		// A number of labels to keep: not zero (section 7.3), and
		// bounded here (it is at most 128 that make sense).
		if n, err := strconv.Atoi(m[1:i]); err != nil || n == 0 {
			return false
		}
	}
	if i < len(m) && m[i]|0x20 == 'r' {
		i++
	}
	for ; i < len(m); i++ {
		if !strings.ContainsRune(".-+,/_=", rune(m[i])) {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
