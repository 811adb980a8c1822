package store

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Limits on mailbox names. RFC 9051 section 5.1 leaves them to the server;
// these are generous for clients and keep keys small.
const (
	maxMailboxNameLen    = 255
	maxMailboxNameLevels = 20
)

// normalizeAddress lower-cases an address and checks its syntax:
// "local@domain" with a dot-atom-like local part (UTF-8 allowed for
// SMTPUTF8, RFC 6531 section 3.3) and an LDH domain.
func normalizeAddress(address string) (string, error) {
	a := strings.ToLower(strings.TrimSpace(address))
	local, domain, ok := strings.Cut(a, "@")
	if !ok || !validLocalPart(local) || !validDomain(domain) {
		return "", fmt.Errorf("address %q: %w", address, ErrInvalidName)
	}
	return a, nil
}

// normalizeTarget is normalizeAddress for an alias target, which may be
// another host's address, with '%' or '!' in its local part.
func normalizeTarget(address string) (string, error) {
	a := strings.ToLower(strings.TrimSpace(address))
	local, domain, ok := strings.Cut(a, "@")
	if !ok || !validLocalPart(strings.NewReplacer("%", "_", "!", "_").Replace(local)) || !validDomain(domain) {
		return "", fmt.Errorf("address %q: %w", address, ErrInvalidName)
	}
	return a, nil
}

// normalizeDomain lower-cases a domain name and checks its syntax.
func normalizeDomain(name string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	if !validDomain(d) {
		return "", fmt.Errorf("domain %q: %w", name, ErrInvalidName)
	}
	return d, nil
}

// normalizeAliasAddress accepts an address or "@domain" (a catch-all).
func normalizeAliasAddress(address string) (string, error) {
	a := strings.ToLower(strings.TrimSpace(address))
	if strings.HasPrefix(a, "@") {
		if !validDomain(a[1:]) {
			return "", fmt.Errorf("alias %q: %w", address, ErrInvalidName)
		}
		return a, nil
	}
	return normalizeAddress(a)
}

// addressDomain returns the domain of a normalized address or "@domain".
func addressDomain(a string) string {
	_, d, _ := strings.Cut(a, "@")
	return d
}

// validLocalPart accepts RFC 5322 dot-atom text (section 3.2.3) plus
// UTF-8 (RFC 6532 section 3.2), at most 64 octets (RFC 5321 4.5.3.1.1),
// minus '%' and '!': delivery never routes on them (see package mda), so
// an account or alias so named could never get mail.
func validLocalPart(s string) bool {
	if s == "" || len(s) > 64 || !utf8.ValidString(s) {
		return false
	}
	if s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 0x80:
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("#$&'*+-/=?^_`{|}~.", r):
		default:
			return false
		}
	}
	return true
}

// validDomain accepts LDH labels (RFC 1035 section 2.3.1, RFC 1123
// section 2.1), at most 253 octets.
func validDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// canonicalMailboxName makes the INBOX part of a name canonical: INBOX is
// case-insensitive (RFC 9051 section 5.1), and so is the first level of
// its children.
func canonicalMailboxName(name string) string {
	first, rest, hasRest := strings.Cut(name, "/")
	if strings.EqualFold(first, "INBOX") {
		if hasRest {
			return "INBOX/" + rest
		}
		return "INBOX"
	}
	return name
}

// checkMailboxName canonicalizes and validates a mailbox name: UTF-8, no
// control characters, no empty hierarchy level, no LIST wildcards
// (RFC 9051 section 6.3.9), bounded length and depth.
func checkMailboxName(name string) (string, error) {
	n := canonicalMailboxName(name)
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("mailbox name %q %s: %w", name, why, ErrInvalidName)
	}
	switch {
	case n == "":
		return bad("is empty")
	case len(n) > maxMailboxNameLen:
		return bad("is too long")
	case !utf8.ValidString(n):
		return bad("is not UTF-8")
	case strings.Count(n, "/") >= maxMailboxNameLevels:
		return bad("has too many levels")
	}
	for _, level := range strings.Split(n, "/") {
		if level == "" {
			return bad("has an empty level")
		}
	}
	for _, r := range n {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '*' || r == '%' {
			return bad("contains a forbidden character")
		}
	}
	return n, nil
}

// systemFlags maps lower-cased system flags to their canonical spelling
// (RFC 9051 section 2.3.2). \Recent is not storable in IMAP4rev2.
var systemFlags = map[string]string{
	`\seen`:     `\Seen`,
	`\answered`: `\Answered`,
	`\flagged`:  `\Flagged`,
	`\deleted`:  `\Deleted`,
	`\draft`:    `\Draft`,
}

// normalizeFlags returns flags sorted and deduplicated (case-insensitively,
// as IMAP compares flags), with system flags in canonical case. \Recent
// and empty or malformed flags are dropped.
func normalizeFlags(flags []string) []string {
	if len(flags) == 0 {
		return nil
	}
	seen := make(map[string]bool, len(flags))
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		lf := strings.ToLower(f)
		if c, ok := systemFlags[lf]; ok {
			f = c
		} else if lf == `\recent` || !validFlag(f) {
			continue
		}
		if !seen[lf] {
			seen[lf] = true
			out = append(out, f)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil
	}
	return out
}

// ValidKeyword says whether s is an IMAP keyword (RFC 9051 section 9,
// flag-keyword): an atom, not a backslash flag.
func ValidKeyword(s string) bool { return s != "" && s[0] != '\\' && validFlag(s) }

// validFlag accepts an atom (RFC 9051 section 9, flag-keyword) or a
// backslash flag.
func validFlag(f string) bool {
	if f == "" || len(f) > 255 {
		return false
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"]`, c) >= 0 || (c == '\\' && i > 0) {
			return false
		}
	}
	return true
}

func hasFlag(flags []string, flag string) bool {
	for _, f := range flags {
		if f == flag {
			return true
		}
	}
	return false
}
