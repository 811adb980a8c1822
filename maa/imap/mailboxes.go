package imap

import (
	"errors"
	"strings"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/posthorn/posthorn/store"
)

// Every store call below is scoped to ss.account: a name can only ever
// reach the logged-in account's mailboxes.

// Create implements CREATE (RFC 9051 section 6.3.4) with CREATE-SPECIAL-USE
// (RFC 6154 section 3). Missing superior names are created too.
func (ss *session) Create(name string, options *imapv2.CreateOptions) error {
	name = strings.TrimSuffix(name, string(Delim)) // "foo/" declares a hierarchy
	name, err := checkName(name)
	if err != nil {
		return err
	}
	if name == "INBOX" {
		return noErr(imapv2.ResponseCodeAlreadyExists, "INBOX always exists")
	}
	special := store.SpecialNone
	if options != nil && len(options.SpecialUse) > 0 {
		if len(options.SpecialUse) > 1 {
			return noErr(imapv2.ResponseCodeCannot, "Only one special use per mailbox")
		}
		special = string(options.SpecialUse[0])
		if !validSpecialUse(special) {
			return noErr("USEATTR", "Unsupported special-use attribute")
		}
	}
	for _, parent := range parentNames(name) {
		if _, err := ss.s.Store.CreateMailbox(ss.account, parent, store.SpecialNone); err != nil &&
			!errors.Is(err, store.ErrMailboxExists) && !errors.Is(err, store.ErrExists) {
			return ss.storeError("create", err)
		}
	}
	_, err = ss.s.Store.CreateMailbox(ss.account, name, special)
	return ss.storeError("create", err)
}

func validSpecialUse(s string) bool {
	switch s {
	case store.SpecialSent, store.SpecialDrafts, store.SpecialTrash, store.SpecialJunk,
		store.SpecialArchive, store.SpecialAll, store.SpecialFlagged:
		return true
	}
	return false
}

// Delete implements DELETE (RFC 9051 section 6.3.4). INBOX cannot be
// deleted. A mailbox with children is deleted, its messages with it, and
// its children stay: its name is then listed \Noselect while they exist
// (see listEntries), as in Dovecot, and mbsync's "Remove Both" deletes a
// tree parent first. Such a name cannot be deleted (RFC 9051: it has
// inferiors and \Noselect).
func (ss *session) Delete(name string) error {
	name, err := checkName(name)
	if err != nil {
		return err
	}
	if name == "INBOX" {
		return noErr(imapv2.ResponseCodeCannot, "INBOX cannot be deleted")
	}
	boxes, err := ss.s.Store.Mailboxes(ss.account)
	if err != nil {
		return ss.storeError("delete", err)
	}
	exists, children := false, false
	for _, mb := range boxes {
		exists = exists || mb.Name == name
		children = children || strings.HasPrefix(mb.Name, name+string(Delim))
	}
	if !exists && children {
		return noErr(imapv2.ResponseCodeHasChildren, "Mailbox does not exist, only mailboxes under it")
	}
	// Deleting the selected mailbox: this session is not ended, as the
	// others that have it selected are (hub.deleted); it sees every
	// message expunged, before the OK.
	var own *view
	if ss.sel != nil && ss.mailbox() == name {
		own = ss.sel
		own.setDeleting(true)
	}
	if err := ss.s.Store.DeleteMailbox(ss.account, name); err != nil {
		if own != nil {
			own.setDeleting(false)
		}
		return ss.storeError("delete", err)
	}
	if own != nil {
		ss.s.hub.deleted(own.t)
	}
	return nil
}

// Rename implements RENAME (RFC 9051 section 6.3.6); renaming INBOX moves
// its messages and leaves it empty (done by the store).
func (ss *session) Rename(oldName, newName string, _ *imapv2.RenameOptions) error {
	oldName, err := checkName(oldName)
	if err != nil {
		return err
	}
	newName, err = checkName(strings.TrimSuffix(newName, string(Delim)))
	if err != nil {
		return err
	}
	if newName == "INBOX" {
		return noErr(imapv2.ResponseCodeAlreadyExists, "INBOX always exists")
	}
	// INBOX is the exception (RFC 9051 section 6.3.6): renaming it moves
	// its messages to the new mailbox, which may be its own child.
	if newName == oldName || oldName != "INBOX" && strings.HasPrefix(newName, oldName+string(Delim)) {
		return noErr(imapv2.ResponseCodeCannot, "Cannot rename a mailbox into itself")
	}
	return ss.storeError("rename", ss.s.Store.RenameMailbox(ss.account, oldName, newName))
}

