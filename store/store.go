// Package store owns Posthorn's durable state: domains, accounts, aliases,
// DKIM keys, mailboxes, messages and the outbound queue, all in one bbolt
// file (data_dir/posthorn.db), with a write-ahead log beside it while the
// store is open (data_dir/posthorn.db-wal; see wal.go).
//
// Implementation notes:
//
//   - Every component uses the store through the Store interface declared
//     here; Open returns the bbolt implementation. A second engine can be
//     added behind the same interface.
//   - A write returns only once it is durable. Concurrent writers share
//     commits (group commit), so throughput is not capped at one fsync per
//     message, and a delivery of up to 64 KiB costs one fdatasync of the
//     log rather than bbolt's two.
//   - A message body is stored once, in chunks of ChunkSize bytes, in the
//     same transaction as its index entries, and reference-counted: a
//     message delivered to several accounts, or copied between mailboxes,
//     shares one blob; expunging the last reference frees it.
//   - The ENVELOPE, BODYSTRUCTURE and header length are parsed once when a
//     blob is written (with nesting and header-count limits) and kept beside
//     the blob, so no FETCH ever re-parses a message.
//   - Bodies are read chunk by chunk in short read transactions: a reader
//     waiting on a slow client never holds a bbolt transaction open.
//   - Every change (append, flags, expunge, mailbox create/delete/rename) is
//     published to in-process subscribers after its commit.
package store

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
)

// ChunkSize is the size of one stored piece of a message body.
const ChunkSize = 64 * 1024

// Errors returned by the store. Callers test them with errors.Is.
var (
	ErrNotFound      = errors.New("not found")
	ErrExists        = errors.New("already exists")
	ErrNoSuchDomain  = errors.New("domain is not served here")
	ErrNoSuchAccount = errors.New("no such account")
	ErrNoSuchMailbox = errors.New("no such mailbox")
	ErrMailboxExists = errors.New("mailbox already exists")
	ErrInvalidName   = errors.New("invalid name")
	ErrOverQuota     = errors.New("account is over quota")
	ErrLocked        = errors.New("data file is in use by another process")
)

// NoSpace reports whether err is the file system's refusal of a write
// for want of room: the disk is full, or the store's user is over its
// disk quota. The write failed (though it may show, and become durable
// with the next checkpoint, when only its log record could not be
// written), and the store takes writes again once there is room, with
// no restart (see boltStore.fail).
func NoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// noSpaceEvery is how often ReportNoSpace lets a report through.
const noSpaceEvery = time.Minute

var noSpaceLast, noSpaceMissed atomic.Int64

// ReportNoSpace tells a caller refused for want of room (NoSpace) whether
// to log it now: the first refusal of a minute is logged, with the number
// of those since the last report (missed), and the others are not. Every
// message refused while the disk was full logged an ERROR: 76,000 lines
// a minute, to a log on that same full disk.
func ReportNoSpace() (report bool, missed int64) {
	now := time.Now().UnixNano()
	last := noSpaceLast.Load()
	if now-last < int64(noSpaceEvery) || !noSpaceLast.CompareAndSwap(last, now) {
		noSpaceMissed.Add(1)
		return false, 0
	}
	return true, noSpaceMissed.Swap(0)
}

// STSPolicy is a remote domain's MTA-STS policy (RFC 8461).
type STSPolicy struct {
	Domain  string // lower case
	ID      string // of the _mta-sts TXT record it was fetched for
	Mode    string // "enforce", "testing" or "none"
	MX      []string
	Expires time.Time // fetched + max_age
}

// Special-use attributes (RFC 6154) given to the default mailboxes.
const (
	SpecialNone    = ""
	SpecialSent    = `\Sent`
	SpecialDrafts  = `\Drafts`
	SpecialTrash   = `\Trash`
	SpecialJunk    = `\Junk`
	SpecialArchive = `\Archive`
	SpecialAll     = `\All`
	SpecialFlagged = `\Flagged`
)

// DefaultMailboxes are created with every account, with their special use.
var DefaultMailboxes = []struct{ Name, SpecialUse string }{
	{"INBOX", SpecialNone},
	{"Sent", SpecialSent},
	{"Drafts", SpecialDrafts},
	{"Trash", SpecialTrash},
	{"Junk", SpecialJunk},
	{"Archive", SpecialArchive},
}

