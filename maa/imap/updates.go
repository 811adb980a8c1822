package imap

import (
	"slices"
	"strings"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// update is one untagged response owed to a client.
type update struct {
	expunge uint32 // EXPUNGE seq
	exists  uint32 // EXISTS n
	seq     uint32 // FETCH seq (UID uid FLAGS flags)
	uid     uint32
	flags   []string
	// recent: RECENT n (IMAP4rev1; imapserver drops it for IMAP4rev2)
	recent    uint32
	hasRecent bool
	// mailboxFlags: FLAGS (the mailbox's flags, with a new keyword)
	mailboxFlags []imapv2.Flag
}

// collect moves the view forward and returns what the client must be told:
// pending expunges (only when allowed: RFC 9051 section 7.5.1 forbids them
// during FETCH, STORE and SEARCH), new messages, changed flags.
func (v *view) collect(allowExpunge bool) []update {
	t := v.t
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []update
	if v.flagsGen != t.flagsGen {
		// Before the FETCH that shows the new keyword (RFC 9051 7.3.5).
		// PERMANENTFLAGS has \* and does not change.
		v.flagsGen = t.flagsGen
		out = append(out, update{mailboxFlags: t.flagList()})
	}
	if allowExpunge && len(v.ghosts) > 0 {
		out = v.expungesLocked(out)
	}
	if last := t.lastUID(); last > v.maxUID {
		v.maxUID = last
		if !v.readOnly {
			t.claimRecent(v) // new mail is \Recent to one session (RFC 3501 section 2.3.2)
		}
		out = append(out, update{exists: v.count()})
		if n := len(v.recent); n != v.recentSent {
			v.recentSent = n
			out = append(out, update{recent: uint32(n), hasRecent: true})
		}
	}
	if len(v.flags) > 0 {
		uids := make([]uint32, 0, len(v.flags))
		for uid := range v.flags {
			uids = append(uids, uid)
		}
		slices.Sort(uids)
		for _, uid := range uids {
			i := t.index(uid)
			seq := v.seqOf(uid)
			if i < 0 || seq == 0 {
				continue
			}
			out = append(out, update{seq: seq, uid: uid, flags: v.owner.withRecent(t.msgs[i].Flags, v.isRecent(uid))})
		}
		v.flags = nil
	}
	return out
}

// flagsFirst sends FLAGS, when a keyword was added since the session was
// last told, before a FETCH or STORE writes responses that show it (RFC
// 9051 section 7.3.5); collect would send it after them.
func (ss *session) flagsFirst() error {
	v := ss.sel
	if v == nil {
		return nil
	}
	v.t.mu.Lock()
	gen := v.t.flagsGen
	if v.flagsGen == gen {
		v.t.mu.Unlock()
		return nil
	}
	list := v.t.flagList()
	v.t.mu.Unlock()
	b := []byte("* FLAGS (")
	for i, f := range list {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, f...)
	}
	written, err := writeUntagged(ss.conn, append(b, ")\r\n"...))
	if written {
		v.t.mu.Lock()
		v.flagsGen = max(v.flagsGen, gen)
		v.t.mu.Unlock()
	}
	return err
}

// expungesLocked reports every ghost, highest sequence number first so
// that each number is valid when the client reads it.
func (v *view) expungesLocked(out []update) []update {
	for j := len(v.ghosts) - 1; j >= 0; j-- {
		seq := uint32(v.t.rank(v.ghosts[j]) + j + 1)
		out = append(out, update{expunge: seq})
	}
	v.ghosts = nil
	return out
}

// takeExpunges reports the ghosts only (EXPUNGE, MOVE, CLOSE).
func (v *view) takeExpunges() []uint32 {
	v.t.mu.Lock()
	defer v.t.mu.Unlock()
	var seqs []uint32
	for _, u := range v.expungesLocked(nil) {
		seqs = append(seqs, u.expunge)
	}
	return seqs
}

func writeUpdates(w *imapserver.UpdateWriter, ups []update) error {
	for _, u := range ups {
		var err error
		switch {
		case u.mailboxFlags != nil:
			err = w.WriteMailboxFlags(u.mailboxFlags)
		case u.hasRecent:
			err = w.WriteNumRecent(u.recent)
		case u.expunge != 0:
			err = w.WriteExpunge(u.expunge)
		case u.exists != 0 || u.seq == 0:
			err = w.WriteNumMessages(u.exists)
		default:
			err = w.WriteMessageFlags(u.seq, imapv2.UID(u.uid), toFlags(u.flags))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// idle writes updates as they come until stop is closed (RFC 2177).
func (v *view) idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	notify := make(chan struct{}, 1)
	v.t.mu.Lock()
	v.notify = notify
	v.t.mu.Unlock()
	defer func() {
		v.t.mu.Lock()
		v.notify = nil
		v.t.mu.Unlock()
	}()
	for {
		if err := writeUpdates(w, v.collect(true)); err != nil {
			return err
		}
		select {
		case <-notify:
		case <-stop:
			return nil
		}
	}
}

// withRecent adds \Recent to a message's flags when it is recent in the
// session and the client has not enabled IMAP4rev2 (which removed it).
func (ss *session) withRecent(flags []string, recent bool) []string {
	if !recent || ss == nil || ss.rev2() {
		return flags
	}
	return append(slices.Clip(flags), `\Recent`)
}

// rev2 tells whether the client enabled IMAP4rev2.
func (ss *session) rev2() bool {
	if ss.conn == nil {
		return false
	}
	gc, ok := ss.conn.NetConn().(*guardConn)
	return ok && gc.g.rev2.Load()
}

func toFlags(fs []string) []imapv2.Flag {
	out := make([]imapv2.Flag, len(fs))
	for i, f := range fs {
		out[i] = imapv2.Flag(f)
	}
	return out
}

// fromFlags converts flags checked by checkFlags.
func fromFlags(fs []imapv2.Flag) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f)
	}
	return out
}

// systemFlags are the system flags a client may set (RFC 9051 section
// 2.3.2).
var systemFlags = []imapv2.Flag{imapv2.FlagSeen, imapv2.FlagAnswered, imapv2.FlagFlagged, imapv2.FlagDeleted, imapv2.FlagDraft}

// checkFlags refuses, as Dovecot does, a flag list of STORE or APPEND with
// a system flag other than those five: any other is a flag-extension,
// which a server must not create (RFC 9051 section 9); \Recent is not
// settable by a client either (RFC 3501 section 2.3.2; it is gone from
// IMAP4rev2), nor \* (only in PERMANENTFLAGS). Nothing is stored then.
func checkFlags(fs []imapv2.Flag) error {
	for _, f := range fs {
		if !strings.HasPrefix(string(f), `\`) {
			continue
		}
		if !slices.ContainsFunc(systemFlags, func(s imapv2.Flag) bool { return strings.EqualFold(string(s), string(f)) }) {
			return badErr("Invalid system flag " + string(f))
		}
	}
	return nil
}
