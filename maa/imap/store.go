package imap

import (
	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/posthorn/posthorn/store"
)

// Store implements STORE and UID STORE (RFC 9051 section 6.4.6): +FLAGS,
// -FLAGS, FLAGS, each optionally .SILENT; keywords are free-form.
func (ss *session) Store(w *imapserver.FetchWriter, numSet imapv2.NumSet, flags *imapv2.StoreFlags, _ *imapv2.StoreOptions) error {
	if err := checkFlags(flags.Flags); err != nil {
		return err
	}
	if err := ss.checkWritable(); err != nil {
		return err
	}
	entries, err := ss.resolve(numSet)
	if err != nil {
		return err
	}
	uids := uidsOf(entries)
	if len(uids) == 0 {
		if bySeq(numSet) && len(entries) > 0 {
			// RFC 2180 section 4.2.2: NO, not OK for flags never set.
			// (A UID STORE gets the EXPUNGEs, and OK.)
			return errExpungedMeanwhile
		}
		return nil
	}
	op := store.FlagsSet
	switch flags.Op {
	case imapv2.StoreFlagsAdd:
		op = store.FlagsAdd
	case imapv2.StoreFlagsDel:
		op = store.FlagsRemove
	}
	ss.sel.beginStore(uids)
	msgs, err := ss.s.Store.StoreFlags(ss.account, ss.mailbox(), uids, op, fromFlags(flags.Flags))
	ss.sel.endStore(msgs)
	if err != nil {
		return ss.storeError("store", err)
	}
	if flags.Silent {
		return nil
	}
	if err := ss.flagsFirst(); err != nil {
		return err
	}
	return ss.writeFlags(w, msgs)
}

// writeFlags writes FETCH (UID FLAGS) for messages the client knows.
func (ss *session) writeFlags(w *imapserver.FetchWriter, msgs []store.Message) error {
	seqs := make([]uint32, len(msgs))
	recent := make([]bool, len(msgs))
	ss.sel.t.mu.RLock()
	for i := range msgs {
		seqs[i] = ss.sel.seqOf(msgs[i].UID)
		recent[i] = ss.sel.isRecent(msgs[i].UID)
	}
	ss.sel.t.mu.RUnlock()
	for i := range msgs {
		if seqs[i] == 0 {
			continue
		}
		rw := w.CreateMessage(seqs[i])
		rw.WriteUID(imapv2.UID(msgs[i].UID))
		rw.WriteFlags(toFlags(ss.withRecent(msgs[i].Flags, recent[i])))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// Copy implements COPY and UID COPY with COPYUID (RFC 9051 section 6.4.7,
// RFC 4315).
func (ss *session) Copy(numSet imapv2.NumSet, dest string) (*imapv2.CopyData, error) {
	dest, err := checkName(dest)
	if err != nil {
		return nil, err
	}
	entries, err := ss.resolve(numSet)
	if err != nil {
		return nil, err
	}
	uids := uidsOf(entries)
	if len(uids) == 0 {
		if _, err := ss.s.Store.Mailbox(ss.account, dest); err != nil {
			return nil, ss.tryCreate("copy", err)
		}
		if len(entries) > 0 {
			return nil, errExpungedMeanwhile // all expunged, not yet told
		}
		return nil, nil
	}
	res, err := ss.s.Store.Copy(ss.account, ss.mailbox(), uids, dest)
	if err != nil {
		return nil, ss.tryCreate("copy", err)
	}
	if len(res.SrcUIDs) == 0 {
		return nil, errExpungedMeanwhile
	}
	return copyData(res), nil
}

// errExpungedMeanwhile answers a COPY, MOVE, STORE or FETCH all of whose messages
// another session expunged (or moved away) since this one last heard: NO
// with EXPUNGEISSUED (RFC 9051 section 7.1; RFC 2180 section 4.4.1 lets
// such a COPY fail), the expunges coming with the reply or at the next
// command. (A COPYUID with no UIDs is no
// valid response: go-imap failed inside its line.) When only some were
// gone, the others are copied, and COPYUID names them.
var errExpungedMeanwhile = noErr("EXPUNGEISSUED", "The messages were expunged meanwhile by another session")

// Move implements MOVE and UID MOVE (RFC 6851): COPYUID in an untagged OK,
// then the expunges.
func (ss *session) Move(w *imapserver.MoveWriter, numSet imapv2.NumSet, dest string) error {
	if err := ss.checkWritable(); err != nil {
		return err
	}
	dest, err := checkName(dest)
	if err != nil {
		return err
	}
	if dest == ss.mailbox() {
		return noErr(imapv2.ResponseCodeCannot, "Source and destination are the same mailbox")
	}
	entries, err := ss.resolve(numSet)
	if err != nil {
		return err
	}
	uids := uidsOf(entries)
	if len(uids) == 0 {
		if _, err := ss.s.Store.Mailbox(ss.account, dest); err != nil {
			return ss.tryCreate("move", err)
		}
		if len(entries) > 0 {
			return errExpungedMeanwhile // all expunged, not yet told
		}
		return nil
	}
	res, err := ss.s.Store.Move(ss.account, ss.mailbox(), uids, dest)
	if err != nil {
		return ss.tryCreate("move", err)
	}
	if len(res.SrcUIDs) == 0 {
		return errExpungedMeanwhile
	}
	ss.sel.t.applyExpunge(res.SrcUIDs)
	if err := w.WriteCopyData(copyData(res)); err != nil {
		return err
	}
	for _, seq := range ss.sel.takeExpunges() {
		if err := w.WriteExpunge(seq); err != nil {
			return err
		}
	}
	return nil
}

func copyData(res store.CopyResult) *imapv2.CopyData {
	var src, dst imapv2.UIDSet
	for _, u := range res.SrcUIDs {
		src.AddNum(imapv2.UID(u))
	}
	for _, u := range res.DstUIDs {
		dst.AddNum(imapv2.UID(u))
	}
	return &imapv2.CopyData{UIDValidity: res.UIDValidity, SourceUIDs: src, DestUIDs: dst}
}
