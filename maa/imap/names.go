package imap

import (
	"strings"
	"unicode/utf8"

	imapv2 "github.com/emersion/go-imap/v2"
)

// Delim is the hierarchy separator (RFC 9051 section 5.1.1).
const Delim = '/'

// Limits on mailbox names (the hazards list).
const (
	maxNameBytes  = 255
	maxNameLevels = 20
	// maxPatternBytes bounds a LIST pattern; longer ones match nothing.
	maxPatternBytes = 1024
)

// canonicalName makes INBOX and its children's first level upper case:
// INBOX is case-insensitive (RFC 9051 section 5.1), other names are not.
func canonicalName(name string) string {
	if len(name) >= 5 && strings.EqualFold(name[:5], "INBOX") && (len(name) == 5 || name[5] == Delim) {
		return "INBOX" + name[5:]
	}
	return name
}

// validName checks a mailbox name as the client sent it (already decoded
// from modified UTF-7 by the parser): valid UTF-8, no control characters,
// no wildcards, no empty levels, at most maxNameBytes and maxNameLevels.
func validName(name string) bool {
	if name == "" || len(name) > maxNameBytes || !utf8.ValidString(name) {
		return false
	}
	levels := 1
	prev := rune(Delim)
	for _, r := range name {
		switch {
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return false
		case r == '*' || r == '%':
			return false
		case r == Delim:
			if prev == Delim {
				return false // leading '/' or "//"
			}
			levels++
		}
		prev = r
	}
	return prev != Delim && levels <= maxNameLevels
}

// checkName returns the canonical name or a NO [CANNOT] error.
func checkName(name string) (string, error) {
	name = canonicalName(name)
	if !validName(name) {
		return "", &imapv2.Error{
			Type: imapv2.StatusResponseTypeNo,
			Code: imapv2.ResponseCodeCannot,
			Text: "Invalid mailbox name",
		}
	}
	return name, nil
}

// listPattern is a LIST pattern (reference and mailbox pattern combined,
// RFC 9051 section 6.3.9) compiled for matchName.
type listPattern struct {
	p string
}

func newListPattern(ref, pattern string) listPattern {
	full := pattern
	if ref != "" && !strings.HasPrefix(pattern, string(Delim)) {
		full = ref + pattern
	}
	return listPattern{p: canonicalName(full)}
}

// match reports whether name matches the pattern: '*' matches anything,
// '%' anything but the delimiter. It simulates the pattern as an NFA in
// O(len(name) * len(pattern)) time and O(len(pattern)) space, unlike a
// backtracking matcher, which is exponential in the number of wildcards.
//
// The INBOX part of a name (INBOX itself, or the first level of its
// children) matches case-insensitively, as Dovecot does: INBOX is
// case-insensitive (RFC 9051 section 5.1), so "inbox*" and "iN%" list
// it. Every other part of a name, and every other name, matches
// case-sensitively.
func (lp listPattern) match(name string) bool {
	return matchPattern(name, lp.p)
}

func matchPattern(name, p string) bool {
	if len(p) > maxPatternBytes {
		return false
	}
	fold := 0 // name[:fold] is INBOX's part: case-insensitive
	if strings.HasPrefix(name, "INBOX") && (len(name) == 5 || name[5] == Delim) {
		fold = 5
	}
	// cur[i]: the prefix consumed so far can be matched by p[:i].
	cur := make([]bool, len(p)+1)
	next := make([]bool, len(p)+1)
	cur[0] = true
	closeWildcards(cur, p)
	for k := 0; k < len(name); k++ {
		c := name[k]
		any := false
		for i := range next {
			next[i] = false
		}
		for i := 0; i < len(p); i++ {
			if !cur[i] {
				continue
			}
			switch p[i] {
			case '*':
				next[i] = true
			case '%':
				if c != Delim {
					next[i] = true
				}
			default:
				if p[i] == c || k < fold && asciiLower(p[i]) == asciiLower(c) {
					next[i+1] = true
				}
			}
		}
		closeWildcards(next, p)
		for _, v := range next {
			any = any || v
		}
		if !any {
			return false
		}
		cur, next = next, cur
	}
	return cur[len(p)]
}

func asciiLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// closeWildcards adds the epsilon moves: a wildcard may match nothing.
func closeWildcards(states []bool, p string) {
	for i := 0; i < len(p); i++ {
		if states[i] && (p[i] == '*' || p[i] == '%') {
			states[i+1] = true
		}
	}
}

// parentNames returns the ancestors of name ("a/b/c" -> "a", "a/b").
func parentNames(name string) []string {
	var out []string
	for i := 0; i < len(name); i++ {
		if name[i] == Delim {
			out = append(out, name[:i])
		}
	}
	return out
}
