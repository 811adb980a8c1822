package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeClock is the Limiter's clock in tests: Sleep advances it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	slept  []time.Duration
	onWait func()
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

func newTestLimiter() (*Limiter, *fakeClock) {
	c := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := NewLimiter()
	l.Now, l.Sleep = c.Now, c.Sleep
	return l, c
}

func tcp(s string) net.Addr {
	ap, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		panic(err)
	}
	return ap
}

func mustDelay(t *testing.T, l *Limiter, remote net.Addr, acct string) time.Duration {
	t.Helper()
	d, err := l.Delay(remote, acct)
	if err != nil {
		t.Fatalf("Delay(%v, %s): %v", remote, acct, err)
	}
	return d
}

func TestLimiterDelaysThenRefuses(t *testing.T) {
	l, c := newTestLimiter()
	ip := tcp("192.0.2.1:1234")
	want := []time.Duration{0, 0, 0, 1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}
	for i, w := range want {
		if d := mustDelay(t, l, ip, "alice@example.test"); d != w {
			t.Fatalf("attempt %d: delay %v, want %v", i+1, d, w)
		}
		l.Failure(ip, "alice@example.test")
		c.Advance(time.Millisecond)
	}
	if _, err := l.Delay(ip, "alice@example.test"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("after %d failures: %v, want ErrThrottled", len(want), err)
	}
	// The refusal is per prefix: another account from the same IP is
	// refused too (it is the client that is guessing).
	if _, err := l.Delay(ip, "bob@example.test"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("other account, same IP: %v", err)
	}
	// Another IP is not refused; it only sees alice's account delay.
	other := tcp("198.51.100.7:25")
	if d := mustDelay(t, l, other, "bob@example.test"); d != 0 {
		t.Fatalf("other IP, other account: delay %v", d)
	}
	if d := mustDelay(t, l, other, "alice@example.test"); d != l.MaxDelay {
		t.Fatalf("other IP, attacked account: delay %v, want %v (delay, never refusal)", d, l.MaxDelay)
	}
	// Never permanent: after RefuseFor the prefix may try again.
	c.Advance(l.RefuseFor)
	if d := mustDelay(t, l, ip, "alice@example.test"); d != 0 {
		t.Fatalf("after RefuseFor: delay %v, want 0 (failures decayed)", d)
	}
}

func TestLimiterDecay(t *testing.T) {
	l, c := newTestLimiter()
	ip := tcp("192.0.2.1:1")
	for range 5 {
		l.Failure(ip, "a@x.test")
	}
	if d := mustDelay(t, l, ip, "a@x.test"); d != 4*time.Second {
		t.Fatalf("5 failures: %v", d)
	}
	c.Advance(l.Decay) // one forgiven
	if d := mustDelay(t, l, ip, "a@x.test"); d != 2*time.Second {
		t.Fatalf("after one decay: %v", d)
	}
	c.Advance(2 * l.Decay)
	if d := mustDelay(t, l, ip, "a@x.test"); d != 0 {
		t.Fatalf("after three decays: %v", d)
	}
	// A slow guesser, one try per Decay, never gets delayed much and
	// never refused; a fast one does.
	for range 100 {
		l.Failure(ip, "a@x.test")
		c.Advance(l.Decay)
	}
	if d := mustDelay(t, l, ip, "a@x.test"); d > time.Second {
		t.Fatalf("slow guesser: %v", d)
	}
}

func TestLimiterIPv6Prefix(t *testing.T) {
	l, _ := newTestLimiter()
	for i := range l.RefuseAfter {
		// Every failure from a different address of one /64.
		l.Failure(tcp(fmt.Sprintf("[2001:db8:1:2::%x]:1", i+1)), fmt.Sprintf("u%d@x.test", i))
	}
	if _, err := l.Delay(tcp("[2001:db8:1:2:ffff::1]:9"), "new@x.test"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("same /64: %v, want ErrThrottled", err)
	}
	if d := mustDelay(t, l, tcp("[2001:db8:1:3::1]:9"), "new@x.test"); d != 0 {
		t.Fatalf("neighbouring /64: %v", d)
	}
	// IPv4 is per address, and IPv4-mapped IPv6 counts as IPv4.
	for range l.RefuseAfter {
		l.Failure(tcp("[::ffff:192.0.2.9]:1"), "x@x.test")
	}
	if _, err := l.Delay(tcp("192.0.2.9:2"), "y@x.test"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("mapped IPv4: %v", err)
	}
	if d := mustDelay(t, l, tcp("192.0.2.10:2"), "y@x.test"); d != 0 {
		t.Fatalf("next IPv4 address: %v", d)
	}
}

