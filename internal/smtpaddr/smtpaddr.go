// Package smtpaddr writes mail addresses as they must appear on the wire
// and in header fields.
//
// go-smtp's server gives the local part of MAIL FROM and RCPT TO with
// the quotes of a Quoted-string taken off ("john doe"@example.org comes
// as john doe@example.org). Written back as it is, in a Return-Path, a
// MAIL FROM to another server or a DSN, that is not an address.
package smtpaddr

import "strings"

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
