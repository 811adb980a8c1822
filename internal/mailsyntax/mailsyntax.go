// Package mailsyntax has the scanning steps of RFC 5322 header syntax
// that the store's lenient address parser and the inbound checks' parser
// of Authentication-Results both take.
package mailsyntax

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
