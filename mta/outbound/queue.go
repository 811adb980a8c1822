// Package outbound is Posthorn's outbound queue: it keeps mail for other
// servers durable in the store, delivers it to the recipients' MX hosts
// (or one smarthost), retries with backoff, and reports failures and long
// delays to the sender with delivery status notifications.
//
// Implementation notes:
//
//   - An entry is written with store.Enqueue (committed and fsynced) before
//     the submitting session answers 250. It leaves the queue only after the
//     remote server's 250 and our commit: each attempt first talks to the
//     remote servers, then sends any DSN (local delivery or a new queue
//     entry), then marks recipients Done with UpdateQueueEntry, and deletes
//     the entry once every recipient is Done. A crash between those steps
//     repeats a step (a duplicate message or DSN), it never loses one.
//   - One dispatcher scans the queue for due entries and hands their ids
//     to Workers goroutines; Enqueue and Retry wake it, and it sleeps until
//     the earliest NextAttempt otherwise. An entry is in at most one
//     worker's hands at a time.
//   - Remaining recipients are grouped by domain, one SMTP transaction per
//     domain (RFC 5321 section 3.3), with per-recipient results: a 5xx
//     reply fails that recipient, a 4xx reply or a connection failure
//     defers it. Deferred entries are retried after RetryInitial, doubling
//     up to RetryMax, and given up (failed with 4.4.7) after GiveUpAfter.
//   - MX lookup follows RFC 5321 section 5.1: preference order, equal
//     preferences shuffled, the next host on a connection failure or a
//     temporary failure before any recipient was accepted, the domain's
//     own A/AAAA when it has no MX, and RFC 7505's null MX ("MX 0 .") as a
//     permanent failure (5.1.10). Host addresses are looked up through
//     Resolver, never the system's, so outbound.dns_server governs all.
//   - STARTTLS is used whenever offered (RFC 3207). Certificate problems
//     are logged and delivery goes on (opportunistic TLS, RFC 7435),
//     unless the domain publishes an MTA-STS policy in enforce mode
//     (RFC 8461, mtasts.go): then only the MX hosts it names are used,
//     over TLS with a certificate that verifies, or the mail waits. There
//     is no DANE (it needs a validating resolver). The greeting, EHLO and
//     STARTTLS are spoken here, not by go-smtp's client, so that a server
//     that sends anything after its 220 reply to STARTTLS (a response
//     injection, CVE-2011-0411 style) is detected and the attempt aborted.
//   - A smarthost gets everything, over implicit TLS on port 465 and with
//     STARTTLS required otherwise, with AUTH PLAIN when a user is set.
//   - Bodies are written with CRLF line endings only: a bare CR or LF is
//     turned into CRLF before dot-stuffing, so nothing can end the DATA
//     early at the next hop (SMTP smuggling).
//   - DSNs (RFC 3464) come from MAIL FROM:<> and are never sent for an
//     entry with From "" or NoBounce. They are also not sent when the entry
//     was not submitted by an authenticated user (AuthUser "") and the
//     sender is not one of our addresses: mail accepted unauthenticated on
//     port 25 and forwarded by an alias could carry a forged sender, and a
//     bounce to it would be backscatter. Recipients of ours are the
//     exception (see the next note). A DSN to one of our addresses is
//     delivered locally through MDA; any other is queued with NoBounce.
//     One delay notice (Action: delayed) is sent after DelayNotice.
//   - Recipients of ours (the copy for a mailbox that was full, which
//     mda.Agent.Deliver queues) are delivered through MDA, one at a time,
//     with the same retries and DSNs as remote ones (local.go).
//   - A connection is kept for a few seconds after a transaction and
//     reused, after an RSET, for the next message to the same host
//     (pool.go). The body goes with DATA; BDAT/CHUNKING is not needed since we
//     never accept BINARYMIME. BODY=8BITMIME is declared whenever the
//     server offers it; SMTPUTF8 mail to a server without SMTPUTF8 fails
//     with 5.6.7 (RFC 6531 section 3.2) rather than being downgraded.
//   - Metrics count recipients: Delivered{to=remote}, Deferred and
//     Bounced per recipient and attempt; QueueLength is the entry count.
package outbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/store"
)

