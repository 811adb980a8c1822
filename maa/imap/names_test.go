package imap

import (
	"strings"
	"testing"
	"time"
)

// backtrackMatch is the obvious recursive matcher, used as an oracle on
// short inputs only (it is exponential in the number of wildcards). As
// matchPattern, it compares the INBOX part of a name (INBOX, or the first
// level of its children) without case, as Dovecot does.
func backtrackMatch(name, p string) bool {
	fold := 0
	if strings.HasPrefix(name, "INBOX") && (len(name) == 5 || name[5] == Delim) {
		fold = 5
	}
	return backtrack(name, 0, p, fold)
}

// backtrack matches name[k:] against p; name[:fold] compares without case.
func backtrack(name string, k int, p string, fold int) bool {
	if p == "" {
		return k == len(name)
	}
	switch p[0] {
	case '*':
		for i := k; i <= len(name); i++ {
			if backtrack(name, i, p[1:], fold) {
				return true
			}
		}
		return false
	case '%':
		for i := k; i <= len(name); i++ {
			if i > k && name[i-1] == Delim {
				break
			}
			if backtrack(name, i, p[1:], fold) {
				return true
			}
		}
		return false
	}
	if k == len(name) {
		return false
	}
	same := name[k] == p[0] || k < fold && asciiLower(name[k]) == asciiLower(p[0])
	return same && backtrack(name, k+1, p[1:], fold)
}

func TestListPattern(t *testing.T) {
	cases := []struct {
		ref, pattern, name string
		want               bool
	}{
		{"", "*", "INBOX", true},
		{"", "*", "a/b/c", true},
		{"", "%", "a", true},
		{"", "%", "a/b", false},
		{"", "a/%", "a/b", true},
		{"", "a/%", "a/b/c", false},
		{"", "a/*", "a/b/c", true},
		{"a/", "%", "a/b", true},
		{"a/", "%", "b", false},
		{"", "inbox", "INBOX", true},
		{"", "Inbox/%", "INBOX/x", true},
		{"", "Sent", "sent", false},
		{"", "S%t", "Sent", true},
		{"", "%/%", "a/b", true},
		{"", "", "", true},
	}
	for _, c := range cases {
		if got := newListPattern(c.ref, c.pattern).match(c.name); got != c.want {
			t.Errorf("ref %q pattern %q name %q: got %v, want %v", c.ref, c.pattern, c.name, got, c.want)
		}
	}
}

// TestListPatternLinear is the hazard: imapserver.MatchList takes
// minutes on a 60-character name with 9 wildcards.
func TestListPatternLinear(t *testing.T) {
	name := strings.Repeat("a", 60)
	pattern := strings.Repeat("*a", 9) + "b"
	start := time.Now()
	for i := 0; i < 100; i++ {
		if newListPattern("", pattern).match(name) {
			t.Fatal("matched")
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("100 matches took %v", d)
	}
	long := strings.Repeat("%*", 500)
	if !newListPattern("", long).match(strings.Repeat("x", 255)) {
		t.Fatal("long pattern should match")
	}
}

func TestValidName(t *testing.T) {
	good := []string{"INBOX", "a", "a/b", "Entwürfe", "x y", strings.Repeat("a", 255),
		strings.Repeat("a/", 19) + "a"}
	bad := []string{"", "/a", "a/", "a//b", "a\x00b", "a\rb", "a\nb", "a*", "a%b", "\x7f",
		strings.Repeat("a", 256), strings.Repeat("a/", 20) + "a", "\xff\xfe", "a\u0085"}
	for _, n := range good {
		if !validName(n) {
			t.Errorf("%q should be valid", n)
		}
	}
	for _, n := range bad {
		if validName(n) {
			t.Errorf("%q should be invalid", n)
		}
	}
	if got := canonicalName("inbox/Sub"); got != "INBOX/Sub" {
		t.Errorf("canonicalName = %q", got)
	}
	if got := canonicalName("inboxes"); got != "inboxes" {
		t.Errorf("canonicalName = %q", got)
	}
}

func FuzzListMatch(f *testing.F) {
	f.Add("a/b/c", "a/%/c")
	f.Add("INBOX", "*")
	f.Add("aaaaaaaaaaaaaaaaaaaa", "*a*a*a*a*a*b")
	f.Add("x/y", "%")
	f.Add("INBOX", "%x") // INBOX's part compares without case
	f.Add("INBOX/Sub", "inbox/%")
	f.Fuzz(func(t *testing.T, name, pattern string) {
		got := matchPattern(name, pattern)
		wild := strings.Count(pattern, "*") + strings.Count(pattern, "%")
		if len(name) <= 16 && len(pattern) <= 16 && wild <= 6 {
			if want := backtrackMatch(name, pattern); got != want {
				t.Fatalf("matchPattern(%q, %q) = %v, backtracking says %v", name, pattern, got, want)
			}
		}
	})
}

func FuzzMailboxName(f *testing.F) {
	f.Add("INBOX/Sub")
	f.Add("a//b")
	f.Add("&AOQ-")
	f.Fuzz(func(t *testing.T, name string) {
		c, err := checkName(name)
		if err != nil {
			return
		}
		if !validName(c) || len(c) > maxNameBytes || strings.ContainsAny(c, "\x00\r\n*%") ||
			strings.HasPrefix(c, "/") || strings.HasSuffix(c, "/") || strings.Contains(c, "//") {
			t.Fatalf("checkName accepted %q", c)
		}
		if strings.EqualFold(c, "INBOX") && c != "INBOX" {
			t.Fatalf("INBOX not canonical: %q", c)
		}
	})
}

// TestMatchPatternExhaustive compares matchPattern with backtrackMatch on
// every pattern of up to four bytes over an alphabet that exercises
// INBOX's case, wildcards and the delimiter, against names in and out of
// INBOX.
func TestMatchPatternExhaustive(t *testing.T) {
	names := []string{"INBOX", "INBOX/a", "INBOX/X", "INBOXa", "Inbox", "inbox/a", "a/INBOX", "ax", "x", ""}
	alphabet := "iInNxXa%*/"
	var patterns []string
	var gen func(p string)
	gen = func(p string) {
		patterns = append(patterns, p)
		if len(p) == 4 {
			return
		}
		for i := range len(alphabet) {
			gen(p + alphabet[i:i+1])
		}
	}
	gen("")
	for _, n := range names {
		for _, p := range patterns {
			if got, want := matchPattern(n, p), backtrackMatch(n, p); got != want {
				t.Fatalf("matchPattern(%q, %q) = %v, backtracking says %v", n, p, got, want)
			}
		}
	}
}
