package imap

import (
	"errors"
	"slices"
	"sort"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/posthorn/posthorn/store"
)

// permanentFlags: system flags and any keyword (\*), so clients can set
// $Junk, $NotJunk, $Forwarded... (RFC 9051 section 7.1, PERMANENTFLAGS).
var permanentFlags = []imapv2.Flag{
	imapv2.FlagSeen, imapv2.FlagAnswered, imapv2.FlagFlagged, imapv2.FlagDeleted, imapv2.FlagDraft,
	imapv2.FlagWildcard,
}

// defaultKeywords are always listed in FLAGS, for Thunderbird's junk
// controls and forwarding marks.
var defaultKeywords = []string{"$Forwarded", "$Junk", "$MDNSent", "$NotJunk", "$Phishing"}

// Select implements SELECT and EXAMINE (RFC 9051 sections 6.3.2, 6.3.3).
func (ss *session) Select(name string, options *imapv2.SelectOptions) (*imapv2.SelectData, error) {
	name, err := checkName(name)
	if err != nil {
		return nil, err
	}
	if ss.sel != nil {
		ss.sel.close()
		ss.sel = nil
	}
	v, err := ss.s.hub.open(ss, name)
	if err != nil {
		return nil, ss.storeError("select", err)
	}
	v.readOnly = options != nil && options.ReadOnly
	ss.sel = v
	ss.searchRes = nil
	t := v.t
	t.mu.Lock()
	defer t.mu.Unlock()
	t.claimRecent(v)
	v.recentSent = len(v.recent)
	data := &imapv2.SelectData{
		Flags:          t.flagList(),
		PermanentFlags: permanentFlags,
		NumMessages:    v.count(),
		UIDNext:        imapv2.UID(t.nextUID),
		UIDValidity:    t.uidValidity,
		NumRecent:      uint32(v.recentSent), // IMAP4rev1 only: imapserver leaves it out for IMAP4rev2
	}
	if v.readOnly {
		data.PermanentFlags = nil
	}
	for i := range t.msgs {
		if t.msgs[i].UID > v.maxUID {
			break
		}
		if !hasFlag(t.msgs[i].Flags, `\Seen`) {
			data.FirstUnseenSeqNum = uint32(i + 1)
			break
		}
	}
	return data, nil
}

// Unselect implements UNSELECT and the end of CLOSE (RFC 9051 6.4.1, 6.4.2).
func (ss *session) Unselect() error {
	if ss.sel != nil {
		ss.sel.close()
		ss.sel = nil
	}
	return nil
}

func (ss *session) mailbox() string {
	ss.sel.t.mu.RLock()
	defer ss.sel.t.mu.RUnlock()
	return ss.sel.t.key.mailbox
}

func (ss *session) checkWritable() error {
	if ss.sel.readOnly {
		return noErr(imapv2.ResponseCodeCannot, "Mailbox is read-only (EXAMINE)")
	}
	ss.sel.t.mu.RLock()
	gone := ss.sel.t.gone
	ss.sel.t.mu.RUnlock()
	if gone {
		return errMailboxGone
	}
	return nil
}

// errMailboxGone answers what a session asks of its selected mailbox
// once that was deleted: until the session is ended (hub.deleted), or,
// for the session that deleted it, for as long as it stays selected.
var errMailboxGone = noErr(imapv2.ResponseCodeNonExistent, "Mailbox was deleted")

// selectedGone reports whether the selected mailbox was deleted: the
// tracker knows, or the store has no such mailbox, or has another one of
// that name (another UIDVALIDITY), when the delete event has not reached
// the tracker yet.
func (ss *session) selectedGone() bool {
	if ss.sel == nil {
		return false
	}
	t := ss.sel.t
	t.mu.RLock()
	gone, k, uidValidity := t.gone, t.key, t.uidValidity
	t.mu.RUnlock()
	if gone {
		return true
	}
	mb, err := ss.s.Store.Mailbox(k.account, k.mailbox)
	return errors.Is(err, store.ErrNoSuchMailbox) || err == nil && mb.UIDValidity != uidValidity
}

// Expunge implements EXPUNGE, UID EXPUNGE (RFC 9051 section 6.4.3 and
// 6.4.9) and CLOSE (w writes nothing then). Every pending expunge is
// reported, the session's own and others'.
func (ss *session) Expunge(w *imapserver.ExpungeWriter, uids *imapv2.UIDSet) error {
	if ss.sel.readOnly {
		if w != nil && uids == nil {
			// CLOSE after EXAMINE expunges nothing (6.4.2).
			return nil
		}
		return ss.checkWritable()
	}
	var del []uint32
	ss.withMessages(func(msgs []store.Message) {
		for i := range msgs {
			if msgs[i].UID <= ss.sel.maxUID && hasFlag(msgs[i].Flags, `\Deleted`) &&
				(uids == nil || uids.Contains(imapv2.UID(msgs[i].UID))) {
				del = append(del, msgs[i].UID)
			}
		}
	})
	if len(del) > 0 {
		removed, err := ss.s.Store.Expunge(ss.account, ss.mailbox(), del)
		if err != nil {
			return ss.storeError("expunge", err)
		}
		ss.sel.t.applyExpunge(removed)
	}
	for _, seq := range ss.sel.takeExpunges() {
		if err := w.WriteExpunge(seq); err != nil {
			return err
		}
	}
	return nil
}

