// Package smtpaddr writes mail addresses as they must appear on the wire
// and in header fields.
//
// go-smtp's server gives the local part of MAIL FROM and RCPT TO with
// the quotes of a Quoted-string taken off ("john doe"@example.org comes
// as john doe@example.org). Written back as it is, in a Return-Path, a
// MAIL FROM to another server or a DSN, that is not an address.
package smtpaddr

import (
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// Quote returns addr with its local part as a Dot-string when it is one
// (RFC 5321 section 4.1.2), and otherwise as a Quoted-string, with '"'
// and '\' escaped. An address without '@' (the null sender) is returned
// as it is.
func Quote(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	local := addr[:at]
	if isDotString(local) {
		return addr
	}
	var b strings.Builder
	b.Grow(len(addr) + 4)
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	b.WriteString(addr[at:])
	return b.String()
}

// isDotString: atoms of atext (RFC 5322 section 3.2.3, with UTF-8 as RFC
// 6531 allows) separated by single dots.
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x80, c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte(".!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// ALabels returns a domain name with its U-labels turned into A-labels
// (IDNA2008's lookup profile, RFC 5891 section 5): "bücher.example" is
// "xn--bcher-kva.example", the form in which the store keeps our domains
// and DNS knows them. ok is false when the name has no non-ASCII byte (it
// needs nothing) or cannot be converted.
func ALabels(domain string) (string, bool) {
	for i := 0; i < len(domain); i++ {
		if domain[i] >= 0x80 {
			a, err := idna.Lookup.ToASCII(domain)
			return strings.ToLower(a), err == nil
		}
	}
	return "", false
}

// ALabelAddress returns addr with its domain in A-labels (see ALabels),
// or as it is when that needs or allows no change: the address a user of
// jörg@bücher.example types is the account jörg@xn--bcher-kva.example.
func ALabelAddress(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	if d, ok := ALabels(addr[at+1:]); ok {
		return addr[:at+1] + d
	}
	return addr
}

// NameProblem says what keeps name, in ASCII and without a trailing dot,
// from being a DNS host name, or "": labels of letters, digits and
// hyphens (and underscores, if underscore), 1 to 63 bytes, neither
// starting nor ending with a hyphen, 253 bytes in all (RFC 1123 section
// 2.1), the last one not all digits (that is an IP address: RFC 3696
// section 2).
func NameProblem(name string, underscore bool) string {
	if name == "" {
		return "it is empty"
	}
	if len(name) > 253 {
		return "longer than 253 bytes"
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		switch {
		case l == "":
			return "it has an empty label"
		case len(l) > 63:
			return "a label is longer than 63 bytes"
		case l[0] == '-' || l[len(l)-1] == '-':
			return "a label starts or ends with a hyphen"
		}
		for i := 0; i < len(l); i++ {
			b := l[i]
			if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || underscore && b == '_') {
				return fmt.Sprintf("%q is not allowed in a host name", string(b))
			}
		}
	}
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" {
		return "its last label is all digits"
	}
	return ""
}