// LocalDelivery delivers to our own users (DSNs, and a full mailbox's
// copy once it has room); *mda.Agent implements it.
type LocalDelivery interface {
	Resolve(address string) (mda.Route, error)
	Deliver(ctx context.Context, env mda.Envelope, body []byte) (mda.Result, error)
}

// Defaults for zero fields of Queue.
const (
	defaultRetryInitial = 5 * time.Minute
	defaultRetryMax     = 4 * time.Hour
	defaultGiveUpAfter  = 5 * 24 * time.Hour
	defaultDelayNotice  = 4 * time.Hour
	defaultMXPort       = 25
	dialTimeout         = 30 * time.Second
	commandTimeout      = 5 * time.Minute
)

// Queue is the outbound queue and its delivery workers.
type Queue struct {
	Store    store.Store
	Resolver *net.Resolver // nil: net.DefaultResolver
	Hostname string        // EHLO name and Reporting-MTA
	MXPort   int           // port on remote MX hosts; 0: 25
	STSPort  int           // port of MTA-STS policy hosts (HTTPS); 0: 443

	// Smarthost "host:port" receives everything instead of the MX hosts.
	Smarthost         string
	SmarthostUser     string
	SmarthostPassword string

	RetryInitial time.Duration // first retry delay, doubling...
	RetryMax     time.Duration // ...up to this
	GiveUpAfter  time.Duration // fail what is still undelivered after this
	DelayNotice  time.Duration // send one delay DSN after this; <0: never
	Workers      int           // concurrent deliveries; 0: 4

	// TLS is the client configuration template for STARTTLS; nil: a
	// default one. ServerName is set per host.
	TLS *tls.Config

	// MDA delivers DSNs to our own users and the entries' recipients of
	// ours; nil: DSNs are queued, and every recipient goes to its MX.
	MDA     LocalDelivery
	Logger  *slog.Logger
	Metrics *metrics.Registry

	// now is the clock (tests).
	now func() time.Time

	pool     connPool
	once     sync.Once
	wake     chan struct{}
	mu       sync.Mutex
	inflight map[string]bool
	dropped  map[string]bool

	stsMu      sync.Mutex
	stsFetches map[string]*stsFetch // by domain: running, or failed lately
}

func (q *Queue) init() {
	q.once.Do(func() {
		q.wake = make(chan struct{}, 1)
		q.inflight = map[string]bool{}
		q.dropped = map[string]bool{}
		if q.now == nil {
			q.now = time.Now
		}
		if q.Logger == nil {
			q.Logger = slog.New(slog.DiscardHandler)
		}
	})
}

func (q *Queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Enqueue stores an entry and its body durably and wakes the workers.
// It implements mda.Queue.
func (q *Queue) Enqueue(ctx context.Context, e store.QueueEntry, body []byte) (store.QueueEntry, error) {
	q.init()
	if len(e.Recipients) == 0 {
		return e, errors.New("outbound: entry without recipients")
	}
	now := q.now()
	if e.Created.IsZero() {
		e.Created = now
	}
	if e.NextAttempt.IsZero() {
		e.NextAttempt = now
	}
	e, err := q.Store.Enqueue(ctx, e, body)
	if err != nil {
		return e, err
	}
	q.Logger.Info("queued", "queue_id", e.ID, "from", e.From, "recipients", len(e.Recipients), "size", e.Size)
	q.signal()
	return e, nil
}

// List returns every entry, oldest first.
func (q *Queue) List() ([]store.QueueEntry, error) {
	es, err := q.Store.QueueEntries()
	if err != nil {
		return nil, err
	}
	sort.Slice(es, func(i, j int) bool { return es[i].ID < es[j].ID })
	return es, nil
}

// Retry makes an entry ("" for all) due now and wakes the workers.
func (q *Queue) Retry(id string) error {
	q.init()
	es, err := q.selectEntries(id)
	if err != nil {
		return err
	}
	now := q.now()
	for _, e := range es {
		e.NextAttempt = now
		if err := q.Store.UpdateQueueEntry(e); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	q.signal()
	return nil
}

// Drop removes an entry without delivering it or sending a DSN. An entry
// being delivered right now is removed when its attempt ends.
func (q *Queue) Drop(id string) error {
	q.init()
	if id == "" {
		return fmt.Errorf("outbound: drop needs an id: %w", store.ErrNotFound)
	}
	if err := q.Store.DeleteQueueEntry(id); err != nil {
		return err
	}
	q.mu.Lock()
	if q.inflight[id] {
		q.dropped[id] = true
	}
	q.mu.Unlock()
	q.Logger.Info("dropped", "queue_id", id)
	return nil
}

func (q *Queue) selectEntries(id string) ([]store.QueueEntry, error) {
	if id != "" {
		e, err := q.Store.QueueEntry(id)
		if err != nil {
			return nil, err
		}
		return []store.QueueEntry{e}, nil
	}
	return q.Store.QueueEntries()
}

// Run delivers due entries until ctx ends.
func (q *Queue) Run(ctx context.Context) error {
	q.init()
	q.Metrics.Gauge(metrics.QueueLength, func() int64 {
		es, err := q.Store.QueueEntries()
		if err != nil {
			return 0
		}
		return int64(len(es))
	})
	workers := q.Workers
	if workers <= 0 {
		workers = 4
	}
	work := make(chan string)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				q.attemptSafely(ctx, id)
				q.mu.Lock()
				delete(q.inflight, id)
				delete(q.dropped, id)
				q.mu.Unlock()
				q.signal()
			}
		}()
	}
	err := q.dispatch(ctx, work)
	close(work)
	wg.Wait()
	q.pool.closeAll()
	return err
}