// Account is a mail account: one address with a password that can log in.
type Account struct {
	Address      string // lower-case "local@domain"
	PasswordHash string // auth's encoded argon2id hash
	QuotaBytes   int64  // 0: no quota
	UsedBytes    int64  // sum of the sizes of the account's messages
	Disabled     bool
	Created      time.Time
}

// Fits reports whether add more bytes stay within the account's quota:
// the rule by which Append and Deliver refuse with ErrOverQuota.
func (a Account) Fits(add int64) bool {
	return a.QuotaBytes <= 0 || a.UsedBytes+add <= a.QuotaBytes
}

// DKIMKey is one signing key of a domain.
type DKIMKey struct {
	Domain     string
	Selector   string
	Algorithm  string // "ed25519" or "rsa"
	PrivateKey []byte // PKCS#8, DER
	Created    time.Time
	Active     bool // signs new mail; inactive keys stay published until removed
	// Pending: made by `dkim rotate`, published but not signing until
	// `dkim activate`, so that no mail is signed with a key receivers
	// cannot find yet.
	Pending bool `json:",omitempty"`
}

// Mailbox describes one mailbox of an account.
type Mailbox struct {
	Name          string // full name, hierarchy separator '/'; "INBOX" is canonical
	ID            uint64 // never reused within an account
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
	SpecialUse    string // one of the Special* constants
	Subscribed    bool
	Messages      uint32
	Unseen        uint32
	Size          int64 // sum of message sizes (STATUS=SIZE)
}

// Message is the index entry of one message in a mailbox.
type Message struct {
	UID          uint32
	Size         int64
	InternalDate time.Time
	Flags        []string // system flags (`\Seen`...) and keywords, sorted
	ModSeq       uint64
	BlobID       uint64
	// Prefix is header lines written before the shared body for this
	// message only (Return-Path, Delivered-To). Size includes it; the
	// message's bytes are Prefix followed by the blob (see OpenMessage).
	Prefix []byte
}

// BlobInfo is what was parsed of a message body once, when it was stored.
type BlobInfo struct {
	ID            uint64
	Size          int64
	HeaderLen     int64 // bytes of the header including the blank line
	Envelope      *imap.Envelope
	BodyStructure imap.BodyStructure // extended form (BODYSTRUCTURE)
}

// NewMessage is a message to append to a mailbox.
type NewMessage struct {
	Body         []byte    // the whole RFC 5322 message, CRLF line endings
	Flags        []string  // initial flags
	InternalDate time.Time // zero: now
}

// Delivery names one mailbox a message goes to in Deliver.
type Delivery struct {
	Account string
	Mailbox string // "INBOX", "Junk"...; a missing mailbox falls back to INBOX
	Flags   []string
	// Prefix is header lines put before the body for this recipient only
	// (Return-Path, Delivered-To); the body itself is stored once.
	Prefix []byte
}

// Delivered is the result for one Delivery.
type Delivered struct {
	Account     string
	Mailbox     string
	UIDValidity uint32
	UID         uint32
}

// FlagOp is how StoreFlags changes flags.
type FlagOp int

