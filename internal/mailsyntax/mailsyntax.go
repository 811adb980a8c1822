// Package mailsyntax has the scanning steps of RFC 5322 header syntax
// that several components take: the store's lenient address parser, the
// inbound checks (Authentication-Results, DKIM-Signature and From fields)
// and submission (Bcc: removal).
package mailsyntax

import (
	"bytes"
	"net/textproto"
	"strings"
)

// HeaderLen returns the length of the header of msg up to the end of its
// last field's line, not counting the empty line after it: 0 when msg
// starts with the empty line, len(msg) when there is none.
func HeaderLen(msg []byte) int {
	if bytes.HasPrefix(msg, []byte("\r\n")) {
		return 0
	}
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return i + 2
	}
	return len(msg)
}

// HeaderFields splits a header into its fields, each with its
// continuation lines and line ends.
func HeaderFields(hdr []byte) [][]byte {
	var out [][]byte
	for len(hdr) > 0 {
		n := lineEnd(hdr, 0)
		for n < len(hdr) && (hdr[n] == ' ' || hdr[n] == '\t') {
			n = lineEnd(hdr, n)
		}
		out = append(out, hdr[:n])
		hdr = hdr[n:]
	}
	return out
}

// Fields returns the fields of a header by name, as mail readers take
// them: the name without the white space the obsolete syntax allows
// before the colon (RFC 5322 section 4.5), in canonical form
// (textproto.CanonicalMIMEHeaderKey), the value unfolded and trimmed. A
// line without a colon is no field. Go's net/mail and net/textproto
// refuse such a header, or keep "From " apart from "From".
func Fields(hdr []byte) map[string][]string {
	out := map[string][]string{}
	for _, f := range HeaderFields(hdr) {
		name, value, ok := FieldName(f)
		if !ok || len(name) == 0 {
			continue
		}
		value = bytes.ReplaceAll(bytes.ReplaceAll(value, []byte("\r\n"), nil), []byte("\n"), nil)
		key := textproto.CanonicalMIMEHeaderKey(string(name))
		out[key] = append(out[key], strings.TrimSpace(string(value)))
	}
	return out
}

// FieldName splits a header field (as HeaderFields gives it) at its
// colon: the name without the white space the obsolete syntax allows
// before the colon (RFC 5322 section 4.5), and the value as it is. ok is
// false when there is no colon.
func FieldName(f []byte) (name, value []byte, ok bool) {
	name, value, ok = bytes.Cut(f, []byte(":"))
	return bytes.TrimRight(name, " \t"), value, ok
}

// ValidFieldName: a field name of RFC 5322 section 2.2, printable ASCII
// but the colon (which FieldName has cut off).
func ValidFieldName(name []byte) bool {
	for _, c := range name {
		if c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return len(name) > 0
}

// lineEnd returns the index after the line of b that starts at i.
func lineEnd(b []byte, i int) int {
	if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(b)
}

// SkipQuoted returns the index of the quote that closes the quoted string
// opening at s[i] (quoted pairs skipped), or len(s) if it is not closed.
func SkipQuoted(s string, i int) int {
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return len(s)
}

// SkipComment returns the index of the parenthesis that closes the
// comment opening at s[i] (comments nest, RFC 5322 section 3.2.2; quoted
// pairs are skipped), or len(s) if it is not closed.
func SkipComment(s string, i int) int {
	depth := 0
	for ; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				return i
			}
		}
	}
	return len(s)
}

// StripComments returns s without its comments (outside quoted strings),
// each replaced by a space, and trimmed: the value of a structured field
// (RFC 5322 section 3.2.2, RFC 2045 section 3).
func StripComments(s string) string {
	if !strings.Contains(s, "(") {
		return strings.TrimSpace(s)
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			j := SkipQuoted(s, i)
			b.WriteString(s[i:min(j+1, len(s))])
			i = j
		case '(':
			i = SkipComment(s, i)
			b.WriteByte(' ')
		case '\\':
			b.WriteString(s[i:min(i+2, len(s))])
			i++
		default:
			b.WriteByte(s[i])
		}
	}
	return strings.TrimSpace(b.String())
}

// TransferEncoding is the mechanism a Content-Transfer-Encoding field
// names, lower case, without comments ("base64 (encoded)" is base64).
func TransferEncoding(v string) string {
	return strings.ToLower(StripComments(v))
}

// Hops counts the Received fields of the header of msg (RFC 5321 section
// 6.3: a count over a large threshold means a routing loop). It scans
// the field names in place, allocating nothing.
func Hops(msg []byte) int {
	const name = "received"
	hdr := msg[:HeaderLen(msg)]
	n := 0
	for i := 0; i < len(hdr); i = lineEnd(hdr, i) {
		rest := hdr[i:]
		if len(rest) <= len(name) || !bytes.EqualFold(rest[:len(name)], []byte(name)) {
			continue
		}
		j := len(name)
		for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t') {
			j++
		}
		if j < len(rest) && rest[j] == ':' {
			n++
		}
	}
	return n
}
