package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/store"
)

// result is what happened to one recipient in one attempt.
type result struct {
	Address   string
	Delivered bool
	Permanent bool   // a permanent failure: bounce
	GaveUp    bool   // failed because GiveUpAfter passed; the last error was temporary
	Status    string // enhanced status code, "5.1.1"
	Diag      string // "smtp; 550 5.1.1 no such user" or our own words
	RemoteMTA string // host that answered, if any
	LastDiag  string // with GaveUp: the last attempt's Diag (Diagnostic-Code)
	Local     bool   // one of our mailboxes (deliverLocal)
}

// attempt delivers the remaining recipients of one entry once and records
// the outcome.
func (q *Queue) attempt(ctx context.Context, id string) error {
	e, err := q.Store.QueueEntry(id)
	if errors.Is(err, store.ErrNotFound) {
		return nil // dropped meanwhile
	}
	if err != nil {
		return err
	}
	body, err := q.readBody(e)
	if err != nil {
		return q.defer_(e, fmt.Errorf("reading the queued body: %w", err))
	}
	log := q.Logger.With("queue_id", e.ID)
	local, remote := q.splitLocal(e)
	results := q.deliverLocal(ctx, e, local, body)
	for domain, rcpts := range groupByDomain(remote) {
		rs := q.deliverDomain(ctx, e, domain, rcpts, body)
		results = append(results, rs...)
		if ctx.Err() != nil {
			// Shutdown: the attempt is repeated, but not for the
			// recipients that a server (or our MDA) has taken already.
			q.keepDelivered(e, results)
			return ctx.Err()
		}
	}
	for _, r := range results {
		switch {
		case r.Delivered:
			log.Info("delivered", "to", r.Address, "remote", r.RemoteMTA)
		case r.Permanent:
			log.Info("failed", "to", r.Address, "remote", r.RemoteMTA, "status", r.Status, "diag", r.Diag)
		default:
			log.Info("deferred", "to", r.Address, "remote", r.RemoteMTA, "status", r.Status, "diag", r.Diag)
		}
	}
	return q.record(ctx, e, body, results)
}

func (q *Queue) readBody(e store.QueueEntry) ([]byte, error) {
	b, err := q.Store.OpenBlob(e.BlobID)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return io.ReadAll(b)
}

// groupByDomain returns recipients by lower-case domain.
func groupByDomain(rcpts []string) map[string][]string {
	m := map[string][]string{}
	for _, r := range rcpts {
		d := strings.ToLower(domainOf(r))
		m[d] = append(m[d], r)
	}
	return m
}

func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return addr[i+1:]
}

// record applies one attempt's results to the entry: it sends the DSNs it
// owes first, then commits the entry (or deletes it when nothing is left),
// so a crash in between repeats a DSN but never loses one.
func (q *Queue) record(ctx context.Context, e store.QueueEntry, body []byte, results []result) error {
	if q.wasDropped(e.ID) {
		return nil // Drop promises no DSN
	}
	now := q.now()
	giveUp := now.Sub(e.Created) >= q.giveUpAfter()
	before := e
	before.Recipients = slices.Clone(e.Recipients)
	failed, delayed, pending := q.apply(&e, results, now, giveUp)
	q.count(results, giveUp)
	if len(failed) > 0 {
		if err := q.sendDSN(ctx, e, body, failed, actionFailed); err != nil {
			if ctx.Err() != nil {
				// Shutdown: the failures are not recorded, so the
				// attempt and its DSN are repeated, but the
				// deliveries are.
				q.keepDelivered(before, results)
				return ctx.Err()
			}
			// sendDSN queues a DSN it cannot deliver, so this is a store
			// that takes no new entry. The failed recipients stay failed
			// all the same: trying them again would send the message
			// again to a server that refused it, and to the others that
			// took it, for as long as the store fails (Postfix too drops a
			// bounce it cannot write, with a log line).
			q.Logger.Error("DSN lost: it could neither be delivered nor queued", "queue_id", e.ID,
				"to", e.From, "recipients", len(failed), "err", err)
		}
	}
	e.Attempts++
	if pending > 0 && !e.DelayNotified && q.DelayNotice > 0 && now.Sub(e.Created) >= q.DelayNotice {
		if err := q.sendDSN(ctx, e, body, delayed, actionDelayed); err != nil {
			q.Logger.Error("delay notice not sent", "queue_id", e.ID, "err", err)
		} else {
			e.DelayNotified = true
		}
	}
	if q.wasDropped(e.ID) {
		return nil
	}
	if pending == 0 {
		return q.Store.DeleteQueueEntry(e.ID)
	}
	e.NextAttempt = now.Add(q.backoff(e.Attempts))
	// The last try is at the end of the lifetime, not up to RetryMax
	// after it: the delay notice told the sender that retries end then
	// (Will-Retry-Until), and the bounce should follow on time.
	if end := e.Created.Add(q.giveUpAfter()); e.NextAttempt.After(end) && end.After(now) {
		e.NextAttempt = end
	}
	return q.Store.UpdateQueueEntry(e)
}