// Subscribe implements SUBSCRIBE (RFC 9051 section 6.3.7).
func (ss *session) Subscribe(name string) error {
	return ss.setSubscribed(name, true)
}

// Unsubscribe implements UNSUBSCRIBE (RFC 9051 section 6.3.8).
func (ss *session) Unsubscribe(name string) error {
	return ss.setSubscribed(name, false)
}

func (ss *session) setSubscribed(name string, on bool) error {
	name, err := checkName(name)
	if err != nil {
		return err
	}
	return ss.storeError("subscribe", ss.s.Store.SetSubscribed(ss.account, name, on))
}

// Status implements STATUS (RFC 9051 section 6.3.11) with STATUS=SIZE
// (RFC 8438) and APPENDLIMIT (RFC 7889).
func (ss *session) Status(name string, options *imapv2.StatusOptions) (*imapv2.StatusData, error) {
	name, err := checkName(name)
	if err != nil {
		return nil, err
	}
	mb, err := ss.s.Store.Mailbox(ss.account, name)
	if err != nil {
		return nil, ss.storeError("status", err)
	}
	return ss.statusData(mb, options)
}

func (ss *session) statusData(mb store.Mailbox, options *imapv2.StatusOptions) (*imapv2.StatusData, error) {
	data := &imapv2.StatusData{
		Mailbox:       mb.Name,
		UIDNext:       imapv2.UID(mb.UIDNext),
		UIDValidity:   mb.UIDValidity,
		HighestModSeq: mb.HighestModSeq,
	}
	n, unseen, size := mb.Messages, mb.Unseen, mb.Size
	var recent uint32
	if options.NumRecent {
		// The messages no session has had as \Recent yet (RFC 3501
		// section 6.3.10), known for a mailbox selected since the server
		// started.
		var err error
		recent, err = ss.s.hub.recentCount(ss.account, mb.Name, mb.UIDValidity, mb.UIDNext, func() ([]store.Message, error) {
			return ss.s.Store.Messages(ss.account, mb.Name)
		})
		if err != nil {
			return nil, ss.storeError("status", err)
		}
	}
	data.NumMessages, data.NumUnseen, data.Size, data.NumRecent = &n, &unseen, &size, &recent
	if options.NumDeleted || options.DeletedStorage {
		msgs, err := ss.s.Store.Messages(ss.account, mb.Name)
		if err != nil {
			return nil, ss.storeError("status", err)
		}
		var count uint32
		var bytes int64
		for _, m := range msgs {
			if hasFlag(m.Flags, `\Deleted`) {
				count++
				bytes += m.Size
			}
		}
		data.NumDeleted, data.DeletedStorage = &count, &bytes
	}
	if options.AppendLimit {
		limit := ss.AppendLimit()
		data.AppendLimit = &limit
	}
	return data, nil
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// List implements LIST (RFC 9051 section 6.3.9) with LIST-EXTENDED
// (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE (RFC 6154) and CHILDREN
// (RFC 3348); imapserver calls it for LSUB too.
func (ss *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imapv2.ListOptions) error {
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter and root (6.3.9).
		return w.WriteList(&imapv2.ListData{Attrs: []imapv2.MailboxAttr{imapv2.MailboxAttrNoSelect}, Delim: Delim})
	}
	boxes, err := ss.s.Store.Mailboxes(ss.account)
	if err != nil {
		return ss.storeError("list", err)
	}
	var lapsed []string
	if options.SelectSubscribed {
		// Names deleted while subscribed: only a subscription selects
		// them (RFC 5258 section 3).
		if lapsed, err = ss.s.Store.LapsedSubscriptions(ss.account); err != nil {
			return ss.storeError("list", err)
		}
	}
	lsub := ss.isLSUB()
	lps := make([]listPattern, len(patterns))
	for i, p := range patterns {
		lps[i] = newListPattern(ref, p)
	}
	entries := listEntries(boxes, lapsed)
	for _, e := range entries {
		if !matchAny(lps, e.name) {
			continue
		}
		if lsub && !e.subscribed && e.subscribedSub {
			// RFC 3501 section 6.3.9: with "foo/bar" subscribed and
			// "foo" not, LSUB "%" returns foo, flagged \Noselect, where
			// the pattern does not reach foo/bar.
			if hiddenSubscription(entries, e.name, lps) {
				if err := w.WriteList(&imapv2.ListData{Attrs: []imapv2.MailboxAttr{imapv2.MailboxAttrNoSelect}, Delim: Delim, Mailbox: e.name}); err != nil {
					return err
				}
			}
			continue
		}
		data, ok := listData(e, options, lsub)
		if !ok {
			continue
		}
		if options.ReturnStatus != nil && e.box != nil {
			if data.Status, err = ss.statusData(*e.box, options.ReturnStatus); err != nil {
				return err
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// isLSUB tells LSUB from LIST (SUBSCRIBED): imapserver runs both through
// List with the same options, and only its ListWriter knows which it
// writes; the guard saw the command (guard.go).
func (ss *session) isLSUB() bool {
	if ss.conn == nil {
		return false
	}
	gc, ok := ss.conn.NetConn().(*guardConn)
	return ok && gc.g.command() == "LSUB"
}

// hiddenSubscription tells whether a subscribed name below name matches
// none of the patterns.
func hiddenSubscription(entries []listEntry, name string, lps []listPattern) bool {
	prefix := name + string(Delim)
	for _, d := range entries {
		if d.subscribed && strings.HasPrefix(d.name, prefix) && !matchAny(lps, d.name) {
			return true
		}
	}
	return false
}

func matchAny(lps []listPattern, name string) bool {
	for _, lp := range lps {
		if lp.match(name) {
			return true
		}
	}
	return false
}

// listEntry is a name LIST may show: a mailbox (box), a superior name
// that exists only because a child does (box nil, children), or a name
// that does not exist (box nil, no children): one subscribed after its
// mailbox was deleted, or a superior of one.
type listEntry struct {
	name          string
	box           *store.Mailbox
	children      bool // a mailbox exists below it
	subscribed    bool
	subscribedSub bool // some descendant is subscribed (CHILDINFO)
}

func listEntries(boxes []store.Mailbox, lapsed []string) []listEntry {
	idx := map[string]int{}
	var out []listEntry
	add := func(name string, box *store.Mailbox) int {
		if i, ok := idx[name]; ok {
			if box != nil {
				out[i].box = box
			}
			return i
		}
		idx[name] = len(out)
		out = append(out, listEntry{name: name, box: box})
		return len(out) - 1
	}
	for i := range boxes {
		j := add(boxes[i].Name, &boxes[i])
		out[j].subscribed = boxes[i].Subscribed
	}
	for i := range boxes {
		for _, p := range parentNames(boxes[i].Name) {
			j := add(p, nil)
			out[j].children = true
			if boxes[i].Subscribed {
				out[j].subscribedSub = true
			}
		}
	}
	for _, name := range lapsed {
		out[add(name, nil)].subscribed = true
		for _, p := range parentNames(name) {
			out[add(p, nil)].subscribedSub = true
		}
	}
	return out
}

// listData builds the LIST (or LSUB) response of an entry, or false if
// the select options exclude it. A name that does not exist is listed
// only as selected by SUBSCRIBED (RFC 5258 section 3): \NonExistent in
// LIST, \Noselect in LSUB (RFC 3501 section 6.3.9), as Dovecot does.
func listData(e listEntry, o *imapv2.ListOptions, lsub bool) (*imapv2.ListData, bool) {
	exists := e.box != nil || e.children
	special := e.box != nil && e.box.SpecialUse != ""
	if !exists && !o.SelectSubscribed {
		return nil, false
	}
	if o.SelectSpecialUse && !special {
		return nil, false
	}
	data := &imapv2.ListData{Delim: Delim, Mailbox: e.name}
	if o.SelectSubscribed && !e.subscribed {
		if !(o.SelectRecursiveMatch && e.subscribedSub) {
			return nil, false
		}
		data.ChildInfo = &imapv2.ListDataChildInfo{Subscribed: true}
	}
	switch {
	case !exists && lsub:
		data.Attrs = append(data.Attrs, imapv2.MailboxAttrNoSelect)
	case !exists:
		data.Attrs = append(data.Attrs, imapv2.MailboxAttrNonExistent)
	default:
		if e.box == nil {
			data.Attrs = append(data.Attrs, imapv2.MailboxAttrNoSelect)
		}
		if e.children {
			data.Attrs = append(data.Attrs, imapv2.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imapv2.MailboxAttrHasNoChildren)
		}
	}
	if e.subscribed && (o.SelectSubscribed || o.ReturnSubscribed) {
		data.Attrs = append(data.Attrs, imapv2.MailboxAttrSubscribed)
	}
	if special {
		data.Attrs = append(data.Attrs, imapv2.MailboxAttr(e.box.SpecialUse))
	}
	return data, true
}
