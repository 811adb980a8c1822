package imap

import (
	"bytes"
	"io"
	"mime"
	"slices"
	"strings"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"

	"github.com/posthorn/posthorn/store"
)

// searchChunk is how much of a body is read at a time for BODY and TEXT.
const searchChunk = 32 * 1024

// Search implements SEARCH and UID SEARCH (RFC 9051 section 6.4.4) with
// ESEARCH results (RFC 4731) and SAVE (RFC 5182, part of IMAP4rev2).
// Cheap keys (flags, sizes, dates, sets) are checked first; SUBJECT, FROM,
// TO, CC, BCC and SENT* use the stored ENVELOPE (as 6.4.4 defines them);
// HEADER reads only the header; BODY and TEXT stream the message in
// chunks, one message at a time.
//
// SAVE (RFC 5182 sections 2.1 and 2.4, RFC 9051 section 6.4.4): the
// result replaces $ when the search succeeds, and $ is empty when it
// fails here; with MIN and/or MAX and neither ALL nor COUNT, only those
// messages are saved. imapserver (beta.8) decides the rest, before or
// after this runs: it answers a SEARCH it cannot parse (BAD, or NO
// [BADCHARSET]) without calling this, so $ is kept then; and it turns
// RETURN (SAVE) into RETURN (SAVE ALL) before calling this, and writes
// the ESEARCH response after it, which the guard drops (RFC 5182 section
// 2.1: SAVE alone sends none; see saveOnlyTag in guard.go).
func (ss *session) Search(kind imapserver.NumKind, criteria *imapv2.SearchCriteria, options *imapv2.SearchOptions) (*imapv2.SearchData, error) {
	save := options != nil && options.ReturnSave
	prevSaved := ss.searchRes // what $ in criteria means
	if save {
		ss.searchRes = nil // until it succeeds
	}
	var entries []entry
	var count, maxUID uint32
	v := ss.sel
	v.t.mu.RLock()
	count, maxUID = v.count(), v.maxVisibleUID()
	v.walk(1, func(e entry) bool {
		if e.m != nil {
			m := *e.m
			e.m = &m
			entries = append(entries, e)
		}
		return true
	})
	v.t.mu.RUnlock()

	sc := &searcher{ss: ss, count: count, maxUID: maxUID, saved: prevSaved}
	data := &imapv2.SearchData{}
	var seqs imapv2.SeqSet
	var uids imapv2.UIDSet
	var saved []uint32
	for start := 0; start < len(entries); start += infoBatch {
		batch := entries[start:min(start+infoBatch, len(entries))]
		if err := sc.loadInfos(criteria, batch); err != nil {
			return nil, err
		}
		for i := range batch {
			e := &batch[i]
			ok, err := sc.match(criteria, e)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			num := e.seq
			if kind == imapserver.NumKindUID {
				num = e.uid
				uids.AddNum(imapv2.UID(e.uid))
			} else {
				seqs.AddNum(e.seq)
			}
			saved = append(saved, e.uid)
			if data.Min == 0 {
				data.Min = num
			}
			data.Max = num
			data.Count++
		}
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	if save {
		ss.searchRes = savedResult(saved, options)
	}
	return data, nil
}

// savedResult is what SAVE keeps of the matching UIDs (in sequence
// order): all of them, or with MIN and/or MAX but neither ALL nor COUNT,
// only the first and/or the last (RFC 5182 section 2.4). Sequence numbers
// and UIDs grow together, so the MIN or MAX message is the same for
// SEARCH and UID SEARCH.
func savedResult(uids []uint32, o *imapv2.SearchOptions) []uint32 {
	if len(uids) == 0 || o.ReturnAll || o.ReturnCount || !o.ReturnMin && !o.ReturnMax {
		return uids
	}
	var out []uint32
	if o.ReturnMin {
		out = append(out, uids[0])
	}
	if o.ReturnMax && (!o.ReturnMin || len(uids) > 1) {
		out = append(out, uids[len(uids)-1])
	}
	return out
}

type searcher struct {
	ss     *session
	count  uint32
	maxUID uint32
	saved  []uint32
	infos  map[uint64]store.BlobInfo
	buf    []byte
}

// loadInfos fetches the BlobInfos of a batch when a key needs them. When
// only ENVELOPE fields are needed, the tracker's envelope cache answers
// repeated searches without decoding BlobInfos again.
func (sc *searcher) loadInfos(c *imapv2.SearchCriteria, batch []entry) error {
	sc.infos = nil
	if !needsInfo(c) {
		return nil
	}
	envOnly := envelopeOnly(c)
	infos := make(map[uint64]store.BlobInfo, len(batch))
	var ids []uint64
	for _, e := range batch {
		if env := sc.ss.sel.t.cachedEnvelope(e.m.BlobID); envOnly && env != nil {
			infos[e.m.BlobID] = store.BlobInfo{ID: e.m.BlobID, Envelope: env}
		} else {
			ids = append(ids, e.m.BlobID)
		}
	}
	if len(ids) > 0 {
		got, err := sc.ss.s.Store.BlobInfos(ids)
		if err != nil {
			return sc.ss.internalError("search", err)
		}
		for id, info := range got {
			infos[id] = info
			sc.ss.sel.t.cacheEnvelope(id, info.Envelope)
		}
	}
	sc.infos = infos
	return nil
}

// envelopeOnly: every key that needs message data is answered from the
// ENVELOPE.
func envelopeOnly(c *imapv2.SearchCriteria) bool {
	if len(c.Body) > 0 || len(c.Text) > 0 {
		return false
	}
	for _, h := range c.Header {
		switch strings.ToLower(h.Key) {
		case "subject", "from", "to", "cc", "bcc":
			if h.Value == "" {
				return false
			}
		default:
			return false
		}
	}
	for i := range c.Not {
		if !envelopeOnly(&c.Not[i]) {
			return false
		}
	}
	for i := range c.Or {
		if !envelopeOnly(&c.Or[i][0]) || !envelopeOnly(&c.Or[i][1]) {
			return false
		}
	}
	return true
}

func needsInfo(c *imapv2.SearchCriteria) bool {
	if len(c.Header) > 0 || len(c.Body) > 0 || len(c.Text) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		return true
	}
	for i := range c.Not {
		if needsInfo(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if needsInfo(&c.Or[i][0]) || needsInfo(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// match evaluates criteria for one message, cheapest keys first.
func (sc *searcher) match(c *imapv2.SearchCriteria, e *entry) (bool, error) {
	if !sc.matchCheap(c, e) {
		return false, nil
	}
	info := sc.infos[e.m.BlobID]
	if !sc.matchEnvelope(c, e, info) {
		return false, nil
	}
	for _, h := range c.Header {
		ok, err := sc.matchHeader(h, e, info)
		if err != nil || !ok {
			return false, err
		}
	}
	if len(c.Body) > 0 || len(c.Text) > 0 {
		ok, err := sc.matchText(c, e, info)
		if err != nil || !ok {
			return false, err
		}
	}
	for i := range c.Not {
		ok, err := sc.match(&c.Not[i], e)
		if err != nil || ok {
			return false, err
		}
	}
	for i := range c.Or {
		ok, err := sc.match(&c.Or[i][0], e)
		if err != nil {
			return false, err
		}
		if !ok {
			if ok, err = sc.match(&c.Or[i][1], e); err != nil || !ok {
				return false, err
			}
		}
	}
	return true, nil
}

// isRecentFlag: f is \Recent (SEARCH RECENT, NEW and OLD), which is
// the session's, not in the stored flags.
func isRecentFlag(f imapv2.Flag) bool { return strings.EqualFold(string(f), `\Recent`) }

func (sc *searcher) matchCheap(c *imapv2.SearchCriteria, e *entry) bool {
	m := e.m
	for _, set := range c.SeqNum {
		if !containsStar(set, e.seq, sc.count) {
			return false
		}
	}
	for _, set := range c.UID {
		if !sc.uidIn(set, e.uid) {
			return false
		}
	}
	for _, f := range c.Flag {
		if !hasFlag(m.Flags, string(f)) && !(isRecentFlag(f) && e.recent) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if hasFlag(m.Flags, string(f)) || isRecentFlag(f) && e.recent {
			return false
		}
	}
	if c.Larger > 0 && m.Size <= c.Larger || c.Smaller > 0 && m.Size >= c.Smaller {
		return false
	}
	return dateIn(m.InternalDate, c.Since, c.Before)
}

func (sc *searcher) uidIn(set imapv2.UIDSet, uid uint32) bool {
	if imapv2.IsSearchRes(set) {
		for _, u := range sc.saved {
			if u == uid {
				return true
			}
		}
		return false
	}
	for _, r := range set {
		a, b := staticRange(uint32(r.Start), uint32(r.Stop), sc.maxUID)
		if uid >= a && uid <= b {
			return true
		}
	}
	return false
}

// dateIn compares dates only, disregarding time and timezone (6.4.4).
func dateIn(t, since, before time.Time) bool {
	if since.IsZero() && before.IsZero() {
		return true
	}
	if t.IsZero() {
		return false
	}
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && d.Before(dateOnly(since)) {
		return false
	}
	return before.IsZero() || d.Before(dateOnly(before))
}

func dateOnly(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// matchEnvelope: SENTBEFORE, SENTON and SENTSINCE look at the Date field,
// or at the internal date when there is none or it does not parse (as
// SORT does, RFC 5256 section 2.2), so that SENTBEFORE d and SENTSINCE d
// together find every message.
func (sc *searcher) matchEnvelope(c *imapv2.SearchCriteria, e *entry, info store.BlobInfo) bool {
	if c.SentSince.IsZero() && c.SentBefore.IsZero() {
		return true
	}
	var date time.Time
	if info.Envelope != nil {
		date = info.Envelope.Date
	}
	if date.IsZero() {
		date = e.m.InternalDate
	}
	return dateIn(date, c.SentSince, c.SentBefore)
}

// matchHeader: SUBJECT, FROM, TO, CC and BCC look in the ENVELOPE fields
// (decoded at delivery); other fields, and an empty value ("has the
// field"), read the header.
func (sc *searcher) matchHeader(h imapv2.SearchCriteriaHeaderField, e *entry, info store.BlobInfo) (bool, error) {
	if env := info.Envelope; env != nil && h.Value != "" {
		needle := strings.ToLower(h.Value)
		switch strings.ToLower(h.Key) {
		case "subject":
			return strings.Contains(strings.ToLower(env.Subject), needle), nil
		case "from":
			return addrsContain(env.From, needle), nil
		case "to":
			return addrsContain(env.To, needle), nil
		case "cc":
			return addrsContain(env.Cc, needle), nil
		case "bcc":
			return addrsContain(env.Bcc, needle), nil
		}
	}
	blob, err := sc.ss.s.Store.OpenMessage(*e.m)
	if err != nil {
		return false, sc.ss.internalError("search", err)
	}
	defer blob.Close()
	mr := &msgReader{ra: blob, size: blob.Size()}
	hdr, _, err := mr.headerInto(sc.buf[:0], 0, mr.size)
	if err != nil {
		return false, sc.ss.internalError("search", err)
	}
	sc.buf = hdr[:0]
	found := false
	needle := strings.ToLower(h.Value)
	eachField(hdr, func(field []byte) bool {
		k, val, ok := bytes.Cut(field, []byte(":"))
		if ok && strings.EqualFold(string(bytes.TrimSpace(k)), h.Key) {
			found = needle == "" || strings.Contains(strings.ToLower(decodeHeader(unfold(val))), needle)
		}
		return !found
	})
	return found, nil
}

func addrsContain(addrs []imapv2.Address, needle string) bool {
	for _, a := range addrs {
		s := strings.ToLower(a.Name + " <" + a.Mailbox + "@" + a.Host + ">")
		if strings.Contains(s, needle) {
			return true
		}
	}
	return false
}

// matchText streams the message for the BODY and TEXT keys. BODY looks in
// the text a reader sees (bodyContains); TEXT in the header too, as
// written and with its encoded words decoded, and in the header of every
// body part.
func (sc *searcher) matchText(c *imapv2.SearchCriteria, e *entry, info store.BlobInfo) (bool, error) {
	blob, err := sc.ss.s.Store.OpenMessage(*e.m)
	if err != nil {
		return false, sc.ss.internalError("search", err)
	}
	defer blob.Close()
	mr := &msgReader{ra: blob, size: blob.Size()}
	var hdr, decoded string // the header, as written and decoded, once read
	read := false
	for _, s := range c.Text {
		if !read {
			h, _, err := mr.headerInto(sc.buf[:0], 0, mr.size)
			if err != nil {
				return false, sc.ss.internalError("search", err)
			}
			sc.buf = h[:0]
			hdr = strings.ToLower(string(h))
			decoded = hdr
			if strings.Contains(hdr, "=?") {
				decoded = strings.ToLower(decodeHeader(unfold(h)))
			}
			read = true
		}
		needle := strings.ToLower(s)
		if strings.Contains(hdr, needle) || strings.Contains(decoded, needle) {
			continue
		}
		ok, err := sc.bodyContains(mr, s, info, true)
		if err != nil || !ok {
			return false, sc.textErr(err)
		}
	}
	for _, s := range c.Body {
		if ok, err := sc.bodyContains(mr, s, info, false); err != nil || !ok {
			return false, sc.textErr(err)
		}
	}
	return true, nil
}

// bodyContains reports whether s is in the text of the message's body
// (RFC 9051 section 6.4.4): the content of its text parts with their
// Content-Transfer-Encoding undone and their charset turned into UTF-8
// (the SEARCH string is UTF-8), and the header of each message/rfc822
// part. Boundaries, the MIME headers of parts (unless mimeHeaders, for
// TEXT) and parts that are not text are not what a reader sees, and
// searching them found nearly every message with an attachment (a short
// word is somewhere in most base64), as Dovecot does not.
func (sc *searcher) bodyContains(mr *msgReader, s string, info store.BlobInfo, mimeHeaders bool) (bool, error) {
	if info.BodyStructure == nil {
		// Not described (never so for a message the store parsed): the
		// raw body.
		_, start, err := mr.headerInto(sc.buf[:0], 0, mr.size)
		if err != nil {
			return false, err
		}
		return streamContains(io.NewSectionReader(mr.ra, start, mr.size-start), s)
	}
	for _, tp := range textParts(info.BodyStructure, nil, nil) {
		if !tp.text && !tp.message && !mimeHeaders {
			continue
		}
		sp, err := mr.findPart(tp.path)
		if err != nil {
			continue
		}
		if mimeHeaders && len(tp.path) > 0 && sp.start > 0 {
			if ok, err := streamContains(io.NewSectionReader(mr.ra, sp.start, sp.hdrEnd-sp.start), s); ok || err != nil {
				return ok, err
			}
		}
		switch {
		case tp.message:
			// An attached message's header: as written and decoded.
			hdr, _, err := mr.headerInto(nil, sp.hdrEnd, sp.end)
			if err != nil {
				return false, err
			}
			needle := strings.ToLower(s)
			if strings.Contains(strings.ToLower(string(hdr)), needle) ||
				strings.Contains(strings.ToLower(decodeHeader(unfold(hdr))), needle) {
				return true, nil
			}
			continue
		case !tp.text:
			continue
		}
		raw := io.NewSectionReader(mr.ra, sp.hdrEnd, sp.end-sp.hdrEnd)
		r, err := decoder(sp.encoding, raw)
		if err != nil {
			r = raw // an unknown encoding: its bytes as they are
		}
		if tp.charset != "" && gomessage.CharsetReader != nil {
			if cr, err := gomessage.CharsetReader(tp.charset, r); err == nil {
				r = cr
			}
		}
		ok, err := streamContains(r, s)
		if ok {
			return true, nil
		}
		if err != nil && r == io.Reader(raw) {
			return false, err // reading the store failed; a decoding error ends the part only
		}
	}
	return false, nil
}

// searchPart is a part of a message that BODY searches: the content of a
// text part (text), in charset when that is not UTF-8 or ASCII, or the
// header of an attached message (message); or neither, a part whose MIME
// header only TEXT searches. path locates it.
type searchPart struct {
	path          []int
	charset       string
	text, message bool
}

// textParts lists the parts of a body structure in order, with the part
// numbers of RFC 9051 section 6.4.5: the body of a message that is not
// multipart is its part 1, and so is that of an attached message.
func textParts(bs imapv2.BodyStructure, path []int, out []searchPart) []searchPart {
	switch p := bs.(type) {
	case *imapv2.BodyStructureMultiPart:
		for i, c := range p.Children {
			out = textParts(c, append(slices.Clone(path), i+1), out)
		}
	case *imapv2.BodyStructureSinglePart:
		if len(path) == 0 {
			path = []int{1}
		}
		cs := strings.ToLower(p.Params["charset"])
		if cs == "utf-8" || cs == "us-ascii" || cs == "utf8" || cs == "ascii" {
			cs = ""
		}
		sp := searchPart{path: path, charset: cs, text: strings.EqualFold(p.Type, "text"), message: p.MessageRFC822 != nil}
		out = append(out, sp)
		if m := p.MessageRFC822; m != nil && m.BodyStructure != nil {
			inner := path
			if _, multi := m.BodyStructure.(*imapv2.BodyStructureMultiPart); !multi {
				inner = append(slices.Clone(path), 1)
			}
			out = textParts(m.BodyStructure, inner, out)
		}
	}
	return out
}

func (sc *searcher) textErr(err error) error {
	if err == nil {
		return nil
	}
	return sc.ss.internalError("search", err)
}

// streamContains reports whether r contains s, case-insensitively, reading
// searchChunk bytes at a time with an overlap of len(s)-1 bytes.
func streamContains(r io.Reader, s string) (bool, error) {
	needle := bytes.ToLower([]byte(s))
	if len(needle) == 0 {
		return true, nil
	}
	buf := make([]byte, searchChunk+len(needle))
	keep := 0
	for {
		n, err := io.ReadFull(r, buf[keep:])
		if n > 0 {
			window := bytes.ToLower(buf[:keep+n])
			if bytes.Contains(window, needle) {
				return true, nil
			}
			total := keep + n
			keep = min(len(needle)-1, total)
			copy(buf, buf[total-keep:total])
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// decodeHeader decodes RFC 2047 encoded words, in any charset the message
// package knows; undecodable text is kept.
func decodeHeader(s string) string {
	d := mime.WordDecoder{CharsetReader: gomessage.CharsetReader}
	if out, err := d.DecodeHeader(s); err == nil {
		return out
	}
	return s
}