// apply marks e's recipients from one attempt's results and returns the
// failed ones (to bounce), the deferred ones, and how many remain. With
// giveUp, deferred recipients fail with 4.4.7 (RFC 3463: delivery time
// expired).
func (q *Queue) apply(e *store.QueueEntry, results []result, now time.Time, giveUp bool) (failed, delayed []result, pending int) {
	byAddr := map[string]result{}
	for _, r := range results {
		byAddr[r.Address] = r
	}
	for i := range e.Recipients {
		rc := &e.Recipients[i]
		if rc.Done {
			continue
		}
		r, ok := byAddr[rc.Address]
		if !ok { // not tried (cannot happen): keep it
			pending++
			continue
		}
		rc.LastError = r.Diag
		switch {
		case r.Delivered:
			rc.Done, rc.LastError = true, ""
		case r.Permanent:
			rc.Done, rc.Failed = true, true
			failed = append(failed, r)
		case giveUp:
			r.Permanent, r.GaveUp, r.Status, r.LastDiag = true, true, "4.4.7", r.Diag
			r.Diag = "gave up after " + humanDuration(q.giveUpAfter()) + "; last error: " + r.Diag
			rc.Done, rc.Failed, rc.LastError = true, true, r.Diag
			failed = append(failed, r)
		default:
			pending++
			delayed = append(delayed, r)
			e.LastError = r.Diag
		}
	}
	return failed, delayed, pending
}

func (q *Queue) count(results []result, giveUp bool) {
	delivered, failed, deferred := 0, 0, 0
	for _, r := range results {
		switch {
		case r.Delivered && r.Local: // counted by the MDA, to=local
		case r.Delivered:
			delivered++
		case r.Permanent || giveUp:
			failed++
		default:
			deferred++
		}
	}
	q.Metrics.Add(metrics.Delivered, int64(delivered), "to", "remote")
	q.Metrics.Add(metrics.Bounced, int64(failed))
	q.Metrics.Add(metrics.Deferred, int64(deferred))
}

// keepDelivered records the delivered recipients of an attempt cut
// short by shutdown, and nothing else: the others are tried again as if
// the attempt had not been made, and no DSN is sent for them yet.
func (q *Queue) keepDelivered(e store.QueueEntry, results []result) {
	delivered := map[string]bool{}
	for _, r := range results {
		if r.Delivered {
			delivered[r.Address] = true
		}
	}
	if len(delivered) == 0 || q.wasDropped(e.ID) {
		return
	}
	left := 0
	for i := range e.Recipients {
		rc := &e.Recipients[i]
		if !rc.Done && delivered[rc.Address] {
			rc.Done, rc.LastError = true, ""
		}
		if !rc.Done {
			left++
		}
	}
	var err error
	if left == 0 {
		err = q.Store.DeleteQueueEntry(e.ID)
	} else {
		err = q.Store.UpdateQueueEntry(e)
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		q.Logger.Error("recording deliveries at shutdown failed", "queue_id", e.ID, "err", err)
	}
}

// defer_ records an attempt that could not run at all (a local problem).
func (q *Queue) defer_(e store.QueueEntry, cause error) error {
	if q.wasDropped(e.ID) {
		return cause
	}
	e.Attempts++
	e.LastError = "local error: " + cause.Error()
	e.NextAttempt = q.now().Add(q.backoff(e.Attempts))
	if err := q.Store.UpdateQueueEntry(e); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// wasDropped reports whether Drop removed id while a worker held it.
func (q *Queue) wasDropped(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	f := q.inflight[id]
	return f != nil && f.dropped
}

func (q *Queue) giveUpAfter() time.Duration {
	if q.GiveUpAfter > 0 {
		return q.GiveUpAfter
	}
	return defaultGiveUpAfter
}

// humanDuration writes d for people, in its two largest units: "5 days",
// "1 day 12 hours", "1 minute 15 seconds" (a DSN is no place for Go's
// "120h0m0s").
func humanDuration(d time.Duration) string {
	units := []struct {
		name string
		size time.Duration
	}{{"day", 24 * time.Hour}, {"hour", time.Hour}, {"minute", time.Minute}, {"second", time.Second}}
	var parts []string
	for _, u := range units {
		n := d / u.size
		if n == 0 && len(parts) == 0 {
			continue
		}
		d -= n * u.size
		if n > 0 {
			name := u.name
			if n != 1 {
				name += "s"
			}
			parts = append(parts, fmt.Sprintf("%d %s", n, name))
		}
		if len(parts) == 2 || len(parts) == 1 && n == 0 {
			break
		}
	}
	if len(parts) == 0 {
		return "less than a second"
	}
	return strings.Join(parts, " ")
}
