package mta

import (
	"sync/atomic"

	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/internal/drain"
)

// ErrShuttingDown answers MAIL once the server is shutting down: the
// transactions already open finish, no new one starts (RFC 5321 section
// 3.8: 421 when the service is closing).
var ErrShuttingDown = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2},
	Message: "Service shutting down, try again later"}

// errCutAtShutdown is the reply, into a connection closed by then, to a
// message whose transfer a shutdown cut when its time ran out.
var errCutAtShutdown = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2},
	Message: "Service shutting down: message not received, try again later"}

// ShutdownCut is err, the failure to read a message, unless the server is
// shutting down (d is draining) and the read failed on the connection's
// close: then the shutdown cut the transfer, and errCutAtShutdown says so
// in the log, where it read as the client's doing.
func ShutdownCut(err error, d *drain.Counter) error {
	if d.Draining() && clientGone(err) {
		return errCutAtShutdown
	}
	return err
}

// Tx is one session's transaction, counted (internal/drain) from MAIL to
// the end of the transaction, so that shutting down lets it finish. It
// counts from MAIL rather than from DATA: go-smtp sends the 354 before it
// calls Data, and a shutdown that saw no Data running then closed the
// connection of a client that had its 354 (go-smtp's Close then even
// panicked in that session, which it recovered). Its methods may be
// called from the session's goroutine and, for End, from the one that
// closes the connection (go-smtp calls Logout there).
type Tx struct {
	open atomic.Bool
}

// Begin opens the transaction (MAIL), unless the server is shutting down.
func (t *Tx) Begin(d *drain.Counter) error {
	if t.open.Swap(true) {
		return nil
	}
	if !d.Enter() {
		t.open.Store(false)
		return ErrShuttingDown
	}
	return nil
}

// End closes the transaction, if open (RSET, the end of DATA, Logout).
func (t *Tx) End(d *drain.Counter) {
	if t.open.Swap(false) {
		d.Leave()
	}
}
