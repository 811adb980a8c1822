// Package mailio imports mail into the store from mbox files and Maildir
// directories, and exports an account to a Maildir++ directory. It is the
// library behind `posthorn import` and `posthorn export`.
//
// Implementation notes:
//
//   - Every message is one store.Append: it is in the store whole or not at
//     all. A message that cannot be parsed (no header, a malformed header
//     field) is reported in Result.Errors and skipped; the import goes on.
//   - Appends run on several goroutines so that the store's group commit
//     (bbolt Batch) shares one fsync among many messages; a sequential
//     import would pay one fsync per message. The price: UIDs follow the
//     input order only approximately. The internal date is kept (mbox "From "
//     line, else the Date: field; Maildir file modification time), and
//     clients sort by it.
//   - mbox: both mboxo and mboxrd are read (RFC 4155). A "From " line at
//     the start of the file or after an empty line starts a message; in a
//     body line ">From ", ">>From "... one '>' is removed, which undoes
//     mboxrd quoting exactly and mboxo quoting as well as it can be undone.
//     The empty line before a separator belongs to the mbox format, not to
//     the message. Status:/X-Status: fields (mutt, Thunderbird) become
//     flags and stay in the message.
//   - Line endings become CRLF (RFC 5322 section 2.1); lines already ending
//     in CRLF are kept, so a CRLF Maildir round trip is byte-exact.
//   - Maildir++: the top level's cur/ and new/ are INBOX; ".Sub.Folder" is
//     the mailbox "Sub/Folder", its name decoded from modified UTF-7 (RFC
//     3501 section 5.1.3) as Dovecot and Courier write it. The ":2,"
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
	Skipped  int      // malformed or refused messages, each with an entry in Errors
	Errors   []string // one line per skipped message: where it was and why
}

// Progress is called with the number of messages handled so far; calls are
// serialized. It may be nil.
type Progress func(n int)

// workers is the number of concurrent appends. It is what lets a store
// with group commit share fsyncs: the bbolt store commits up to 256 writes
// at once, and on a disk where fsync costs milliseconds, 10,000 messages
// import several times faster with 256 workers than with 32.
const workers = 256

// maxInflightBytes bounds the message bytes held by queued and running
// appends together, whatever the number of workers.
const maxInflightBytes = 64 << 20

// job is one message to append, with where it came from for errors.
type job struct {
	where   string
	mailbox string
	msg     store.NewMessage
}

// appender appends messages from several goroutines and collects results.
type appender struct {
	ctx      context.Context // cancelled on a fatal error
	parent   context.Context // the caller's
	st       store.Store
	account  string
	progress Progress

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
		jobs: make(chan job, workers), cancel: cancel}
	a.room = sync.NewCond(&a.inflightMu)
	for range workers {
		a.wg.Add(1)
		go a.work()
	}
	return a
}

func (a *appender) work() {
	defer a.wg.Done()
	for j := range a.jobs {
		if a.ctx.Err() != nil {
			continue
		}
		_, err := a.st.Append(a.ctx, a.account, j.mailbox, j.msg)
		a.release(len(j.msg.Body))
		a.done(j.where, err)
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

// done records one finished append. Errors that concern every message
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
		a.progress(a.res.Imported + a.res.Skipped)
	}
}

func isFatal(err error) bool {
	return errors.Is(err, store.ErrOverQuota) || errors.Is(err, store.ErrNoSuchAccount) ||
		errors.Is(err, store.ErrNoSuchMailbox) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded)
}

// skip records a message that was not even parsed.
func (a *appender) skip(where string, err error) {
	a.done(where, err)
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