// withMessages runs fn with the tracker's messages under its read lock.
func (ss *session) withMessages(fn func(msgs []store.Message)) {
	ss.sel.t.mu.RLock()
	defer ss.sel.t.mu.RUnlock()
	fn(ss.sel.t.msgs)
}

// resolve turns a sequence or UID set into the client view's entries, in
// sequence order, with copies of the messages (ghosts have m == nil).
func (ss *session) resolve(numSet imapv2.NumSet) ([]entry, error) {
	if imapv2.IsSearchRes(numSet) {
		var set imapv2.UIDSet
		for _, u := range ss.searchRes {
			set.AddNum(imapv2.UID(u))
		}
		if len(set) == 0 {
			return nil, nil
		}
		numSet = set
	}
	v := ss.sel
	v.t.mu.RLock()
	defer v.t.mu.RUnlock()
	switch set := numSet.(type) {
	case imapv2.SeqSet:
		// A message sequence number the mailbox does not have, or "*"
		// in an empty one, is BAD (RFC 9051 section 9, seq-number), as
		// Dovecot answers; a UID that no message has is not an error.
		n := v.count()
		for _, r := range set {
			if n == 0 || r.Start > n || r.Stop > n {
				return nil, errBadSeqSet
			}
		}
		return v.resolveSeqs(set), nil
	case imapv2.UIDSet:
		return v.resolveUIDs(set), nil
	}
	return nil, nil
}

// errBadSeqSet answers a sequence set beyond the mailbox (see resolve).
var errBadSeqSet = badErr("Invalid messageset: no message has that sequence number")

// entryCopier detaches entries from the tracker's slice: their messages
// are copied into chunks of up to copyChunk, not one allocation each (for a
// 10,000-message resync, 10,000 allocations were most of its time).
type entryCopier struct{ buf []store.Message }

const copyChunk = 256

func (c *entryCopier) copy(e entry) entry {
	if e.m != nil {
		if len(c.buf) == cap(c.buf) {
			// Small at first: most FETCHes are of a few messages.
			c.buf = make([]store.Message, 0, min(max(2*cap(c.buf), 4), copyChunk))
		}
		c.buf = append(c.buf, *e.m)
		e.m = &c.buf[len(c.buf)-1]
	}
	return e
}

func (v *view) resolveSeqs(set imapv2.SeqSet) []entry {
	n := v.count()
	if n == 0 {
		return nil
	}
	first, last := n, uint32(0)
	for _, r := range set {
		a, b := staticRange(r.Start, r.Stop, n)
		first, last = min(first, a), max(last, b)
	}
	var out []entry
	var c entryCopier
	v.walk(first, func(e entry) bool {
		if e.seq > last {
			return false
		}
		if containsStar(set, e.seq, n) {
			out = append(out, c.copy(e))
		}
		return true
	})
	return out
}

func (v *view) resolveUIDs(set imapv2.UIDSet) []entry {
	var out []entry
	var c entryCopier
	maxUID := v.maxVisibleUID()
	for _, r := range set {
		a, b := staticRange(uint32(r.Start), uint32(r.Stop), maxUID)
		from := v.seqAtOrAfter(a)
		if from == 0 {
			continue
		}
		v.walk(from, func(e entry) bool {
			if e.uid > b {
				return false
			}
			out = append(out, c.copy(e))
			return true
		})
	}
	if len(set) > 1 {
		out = sortEntries(out)
	}
	return out
}

// staticRange replaces '*' (0) by max and orders the range (RFC 9051 9:
// "*:4" is "4:*").
func staticRange(a, b, max uint32) (uint32, uint32) {
	if a == 0 {
		a = max
	}
	if b == 0 {
		b = max
	}
	if a > b {
		a, b = b, a
	}
	return a, b
}

func containsStar(set imapv2.SeqSet, seq, n uint32) bool {
	for _, r := range set {
		a, b := staticRange(r.Start, r.Stop, n)
		if seq >= a && seq <= b {
			return true
		}
	}
	return false
}

func sortEntries(es []entry) []entry {
	sort.Slice(es, func(i, j int) bool { return es[i].seq < es[j].seq })
	out := es[:0]
	for i, e := range es {
		if i == 0 || e.seq != es[i-1].seq {
			out = append(out, e)
		}
	}
	return out
}

// maxVisibleUID is the highest UID in the client view.
func (v *view) maxVisibleUID() uint32 {
	max := uint32(0)
	if n := v.t.rank(v.maxUID); n > 0 {
		max = v.t.msgs[n-1].UID
	}
	if g := len(v.ghosts); g > 0 && v.ghosts[g-1] > max {
		max = v.ghosts[g-1]
	}
	return max
}

// seqAtOrAfter is the sequence number of the first message with UID >= uid,
// or 0.
func (v *view) seqAtOrAfter(uid uint32) uint32 {
	if uid == 0 {
		uid = 1
	}
	i := sort.Search(len(v.t.msgs), func(i int) bool { return v.t.msgs[i].UID >= uid })
	limit := v.t.rank(v.maxUID)
	g, _ := slices.BinarySearch(v.ghosts, uid)
	var candidate uint32
	if i < limit {
		candidate = v.t.msgs[i].UID
	}
	if g < len(v.ghosts) && (candidate == 0 || v.ghosts[g] < candidate) {
		candidate = v.ghosts[g]
	}
	if candidate == 0 {
		return 0
	}
	return v.seqOf(candidate)
}

func uidsOf(es []entry) []uint32 {
	out := make([]uint32, 0, len(es))
	for _, e := range es {
		if e.m != nil {
			out = append(out, e.uid)
		}
	}
	return out
}