const (
	FlagsSet FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// CopyResult maps source UIDs to the UIDs given in the destination.
type CopyResult struct {
	UIDValidity uint32 // of the destination
	SrcUIDs     []uint32
	DstUIDs     []uint32
}

// EventKind says what changed.
type EventKind int

const (
	EventAppend EventKind = iota + 1
	EventFlags
	EventExpunge
	EventMailboxCreate
	EventMailboxDelete
	EventMailboxRename
	// EventAccountDelete: the account is gone (after its mailboxes'
	// EventMailboxDelete events); Mailbox is empty.
	EventAccountDelete
	// EventAccountDisable: the account was disabled (SetDisabled); its
	// sessions end. Mailbox is empty.
	EventAccountDisable
)

// Event is published to subscribers after the change is committed.
type Event struct {
	Kind    EventKind
	Account string
	Mailbox string   // for renames, the old name
	NewName string   // renames only
	UIDs    []uint32 // appended, changed or expunged, ascending
	// Messages holds the new index entries for EventAppend and EventFlags,
	// in the order of UIDs.
	Messages []Message
	ModSeq   uint64 // the mailbox's HIGHESTMODSEQ after the change
	// Seq numbers the events of this process in publication order, from
	// 1; see Store.EventSeq.
	Seq uint64
}

// QueueRecipient is one recipient of an outbound queue entry.
type QueueRecipient struct {
	Address string
	// Original is the address the sender gave when an alias led to
	// Address ("" when it is the same): a DSN names it (RFC 3464 section
	// 2.3.1), as the sender never saw Address.
	Original  string `json:",omitempty"`
	Done      bool   // delivered, bounced or given up: nothing more to do
	Failed    bool   // Done because of a permanent failure
	LastError string // last reply or error from the remote side
}

// QueueEntry is one message waiting for outbound delivery.
type QueueEntry struct {
	ID          string // unique, sortable by creation
	From        string // envelope sender; "" for a bounce (<>)
	Recipients  []QueueRecipient
	BlobID      uint64
	Size        int64
	Created     time.Time
	NextAttempt time.Time
	Attempts    int
	LastError   string
	// NoBounce is set for bounces and mail that must never produce one.
	NoBounce      bool
	DelayNotified bool // a delay DSN was already sent
	SMTPUTF8      bool
	EightBit      bool   // 8BITMIME body
	AuthUser      string // account that submitted it, if any
	// Junk: recipients of ours get it in Junk, not INBOX. A message the
	// sender's DMARC policy quarantined, waiting in the queue for a full
	// mailbox, must not reach INBOX when it is delivered later.
	Junk bool
}

// Store is the interface every component uses. All methods are safe for
// concurrent use. Addresses and domains are compared in lower case.
type Store interface {
	// Domains.
	AddDomain(name string) error
	DeleteDomain(name string) error // ErrNotFound; fails while accounts use it
	Domains() ([]string, error)
	HasDomain(name string) (bool, error)

	// Accounts. AddAccount creates the DefaultMailboxes.
	AddAccount(address, passwordHash string) error // ErrNoSuchDomain, ErrExists
	SetPasswordHash(address, hash string) error
	SetQuota(address string, bytes int64) error
	SetDisabled(address string, disabled bool) error // disabling publishes EventAccountDisable
	DeleteAccount(address string) error              // removes its mail
	Account(address string) (Account, error)
	Accounts() ([]Account, error)

	// Aliases: an address (or "@domain" for a catch-all) that forwards to
	// one or more targets, local or remote.
	AddAlias(address string, targets []string) error // replaces an existing one
	DeleteAlias(address string) error
	Alias(address string) ([]string, error) // ErrNotFound
	Aliases() (map[string][]string, error)

	// CheckRoom fails with ENOSPC (NoSpace) when a message of size bytes
	// would leave less than Options.MinFree on the data file's file
	// system: the check appends and deliveries make, for an SMTP server
	// to refuse at MAIL FROM rather than after DATA.
	CheckRoom(size int64) error

	// MTA-STS policies of the remote domains we send to, as the
	// outbound queue last fetched them: kept across restarts, since a
	// policy protects only once it is known (RFC 8461 section 5.1).
	PutSTSPolicy(p STSPolicy) error             // replaces the domain's; drops expired ones
	STSPolicy(domain string) (STSPolicy, error) // ErrNotFound

	// DKIM keys.
	AddDKIMKey(k DKIMKey) error // makes it the active key of its algorithm, unless k.Pending
	DKIMKeys(domain string) ([]DKIMKey, error)
	DeleteDKIMKey(domain, selector string) error

	// Mailboxes.
	Mailboxes(account string) ([]Mailbox, error) // sorted by name
	Mailbox(account, name string) (Mailbox, error)
	CreateMailbox(account, name, specialUse string) (Mailbox, error)
	DeleteMailbox(account, name string) error // INBOX cannot be deleted
	// RenameMailbox renames a mailbox and its children. Renaming INBOX
	// moves its messages to the new mailbox and leaves INBOX empty
	// (RFC 9051 section 6.3.6).
	RenameMailbox(account, oldName, newName string) error
	SetSubscribed(account, name string, subscribed bool) error
	// LapsedSubscriptions lists the subscribed names whose mailbox was
	// deleted: DELETE keeps the subscription (RFC 9051 section 6.3.7).
	LapsedSubscriptions(account string) ([]string, error)

	// Messages.
	Append(ctx context.Context, account, mailbox string, m NewMessage) (Delivered, error)
	// AppendMany stores msgs in one mailbox, in their order, in one
	// durable transaction. It stops at the first message it cannot store:
	// the deliveries returned are of the messages before it (committed)
	// and the error is that message's.
	AppendMany(ctx context.Context, account, mailbox string, msgs []NewMessage) ([]Delivered, error)
	// Deliver writes one body to many mailboxes of many accounts in one
	// durable transaction; the body is stored once.
	// ErrOverQuota if any account would pass its quota.
	Deliver(ctx context.Context, body []byte, to []Delivery) ([]Delivered, error)
	// Messages lists the index of a mailbox in UID order.
	Messages(account, mailbox string) ([]Message, error)
	// ChangedSince lists messages whose modseq is above modseq.
	ChangedSince(account, mailbox string, modseq uint64) ([]Message, error)
	StoreFlags(account, mailbox string, uids []uint32, op FlagOp, flags []string) ([]Message, error)
	// Expunge removes the given messages and returns the UIDs removed.
	Expunge(account, mailbox string, uids []uint32) ([]uint32, error)
	Copy(account, src string, uids []uint32, dst string) (CopyResult, error)
	// Move is Copy plus Expunge in one transaction.
	Move(account, src string, uids []uint32, dst string) (CopyResult, error)

	// Bodies.
	BlobInfo(id uint64) (BlobInfo, error)
	// BlobInfos returns many at once, for a header sync.
	BlobInfos(ids []uint64) (map[uint64]BlobInfo, error)
	// OpenBlob reads a body chunk by chunk; each Read or ReadAt opens its
	// own short read transaction. The body stays readable until Close,
	// even if its last message is expunged meanwhile; Close frees it then
	// (see blobPin), so every Blob must be closed.
	OpenBlob(id uint64) (Blob, error)
	// OpenMessage reads a message's bytes: its Prefix, then its blob.
	OpenMessage(m Message) (Blob, error)
	// Headers returns the header of each message (its Prefix, then the
	// blob's header through the blank line), all in one read transaction
	// and reading no body bytes: a header sync. A message whose blob is
	// gone (expunged meanwhile) gets nil.
	Headers(msgs []Message) ([][]byte, error)

	// Outbound queue.
	Enqueue(ctx context.Context, e QueueEntry, body []byte) (QueueEntry, error) // sets ID, BlobID, Size
	QueueEntries() ([]QueueEntry, error)
	QueueEntry(id string) (QueueEntry, error)
	// UpdateQueueEntry replaces an entry's delivery state as a whole: only
	// the worker that holds the entry may call it (see
	// SetQueueNextAttempt for everyone else).
	UpdateQueueEntry(e QueueEntry) error
	// SetQueueNextAttempt changes only NextAttempt of the entries ids
	// (missing ones are skipped) and returns how many it changed.
	SetQueueNextAttempt(ids []string, at time.Time) (int, error)
	// DeleteQueueEntry removes an entry and releases its body.
	DeleteQueueEntry(id string) error

	// Subscribe returns a channel of events for one account ("" for all).
	// The channel is buffered; a subscriber that falls far behind gets
	// ErrOverflow-style treatment: it is closed and must resubscribe.
	Subscribe(account string) (<-chan Event, func())
	// EventSeq is the Seq of the last event published. Events are
	// published before the write that made them returns, so a
	// subscriber that has handled this Seq has seen every change
	// acknowledged so far.
	EventSeq() uint64

	// Backup writes a consistent copy of the database.
	Backup(w io.Writer) (int64, error)
	// ReleaseMapped stops charging the process for database pages it
	// has read (they stay in the page cache); for an idle server.
	ReleaseMapped() error
	Close() error
}

// Blob is a stored message body.
type Blob interface {
	io.Reader
	io.ReaderAt
	io.Seeker
	Size() int64
	Close() error
}

// Options tune Open.
type Options struct {
	MaxHeaderFields int // parsing limit per message; 0: 1000
	MaxMIMEDepth    int // parsing limit per message; 0: 50
	// NoSync skips fsync (tests of logic only; never in serve).
	NoSync bool
	// NoWAL commits with bbolt's two fdatasyncs per transaction instead
	// of the write-ahead log (wal.go): for comparison in benchmarks.
	NoWAL bool
	// MinFree is the room, in bytes, that appends, deliveries and queued
	// messages leave free on the data file's file system: with less, they
	// fail with ENOSPC (NoSpace) before anything is written, as Postfix
	// refuses mail below queue_minfree. The other writes (expunges and
	// deletions, which make room, flags, mailboxes) may use it, and the
	// store seldom meets a full disk. 0: no reserve.
	MinFree int64
}
