package imap

import (
	"bufio"
	"reflect"
	"sync"
	"time"
	"unsafe"

	"github.com/emersion/go-imap/v2/imapserver"
)

// An idle connection should cost little memory (10,000 IDLE clients in a
// quarter of a GiB). imapserver gives every connection a 4 KiB
// bufio.Writer, empty all the time the client idles: while a session is
// in IDLE its buffer is swapped for a small one, and a full-size one is
// put back when IDLE ends. Updates sent during IDLE are a few short lines
// each flushed at once, so the small buffer costs nothing there.
//
// imapserver does not export the writer: it is reached by reflection,
// with its field names and types checked once (TestConnWriterLayout pins
// them); if a new imapserver version changes them, the swap is simply not
// done. The swap holds the connection's encoder mutex, under which
// imapserver does every write to the buffer, and replaces the contents of
// the bufio.Writer (not the pointer, which imapserver reads before it
// takes the mutex).
const (
	idleWriterSize   = 128
	activeWriterSize = 4096 // bufio's default, as imapserver makes it
)

// writerOffsets are the offsets of imapserver.Conn's bw (*bufio.Writer)
// and encMutex (sync.Mutex) fields; ok is false when they are not there.
var writerOffsets = sync.OnceValue(func() (o struct {
	bw, mu uintptr
	ok     bool
}) {
	t := reflect.TypeFor[imapserver.Conn]()
	bw, ok1 := t.FieldByName("bw")
	mu, ok2 := t.FieldByName("encMutex")
	if !ok1 || !ok2 || bw.Type != reflect.TypeFor[*bufio.Writer]() || mu.Type != reflect.TypeFor[sync.Mutex]() {
		return o
	}
	o.bw, o.mu, o.ok = bw.Offset, mu.Offset, true
	return o
})

// connWriter returns c's buffered writer and the mutex its writes hold,
// or nil when imapserver's layout is not the one expected.
func connWriter(c *imapserver.Conn) (*bufio.Writer, *sync.Mutex) {
	o := writerOffsets()
	if !o.ok || c == nil {
		return nil, nil
	}
	p := unsafe.Pointer(c)
	return *(**bufio.Writer)(unsafe.Add(p, o.bw)), (*sync.Mutex)(unsafe.Add(p, o.mu))
}

// shrinkWriter gives c's writer a small buffer for the time of IDLE and
// returns the function that gives it a full-size one again (nil when
// nothing was done). The writer is empty when IDLE starts (imapserver has
// just flushed the continuation request); if it is not, nothing is done.
func shrinkWriter(c *imapserver.Conn) (restore func()) {
	bw, mu := connWriter(c)
	if bw == nil {
		return nil
	}
	nc := c.NetConn() // what imapserver's writer writes to (no debug writer is set)
	mu.Lock()
	defer mu.Unlock()
	if bw.Buffered() != 0 || bw.Size() != activeWriterSize {
		return nil
	}
	*bw = *bufio.NewWriterSize(nc, idleWriterSize)
	return func() {
		mu.Lock()
		defer mu.Unlock()
		if bw.Buffered() != 0 {
			bw.Flush() // an error stays in bw for imapserver's next write
		}
		if bw.Buffered() == 0 {
			*bw = *bufio.NewWriterSize(nc, activeWriterSize)
		}
	}
}

// idleKeepalive is how often a client in IDLE is sent "* OK Still here",
// as Dovecot does (imap_idle_notify_interval, 2 minutes): a NAT gateway
// or firewall that drops connections silent for a few minutes would
// otherwise cut the client off without either side knowing, and new
// mail would not be announced until the client's next IDLE (Thunderbird
// renews it every 29 minutes). One goroutine of the hub does it for
// every session (hub.keepalives): a timer per connection would cost
// half a KiB of each idle connection's 24.
var idleKeepalive = 2 * time.Minute

// writeUntagged writes line, an untagged response of ours, through c's
// writer, under the mutex of imapserver's writes, and flushes it; false
// when imapserver's layout is not the one expected (nothing written).
func writeUntagged(c *imapserver.Conn, line []byte) (bool, error) {
	bw, mu := connWriter(c)
	if bw == nil {
		return false, nil
	}
	mu.Lock()
	defer mu.Unlock()
	c.NetConn().SetWriteDeadline(time.Now().Add(untaggedWriteTimeout))
	defer c.NetConn().SetWriteDeadline(time.Time{})
	if _, err := bw.Write(line); err != nil {
		return true, err
	}
	return true, bw.Flush()
}

// untaggedWriteTimeout bounds writeUntagged's write to a client that
// reads nothing.
const untaggedWriteTimeout = 10 * time.Second
