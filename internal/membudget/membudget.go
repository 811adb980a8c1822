// Package membudget bounds the memory of the message bodies being
// received at once, over every listener of the server: port 25, the
// submission ports and IMAP APPEND. A body is held in memory until it is
// stored, and without a bound many clients sending large messages
// together could take all of it.
//
// A transfer holds budget for the bytes it keeps (at least the buffer it
// starts with), in steps of Step, and gives it all back when it ends. One
// that finds no room left reads the rest of its message without keeping
// it and gets a temporary refusal (SMTP 452 4.3.1, IMAP NO
// [UNAVAILABLE]), so that its client retries later.
package membudget

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// Step is the unit in which budget is held: small enough that a thousand
// small messages at once hold 16 MiB, large enough that a body takes the
// shared counter every 16 KiB only.
const Step = 16 << 10

// ErrNoRoom is a transfer that found no room left in the budget.
var ErrNoRoom = errors.New("too many message bodies being received at once")

// Budget is shared by the transfers of a server. A nil *Budget has room
// for anything.
type Budget struct {
	max  int64
	used atomic.Int64
	// parent: this is a client's share of parent (see For); what it
	// holds counts against both.
	parent *Budget
	mu     sync.Mutex
	shares map[string]*share // of the root, by client
}

type share struct {
	b     *Budget
	users int
}

// ShareDiv divides a budget into the most one client may hold: a quarter,
// which is at least one message of the largest size (DefaultSize). One
// client that opens many connections and leaves each with a body it never
// ends then holds a quarter of the budget, not all of it, and every other
// client still gets its mail through.
const ShareDiv = 4

// DefaultSize is the budget of a server whose messages may be as large as
// maxMessage bytes: four such messages, and at least 256 MiB.
func DefaultSize(maxMessage int64) int64 { return max(4*maxMessage, 256<<20) }

// New returns a budget of max bytes.
func New(max int64) *Budget { return &Budget{max: max} }

// Max is the budget's size.
func (b *Budget) Max() int64 {
	if b == nil {
		return 0
	}
	return b.max
}

// Used is the budget held now, by every transfer.
func (b *Budget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
}

// For returns the share of the budget of the client key (an address or
// prefix, "" for none: then b itself): Max/ShareDiv of it, or least if
// more (the largest message, so that one client can always send one),
// held against b too. done gives the share up once the client's
// connection ends; connections of the same client share one.
func (b *Budget) For(key string, least int64) (c *Budget, done func()) {
	if b == nil || key == "" {
		return b, func() {}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	sh := b.shares[key]
	if sh == nil {
		if b.shares == nil {
			b.shares = map[string]*share{}
		}
		sh = &share{b: &Budget{max: max(b.max/ShareDiv, min(least, b.max)), parent: b}}
		b.shares[key] = sh
	}
	sh.users++
	var once sync.Once
	return sh.b, func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if sh.users--; sh.users == 0 {
				delete(b.shares, key)
			}
		})
	}
}

// Hold makes *held, the budget a transfer holds, cover need bytes, and
// reports whether it could. On false *held is unchanged.
func (b *Budget) Hold(held *int64, need int64) bool {
	if b == nil || need <= *held {
		return true
	}
	more := (need - *held + Step - 1) / Step * Step
	if !b.take(more) {
		return false
	}
	*held += more
	return true
}

// take adds n to what b and its parent hold, if both have room.
func (b *Budget) take(n int64) bool {
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	if b.parent != nil && !b.parent.take(n) {
		b.used.Add(-n)
		return false
	}
	return true
}

// Give returns what a transfer held.
func (b *Budget) Give(held int64) {
	if held <= 0 {
		return
	}
	for ; b != nil; b = b.parent {
		b.used.Add(-held)
	}
}

// ReadAll reads r to its end and returns what it read, keeping at most
// limit bytes and holding budget for them as they come. More than limit
// is errTooBig (returned as given), and more than the budget has room for
// is ErrNoRoom; either way r is read to its end first, so that the client
// stays in step. release gives the budget back; it is never nil, and the
// bytes may still be used after it (the budget bounds what transfers
// hold, not what the caller keeps afterwards).
//
// The data is buf[room:]: buf[:room] is left free (and held) for the
// caller to put header fields before the data without copying it.
//
// hint is the size the client announced, 0 if none. The buffer starts at
// that size, but at most 1 MiB: a client's word is not enough to allocate
// more. Once the client has sent that much, the buffer grows to the size
// announced, or by doubling when that is too small.
func (b *Budget) ReadAll(r io.Reader, room int, limit, hint int64, errTooBig error) (buf []byte, release func(), err error) {
	var held int64
	release = func() { b.Give(held); held = 0 }
	drain := func(err error) ([]byte, func(), error) {
		io.Copy(io.Discard, r)
		return nil, release, err
	}
	front := int64(room)
	// One byte more than expected, so that a body of the size announced
	// ends without growing the buffer, and one over limit can be seen.
	size := front + min(max(hint, 4<<10), 1<<20, limit) + 1
	if !b.Hold(&held, size) {
		return drain(ErrNoRoom)
	}
	buf = make([]byte, room, size)
	for {
		if len(buf) == cap(buf) {
			n := int64(len(buf)) - front // data so far
			if n > limit {
				return drain(errTooBig)
			}
			grow := front + min(n*2, limit+1)
			if hint >= n {
				grow = max(grow, front+min(hint, limit)+1)
			}
			if !b.Hold(&held, grow) {
				return drain(ErrNoRoom)
			}
			nb := make([]byte, len(buf), grow)
			copy(nb[room:], buf[room:])
			buf = nb
		}
		n, rerr := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case rerr == io.EOF && int64(len(buf))-front > limit:
			return nil, release, errTooBig
		case rerr == io.EOF:
			return buf, release, nil
		case rerr != nil:
			return nil, release, rerr
		}
	}
}
