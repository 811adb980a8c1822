// Package mailio imports mail into the store from mbox files and Maildir
// directories, and exports an account to a Maildir++ directory. It is the
// library behind `posthorn import` and `posthorn export`.
//
// Implementation notes:
//
//   - Every message is in the store whole or not at all. A message that cannot be parsed (no header, a malformed header
//     field) is reported in Result.Errors and skipped; the import goes on.
//   - An import run again, after it was cut off or by mistake, stores
//     nothing twice: a message its mailbox already holds byte for byte
//     is counted in Result.Present and not stored again (see present).
//   - Messages are appended in batches (store.AppendMany: up to 256
//     messages or 16 MiB of one mailbox per durable transaction), so one
//     fsync serves many messages, and UIDs follow the input order exactly.
//     Reading the input overlaps with committing the previous batch. The
//     internal date is kept (mbox "From " line, else the Date: field;
//     Maildir file modification time).
//   - mbox (RFC 4155): a message whose header has a Content-Length that
//     holds (the bytes after that many end the file or are a line break
//     and a "From " line, perhaps after one empty line) is cut there, its
//     body taken as written, as mutt and Dovecot read it: Dovecot does not
//     quote "From " lines in bodies. Otherwise a "From " line at the start
//     of the file or after an empty line starts a message, and quoted body
//     lines are unquoted as the format given says: mboxrd (the default)
//     takes one '>' off ">From ", ">>From "...; mboxo only off ">From ".
//     The two cannot be told apart from the file (RFC 4155 appendix A).
//     The empty line before a separator belongs to the mbox format, not to
//     the message. The fields in which mbox writers keep a message's state
//     (Status:, X-Status:, X-Keywords:, X-UID:, X-IMAP:, X-IMAPbase:,
//     Content-Length:) become flags and keywords and are removed from the
//     header, as Dovecot hides them; the "FOLDER INTERNAL DATA"
//     pseudo-message of UW-IMAP and Dovecot is left out.
//   - Line endings become CRLF (RFC 5322 section 2.1); lines already ending
//     in CRLF are kept, so a CRLF Maildir round trip is byte-exact.
//   - Maildir++: the top level's cur/ and new/ are INBOX; ".Sub.Folder" is
//     the mailbox "Sub/Folder", its name decoded from modified UTF-7 (RFC
//     3501 section 5.1.3) as Dovecot and Courier write it, and
//     ".INBOX.Sub" is INBOX's child "INBOX/Sub", as in Dovecot's layout.
//     Files are imported in delivery order: by the time their names start
//     with, then by the rest of the name with numbers compared as numbers
//     (unpadded counters: U2 before U10). The ":2,"
//     suffix's letters map to flags (D Draft, F Flagged, R Answered,
//     S Seen, T Deleted; P, passed, has no IMAP flag); lower-case letters
//     are keywords listed in the folder's dovecot-keywords file.
package mailio

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/posthorn/posthorn/store"
)

// Result says what an import did.
type Result struct {
	Imported int
	Present  int      // already in their mailbox, from an earlier run of the import: not stored again
	Skipped  int      // malformed or refused messages, each with an entry in Errors
	Errors   []string // one line per skipped message: where it was and why
}

// Progress is called with the number of messages handled so far; calls are
// serialized. It may be nil.
type Progress func(n int)

// batchMessages and batchBytes bound one AppendMany.
const (
	batchMessages = 256
	batchBytes    = 16 << 20
)

// maxInflightBytes bounds the message bytes held by queued and running
// appends together.
const maxInflightBytes = 64 << 20

// job is one message to append, with where it came from for errors; or,
// with err set, one that was skipped before that (kept in the queue so
// that results and progress follow the input order).
type job struct {
	where   string
	mailbox string
	msg     store.NewMessage
	err     error
	held    bool // the mailbox holds it already (see present)
}

// appender queues messages from the reader and appends them, in order, in
// batches, on one goroutine.
type appender struct {
	ctx      context.Context // cancelled on a fatal error
	parent   context.Context // the caller's
	st       store.Store
	account  string
	progress Progress
	present  *present

	jobs chan job
	wg   sync.WaitGroup

	// inflight counts the bytes of queued and running appends; room is
	// signalled when they shrink.
	inflightMu sync.Mutex
	room       *sync.Cond
	inflight   int

	mu     sync.Mutex
	res    Result
	fatal  error
	cancel context.CancelFunc
}

func newAppender(ctx context.Context, st store.Store, account string, progress Progress) *appender {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	a := &appender{ctx: ctx, parent: parent, st: st, account: account, progress: progress,
		present: newPresent(st, account), jobs: make(chan job, batchMessages), cancel: cancel}
	a.room = sync.NewCond(&a.inflightMu)
	a.wg.Add(1)
	go a.work()
	return a
}

// work takes what is queued, up to a batch, and appends it; while it
// commits, the reader fills the queue again.
func (a *appender) work() {
	defer a.wg.Done()
	var batch []job
	for j := range a.jobs {
		batch = append(batch[:0], j)
		size := len(j.msg.Body)
	gather:
		for len(batch) < batchMessages && size < batchBytes {
			select {
			case k, ok := <-a.jobs:
				if !ok {
					break gather
				}
				batch = append(batch, k)
				size += len(k.msg.Body)
			default:
				break gather
			}
		}
		a.run(batch)
	}
}

