package imap

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/posthorn/posthorn/store"
)

// infoBatch is how many BlobInfos one store call returns: enough to
// amortise the call, few enough to keep parsed ENVELOPEs out of the heap.
const infoBatch = 256

// Fetch implements FETCH and UID FETCH (RFC 9051 section 6.4.5) with
// BINARY (RFC 3516). Flags, sizes and dates come from the tracker's index;
// ENVELOPE and BODYSTRUCTURE from store.BlobInfo; sections from the
// message's bytes, read at offsets (section.go).
func (ss *session) Fetch(w *imapserver.FetchWriter, numSet imapv2.NumSet, options *imapv2.FetchOptions) error {
	if gc, ok := ss.conn.NetConn().(*guardConn); ok && gc.g.emptyHeaderList.Load() {
		// imapserver parses HEADER.FIELDS () as HEADER; the guard saw
		// the command (guard.go).
		return badErr("Empty header list in HEADER.FIELDS")
	}
	return ss.corked(func() error { return ss.fetch(w, numSet, options) })
}

func (ss *session) fetch(w *imapserver.FetchWriter, numSet imapv2.NumSet, options *imapv2.FetchOptions) error {
	entries, err := ss.resolve(numSet)
	if err != nil {
		return err
	}
	if options.Flags {
		if err := ss.flagsFirst(); err != nil {
			return err
		}
	}
	if bySeq(numSet) && allExpunged(entries) {
		// RFC 2180 section 4.1.2: NO, rather than OK with no data. (A
		// UID FETCH gets the EXPUNGEs, and OK.)
		return errExpungedMeanwhile
	}
	seen, err := ss.markSeen(entries, options)
	if err != nil {
		return err
	}
	needInfo := options.Envelope || options.BodyStructure != nil
	f := &fetcher{ss: ss, w: w, opts: options, seen: seen}
	if fastItems(options) {
		if gc, ok := ss.conn.NetConn().(*guardConn); ok {
			return ss.fetchFast(gc, f, entries)
		}
	}
	headerOnly := headerSectionsOnly(options)
	for start := 0; start < len(entries); start += infoBatch {
		batch := entries[start:min(start+infoBatch, len(entries))]
		f.infos, f.headers = nil, nil
		if headerOnly {
			msgs := make([]store.Message, len(batch))
			for i, e := range batch {
				if e.m != nil {
					msgs[i] = *e.m
				}
			}
			if f.headers, err = ss.s.Store.Headers(msgs); err != nil {
				return ss.internalError("fetch", err)
			}
		}
		if needInfo {
			ids := make([]uint64, 0, len(batch))
			for _, e := range batch {
				if e.m != nil {
					ids = append(ids, e.m.BlobID)
				}
			}
			if f.infos, err = ss.s.Store.BlobInfos(ids); err != nil {
				return ss.internalError("fetch", err)
			}
		}
		for i, e := range batch {
			if e.m == nil {
				continue // expunged meanwhile; reported at the next chance
			}
			f.hdr = nil
			if f.headers != nil {
				f.hdr = f.headers[i]
			}
			if err := f.message(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// bySeq tells a command's sequence numbers from its UIDs: expunges may
// not be sent with the first (RFC 9051 section 7.5.1), and are sent with
// the second.
func bySeq(numSet imapv2.NumSet) bool {
	_, ok := numSet.(imapv2.SeqSet)
	return ok
}

// allExpunged tells whether entries are some messages, all of them
// expunged by another session since this one was told (ghosts).
func allExpunged(entries []entry) bool {
	for _, e := range entries {
		if e.m != nil {
			return false
		}
	}
	return len(entries) > 0
}

// headerSectionsOnly reports whether every section asked for is a header
// of the whole message (BODY[HEADER], BODY[HEADER.FIELDS (...)], the
// .NOT form): a header sync, served from Store.Headers without opening
// the bodies.
func headerSectionsOnly(o *imapv2.FetchOptions) bool {
	if len(o.BodySection) == 0 || len(o.BinarySection)+len(o.BinarySectionSize) > 0 {
		return false
	}
	for _, s := range o.BodySection {
		if len(s.Part) > 0 || s.Specifier != imapv2.PartSpecifierHeader {
			return false
		}
	}
	return true
}

// markSeen sets \Seen for a BODY[...] or BINARY[...] without PEEK on a
// writable mailbox (RFC 9051 section 6.4.5), and returns the UIDs whose
// flags changed, so that their FLAGS are sent with the data.
func (ss *session) markSeen(entries []entry, o *imapv2.FetchOptions) (map[uint32]bool, error) {
	need := false
	for _, s := range o.BodySection {
		need = need || !s.Peek
	}
	for _, s := range o.BinarySection {
		need = need || !s.Peek
	}
	if !need || ss.sel.readOnly {
		return nil, nil
	}
	var uids []uint32
	for _, e := range entries {
		if e.m != nil && !hasFlag(e.m.Flags, `\Seen`) {
			uids = append(uids, e.uid)
		}
	}
	if len(uids) == 0 {
		return nil, nil
	}
	ss.sel.beginStore(uids)
	msgs, err := ss.s.Store.StoreFlags(ss.account, ss.mailbox(), uids, store.FlagsAdd, []string{`\Seen`})
	ss.sel.endStore(msgs)
	if err != nil {
		return nil, ss.storeError("fetch", err)
	}
	changed := make(map[uint32]bool, len(msgs))
	byUID := make(map[uint32][]string, len(msgs))
	for _, m := range msgs {
		changed[m.UID] = true
		byUID[m.UID] = m.Flags
	}
	for i := range entries {
		if f, ok := byUID[entries[i].uid]; ok && entries[i].m != nil {
			entries[i].m.Flags = f
		}
	}
	return changed, nil
}

// fetcher writes the FETCH responses of one command, reusing buffers.
type fetcher struct {
	ss      *session
	w       *imapserver.FetchWriter
	opts    *imapv2.FetchOptions
	seen    map[uint32]bool
	infos   map[uint64]store.BlobInfo
	headers [][]byte // per batch entry, for a header-only FETCH
	hdr     []byte   // the current message's header, if read in batch
	scratch []byte
	out     []byte
	copyBuf []byte
}

// onlyWriter hides ReadFrom/WriteTo so that io.CopyBuffer uses our buffer.
type onlyWriter struct{ io.Writer }

// noNUL writes a BODY section: a message stored from a client's literal8
// (APPEND ~{n}) may hold NUL, which only a BINARY section's literal8 may
// carry (RFC 9051 section 4.3.1: CHAR8 excludes it). Each NUL goes out as
// 0x80, as Dovecot sends it; the size is kept.
type noNUL struct{ io.WriteCloser }

func (w noNUL) Write(p []byte) (int, error) {
	i := bytes.IndexByte(p, 0)
	if i < 0 {
		return w.WriteCloser.Write(p)
	}
	q := bytes.Clone(p)
	for ; i >= 0; i = bytes.IndexByte(q, 0) {
		q[i] = 0x80
	}
	return w.WriteCloser.Write(q)
}

// prepared is one section ready to write: data, or n bytes of ra at off.
type prepared struct {
	data   []byte
	ra     io.ReaderAt
	off, n int64
	enc    string // BINARY: decode with this encoding
	skip   int64  // BINARY: decoded bytes to skip (partial)
	end    int64  // BINARY: end of the encoded part
}

func (f *fetcher) message(e entry) error {
	o := f.opts
	info, err := f.info(e.m)
	if err != nil {
		return err
	}
	var mr *msgReader
	switch {
	case f.hdr != nil:
		mr = &msgReader{ra: bytes.NewReader(f.hdr), size: e.m.Size, hdrLen: int64(len(f.hdr))}
	case len(o.BodySection)+len(o.BinarySection)+len(o.BinarySectionSize) > 0:
		blob, err := f.ss.s.Store.OpenMessage(*e.m)
		if err != nil {
			return f.ss.internalError("fetch", err)
		}
		defer blob.Close()
		mr = &msgReader{ra: blob, size: blob.Size()}
		if info.HeaderLen > 0 {
			mr.hdrLen = int64(len(e.m.Prefix)) + info.HeaderLen
		}
	}
	f.out = f.out[:0]
	secs, bins, sizes, err := f.prepare(mr)
	if err != nil {
		return err
	}
	rw := f.w.CreateMessage(e.seq)
	if o.UID {
		rw.WriteUID(imapv2.UID(e.uid))
	}
	if o.Flags || f.seen[e.uid] {
		rw.WriteFlags(toFlags(f.ss.withRecent(e.m.Flags, e.recent)))
	}
	if o.RFC822Size {
		rw.WriteRFC822Size(e.m.Size)
	}
	if o.InternalDate {
		rw.WriteInternalDate(e.m.InternalDate)
	}
	if o.Envelope {
		rw.WriteEnvelope(info.Envelope)
	}
	if o.BodyStructure != nil {
		bs := bodyStructure(info.BodyStructure)
		if f.ss.conn == nil || !f.ss.conn.EnabledCaps().Has(imapv2.CapIMAP4rev2) {
			bs = rev1Structure(bs)
		}
		rw.WriteBodyStructure(bs)
	}
	for i, s := range o.BinarySectionSize {
		rw.WriteBinarySectionSize(s, uint32(sizes[i]))
	}
	for i, s := range o.BodySection {
		if err := f.write(noNUL{rw.WriteBodySection(s, secs[i].n)}, secs[i]); err != nil {
			return f.broken(err)
		}
	}
	for i, s := range o.BinarySection {
		if err := f.write(rw.WriteBinarySection(s, bins[i].n), bins[i]); err != nil {
			return f.broken(err)
		}
	}
	return rw.Close()
}

func (f *fetcher) info(m *store.Message) (store.BlobInfo, error) {
	if f.infos == nil {
		return store.BlobInfo{}, nil
	}
	if info, ok := f.infos[m.BlobID]; ok {
		return info, nil
	}
	info, err := f.ss.s.Store.BlobInfo(m.BlobID)
	if err != nil {
		return info, f.ss.internalError("fetch", err)
	}
	return info, nil
}

// broken ends a connection whose FETCH literal could not be completed:
// the client cannot resynchronise after a short literal.
func (f *fetcher) broken(err error) error {
	f.ss.log().Warn("imap: fetch aborted mid-literal", "err", err)
	f.ss.conn.NetConn().Close()
	return err
}

func (f *fetcher) prepare(mr *msgReader) (secs, bins []prepared, sizes []int64, err error) {
	if mr == nil {
		return nil, nil, nil, nil
	}
	for _, s := range f.opts.BodySection {
		p, err := f.section(mr, s)
		if err != nil {
			return nil, nil, nil, err
		}
		secs = append(secs, p)
	}
	for _, s := range f.opts.BinarySection {
		p, err := f.binary(mr, s.Part, s.Partial)
		if err != nil {
			return nil, nil, nil, err
		}
		bins = append(bins, p)
	}
	for _, s := range f.opts.BinarySectionSize {
		p, err := f.binary(mr, s.Part, nil)
		if err != nil {
			return nil, nil, nil, err
		}
		sizes = append(sizes, p.n)
	}
	return secs, bins, sizes, nil
}

// section locates one BODY[...] section (RFC 9051 section 6.4.5).
func (f *fetcher) section(mr *msgReader, s *imapv2.FetchItemBodySection) (prepared, error) {
	if len(s.Part) == 0 && s.Specifier == imapv2.PartSpecifierNone {
		return rangeOf(mr, 0, mr.size, s.Partial), nil
	}
	target := span{start: 0, end: mr.size, hdrEnd: -1}
	if len(s.Part) > 0 {
		p, err := mr.findPart(s.Part)
		if errors.Is(err, errNoPart) {
			return prepared{}, nil
		} else if err != nil {
			return prepared{}, f.ss.internalError("fetch", err)
		}
		switch s.Specifier {
		case imapv2.PartSpecifierNone:
			return rangeOf(mr, p.hdrEnd, p.end, s.Partial), nil
		case imapv2.PartSpecifierMIME:
			return rangeOf(mr, p.start, p.hdrEnd, s.Partial), nil
		}
		// HEADER, HEADER.FIELDS and TEXT of a part exist only for a
		// message/rfc822 part (RFC 9051 section 6.4.5): of any other,
		// an empty string, as for a part that does not exist.
		if p.mediaType != "message/rfc822" {
			return prepared{}, nil
		}
		target = span{start: p.hdrEnd, end: p.end, hdrEnd: -1}
	}
	hdr, hdrEnd, err := f.header(mr, target)
	if err != nil {
		return prepared{}, f.ss.internalError("fetch", err)
	}
	// Filtered headers of one message's sections are appended one after
	// the other to f.out (reset per message), so that several sections
	// of one FETCH do not overwrite each other.
	start := len(f.out)
	switch {
	case s.Specifier == imapv2.PartSpecifierText:
		return rangeOf(mr, hdrEnd, target.end, s.Partial), nil
	case len(s.HeaderFields) > 0:
		f.out = filterHeader(f.out, hdr, s.HeaderFields, false)
	case len(s.HeaderFieldsNot) > 0:
		f.out = filterHeader(f.out, hdr, s.HeaderFieldsNot, true)
	default:
		return rangeOf(mr, target.start, hdrEnd, s.Partial), nil
	}
	out := f.out[start:len(f.out):len(f.out)]
	off, n := partial(s.Partial, int64(len(out)))
	return prepared{data: out[off : off+n], n: n}, nil
}

// header reads the header of target, using the stored header length for
// the top-level message so that exactly the header bytes are read.
func (f *fetcher) header(mr *msgReader, target span) ([]byte, int64, error) {
	if target.start == 0 && mr.hdrLen > 0 && mr.hdrLen <= mr.size {
		if cap(f.scratch) < int(mr.hdrLen) {
			f.scratch = make([]byte, mr.hdrLen)
		}
		b := f.scratch[:mr.hdrLen]
		if _, err := mr.ra.ReadAt(b, 0); err != nil && err != io.EOF {
			return nil, 0, err
		}
		return b, mr.hdrLen, nil
	}
	hdr, end, err := mr.headerInto(f.scratch[:0], target.start, target.end)
	if cap(hdr) > cap(f.scratch) {
		f.scratch = hdr[:0]
	}
	return hdr, end, err
}

func rangeOf(mr *msgReader, start, end int64, p *imapv2.SectionPartial) prepared {
	if end < start {
		end = start
	}
	off, n := partial(p, end-start)
	return prepared{ra: mr.ra, off: start + off, n: n}
}

// binary locates a BINARY[part] section and measures its decoded size by
// decoding it once; the write decodes it again, so memory stays bounded.
func (f *fetcher) binary(mr *msgReader, part []int, p *imapv2.SectionPartial) (prepared, error) {
	if len(part) == 0 {
		return rangeOf(mr, 0, mr.size, p), nil
	}
	sp, err := mr.findPart(part)
	if errors.Is(err, errNoPart) {
		return prepared{}, nil
	} else if err != nil {
		return prepared{}, f.ss.internalError("fetch", err)
	}
	body := io.NewSectionReader(mr.ra, sp.hdrEnd, sp.end-sp.hdrEnd)
	dec, err := decoder(sp.encoding, body)
	if err != nil {
		return prepared{}, err
	}
	total, err := io.Copy(io.Discard, dec)
	if err != nil {
		return prepared{}, noErr(imapv2.ResponseCodeUnknownCTE, "Cannot decode the part")
	}
	off, n := partial(p, total)
	if sp.encoding == "" || sp.encoding == "7bit" || sp.encoding == "8bit" || sp.encoding == "binary" {
		return rangeOf(mr, sp.hdrEnd, sp.end, p), nil
	}
	return prepared{ra: mr.ra, off: sp.hdrEnd, end: sp.end, n: n, enc: sp.encoding, skip: off}, nil
}

// write sends a prepared section into a literal of exactly p.n bytes.
func (f *fetcher) write(wc io.WriteCloser, p prepared) error {
	var err error
	switch {
	case p.ra == nil:
		_, err = wc.Write(p.data)
	case p.enc != "":
		err = f.writeDecoded(wc, p)
	default:
		if f.copyBuf == nil {
			f.copyBuf = make([]byte, store.ChunkSize)
		}
		_, err = io.CopyBuffer(onlyWriter{wc}, io.NewSectionReader(p.ra, p.off, p.n), f.copyBuf)
	}
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

func (f *fetcher) writeDecoded(wc io.Writer, p prepared) error {
	body := io.NewSectionReader(p.ra, p.off, p.end-p.off)
	dec, err := decoder(p.enc, body)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(io.Discard, dec, p.skip); err != nil {
		return err
	}
	_, err = io.CopyN(wc, dec, p.n)
	return err
}

// rev1Structure is bs as IMAP4rev1 describes it: a message/global part
// (RFC 6532) is a basic body, not one with an envelope and a body of its
// own, which only IMAP4rev2 allows (RFC 9051 section 9, media-message);
// a strict rev1 parser fails on those. bs is returned itself when it has
// no such part.
func rev1Structure(bs imapv2.BodyStructure) imapv2.BodyStructure {
	switch b := bs.(type) {
	case *imapv2.BodyStructureSinglePart:
		if b.MessageRFC822 == nil {
			return bs
		}
		if strings.EqualFold(b.Type, "message") && strings.EqualFold(b.Subtype, "global") {
			c := *b
			c.MessageRFC822 = nil
			return &c
		}
		if inner := rev1Structure(b.MessageRFC822.BodyStructure); inner != b.MessageRFC822.BodyStructure {
			c, m := *b, *b.MessageRFC822
			m.BodyStructure = inner
			c.MessageRFC822 = &m
			return &c
		}
	case *imapv2.BodyStructureMultiPart:
		var children []imapv2.BodyStructure
		for i, child := range b.Children {
			if r := rev1Structure(child); r != child {
				if children == nil {
					children = slices.Clone(b.Children)
				}
				children[i] = r
			}
		}
		if children != nil {
			c := *b
			c.Children = children
			return &c
		}
	}
	return bs
}

// bodyStructure returns the stored structure, or text/plain for a message
// stored without one.
func bodyStructure(bs imapv2.BodyStructure) imapv2.BodyStructure {
	if bs != nil {
		return bs
	}
	return &imapv2.BodyStructureSinglePart{Type: "text", Subtype: "plain",
		Extended: &imapv2.BodyStructureSinglePartExt{}}
}
