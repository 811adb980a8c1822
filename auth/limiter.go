package auth

import (
	"container/list"
	"context"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Limiter throttles failed logins by IP prefix and by account. One Limiter
// is shared by every protocol (SMTP AUTH, IMAP, POP3), so guesses spread
// over protocols count together.
//
// Every key holds a leaky bucket of failures: each failure adds one, and
// one failure is forgiven every Decay. Nothing is ever permanent.
//
//   - Per client prefix (/32 for IPv4, /64 for IPv6, since one IPv6 host
//     usually owns a whole /64): after Free failures the next attempt waits
//     BaseDelay, doubling up to MaxDelay; at RefuseAfter failures the
//     prefix is refused (ErrThrottled) for RefuseFor. Other prefixes are
//     not affected.
//   - Per account: the same growing delay, but never a refusal, so that an
//     attacker elsewhere can slow the real user down but never lock them
//     out.
//   - A success from a prefix forgives the failures that prefix made
//     against that account (a user who mistyped), and for RememberFor the
//     pair is known good: the account's delay no longer applies to it.
//
// Memory is bounded: each of the three tables keeps at most MaxEntries
// keys and evicts the least recently used.
//
// The zero value is not usable; use NewLimiter and change fields before
// first use.
type Limiter struct {
	Free        int           // failures without delay
	BaseDelay   time.Duration // first delay; doubles per failure
	MaxDelay    time.Duration // cap on one delay
	RefuseAfter int           // failures of a prefix that lead to refusal
	RefuseFor   time.Duration // how long a prefix is refused
	Decay       time.Duration // one failure is forgiven per Decay
	RememberFor time.Duration // a successful (prefix, account) pair skips the account delay
	MaxEntries  int           // per table

	// Now and Sleep are the clock, replaceable by tests. Sleep must return
	// early with ctx.Err() when ctx ends.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error

	mu    sync.Mutex
	ips   table // prefix -> failures, refusal
	accts table // account -> failures
	pairs table // prefix|account -> failures, known good
}

// NewLimiter returns a Limiter with default thresholds: 3 free failures,
// then 1 s doubling up to 8 s, refusal of a prefix for 15 minutes at 10
// failures, one failure forgiven every 90 s (ten in 15 minutes).
func NewLimiter() *Limiter {
	return &Limiter{
		Free:        3,
		BaseDelay:   time.Second,
		MaxDelay:    8 * time.Second,
		RefuseAfter: 10,
		RefuseFor:   15 * time.Minute,
		Decay:       90 * time.Second,
		RememberFor: 24 * time.Hour,
		MaxEntries:  1 << 16,
		Now:         time.Now,
		Sleep:       sleepCtx,
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Delay says how long an attempt from remote for account must wait, or
// ErrThrottled if the prefix is refused. It changes nothing.
func (l *Limiter) Delay(remote net.Addr, account string) (time.Duration, error) {
	ip := Prefix(remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.Now()
	ipe := l.ips.peek(ip)
	if ipe != nil && now.Before(ipe.refusedUntil) {
		return 0, ErrThrottled
	}
	d := l.delayFor(ipe.level(now, l.Decay))
	if pe := l.pairs.peek(ip + "|" + account); pe == nil || !now.Before(pe.goodUntil) {
		d = max(d, l.delayFor(l.accts.peek(account).level(now, l.Decay)))
	}
	return d, nil
}

// Wait waits the delay of Delay, or returns ErrThrottled, or ctx.Err() if
// ctx ends first.
func (l *Limiter) Wait(ctx context.Context, remote net.Addr, account string) error {
	d, err := l.Delay(remote, account)
	if err != nil {
		return err
	}
	if d > 0 {
		return l.Sleep(ctx, d)
	}
	return ctx.Err()
}

// Failure records a failed login from remote for account (which need not
// exist).
func (l *Limiter) Failure(remote net.Addr, account string) {
	ip := Prefix(remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.Now()
	ipe := l.ips.get(ip, l.MaxEntries)
	if whole(ipe.add(now, l.Decay, 1)) >= l.RefuseAfter {
		ipe.refusedUntil = now.Add(l.RefuseFor)
	}
	l.accts.get(account, l.MaxEntries).add(now, l.Decay, 1)
	l.pairs.get(ip+"|"+account, l.MaxEntries).add(now, l.Decay, 1)
}

// Success records a successful login: the failures this prefix made
// against this account are forgiven, and the pair is remembered.
func (l *Limiter) Success(remote net.Addr, account string) {
	ip := Prefix(remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.Now()
	pe := l.pairs.get(ip+"|"+account, l.MaxEntries)
	n := pe.level(now, l.Decay)
	pe.add(now, l.Decay, -n)
	pe.goodUntil = now.Add(l.RememberFor)
	if e := l.ips.peek(ip); e != nil {
		e.add(now, l.Decay, -n)
	}
	if e := l.accts.peek(account); e != nil {
		e.add(now, l.Decay, -n)
	}
}

// delayFor is 0 below Free failures, then BaseDelay doubling per
// failure, capped at MaxDelay. A partly forgiven failure still counts.
func (l *Limiter) delayFor(failures float64) time.Duration {
	over := whole(failures) - l.Free + 1
	if over <= 0 {
		return 0
	}
	if over > 30 {
		return l.MaxDelay
	}
	return min(l.BaseDelay<<(over-1), l.MaxDelay)
}

// whole counts a partly forgiven failure as one.
func whole(failures float64) int {
	return int(math.Ceil(failures - 1e-9))
}

// Prefix returns the limiter key of a client address: the /32 of an IPv4
// (or IPv4-mapped) address, the /64 of an IPv6 address, "unknown" for an
// address that is not IP (a Unix socket, nil).
func Prefix(remote net.Addr) string {
	var ip netip.Addr
	switch a := remote.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case nil:
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			ip = ap.Addr()
		} else if ip2, err := netip.ParseAddr(a.String()); err == nil {
			ip = ip2
		}
	}
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		return ip.String()
	case ip.Is6():
		p, _ := ip.WithZone("").Prefix(64)
		return p.String()
	}
	return "unknown"
}

// entry is one key's state.
type entry struct {
	key          string
	failures     float64 // at updated
	updated      time.Time
	refusedUntil time.Time
	goodUntil    time.Time
	elem         *list.Element
}

// level is the failure count at now after decay; a nil entry has none.
func (e *entry) level(now time.Time, decay time.Duration) float64 {
	if e == nil {
		return 0
	}
	if decay <= 0 {
		return e.failures
	}
	n := e.failures - float64(now.Sub(e.updated))/float64(decay)
	return max(n, 0)
}

// add changes the decayed count by n and returns the new count.
func (e *entry) add(now time.Time, decay time.Duration, n float64) float64 {
	e.failures = max(e.level(now, decay)+n, 0)
	e.updated = now
	return e.failures
}

// table is a map with least-recently-used eviction.
type table struct {
	m   map[string]*entry
	lru list.List // front: most recently used
}

func (t *table) peek(key string) *entry {
	if t.m == nil {
		return nil
	}
	return t.m[key]
}

// get returns the entry for key, creating it (and evicting the least
// recently used one beyond limit) if needed, and marks it used.
func (t *table) get(key string, limit int) *entry {
	if t.m == nil {
		t.m = map[string]*entry{}
	}
	if e, ok := t.m[key]; ok {
		t.lru.MoveToFront(e.elem)
		return e
	}
	for limit > 0 && len(t.m) >= limit {
		old := t.lru.Back()
		delete(t.m, old.Value.(*entry).key)
		t.lru.Remove(old)
	}
	e := &entry{key: key}
	e.elem = t.lru.PushFront(e)
	t.m[key] = e
	return e
}

// Len returns the number of keys held, for tests and metrics.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ips.m) + len(l.accts.m) + len(l.pairs.m)
}
