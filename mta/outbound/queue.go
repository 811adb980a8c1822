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
//     Only the worker holding an entry writes it whole; Retry changes
//     NextAttempt alone (store.SetQueueNextAttempt), so it never undoes an
//     attempt recorded meanwhile, and Drop cancels the attempt in flight.
//   - One dispatcher scans the queue for due entries and hands their ids
//     to Workers goroutines; Enqueue and Retry wake it, and it sleeps until
//     the earliest NextAttempt otherwise. An entry is in at most one
//     worker's hands at a time, and at most a quarter of the workers
//     deliver to one destination domain at a time (destLimit).
//   - Remaining recipients are grouped by domain, one SMTP transaction per
//     domain (RFC 5321 section 3.3), with per-recipient results: a 5xx
//     reply fails that recipient, a 4xx reply or a connection failure
//     defers it. Deferred entries are retried after RetryInitial, doubling
//     up to RetryMax, and given up (failed with 4.4.7) after GiveUpAfter.
//     A 452 to RCPT after others were accepted is the server's recipient
//     limit: the rest go at once in another transaction.
//   - MX lookup follows RFC 5321 section 5.1: preference order, equal
//     preferences shuffled, the next host on a connection failure, a
//     temporary failure before any recipient was accepted, or a
//     transaction where every recipient failed temporarily (a 4xx to
//     each RCPT or to the end of the data), the domain's
//     own A/AAAA when it has no MX, and RFC 7505's null MX ("MX 0 .") as a
//     permanent failure (5.1.10). Host addresses are looked up through
//     Resolver, never the system's, so outbound.dns_server governs all.
//     An internationalized domain is looked up by its A-labels.
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
//     STARTTLS required otherwise, with AUTH PLAIN when a user is set; the
//     password goes only over TLS with a certificate that verifies.
//   - Every step of a session has a deadline: the dial, the greeting,
//     EHLO and STARTTLS (prelude), each command and its reply (go-smtp's
//     CommandTimeout), each write of the body (dataBlockTimeout) and the
//     final reply (go-smtp's SubmissionTimeout).
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
//     delivered locally through MDA, or queued when that fails (a full
//     mailbox); any other is queued with NoBounce. A failed recipient is
//     never tried again for the sake of its DSN. One delay notice (Action:
//     delayed) is sent after DelayNotice, none when it is 0.
//   - Recipients of ours (the copy for a mailbox that was full, which
//     mda.Agent.Deliver queues) are delivered through MDA, one at a time,
//     with the same retries and DSNs as remote ones (local.go).
//   - A connection is kept for a few seconds after a transaction and
//     reused, after an RSET, for the next message to the same host
//     (pool.go). The body goes with DATA; BDAT/CHUNKING is not needed since we
//     never accept BINARYMIME. BODY=8BITMIME is declared whenever the
//     server offers it; 8-bit content to a server without it fails with
//     5.6.3 (RFC 6152; see envelopeFor), a message larger than the
//     server's SIZE with 5.3.4, and a message that needs SMTPUTF8 (a UTF-8
//     address or header) to a server without it with 5.6.7 (RFC 6531
//     section 3.2) rather than being downgraded.
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
	defaultMXPort       = 25
	dialTimeout         = 30 * time.Second
	commandTimeout      = 5 * time.Minute
	// dataBlockTimeout bounds each write of a message's body (RFC 5321
	// section 4.5.3.2.5, Postfix's smtp_data_xfer_timeout).
	dataBlockTimeout = 3 * time.Minute
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
	// DelayNotice sends one delay DSN after this; 0 or less: never (as
	// Postfix's delay_warning_time = 0).
	DelayNotice time.Duration
	Workers     int // concurrent deliveries; 0: 4

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
	// writeTimeout replaces dataBlockTimeout (tests).
	writeTimeout time.Duration

	pool     connPool
	once     sync.Once
	wake     chan struct{}
	mu       sync.Mutex
	inflight map[string]*flight // entries in a worker's hands, by id
	perDest  map[string]int     // in-flight entries by destination domain

	stsMu      sync.Mutex
	stsFetches map[string]*stsFetch // by domain: running, or failed lately
}

func (q *Queue) init() {
	q.once.Do(func() {
		q.wake = make(chan struct{}, 1)
		q.inflight = map[string]*flight{}
		q.perDest = map[string]int{}
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

// Retry makes an entry ("" for all) due now and wakes the workers. It
// changes NextAttempt alone (store.SetQueueNextAttempt): an entry being
// delivered meanwhile keeps what its worker records.
func (q *Queue) Retry(id string) error {
	q.init()
	var ids []string
	if id != "" {
		ids = []string{id}
	} else {
		es, err := q.Store.QueueEntries()
		if err != nil {
			return err
		}
		for _, e := range es {
			ids = append(ids, e.ID)
		}
	}
	n, err := q.Store.SetQueueNextAttempt(ids, q.now())
	if err != nil {
		return err
	}
	if id != "" && n == 0 {
		return fmt.Errorf("queue entry %q: %w", id, store.ErrNotFound)
	}
	q.signal()
	return nil
}

// Drop removes an entry without delivering it or sending a DSN. An entry
// being delivered right now has its attempt cancelled (best effort: a
// remote server that already took the message keeps it), and its outcome
// is neither recorded nor reported.
func (q *Queue) Drop(id string) error {
	q.init()
	if id == "" {
		return fmt.Errorf("outbound: drop needs an id: %w", store.ErrNotFound)
	}
	if err := q.Store.DeleteQueueEntry(id); err != nil {
		return err
	}
	q.mu.Lock()
	if f := q.inflight[id]; f != nil {
		f.dropped = true
		if f.cancel != nil {
			f.cancel()
		}
	}
	q.mu.Unlock()
	q.Logger.Info("dropped", "queue_id", id)
	return nil
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
				actx, cancel := q.takeOff(ctx, id)
				q.attemptSafely(actx, id)
				cancel()
				q.land(id)
				q.signal()
			}
		}()
	}
	err := q.dispatch(ctx, work, workers)
	close(work)
	wg.Wait()
	q.pool.closeAll()
	return err
}

