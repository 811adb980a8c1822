package mta

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// ErrShuttingDown answers MAIL once the server is shutting down: the
// transactions already open finish, no new one starts (RFC 5321 section
// 3.8: 421 when the service is closing).
var ErrShuttingDown = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2},
	Message: "Service shutting down, try again later"}

// Drain counts the transactions in progress of a server, from MAIL to
// the end of the transaction, so that shutting down lets them finish. A
// transaction counts from MAIL rather than from DATA: go-smtp sends the
// 354 before it calls Data, and a shutdown that saw no Data running then
// closed the connection of a client that had its 354 (go-smtp's Close
// then even panicked in that session, which it recovered).
type Drain struct {
	open     atomic.Int64
	draining atomic.Bool
}

// Wait refuses new transactions and waits until none is open, or ctx
// ends.
func (d *Drain) Wait(ctx context.Context) error {
	d.draining.Store(true)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for d.open.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Tx is one session's transaction, as Drain counts it. Its methods may
// be called from the session's goroutine and, for End, from the one that
// closes the connection (go-smtp calls Logout there).
type Tx struct {
	open atomic.Bool
}

// Begin opens the transaction (MAIL), unless the server is shutting down.
func (t *Tx) Begin(d *Drain) error {
	if t.open.Swap(true) {
		return nil
	}
	// Counted before the check: Wait sets draining before it reads the
	// count, so either it waits for this one or this one sees draining.
	d.open.Add(1)
	if d.draining.Load() {
		t.End(d)
		return ErrShuttingDown
	}
	return nil
}

// End closes the transaction, if open (RSET, the end of DATA, Logout).
func (t *Tx) End(d *Drain) {
	if t.open.Swap(false) {
		d.open.Add(-1)
	}
}