func TestPrefix(t *testing.T) {
	for _, c := range []struct {
		addr net.Addr
		want string
	}{
		{tcp("192.0.2.1:25"), "192.0.2.1"},
		{tcp("[2001:db8::1]:25"), "2001:db8::/64"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0"}, "fe80::/64"},
		{&net.UDPAddr{IP: net.ParseIP("::ffff:10.0.0.1")}, "10.0.0.1"},
		{&net.UnixAddr{Name: "/run/x", Net: "unix"}, "unknown"},
		{nil, "unknown"},
	} {
		if got := Prefix(c.addr); got != c.want {
			t.Errorf("Prefix(%v) = %q, want %q", c.addr, got, c.want)
		}
	}
}

func TestLimiterSuccessForgivesOwnFailures(t *testing.T) {
	l, _ := newTestLimiter()
	user := tcp("192.0.2.1:1")
	for range 4 {
		l.Failure(user, "alice@x.test") // mistyped
	}
	if d := mustDelay(t, l, user, "alice@x.test"); d == 0 {
		t.Fatal("no delay after 4 failures")
	}
	l.Success(user, "alice@x.test")
	if d := mustDelay(t, l, user, "alice@x.test"); d != 0 {
		t.Fatalf("after success: delay %v", d)
	}
	// An attacker elsewhere now hammers alice: the account delay grows for
	// strangers but not for the IP alice logged in from.
	attacker := tcp("203.0.113.5:1")
	for range 8 {
		l.Failure(attacker, "alice@x.test")
	}
	if d := mustDelay(t, l, tcp("203.0.113.99:1"), "alice@x.test"); d == 0 {
		t.Fatal("account delay does not apply to a new IP")
	}
	if d := mustDelay(t, l, user, "alice@x.test"); d != 0 {
		t.Fatalf("known-good pair delayed %v", d)
	}
	// The attacker's own success on another account does not erase its
	// failures against alice.
	l.Success(attacker, "mallory@x.test")
	if d := mustDelay(t, l, attacker, "alice@x.test"); d != l.MaxDelay {
		t.Fatalf("attacker's delay %v after its success on another account, want %v", d, l.MaxDelay)
	}
}

func TestLimiterWaitHonoursContext(t *testing.T) {
	l := NewLimiter() // real clock and sleep
	l.BaseDelay, l.MaxDelay = time.Hour, time.Hour
	ip := tcp("192.0.2.1:1")
	for range l.Free {
		l.Failure(ip, "a@x.test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := l.Wait(ctx, ip, "a@x.test")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait: %v", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("Wait ignored ctx: %v", el)
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	l, c := newTestLimiter()
	l.MaxEntries = 100
	// The prefix that is being throttled.
	bad := tcp("192.0.2.1:1")
	for range l.RefuseAfter {
		l.Failure(bad, "target@x.test")
	}
	// Random usernames from a few IPs fill the account and pair tables
	// but cannot push the refused prefix out of the IP table.
	for i := range 5000 {
		l.Failure(tcp(fmt.Sprintf("10.0.0.%d:1", i%50)), fmt.Sprintf("user%d@x.test", i))
		c.Advance(time.Millisecond)
	}
	if n := l.Len(); n > 3*l.MaxEntries {
		t.Fatalf("limiter holds %d keys, cap %d", n, 3*l.MaxEntries)
	}
	if _, err := l.Delay(bad, "other@x.test"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("refused prefix evicted by username churn: %v", err)
	}
	// Many distinct prefixes: still bounded.
	for i := range 5000 {
		l.Failure(tcp(fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255)), "x@x.test")
	}
	if n := l.Len(); n > 3*l.MaxEntries {
		t.Fatalf("limiter holds %d keys, cap %d", n, 3*l.MaxEntries)
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := NewLimiter()
	l.MaxEntries = 50
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				a := tcp(fmt.Sprintf("10.0.%d.%d:1", g, i))
				l.Failure(a, fmt.Sprintf("u%d@x.test", i%7))
				l.Delay(a, "u1@x.test")
				l.Success(a, "u2@x.test")
			}
		}()
	}
	wg.Wait()
	if n := l.Len(); n > 150 {
		t.Fatalf("%d keys", n)
	}
}
