package mta

import (
	"errors"
	"io"
	"reflect"
	"sync"
	"time"
	"unsafe"

	"github.com/emersion/go-smtp"
)

// BDATGuard works around a race in go-smtp v0.25.1's BDAT (RFC 3030). It
// runs Session.Data in a goroutine of its own, which sends its result on
// the connection's result channel when Data returns. When the transfer is
// cut (RSET, a new EHLO), go-smtp closes the body's pipe and calls Reset
// at once, and then reads on: a new transaction's BDAT makes a new
// channel, and the cut transfer's goroutine, late, could send on that
// one. The new transfer then took the old one's error (451) while its own
// body was still being delivered, and Data ran alongside Reset and the
// new transaction's MAIL and RCPT (a data race on the session).
//
// A session calls Start at the top of Data and Wait at the top of Reset:
// Reset then waits, when a transfer's Data is still running, for it to
// return (its pipe is closed: it does so at once) and for its result to
// be on its own channel. Wait holds go-smtp's connection lock, so Data
// must not call the methods of smtp.Conn that take it (Close, Session)
// on the way out of a cut transfer.
type BDATGuard struct {
	mu   sync.Mutex
	done chan struct{} // closed when the running transfer's Data returns
	ch   chan error    // go-smtp's result channel of that transfer
	cut  bool          // its body ended in go-smtp's ErrDataReset
}

// resultWait bounds how long Wait waits for the result to be sent once
// Data has returned (it is the next statement of go-smtp's goroutine).
const resultWait = time.Second

// Start records a Data call reading r; end is to be called when it
// returns. Only BDAT transfers (r is go-smtp's pipe) are recorded.
func (g *BDATGuard) Start(c *smtp.Conn, r io.Reader) (end func()) {
	if _, ok := r.(*io.PipeReader); !ok {
		return func() {}
	}
	done := make(chan struct{})
	g.mu.Lock()
	g.done, g.ch, g.cut = done, resultChan(c), false
	g.mu.Unlock()
	return func() { close(done) }
}

// Cut is told the error that ended the reading of the body: go-smtp's
// ErrDataReset means the transfer was cut (by Reset: see Wait), and its
// result will not be taken.
func (g *BDATGuard) Cut(err error) {
	if errors.Is(err, smtp.ErrDataReset) {
		g.mu.Lock()
		g.cut = true
		g.mu.Unlock()
	}
}

// Wait waits for a BDAT transfer's Data that is still running to return
// and its result to be sent (see BDATGuard).
func (g *BDATGuard) Wait() {
	g.mu.Lock()
	done, ch := g.done, g.ch
	g.done, g.ch = nil, nil
	g.mu.Unlock()
	if done == nil {
		return
	}
	<-done // running, it was cut by the Reset now: it returns at once
	g.mu.Lock()
	cut := g.cut
	g.mu.Unlock()
	if !cut || ch == nil {
		// It ended before: go-smtp took its result (BDAT LAST), or
		// failed the transfer on it.
		return
	}
	// Receive the result, which orders its send (and go-smtp's read of the
	// channel field before it) before this, and put it back: nobody else
	// reads this channel any more, but it is left as it was.
	timeout := time.NewTimer(resultWait)
	defer timeout.Stop()
	select {
	case err := <-ch:
		ch <- err
	case <-timeout.C:
	}
}

// resultChan is the value of go-smtp's Conn.dataResult, or nil if its
// layout changed (TestBDATResetRace then fails).
func resultChan(c *smtp.Conn) chan error {
	v := reflect.ValueOf(c)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return nil
	}
	f := v.Elem().FieldByName("dataResult")
	if !f.IsValid() || f.Type() != reflect.TypeFor[chan error]() {
		return nil
	}
	return *(*chan error)(unsafe.Pointer(f.UnsafeAddr()))
}
