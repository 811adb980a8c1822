package auth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/store"
)

// fakeStore implements the one Store method auth calls; the embedded nil
// interface panics if anything else is used.
type fakeStore struct {
	store.Store
	mu       sync.Mutex
	accounts map[string]store.Account
	err      error // returned by Account when set
}

func (f *fakeStore) Account(addr string) (store.Account, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return store.Account{}, f.err
	}
	a, ok := f.accounts[addr]
	if !ok {
		return store.Account{}, store.ErrNoSuchAccount
	}
	return a, nil
}

func newFake(t *testing.T, p Params, users map[string]string) *fakeStore {
	t.Helper()
	f := &fakeStore{accounts: map[string]store.Account{}}
	for addr, pw := range users {
		h, err := HashPasswordParams(pw, p)
		if err != nil {
			t.Fatal(err)
		}
		f.accounts[addr] = store.Account{Address: addr, PasswordHash: h}
	}
	return f
}

var client = &net.TCPAddr{IP: net.ParseIP("192.0.2.55"), Port: 40000}

func TestAuthenticate(t *testing.T) {
	f := newFake(t, TestParams, map[string]string{"alice@example.test": "s3cret", "carol@example.test": "pw",
		"jörg@xn--bcher-kva.test": "pw-jörg"})
	c := f.accounts["carol@example.test"]
	c.Disabled = true
	f.accounts["carol@example.test"] = c
	a := New(f, nil)
	a.Limiter, _ = newTestLimiter()
	ctx := context.Background()

	got, err := a.Authenticate(ctx, client, "  Alice@Example.TEST ", "s3cret")
	if err != nil || got != "alice@example.test" {
		t.Fatalf("good login: %q, %v", got, err)
	}
	// The domain as its user sees it (U-labels) is the one the store
	// keeps in A-labels (probe 8: such logins failed everywhere).
	for _, user := range []string{"jörg@bücher.test", "JÖRG@Bücher.TEST", "jörg@xn--bcher-kva.test"} {
		if got, err := a.Authenticate(ctx, client, user, "pw-jörg"); err != nil || got != "jörg@xn--bcher-kva.test" {
			t.Errorf("login as %q: %q, %v", user, got, err)
		}
	}
	for _, c := range []struct{ user, pw string }{
		{"alice@example.test", "S3cret"},
		{"alice@example.test", ""},
		{"nobody@example.test", "s3cret"},
		{"alice@other.test", "s3cret"},
		{"", ""},
		{"carol@example.test", "pw"}, // disabled, right password
	} {
		got, err := a.Authenticate(ctx, &net.TCPAddr{IP: net.ParseIP("198.51.100.1")}, c.user, c.pw)
		if !errors.Is(err, ErrInvalidCredentials) || got != "" {
			t.Errorf("Authenticate(%q, %q) = %q, %v; want ErrInvalidCredentials", c.user, c.pw, got, err)
		}
	}
}

func TestAuthenticateStoreError(t *testing.T) {
	f := newFake(t, TestParams, nil)
	f.err = errors.New("disk on fire")
	a := New(f, nil)
	_, err := a.Authenticate(context.Background(), client, "alice@example.test", "pw")
	if err == nil || errors.Is(err, ErrInvalidCredentials) || errors.Is(err, ErrThrottled) {
		t.Fatalf("store failure: %v; want an internal error", err)
	}
	// A corrupt stored hash is an internal error too, not a wrong password.
	f.err = nil
	f.accounts = map[string]store.Account{"alice@example.test": {Address: "alice@example.test", PasswordHash: "garbage"}}
	_, err = a.Authenticate(context.Background(), client, "alice@example.test", "pw")
	if err == nil || errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("corrupt hash: %v", err)
	}
}

