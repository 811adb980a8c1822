package mta

import "testing"

// TestHeaderSplit: where the empty line that ends a header is missing,
// before the first line that is not a field or its continuation.
func TestHeaderSplit(t *testing.T) {
	for _, c := range []struct {
		msg  string
		want int
	}{
		{"From: a\r\nSubject: b\r\n\r\nbody\r\n", -1},
		{"From: a\r\nSubject: b\r\n", -1}, // all header
		{"From: a\r\nSubject: b\r\n folded\r\n\r\nbody\r\n", -1},
		{"From: a\r\nSubject: b\r\nbody without a blank line\r\n", 21},
		{"From: a\r\nbody: has a colon after a space\r\n", -1}, // a field, as far as anyone can tell
		{"From: a\r\nno colon here\r\nmore\r\n", 9},
		{"From: a\r\nSubject : b\r\nX-Tab\t: c\r\n\r\nbody\r\n", -1}, // obsolete WSP before the colon (RFC 5322 4.5)
		{"From: a\r\nSubject  \r\n", 9},                              // WSP but no colon
		{" folded first\r\nFrom: a\r\n", 0},
		{"From: a\r\n:empty name\r\n", 9},
	} {
		if got := headerSplit([]byte(c.msg)); got != c.want {
			t.Errorf("headerSplit(%q) = %d, want %d", c.msg, got, c.want)
		}
	}
}
