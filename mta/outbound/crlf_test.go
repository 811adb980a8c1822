package outbound

import (
	"bufio"
	"strings"
	"testing"
)

func TestToCRLF(t *testing.T) {
	for in, want := range map[string]string{
		"a\r\nb\r\n":                "a\r\nb\r\n",
		"a\nb\n":                    "a\r\nb\r\n",
		"a\rb":                      "a\r\nb",
		"x\r\n.\nMAIL FROM:<a>\r\n": "x\r\n.\r\nMAIL FROM:<a>\r\n",
		"\n\r":                      "\r\n\r\n",
	} {
		if got := string(toCRLF([]byte(in))); got != want {
			t.Errorf("toCRLF(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	q := &Queue{RetryInitial: 1, RetryMax: 8}
	for n, want := range map[int]int64{1: 1, 2: 2, 3: 4, 4: 8, 5: 8, 50: 8} {
		if got := q.backoff(n); int64(got) != want {
			t.Errorf("backoff(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestReadReplyBounded(t *testing.T) {
	for _, in := range []string{"250-a\r\n250 b\r\n", "220 x\r\n"} {
		if _, _, err := readReply(bufioReader(in)); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
	long := "250 " + string(make([]byte, 5000)) + "\r\n"
	for _, in := range []string{"25\r\n", "abc x\r\n", long, "250x\r\n"} {
		if _, _, err := readReply(bufioReader(in)); err == nil {
			t.Errorf("%q accepted", in[:min(len(in), 20)])
		}
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"250-a\r\n250 b\r\n", "220 x\r\n", "25\r\n", "250-\r\n", "550 5.1.1 no\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		code, lines, err := readReply(bufioReader(in))
		if err == nil && (code < 200 || code > 599 || len(lines) == 0 || len(lines) > maxReplyLines) {
			t.Fatalf("readReply(%q) = %d, %d lines", in, code, len(lines))
		}
		if err == nil {
			replyError(code, lines)
		}
	})
}

func FuzzToCRLF(f *testing.F) {
	for _, s := range []string{"a\r\nb", "a\nb", "a\rb", "\r\r\n\n", ".\n.\r"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := toCRLF(in)
		for i, c := range out {
			if c == '\r' && (i+1 == len(out) || out[i+1] != '\n') || c == '\n' && (i == 0 || out[i-1] != '\r') {
				t.Fatalf("toCRLF(%q) = %q has a bare CR or LF", in, out)
			}
		}
	})
}
