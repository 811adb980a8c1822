package hostile

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/harness"
)

// TestLISTWildcards matches patterns full of * and % against long
// mailbox names. A backtracking matcher (go-imap v2 beta.8's MatchList)
// is exponential in the wildcards and runs for minutes on a 60-character
// name with 9 of them; each LIST here must answer within 2 s.
//
// Memory budget: 16 MiB of growth.
func TestLISTWildcards(t *testing.T) {
	env := start(t, nil)
	long := strings.Repeat("a", 200)
	deep := strings.TrimSuffix(strings.Repeat("aaaaaaaaa/", 19), "/")
	for _, name := range []string{long, deep, "a" + strings.Repeat("ab", 60)} {
		if _, err := env.Server.Store.CreateMailbox(harness.User, name, ""); err != nil {
			t.Fatalf("create %.20q...: %v", name, err)
		}
	}
	tc := imapLogin(t, env)
	tc.deadline(time.Minute)
	mem := watchMem()
	patterns := []string{
		strings.Repeat("*a", 12) + "*c",
		strings.Repeat("%a", 12) + "%c",
		strings.Repeat("*%", 20) + "j",
		strings.Repeat("a*", 30) + "z",
		strings.Repeat("*", 200) + "q",
		strings.Repeat("*a*/", 10) + "*b",
	}
	for i, p := range patterns {
		tag := fmt.Sprintf("P%d", i)
		within(t, fmt.Sprintf("LIST pattern %d (%d wildcards)", i, strings.Count(p, "*")+strings.Count(p, "%")), 2*time.Second, func() {
			lines := tc.imapOK(tag, `LIST "" "`+p+`"`)
			if len(lines) != 1 {
				t.Errorf("pattern %d matches nothing, but LIST returned %q", i, lines[:len(lines)-1])
			}
		})
	}
	// A pattern that does match the long names still works.
	lines := tc.imapOK("M", `LIST "" "*a*a*a*a*a*a*a*a*a*a"`)
	if len(lines) < 3 {
		t.Errorf("LIST *a*a...: want the long mailboxes, got %q", lines)
	}
	mem.check(t, "LIST wildcards", 16<<20)
}
