package hostile

import (
	"fmt"
	"testing"
)

// TestEHLOControlCharacters sends HELO/EHLO arguments with control
// characters (NUL, ESC, DEL, bare CR, other C0) to ports 25 and 587. Each
// gets a permanent syntax error (5xx; RFC 5321 section 4.1.1.1 allows a
// domain or address literal only), never a 250, so such a name can never
// reach a Received: header; and a good EHLO works afterwards on the same
// connection, unless the server chose to close it.
//
// Memory budget: none beyond a connection's normal cost.
func TestEHLOControlCharacters(t *testing.T) {
	env := start(t, nil)
	bad := []string{
		"EHLO foo\x00bar.example",
		"EHLO a\x1b[31mred.example",
		"EHLO \x7f.example",
		"EHLO foo\rbar.example",
		"HELO x\x01y.example",
		"EHLO \x00",
	}
	for _, listener := range []string{"smtp", "submission"} {
		for i, cmd := range bad {
			t.Run(fmt.Sprintf("%s/%d", listener, i), func(t *testing.T) {
				tc := dial(t, env.Addr(listener))
				tc.expectSMTP(220)
				tc.write(cmd + "\r\n")
				code, lines := tc.smtpReply()
				if code < 500 || code > 599 {
					t.Fatalf("%q: want a 5xx reply, got %q", cmd, lines)
				}
				tc.write("EHLO good.example\r\n")
				l, err := tc.readLine()
				if err != nil {
					t.Logf("%q: connection closed after the 5xx: %v", cmd, err)
					return
				}
				if len(l) < 3 || l[:3] != "250" {
					t.Errorf("good EHLO after %q: %q", cmd, l)
				}
			})
		}
	}
}