func TestAuthenticateThrottles(t *testing.T) {
	f := newFake(t, TestParams, map[string]string{"alice@example.test": "s3cret"})
	a := New(f, nil)
	l, clock := newTestLimiter()
	a.Limiter = l
	ctx := context.Background()
	for range l.RefuseAfter {
		if _, err := a.Authenticate(ctx, client, "alice@example.test", "guess"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("guess: %v", err)
		}
	}
	if want := []time.Duration{1, 2, 4, 8, 8, 8, 8}; len(clock.slept) != len(want) {
		t.Fatalf("slept %v, want %d growing delays", clock.slept, len(want))
	}
	// Refused now, even with the right password, but only from this IP.
	if _, err := a.Authenticate(ctx, client, "alice@example.test", "s3cret"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("after %d failures: %v, want ErrThrottled", l.RefuseAfter, err)
	}
	other := &net.TCPAddr{IP: net.ParseIP("198.51.100.1")}
	if got, err := a.Authenticate(ctx, other, "alice@example.test", "s3cret"); err != nil || got != "alice@example.test" {
		t.Fatalf("from another IP: %q, %v", got, err)
	}
	clock.Advance(l.RefuseFor)
	if _, err := a.Authenticate(ctx, client, "alice@example.test", "s3cret"); err != nil {
		t.Fatalf("after RefuseFor: %v", err)
	}
}

func TestAuthenticateDelayCancelled(t *testing.T) {
	f := newFake(t, TestParams, map[string]string{"alice@example.test": "s3cret"})
	a := New(f, nil)
	a.Limiter.BaseDelay = time.Hour
	for range a.Limiter.Free {
		a.Authenticate(context.Background(), client, "alice@example.test", "guess")
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	_, err := a.Authenticate(ctx, client, "alice@example.test", "s3cret")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled during delay: %v", err)
	}
}

// TestTimingUnknownVsWrong checks that an unknown user costs what a wrong
// password costs: without the dummy hash check the unknown user would be
// answered in microseconds.
func TestTimingUnknownVsWrong(t *testing.T) {
	p := Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	f := newFake(t, p, map[string]string{"alice@example.test": "s3cret"})
	a := New(f, nil)
	a.Limiter = nil
	ctx := context.Background()
	// One real check teaches the dummy the parameters in use.
	a.Authenticate(ctx, client, "alice@example.test", "warm-up")
	measure := func(user string) time.Duration {
		start := time.Now()
		if _, err := a.Authenticate(ctx, client, user, "guess"); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	// The machine is shared: a round disturbed by other load is repeated.
	// Without the dummy check the ratio would be about 0.01.
	for round := 1; ; round++ {
		var unknown, wrong []time.Duration
		for range 21 {
			unknown = append(unknown, measure("nobody@example.test"))
			wrong = append(wrong, measure("alice@example.test"))
		}
		mu, mw := median(unknown), median(wrong)
		t.Logf("round %d: median unknown %v, wrong password %v", round, mu, mw)
		if mu >= mw/2 && mu <= mw*2 {
			return
		}
		if round == 3 {
			t.Fatalf("unknown user %v vs wrong password %v: timing differs", mu, mw)
		}
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestFailedLoginLogLine: one log line says who failed to log in, from
// where, over which protocol and why, for every way of logging in, and
// holds no password.
func TestFailedLoginLogLine(t *testing.T) {
	var logs bytes.Buffer
	f := newFake(t, TestParams, map[string]string{"alice@example.test": "s3cret"})
	a := New(f, slog.New(slog.NewTextHandler(&logs, nil)))
	a.Limiter, _ = newTestLimiter()
	p := a.For("pop3")
	ctx := context.Background()
	p.Authenticate(ctx, client, "alice@example.test", "guess-one")
	p.PlainServer(client, nil).Next([]byte("\x00alice@example.test\x00guess-two"))
	l := p.LoginServerContext(ctx, client, nil)
	l.Next([]byte("nobody@example.test"))
	l.Next([]byte("guess-three"))
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d log lines, want 3:\n%s", len(lines), logs.String())
	}
	for i, want := range []string{"user=alice@example.test reason=\"wrong password\"", "user=alice@example.test reason=\"wrong password\"", "user=nobody@example.test reason=\"no such account\""} {
		if !strings.Contains(lines[i], `msg="login failed" proto=pop3 remote=192.0.2.55`) || !strings.Contains(lines[i], want) {
			t.Errorf("line %d: %s\nwant proto, remote and %s", i, lines[i], want)
		}
	}
	if strings.Contains(logs.String(), "guess") {
		t.Error("a password reached the log")
	}
}