// dispatch hands due entries to the workers and sleeps until the next one
// is due or something wakes it.
func (q *Queue) dispatch(ctx context.Context, work chan<- string, workers int) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		next, err := q.handOut(ctx, work, destLimit(workers))
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
// returns the earliest NextAttempt of the others (zero: none). An entry
// for a destination that already has limit entries in flight waits: a
// worker that finishes wakes the dispatcher, which finds it again.
func (q *Queue) handOut(ctx context.Context, work chan<- string, limit int) (time.Time, error) {
	es, err := q.Store.QueueEntries()
	if err != nil {
		return time.Time{}, err
	}
	sort.Slice(es, func(i, j int) bool { return es[i].NextAttempt.Before(es[j].NextAttempt) })
	var next time.Time
	now := q.now()
	for _, e := range es {
		q.mu.Lock()
		busy := q.inflight[e.ID] != nil
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
		if !q.board(e, limit) {
			continue
		}
		select {
		case work <- e.ID:
		case <-ctx.Done():
			q.land(e.ID)
			return next, ctx.Err()
		}
	}
	return next, nil
}

// flight is an entry in a worker's hands.
type flight struct {
	dests   []string           // destination domains it counts against
	cancel  context.CancelFunc // ends its attempt; nil until it starts
	dropped bool               // Drop removed it meanwhile
}

// Delivering reports whether a worker holds the entry id now (queue list).
func (q *Queue) Delivering(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.inflight[id] != nil
}

// destLimit is how many entries for one destination domain are delivered
// at once: a quarter of the workers, so that slow or tarpitting
// destinations (each of their hosts may take commandTimeout to greet)
// need four domains to hold every worker while mail for others waits.
// Postfix has the same per-destination limit
// (default_destination_concurrency_limit, 20 of 100 processes; workers
// are goroutines here, 32 by default, 8 to a domain).
func destLimit(workers int) int { return max(1, workers/4) }

// board marks e in flight unless one of its destinations is at limit.
// Everything goes to the one smarthost, so there is no destination to
// share out.
func (q *Queue) board(e store.QueueEntry, limit int) bool {
	var dests []string
	if q.Smarthost == "" {
		for d := range groupByDomain(pending(e)) {
			dests = append(dests, d)
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, d := range dests {
		if q.perDest[d] >= limit {
			return false
		}
	}
	for _, d := range dests {
		q.perDest[d]++
	}
	q.inflight[e.ID] = &flight{dests: dests}
	return true
}

// takeOff gives the attempt on id a context that Drop cancels.
func (q *Queue) takeOff(ctx context.Context, id string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	q.mu.Lock()
	defer q.mu.Unlock()
	if f := q.inflight[id]; f != nil {
		f.cancel = cancel
		if f.dropped {
			cancel()
		}
	}
	return ctx, cancel
}

// land ends the flight of id.
func (q *Queue) land(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if f := q.inflight[id]; f != nil {
		for _, d := range f.dests {
			if q.perDest[d]--; q.perDest[d] <= 0 {
				delete(q.perDest, d)
			}
		}
	}
	delete(q.inflight, id)
}

// pending returns the addresses of e's recipients not yet done.
func pending(e store.QueueEntry) []string {
	var out []string
	for _, r := range e.Recipients {
		if !r.Done {
			out = append(out, r.Address)
		}
	}
	return out
}

// attemptSafely runs one attempt and turns a panic into a logged error:
// the entry stays queued and is tried again later.
func (q *Queue) attemptSafely(ctx context.Context, id string) {
	defer func() {
		if r := recover(); r != nil {
			q.Logger.Error("panic delivering queue entry", "queue_id", id, "panic", r)
			q.Store.SetQueueNextAttempt([]string{id}, q.now().Add(q.retryMax()))
		}
	}()
	err := q.attempt(ctx, id)
	switch {
	case err == nil:
	case q.wasDropped(id):
		q.Logger.Info("attempt ended: the entry was dropped", "queue_id", id)
	case ctx.Err() == nil:
		q.Logger.Error("queue attempt failed", "queue_id", id, "err", err)
	}
}

func (q *Queue) dataTimeout() time.Duration {
	if q.writeTimeout > 0 {
		return q.writeTimeout
	}
	return dataBlockTimeout
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