// dispatch hands due entries to the workers and sleeps until the next one
// is due or something wakes it.
func (q *Queue) dispatch(ctx context.Context, work chan<- string) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		next, err := q.handOut(ctx, work)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			q.Logger.Error("queue scan failed", "err", err)
			next = q.now().Add(5 * time.Second)
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(q.now()), 10*time.Millisecond)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-q.wake:
		case <-timer.C:
		}
	}
}

// handOut sends the ids of due entries that no worker holds to work and
// returns the earliest NextAttempt of the others (zero: none).
func (q *Queue) handOut(ctx context.Context, work chan<- string) (time.Time, error) {
	es, err := q.Store.QueueEntries()
	if err != nil {
		return time.Time{}, err
	}
	sort.Slice(es, func(i, j int) bool { return es[i].NextAttempt.Before(es[j].NextAttempt) })
	var next time.Time
	now := q.now()
	for _, e := range es {
		q.mu.Lock()
		busy := q.inflight[e.ID]
		q.mu.Unlock()
		if busy {
			continue
		}
		if e.NextAttempt.After(now) {
			if next.IsZero() || e.NextAttempt.Before(next) {
				next = e.NextAttempt
			}
			continue
		}
		q.mu.Lock()
		q.inflight[e.ID] = true
		q.mu.Unlock()
		select {
		case work <- e.ID:
		case <-ctx.Done():
			return next, ctx.Err()
		}
	}
	return next, nil
}

// attemptSafely runs one attempt and turns a panic into a logged error:
// the entry stays queued and is tried again later.
func (q *Queue) attemptSafely(ctx context.Context, id string) {
	defer func() {
		if r := recover(); r != nil {
			q.Logger.Error("panic delivering queue entry", "queue_id", id, "panic", r)
			if e, err := q.Store.QueueEntry(id); err == nil {
				e.NextAttempt = q.now().Add(q.retryMax())
				q.Store.UpdateQueueEntry(e)
			}
		}
	}()
	if err := q.attempt(ctx, id); err != nil && ctx.Err() == nil {
		q.Logger.Error("queue attempt failed", "queue_id", id, "err", err)
	}
}

func (q *Queue) retryInitial() time.Duration {
	if q.RetryInitial > 0 {
		return q.RetryInitial
	}
	return defaultRetryInitial
}

func (q *Queue) retryMax() time.Duration {
	if q.RetryMax > 0 {
		return max(q.RetryMax, q.retryInitial())
	}
	return max(defaultRetryMax, q.retryInitial())
}

// backoff is the delay after the given number of attempts (1, 2, ...).
func (q *Queue) backoff(attempts int) time.Duration {
	d := q.retryInitial()
	for i := 1; i < attempts && d < q.retryMax(); i++ {
		d *= 2
	}
	return min(d, q.retryMax())
}
