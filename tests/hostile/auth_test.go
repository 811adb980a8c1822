package hostile

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/auth"
	"github.com/posthorn/posthorn/harness"
)

// loginOnce runs one IMAP LOGIN on tc and returns how long the answer
// took and whether it was OK.
func loginOnce(t *testing.T, tc *textConn, tag, user, pass string) (time.Duration, string) {
	t.Helper()
	t0 := time.Now()
	tc.write(fmt.Sprintf("%s LOGIN %q %q\r\n", tag, user, pass))
	lines := tc.imapUntil(tag)
	return time.Since(t0), lines[len(lines)-1]
}

func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

// TestAUTHTimingUnknownUser compares the time of a failed LOGIN for an
// unknown user (of our domain and of another domain) with that of a wrong
// password for a real user: an attacker must not learn which accounts
// exist. The limiter's delays are turned off so only the password check
// is timed; samples are interleaved and medians compared.
//
// Memory budget: none beyond normal logins (argon2id's memory is the
// auth package's concern).
func TestAUTHTimingUnknownUser(t *testing.T) {
	env := start(t, nil)
	l := env.Server.Auth.Limiter
	l.Free, l.RefuseAfter = 1<<30, 1<<30 // set before any login: no delays

	cases := []string{harness.User, "nobody@" + harness.Domain, "nobody@unknown.test"}
	conns := make([]*textConn, len(cases))
	for i := range conns {
		conns[i] = dial(t, env.Addr("imap"))
		conns[i].deadline(5 * time.Minute)
		conns[i].line()
	}
	samples := size(15, 5)
	times := make([][]time.Duration, len(cases))
	for s := -1; s < samples; s++ { // one round of warm-up
		for i, user := range cases {
			d, resp := loginOnce(t, conns[i], fmt.Sprintf("T%d", s+1), user, "wrong password")
			if !strings.Contains(resp, " NO") {
				t.Fatalf("LOGIN %s with a wrong password: %q", user, resp)
			}
			if s >= 0 {
				times[i] = append(times[i], d)
			}
		}
	}
	ref := median(times[0])
	for i := 1; i < len(cases); i++ {
		m := median(times[i])
		diff := m - ref
		if diff < 0 {
			diff = -diff
		}
		t.Logf("median LOGIN failure: wrong password %v, %s %v", ref, cases[i], m)
		if diff > max(ref, m)/4 && diff > 5*time.Millisecond {
			t.Errorf("LOGIN for %s fails in %v, a wrong password in %v: the difference tells which accounts exist", cases[i], m, ref)
		}
	}
}

// TestPasswordGuessingOtherAddress makes 100 wrong-password logins for the
// harness user from 127.0.0.1 (IMAP and POP3 alternately), while the same
// user from 127.0.0.2 can still log in, and the guessing address is
// refused even with the right password once throttled. The limiter's
// delays are shortened so the test is quick; its thresholds are the
// defaults.
//
// Memory budget: twice argon2id's memory for one login (the hash's
// buffer, and as much again of garbage not yet collected at GOGC=100)
// plus 16 MiB: logins are sequential here and the limiter's tables are
// bounded, so 102 logins cost no more than one.
func TestPasswordGuessingOtherAddress(t *testing.T) {
	env := start(t, nil)
	l := env.Server.Auth.Limiter
	l.BaseDelay, l.MaxDelay = 5*time.Millisecond, 40*time.Millisecond
	loginPeak := 2 * uint64(auth.DefaultParams.Memory) << 10
	mem := watchMem()

	refused := 0
	for i := 0; i < 100; i++ {
		if i%2 == 0 {
			resp := imapLogin1(t, env, "127.0.0.1", harness.User, fmt.Sprintf("guess %d", i))
			if strings.Contains(resp, "G OK") {
				t.Fatalf("a wrong password logged in: %q", resp)
			}
			if strings.Contains(resp, "UNAVAILABLE") || strings.Contains(strings.ToLower(resp), "try again") {
				refused++
			}
			continue
		}
		if pop3Login(t, env, "127.0.0.1", harness.User, fmt.Sprintf("guess %d", i)) {
			t.Fatalf("a wrong POP3 password logged in")
		}
	}
	t.Logf("of 50 IMAP guesses, %d were refused as throttled", refused)

	// Another address logs in at once (within the account's longest delay).
	within(t, "login from 127.0.0.2 during the attack", 2*time.Second, func() {
		if resp := imapLogin1(t, env, "127.0.0.2", harness.User, harness.Password); !strings.Contains(resp, "G OK") {
			t.Errorf("the right password from 127.0.0.2 was refused: %q", resp)
		}
	})
	// The guessing address is refused even with the right password.
	if resp := imapLogin1(t, env, "127.0.0.1", harness.User, harness.Password); strings.Contains(resp, "G OK") {
		t.Errorf("127.0.0.1 logged in right after 100 wrong passwords: the limiter does not limit")
	}
	mem.check(t, "password guessing", loginPeak+16<<20)
}

// imapLogin1 tries one LOGIN on a new connection from a local address and
// returns the tagged response ("" if the server closed the connection).
func imapLogin1(t *testing.T, env *harness.Env, local, user, pass string) string {
	t.Helper()
	tc := dialFrom(t, local, env.Addr("imap"))
	defer tc.c.Close()
	tc.deadline(time.Minute)
	tc.line()
	tc.write(fmt.Sprintf("G LOGIN %q %q\r\n", user, pass))
	for {
		l, err := tc.readLine()
		if err != nil {
			return ""
		}
		if strings.HasPrefix(l, "G ") {
			return l
		}
	}
}

// pop3Login tries USER/PASS from a local address and reports success.
func pop3Login(t *testing.T, env *harness.Env, local, user, pass string) bool {
	t.Helper()
	tc := dialFrom(t, local, env.Addr("pop3"))
	defer tc.c.Close()
	tc.deadline(time.Minute)
	tc.line()
	tc.write("USER " + user + "\r\n")
	if l := tc.line(); !strings.HasPrefix(l, "+OK") {
		return false
	}
	tc.write("PASS " + pass + "\r\n")
	l := tc.line()
	tc.write("QUIT\r\n")
	return strings.HasPrefix(l, "+OK")
}