// run appends a batch: each run of messages to one mailbox is one
// AppendMany. Messages the mailbox holds already are left out.
func (a *appender) run(batch []job) {
	for i := range batch {
		if a.ctx.Err() != nil {
			break
		}
		if j := &batch[i]; j.err == nil {
			var err error
			if j.held, err = a.present.has(j.mailbox, j.msg.Body); err != nil {
				j.err = fmt.Errorf("mailbox %s: %w", j.mailbox, err)
			}
		}
	}
	for len(batch) > 0 {
		j := batch[0]
		if a.ctx.Err() != nil || j.err != nil || j.held {
			switch {
			case a.ctx.Err() != nil:
			case j.held:
				a.held()
			default:
				a.done(j.where, j.err)
			}
			a.release(len(j.msg.Body))
			batch = batch[1:]
			continue
		}
		n := 1
		for n < len(batch) && batch[n].err == nil && !batch[n].held && batch[n].mailbox == j.mailbox {
			n++
		}
		msgs := make([]store.NewMessage, n)
		for i := range n {
			msgs[i] = batch[i].msg
		}
		ds, err := a.st.AppendMany(a.ctx, a.account, j.mailbox, msgs)
		for i := range ds {
			a.done(batch[i].where, nil)
		}
		if err != nil {
			n = len(ds) + 1
			a.done(batch[len(ds)].where, err)
		}
		size := 0
		for i := range n {
			size += len(batch[i].msg.Body)
		}
		a.release(size)
		batch = batch[n:]
	}
}

// reserve waits until n more bytes may be in flight. A message larger than
// the whole allowance goes alone.
func (a *appender) reserve(n int) {
	a.inflightMu.Lock()
	defer a.inflightMu.Unlock()
	for a.inflight > 0 && a.inflight+n > maxInflightBytes {
		a.room.Wait()
	}
	a.inflight += n
}

func (a *appender) release(n int) {
	a.inflightMu.Lock()
	a.inflight -= n
	a.inflightMu.Unlock()
	a.room.Broadcast()
}

// done records one finished message. Errors that concern every message
// (quota, a vanished account, a cancelled context, a closed store) stop
// the import; others skip the message.
func (a *appender) done(where string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err == nil:
		a.res.Imported++
	case isFatal(err) || a.ctx.Err() != nil:
		if a.fatal == nil {
			a.fatal = fmt.Errorf("%s: %w", where, err)
		}
		a.cancel()
		return
	default:
		a.res.Skipped++
		a.res.Errors = append(a.res.Errors, fmt.Sprintf("%s: %v", where, err))
	}
	if a.progress != nil {
		a.progress(a.res.Imported + a.res.Skipped + a.res.Present)
	}
}

// held records one message that the mailbox held already.
func (a *appender) held() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.res.Present++
	if a.progress != nil {
		a.progress(a.res.Imported + a.res.Skipped + a.res.Present)
	}
}

func isFatal(err error) bool {
	return errors.Is(err, store.ErrOverQuota) || errors.Is(err, store.ErrNoSuchAccount) ||
		errors.Is(err, store.ErrNoSuchMailbox) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded)
}

// skip records, in its place in the input, a message that was not even
// parsed; false once the import has stopped.
func (a *appender) skip(where string, err error) bool {
	return a.add(job{where: where, err: err})
}

// add queues one message; false once the import has stopped.
func (a *appender) add(j job) bool {
	a.reserve(len(j.msg.Body))
	select {
	case a.jobs <- j:
		return true
	case <-a.ctx.Done():
		a.release(len(j.msg.Body))
		return false
	}
}

// finish waits for every append and returns the result.
func (a *appender) finish() (Result, error) {
	close(a.jobs)
	a.wg.Wait()
	a.cancel()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fatal == nil && a.parent.Err() != nil {
		a.fatal = a.parent.Err()
	}
	return a.res, a.fatal
}

// create makes the mailbox that the next messages go to, if it does not
// exist yet.
func (a *appender) create(mailbox string) error {
	if err := ensureMailbox(a.st, a.account, mailbox); err != nil {
		return fmt.Errorf("mailbox %s: %w", mailbox, err)
	}
	return nil
}

// subscribe subscribes the account to a mailbox the source had
// subscribed (a folder of a Maildir with a subscription file).
func (a *appender) subscribe(mailbox string) error {
	err := a.st.SetSubscribed(a.account, mailbox, true)
	if errors.Is(err, store.ErrNoSuchMailbox) || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", mailbox, err)
	}
	return nil
}

// ensureMailbox creates a mailbox that does not exist yet.
func ensureMailbox(st store.Store, account, name string) error {
	_, err := st.Mailbox(account, name)
	if errors.Is(err, store.ErrNoSuchMailbox) || errors.Is(err, store.ErrNotFound) {
		_, err = st.CreateMailbox(account, name, store.SpecialNone)
		if errors.Is(err, store.ErrMailboxExists) || errors.Is(err, store.ErrExists) {
			return nil
		}
	}
	return err
}
