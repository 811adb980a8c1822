package pop3

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/posthorn/posthorn/store"
)

const inbox = "INBOX"

// entry is one message of the maildrop snapshot.
type entry struct {
	store.Message
	deleted   bool // marked by DELE, removed at QUIT
	gone      bool // expunged by another session (IMAP) meanwhile
	retrieved bool // sent whole by RETR: gets \Seen at QUIT
}

// maildrop is the snapshot of INBOX taken at login. Message number n is
// msgs[n-1] for the whole session (RFC 1939 section 4).
type maildrop struct {
	st          store.Store
	account     string
	uidValidity uint32
	msgs        []entry
	byUID       map[uint32]int // UID -> index in msgs
	events      <-chan store.Event
	cancel      func()
	accountGone bool // the account was deleted
	disabled    bool // the account was disabled (posthorn user disable)
}

// openMaildrop subscribes to the account's events, then takes the
// snapshot, so no expunge after the snapshot is missed.
func openMaildrop(st store.Store, account string) (*maildrop, error) {
	events, cancel := st.Subscribe(account)
	d := &maildrop{st: st, account: account, events: events, cancel: cancel}
	mbox, err := st.Mailbox(account, inbox)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open INBOX of %s: %w", account, err)
	}
	msgs, err := st.Messages(account, inbox)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("list INBOX of %s: %w", account, err)
	}
	d.uidValidity = mbox.UIDValidity
	d.msgs = make([]entry, len(msgs))
	d.byUID = make(map[uint32]int, len(msgs))
	for i, m := range msgs {
		d.msgs[i] = entry{Message: m}
		d.byUID[m.UID] = i
	}
	return d, nil
}

func (d *maildrop) close() {
	if d.cancel != nil {
		d.cancel()
		d.cancel = nil
	}
}

// sync applies the store events received so far without waiting. If the
// store closed the channel (the subscriber fell behind), it resubscribes
// and compares the snapshot with INBOX.
func (d *maildrop) sync() error {
	for {
		select {
		case ev, ok := <-d.events:
			if !ok {
				return d.resync()
			}
			d.apply(ev)
		default:
			return nil
		}
	}
}

func (d *maildrop) apply(ev store.Event) {
	switch {
	case ev.Kind == store.EventExpunge && ev.Mailbox == inbox:
		for _, uid := range ev.UIDs {
			if i, ok := d.byUID[uid]; ok {
				d.msgs[i].gone = true
			}
		}
	case ev.Kind == store.EventAccountDelete:
		d.accountGone = true
		d.markAllGone()
	case ev.Kind == store.EventAccountDisable:
		d.disabled = true
	case ev.Kind == store.EventMailboxRename && ev.Mailbox == inbox:
		// Renaming INBOX moves its messages away (RFC 9051 6.3.6).
		d.markAllGone()
	}
}

func (d *maildrop) markAllGone() {
	for i := range d.msgs {
		d.msgs[i].gone = true
	}
}

func (d *maildrop) resync() error {
	d.cancel()
	d.events, d.cancel = d.st.Subscribe(d.account)
	mbox, err := d.st.Mailbox(d.account, inbox)
	if err != nil {
		return fmt.Errorf("resync INBOX of %s: %w", d.account, err)
	}
	if mbox.UIDValidity != d.uidValidity {
		d.markAllGone()
		return nil
	}
	msgs, err := d.st.Messages(d.account, inbox)
	if err != nil {
		return fmt.Errorf("resync INBOX of %s: %w", d.account, err)
	}
	present := make(map[uint32]bool, len(msgs))
	for _, m := range msgs {
		present[m.UID] = true
	}
	for i := range d.msgs {
		if !present[d.msgs[i].UID] {
			d.msgs[i].gone = true
		}
	}
	return nil
}

// stat counts the messages not marked as deleted and their octets.
func (d *maildrop) stat() (count int, size int64) {
	for i := range d.msgs {
		if !d.msgs[i].deleted {
			count++
			size += d.msgs[i].Size
		}
	}
	return count, size
}

// left counts the messages neither marked as deleted nor expunged by
// another session.
func (d *maildrop) left() (count int) {
	for i := range d.msgs {
		if !d.msgs[i].deleted && !d.msgs[i].gone {
			count++
		}
	}
	return count
}

// uidl is the unique-id of a message (RFC 1939 section 7): printable, at
// most 70 characters, never reused, since a UID is never reused within a
// UIDVALIDITY.
func (d *maildrop) uidl(e *entry) string {
	b := strconv.AppendUint(make([]byte, 0, 24), uint64(d.uidValidity), 10)
	b = append(b, '.')
	return string(strconv.AppendUint(b, uint64(e.UID), 10))
}

// toRemove lists the UIDs to expunge at QUIT: marked, and still there.
func (d *maildrop) toRemove() []uint32 {
	var uids []uint32
	for i := range d.msgs {
		if d.msgs[i].deleted && !d.msgs[i].gone {
			uids = append(uids, d.msgs[i].UID)
		}
	}
	return uids
}

// toMarkSeen lists the UIDs retrieved, kept and not yet \Seen.
func (d *maildrop) toMarkSeen() []uint32 {
	var uids []uint32
	for i := range d.msgs {
		e := &d.msgs[i]
		if e.retrieved && !e.deleted && !e.gone && !slices.Contains(e.Flags, `\Seen`) {
			uids = append(uids, e.UID)
		}
	}
	return uids
}
