package mailsyntax

import "testing"

func TestSkip(t *testing.T) {
	for _, c := range []struct {
		s    string
		at   int
		want int
		f    func(string, int) int
	}{
		{`"a\"b" x`, 0, 5, SkipQuoted},
		{`"open`, 0, 5, SkipQuoted},
		{`x "" y`, 2, 3, SkipQuoted},
		{`(a (b) \) c) d`, 0, 11, SkipComment},
		{`(open (nested)`, 0, 14, SkipComment},
		{`()`, 0, 1, SkipComment},
	} {
		if got := c.f(c.s, c.at); got != c.want {
			t.Errorf("%q at %d: %d, want %d", c.s, c.at, got, c.want)
		}
	}
}
