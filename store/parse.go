package store

import (
	"bufio"
	"bytes"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Parsing limits beyond the configurable ones. A hostile message cannot
// make the parser allocate more than these many parts and header fields;
// past them the rest of the message is described less precisely but the
// message is still stored.
const (
	maxMIMEParts        = 10000
	maxTotalHeaderField = 100000
)

// mimeParser computes a BlobInfo from a message held in memory, working on
// byte slices: each level of MIME nesting scans its part once; nesting
// deeper than maxDepth, or past a scanning budget of a few passes over
// the message, is described as an opaque part. Time is linear in the
// message size, and memory bounded by the part and header-field limits.
type mimeParser struct {
	maxFields int // per header block
	maxDepth  int
	parts     int // parts described so far
	budget    int // header fields left for the whole message
	// scanLeft is how many more bytes multipart splitting may scan.
	// Each nesting level rescans its part, so without this a deeply
	// nested message would cost maxDepth passes over its whole size.
	scanLeft int
}

// scanFactor bounds multipart splitting to this many passes over the
// message (plus scanSlack bytes); ordinary messages, a few levels deep,
// stay far below it.
const (
	scanFactor = 4
	scanSlack  = 1 << 20
)

// parseBlobInfo parses a message once, at write time (RFC 9051 section
// 7.5.2: ENVELOPE, BODYSTRUCTURE).
func parseBlobInfo(body []byte, opts Options) BlobInfo {
	p := &mimeParser{maxFields: opts.MaxHeaderFields, maxDepth: opts.MaxMIMEDepth, budget: maxTotalHeaderField,
		scanLeft: scanFactor*len(body) + scanSlack}
	if p.maxFields <= 0 {
		p.maxFields = 1000
	}
	if p.maxDepth <= 0 {
		p.maxDepth = 50
	}
	h, hlen := p.header(body)
	return BlobInfo{
		Size:          int64(len(body)),
		HeaderLen:     int64(hlen),
		Envelope:      envelope(h),
		BodyStructure: p.structure(h, body[hlen:], 0),
	}
}

// header reads the header block at the start of b and returns its first
// maxFields well-formed fields and its length, up to and including the
// blank line (all of b if there is none). Malformed lines are skipped.
func (p *mimeParser) header(b []byte) (textproto.Header, int) {
	var kept []byte
	n, keep := 0, false
	pos := 0
	for pos < len(b) {
		next := len(b)
		if i := bytes.IndexByte(b[pos:], '\n'); i >= 0 {
			next = pos + i + 1
		}
		line := b[pos:next]
		body := bytes.TrimRight(line, "\r\n")
		pos = next
		switch {
		case len(body) == 0 && len(line) > 0 && (line[0] == '\n' || line[0] == '\r'):
			return parseHeaderBytes(kept), pos
		case line[0] == ' ' || line[0] == '\t':
			if keep {
				kept = appendLine(kept, body)
			}
		default:
			keep = false
			colon := bytes.IndexByte(body, ':')
			if colon > 0 && validFieldName(body[:colon]) && n < p.maxFields && p.budget > 0 {
				kept = appendLine(kept, body)
				n++
				p.budget--
				keep = true
			}
		}
	}
	return parseHeaderBytes(kept), len(b)
}

func appendLine(dst, line []byte) []byte {
	dst = append(dst, line...)
	return append(dst, '\r', '\n')
}

// headerReaders: a 4 KiB reader per parsed header was a fifth of the
// garbage of an append.
var headerReaders = sync.Pool{New: func() any { return bufio.NewReader(nil) }}

func parseHeaderBytes(kept []byte) textproto.Header {
	if len(kept) == 0 {
		return textproto.Header{}
	}
	kept = append(kept, '\r', '\n')
	br := headerReaders.Get().(*bufio.Reader)
	br.Reset(bytes.NewReader(kept))
	h, err := textproto.ReadHeader(br) // copies what it keeps
	br.Reset(nil)
	headerReaders.Put(br)
	if err != nil {
		return textproto.Header{}
	}
	return h
}

// validFieldName: printable US-ASCII except ':' (RFC 5322 section 2.2).
func validFieldName(k []byte) bool {
	for _, c := range k {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// envelope builds the ENVELOPE (RFC 9051 section 7.5.2): subject and
// names decoded to UTF-8 (go-imap encodes them when writing), message ids
// without angle brackets, Sender and Reply-To defaulting to From.
func envelope(h textproto.Header) *imap.Envelope {
	mh := mail.Header{Header: gomessage.Header{Header: h}}
	date, _ := mh.Date()
	subject, err := mh.Subject()
	if err != nil {
		subject = h.Get("Subject")
	}
	inReplyTo, _ := mh.MsgIDList("In-Reply-To")
	messageID, _ := mh.MessageID()
	env := &imap.Envelope{
		Date:      date,
		Subject:   subject,
		From:      addressList(mh, "From"),
		Sender:    addressList(mh, "Sender"),
		ReplyTo:   addressList(mh, "Reply-To"),
		To:        addressList(mh, "To"),
		Cc:        addressList(mh, "Cc"),
		Bcc:       addressList(mh, "Bcc"),
		InReplyTo: inReplyTo,
		MessageID: messageID,
	}
	if len(env.Sender) == 0 {
		env.Sender = env.From
	}
	if len(env.ReplyTo) == 0 {
		env.ReplyTo = env.From
	}
	return env
}

func addressList(mh mail.Header, k string) []imap.Address {
	addrs, _ := mh.AddressList(k)
	var l []imap.Address
	for _, a := range addrs {
		mailbox, host, ok := strings.Cut(a.Address, "@")
		if !ok {
			continue
		}
		l = append(l, imap.Address{Name: a.Name, Mailbox: mailbox, Host: host})
	}
	return l
}

// structure describes one entity (RFC 9051 section 7.5.2, BODYSTRUCTURE;
// RFC 2045, RFC 2046).
func (p *mimeParser) structure(h textproto.Header, body []byte, depth int) imap.BodyStructure {
	p.parts++
	header := gomessage.Header{Header: h}
	mediaType, params, err := header.ContentType()
	if h.Get("Content-Type") == "" {
		// RFC 2045 section 5.2: the default.
		mediaType, params = "text/plain", map[string]string{"charset": "us-ascii"}
	} else if err != nil {
		mediaType, params = "text/plain", nil
	}
	mediaType = strings.ToLower(mediaType)
	if len(params) == 0 {
		params = nil
	}
	typ, sub, _ := strings.Cut(mediaType, "/")
	if typ == "multipart" {
		if depth < p.maxDepth && params["boundary"] != "" && len(body) <= p.scanLeft {
			p.scanLeft -= len(body)
			if parts := splitMultipart(body, params["boundary"], maxMIMEParts-p.parts); len(parts) > 0 {
				return p.multipart(header, sub, params, parts, depth)
			}
		}
		// Too deep, too costly or without parts: an opaque part.
		return p.single(header, "application", "octet-stream", nil, body, depth)
	}
	return p.single(header, typ, sub, params, body, depth)
}

func (p *mimeParser) multipart(header gomessage.Header, sub string, params map[string]string, parts [][]byte, depth int) imap.BodyStructure {
	bs := &imap.BodyStructureMultiPart{Subtype: sub}
	for _, part := range parts {
		if p.parts >= maxMIMEParts && len(bs.Children) > 0 {
			break
		}
		ph, phlen := p.header(part)
		bs.Children = append(bs.Children, p.structure(ph, part[phlen:], depth+1))
	}
	bs.Extended = &imap.BodyStructureMultiPartExt{
		Params:      params,
		Disposition: disposition(header),
		Language:    language(header),
		Location:    header.Get("Content-Location"),
	}
	return bs
}

func (p *mimeParser) single(header gomessage.Header, typ, sub string, params map[string]string, body []byte, depth int) imap.BodyStructure {
	mediaType := typ + "/" + sub
	isMessage := mediaType == "message/rfc822" || mediaType == "message/global"
	if isMessage && depth >= p.maxDepth {
		typ, sub, params, isMessage = "application", "octet-stream", nil, false
	}
	bs := &imap.BodyStructureSinglePart{
		Type:        typ,
		Subtype:     sub,
		Params:      params,
		ID:          header.Get("Content-Id"),
		Description: header.Get("Content-Description"),
		Encoding:    strings.ToLower(strings.TrimSpace(header.Get("Content-Transfer-Encoding"))),
		Size:        clampU32(len(body)),
	}
	lines := countLines(body)
	if isMessage {
		ch, chlen := p.header(body)
		bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      envelope(ch),
			BodyStructure: p.structure(ch, body[chlen:], depth+1),
			NumLines:      lines,
		}
	}
	if typ == "text" {
		bs.Text = &imap.BodyStructureText{NumLines: lines}
	}
	bs.Extended = &imap.BodyStructureSinglePartExt{
		Disposition: disposition(header),
		Language:    language(header),
		Location:    header.Get("Content-Location"),
	}
	return bs
}

// countLines counts text lines for body-fld-lines (RFC 9051 section
// 7.5.2): a last line without a line break (its CRLF belongs to the
// following boundary delimiter, RFC 2046 5.1.1) still counts.
func countLines(body []byte) int64 {
	n := int64(bytes.Count(body, []byte{'\n'}))
	if len(body) > 0 && body[len(body)-1] != '\n' {
		n++
	}
	return n
}

func clampU32(n int) uint32 {
	if n > int(^uint32(0)) {
		return ^uint32(0)
	}
	return uint32(n)
}

func disposition(header gomessage.Header) *imap.BodyStructureDisposition {
	disp, params, _ := header.ContentDisposition()
	if disp == "" {
		return nil
	}
	if len(params) == 0 {
		params = nil
	}
	return &imap.BodyStructureDisposition{Value: disp, Params: params}
}

func language(header gomessage.Header) []string {
	v := header.Get("Content-Language")
	if v == "" {
		return nil
	}
	l := strings.Split(v, ",")
	for i, lang := range l {
		l[i] = strings.TrimSpace(lang)
	}
	return l
}

// splitMultipart returns the body parts of a multipart entity, without
// preamble and epilogue (RFC 2046 section 5.1.1): the CRLF before a
// boundary delimiter belongs to the delimiter. A missing close delimiter
// ends the last part at the end of the body. At most max parts are kept.
func splitMultipart(body []byte, boundary string, max int) [][]byte {
	delim := []byte("--" + boundary)
	var parts [][]byte
	start := -1
	for pos := 0; pos < len(body); {
		// Jump to the next occurrence of the delimiter (SIMD search)
		// rather than looking at every line.
		i := bytes.Index(body[pos:], delim)
		if i < 0 {
			break
		}
		at := pos + i
		next := len(body)
		if j := bytes.IndexByte(body[at:], '\n'); j >= 0 {
			next = at + j + 1
		}
		pos = at + len(delim)
		if at > 0 && body[at-1] != '\n' {
			continue // not at the start of a line
		}
		rest := body[at+len(delim) : next]
		closing := bytes.HasPrefix(rest, []byte("--"))
		if closing {
			rest = rest[2:]
		}
		if len(bytes.TrimRight(rest, " \t\r\n")) != 0 {
			continue
		}
		if start >= 0 {
			parts = append(parts, body[start:trimDelimiterCRLF(body, start, at)])
		}
		if closing || len(parts) >= max {
			return parts
		}
		start, pos = next, next
	}
	if start >= 0 && len(parts) < max {
		parts = append(parts, body[start:])
	}
	return parts
}

// trimDelimiterCRLF returns end minus the line break that precedes a
// delimiter line at end, not going below start.
func trimDelimiterCRLF(body []byte, start, end int) int {
	if end > start && body[end-1] == '\n' {
		end--
		if end > start && body[end-1] == '\r' {
			end--
		}
	}
	return end
}
