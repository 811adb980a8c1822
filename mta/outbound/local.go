package outbound

import (
	"context"
	"errors"

	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/store"
)

// A queue entry may hold recipients of ours: the copy of a message for a
// mailbox that was full when the message came (mda.Agent.Deliver queues it
// so that one full mailbox does not hold back the other recipients, as
// Postfix keeps such a recipient in its queue). Those are delivered through
// MDA, never over SMTP to our own MX, and otherwise share the remote
// recipients' lot: the retry schedule, the delay DSN after DelayNotice and
// the failure DSN after GiveUpAfter.

// splitLocal sorts the recipients of e not yet done into ours and the
// others. An address is ours when its domain is served here: MDA resolves
// it, or knows it is ours but not deliverable (an unknown user, an alias
// loop: deliverLocal fails it). ErrBadAddress is not proof (a remote
// address may have a local part we never route on), so it stays remote.
func (q *Queue) splitLocal(e store.QueueEntry) (local, remote []string) {
	for _, r := range e.Recipients {
		if r.Done {
			continue
		}
		if q.isLocal(r.Address) {
			local = append(local, r.Address)
		} else {
			remote = append(remote, r.Address)
		}
	}
	return local, remote
}

func (q *Queue) isLocal(addr string) bool {
	if q.MDA == nil {
		return false
	}
	_, err := q.MDA.Resolve(addr)
	return err == nil || errors.Is(err, mda.ErrUnknownUser) || errors.Is(err, mda.ErrAliasLoop)
}

// deliverLocal delivers e to recipients of ours, one at a time, so that a
// mailbox still full does not hold back another that has room now. The
// MDA writes each one's Return-Path and Delivered-To, as at first.
func (q *Queue) deliverLocal(ctx context.Context, e store.QueueEntry, rcpts []string, body []byte) []result {
	var out []result
	for _, rcpt := range rcpts {
		env := mda.Envelope{From: e.From, Recipients: []string{rcpt}, Junk: e.Junk, SMTPUTF8: e.SMTPUTF8}
		_, err := q.MDA.Deliver(ctx, env, body)
		r := localResult(rcpt, err)
		if r.Status == statusLocalError {
			q.Logger.Error("local delivery failed", "queue_id", e.ID, "to", rcpt, "err", err)
		}
		out = append(out, r)
	}
	return out
}

// statusLocalError is the status of a local delivery that failed for a
// reason of ours (RFC 3463: 4.3.0, other mail system status).
const statusLocalError = "4.3.0"

// localResult maps the MDA's answer to a result. The diagnostic is our own
// words: it goes to the sender in a DSN, which must not carry the store's
// error text (an account's usage, a path).
func localResult(rcpt string, err error) result {
	r := result{Address: rcpt, Local: true}
	switch {
	case err == nil:
		r.Delivered = true
	case errors.Is(err, mda.ErrQuotaTooSmall):
		r.Permanent, r.Status, r.Diag = true, "5.2.3", "message larger than the mailbox quota"
	case errors.Is(err, store.ErrOverQuota):
		r.Status, r.Diag = "4.2.2", "mailbox full" // RFC 3463 section 3.3
	case errors.Is(err, mda.ErrUnknownUser):
		r.Permanent, r.Status, r.Diag = true, "5.1.1", "no such user here"
	case errors.Is(err, mda.ErrAliasLoop):
		r.Permanent, r.Status, r.Diag = true, "5.4.6", "routing loop detected"
	case errors.Is(err, mda.ErrBadAddress):
		r.Permanent, r.Status, r.Diag = true, "5.1.3", "address not accepted"
	case store.NoSpace(err):
		r.Status, r.Diag = "4.3.1", "insufficient system storage"
	default:
		r.Status, r.Diag = statusLocalError, "local delivery failed"
	}
	return r
}

// allLocal reports whether every result is of a recipient of ours.
func allLocal(rs []result) bool {
	for _, r := range rs {
		if !r.Local {
			return false
		}
	}
	return len(rs) > 0
}
