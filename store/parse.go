package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	netmail "net/mail"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/posthorn/posthorn/internal/mailsyntax"
)

// Parsing limits beyond the configurable ones. A hostile message cannot
// make the parser allocate more than these many parts and header fields;
// past them the rest of the message is described less precisely but the
// message is still stored.
const (
	maxMIMEParts        = 10000
	maxTotalHeaderField = 100000
)

// MaxHeaderBytes is how much of a header block its fields are read from;
// the block still ends at its blank line, however far. The IMAP section
// locator reads as much of a part's header to find its Content-Type, and
// both must see the same fields to number the parts alike.
const MaxHeaderBytes = 1 << 20

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
// message (plus scanSlack bytes). Each multipart level around a large
// attachment costs one pass: a mail forwarded as an attachment five
// times over is six levels, and with 4 passes its inner parts were
// described as one opaque application/octet-stream (Dovecot describes
// them all). 16 passes cover such chains; a hostile 45 MB message
// nested 50 deep with a near-delimiter on every line costs about 0.3 s
// to parse, once, at delivery.
const (
	scanFactor = 16
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
		BodyStructure: p.structure(h, body[hlen:], 0, false),
	}
}

// header reads the header block at the start of b and returns its first
// maxFields well-formed fields (within the message's budget), and past
// them the first of each of describedFields, and its length, up to and
// including the blank line (all of b if there is none). Malformed lines
// are skipped.
func (p *mimeParser) header(b []byte) (textproto.Header, int) {
	var kept []byte
	n, keep := 0, false
	var seen uint32 // describedFields kept
	pos := 0
	for pos < len(b) {
		next := len(b)
		if i := bytes.IndexByte(b[pos:], '\n'); i >= 0 {
			next = pos + i + 1
		}
		line := b[pos:next]
		body := bytes.TrimRight(line, "\r\n")
		start := pos
		pos = next
		switch {
		case len(body) == 0 && len(line) > 0 && (line[0] == '\n' || line[0] == '\r'):
			return parseHeaderBytes(kept), pos
		case start >= MaxHeaderBytes:
			continue // past the fields read; looking for the blank line
		case next > MaxHeaderBytes:
			body = bytes.TrimRight(b[start:MaxHeaderBytes], "\r\n")
		}
		switch {
		case line[0] == ' ' || line[0] == '\t':
			if keep {
				kept = appendLine(kept, body)
			}
		default:
			keep = false
			// White space before the colon is obsolete syntax (RFC 5322
			// section 4.5), kept as the IMAP section locator keeps it.
			colon := bytes.IndexByte(body, ':')
			if colon <= 0 {
				break
			}
			name := bytes.TrimRight(body[:colon], " \t")
			if !mailsyntax.ValidFieldName(name) {
				break
			}
			k := describedField(name)
			switch {
			case n < p.maxFields && p.budget > 0:
				n++
				p.budget--
			case k < 0 || seen&(1<<k) != 0:
				continue
			}
			// Past the limits, the first field of each name that
			// BODYSTRUCTURE and ENVELOPE describe is still kept: the
			// IMAP section locator reads Content-Type wherever it is,
			// and both must number the parts alike.
			if k >= 0 {
				seen |= 1 << k
			}
			kept = appendLine(kept, body)
			keep = true
		}
	}
	return parseHeaderBytes(kept), len(b)
}

// describedFields are the fields that BODYSTRUCTURE and ENVELOPE are
// made of (RFC 9051 section 7.5.2).
var describedFields = []string{
	"Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-Id",
	"Content-Description", "Content-Language", "Content-Location",
	"Date", "Subject", "From", "Sender", "Reply-To", "To", "Cc", "Bcc", "In-Reply-To", "Message-Id",
}

// describedField returns the index of name in describedFields, or -1.
func describedField(name []byte) int {
	for i, f := range describedFields {
		if len(f) == len(name) && strings.EqualFold(f, string(name)) {
			return i
		}
	}
	return -1
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

// envelope builds the ENVELOPE (RFC 9051 section 7.5.2): subject and
// names decoded to UTF-8 (go-imap encodes them when writing), message ids
// without angle brackets, Sender and Reply-To defaulting to From.
func envelope(h textproto.Header) *imap.Envelope {
	mh := mail.Header{Header: gomessage.Header{Header: h}}
	inReplyTo, err := mh.MsgIDList("In-Reply-To")
	if err != nil {
		inReplyTo = looseMsgIDs(h.Get("In-Reply-To"))
	}
	messageID, err := mh.MessageID()
	if err != nil || messageID == "" {
		messageID = looseMsgID(h.Get("Message-Id"))
	}
	env := &imap.Envelope{
		Date:      ParseDate(h.Get("Date")),
		Subject:   decodeText(h.Get("Subject")),
		From:      addressList(h.Get("From")),
		Sender:    addressList(h.Get("Sender")),
		ReplyTo:   addressList(h.Get("Reply-To")),
		To:        addressList(h.Get("To")),
		Cc:        addressList(h.Get("Cc")),
		Bcc:       addressList(h.Get("Bcc")),
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

// obsZones are the zone names of RFC 5322 section 4.3, in hours. Go's
// time.Parse gives a name it does not know in the local zone an offset
// of zero ("10:00 EST" came out as 10:00 +0000, five hours off), and
// net/mail refuses them in lower case: ParseDate writes the offset.
var obsZones = map[string]int{
	"UT": 0, "GMT": 0,
	"EST": -5, "EDT": -4, "CST": -6, "CDT": -5,
	"MST": -7, "MDT": -6, "PST": -8, "PDT": -7,
}

// ParseDate parses a Date field as the ENVELOPE and SEARCH SENT* see it
// (RFC 5322 section 3.3, with the obsolete zones of section 4.3, military
// zones taken as -0000 as it says, and a missing zone too: "-0000" is a
// local time in an unknown zone, section 3.3); the zero time when it does
// not parse.
func ParseDate(v string) time.Time {
	v = mailsyntax.StripComments(v)
	if v == "" {
		return time.Time{}
	}
	if i := strings.LastIndexAny(v, " \t"); i >= 0 {
		zone := strings.ToUpper(v[i+1:])
		if h, ok := obsZones[zone]; ok {
			v = v[:i] + fmt.Sprintf(" %+03d00", h)
		} else if len(zone) == 1 && zone[0] >= 'A' && zone[0] <= 'Z' && zone != "J" {
			v = v[:i] + " -0000"
		}
	}
	t, err := netmail.ParseDate(v)
	if err != nil {
		// No zone at all: the time of day is the last word.
		f := strings.Fields(v)
		if len(f) == 0 || strings.Count(f[len(f)-1], ":") == 0 {
			return time.Time{}
		}
		if t, err = netmail.ParseDate(v + " -0000"); err != nil {
			return time.Time{}
		}
	}
	return t
}

// looseMsgID is the id of a Message-ID field that does not parse as one
// (RFC 5322 section 3.6.4): "id@host" without angle brackets, or with
// spaces inside them, as the ENVELOPE shows it rather than NIL (RFC 9051
// section 7.5.2: a field present is not NIL). "" when there is no word.
func looseMsgID(v string) string {
	v = mailsyntax.StripComments(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		v = v[i+1:]
		if j := strings.IndexByte(v, '>'); j >= 0 {
			v = v[:j]
		}
	}
	v = strings.Join(strings.Fields(v), "")
	if strings.ContainsAny(v, "<>") {
		return ""
	}
	return v
}

// looseMsgIDs takes the <...> ids out of an In-Reply-To or References
// field that does not parse as ids alone (text around them, as old mail
// readers wrote: `<id@host> (Your message of ...)`), or the one id of a
// field that is an id without angle brackets.
func looseMsgIDs(v string) []string {
	if !strings.Contains(v, "<") {
		if f := strings.Fields(mailsyntax.StripComments(v)); len(f) == 1 && strings.Contains(f[0], "@") {
			return []string{f[0]}
		}
		return nil
	}
	var ids []string
	for len(ids) < maxAddresses {
		i := strings.IndexByte(v, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			break
		}
		if id := looseMsgID(v[i : i+j+1]); id != "" {
			ids = append(ids, id)
		}
		v = v[i+j+1:]
	}
	return ids
}

// maxAddresses bounds the addresses (and group markers) kept from one
// header field.
const maxAddresses = 10000

// missingDomain stands for the host of an address without one (a bare
// "root" from cron): an ENVELOPE address with a NIL host is a group
// marker (RFC 9051 section 7.5.2), so the host cannot be left out. Dovecot
// writes the same placeholder.
const missingDomain = "MISSING_DOMAIN"

// MissingDomain is the host AddressList gives an address without one.
const MissingDomain = missingDomain

// AddressList parses an address-list field leniently, as the ENVELOPE
// shows it (see addressList): what a mail reader would show as the
// addresses of a field that net/mail cannot parse. Inbound DMARC checks
// the From authors so, as readers see them.
func AddressList(v string) []imap.Address { return addressList(v) }

// addressList parses an address-list field leniently (RFC 5322 section
// 3.4), address by address, as Dovecot does: an address that does not
// parse is kept as well as it can be, and never costs the others. A group
// is kept as a start marker (the group name in Mailbox) and an end marker
// (all empty), as RFC 9051 section 7.5.2 represents it.
func addressList(v string) []imap.Address {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	var l []imap.Address
	inGroup := false
	lastSemi := strings.LastIndexByte(v, ';')
	lastText := len(strings.TrimRight(v, " \t\r\n")) - 1
	add := func(item string) {
		if a, ok := parseMailbox(item); ok && len(l) < maxAddresses {
			l = append(l, a)
		}
	}
	start := 0
	for i := 0; i < len(v) && len(l) < maxAddresses; i++ {
		switch c := v[i]; c {
		case '"':
			i = mailsyntax.SkipQuoted(v, i)
		case '(':
			i = mailsyntax.SkipComment(v, i)
		case '<':
			if j := strings.IndexByte(v[i:], '>'); j >= 0 {
				i += j
			} else {
				i = len(v)
			}
		case ',':
			add(v[start:i])
			start = i + 1
		case ';':
			add(v[start:i])
			start = i + 1
			if inGroup {
				l = append(l, imap.Address{})
				inGroup = false
			}
		case ':':
			// A group starts with a phrase and ends with ";" (RFC 5322
			// section 3.4). A colon in an unquoted display name
			// ("http://x <a@b>"), after an address, or with no ";"
			// after it (unless it ends the field) is an ordinary
			// character.
			if inGroup || i > lastSemi && i < lastText {
				break
			}
			name, _ := phraseText(v[start:i])
			if name == "" || strings.ContainsAny(v[start:i], "@<>") {
				break
			}
			l = append(l, imap.Address{Mailbox: fix8bit(name)})
			inGroup = true
			start = i + 1
		}
	}
	if start < len(v) {
		add(v[start:])
	}
	if inGroup {
		l = append(l, imap.Address{}) // the missing ";"
	}
	return l
}

// addrParser is the strict parser tried first on each address.
var addrParser = netmail.AddressParser{WordDecoder: wordDecoder}

// parseMailbox parses one address of a list. The strict parser handles
// what RFC 5322 allows; otherwise the address is taken apart leniently:
// the display name before an angle-addr (or else the last comment),
// decoded as far as possible, and the address split at its last "@".
// An empty address ("<>") is no address.
func parseMailbox(s string) (imap.Address, bool) {
	if strings.TrimSpace(s) == "" {
		return imap.Address{}, false
	}
	// net/mail drops the words that follow one it cannot decode: such
	// names take the lenient path, which keeps them.
	if a, err := addrParser.Parse(s); err == nil && wordsDecode(s) {
		if i := strings.LastIndexByte(a.Address, '@'); i > 0 && i < len(a.Address)-1 {
			return imap.Address{Name: fix8bit(a.Name), Mailbox: unquoteLocal(a.Address[:i]), Host: a.Address[i+1:]}, true
		}
	}
	var name, addr string
	if i := angleStart(s); i >= 0 {
		name, _ = phraseText(s[:i])
		name = strings.TrimSpace(decodeText(name))
		addr = s[i+1:]
		if j := strings.IndexByte(addr, '>'); j >= 0 {
			addr = addr[:j]
		}
	} else {
		var comment string
		addr, comment = addrSpec(s)
		name = decodeText(comment)
	}
	addr = strings.TrimSpace(addr)
	if strings.HasPrefix(addr, "@") {
		// An obsolete source route (RFC 5322 section 4.4).
		if j := strings.IndexByte(addr, ':'); j >= 0 {
			addr = strings.TrimSpace(addr[j+1:])
		}
	}
	if addr == "" {
		return imap.Address{}, false
	}
	mailbox, host := addr, ""
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		mailbox, host = addr[:i], addr[i+1:]
	}
	mailbox, host = fix8bit(unquoteLocal(mailbox)), fix8bit(host)
	if mailbox == "" {
		mailbox = "MISSING_MAILBOX"
	}
	if host == "" {
		host = missingDomain
	}
	return imap.Address{Name: name, Mailbox: mailbox, Host: host}, true
}

// angleStart returns the index of the "<" that opens the angle-addr of s,
// outside quoted strings and comments, or -1.
func angleStart(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			i = mailsyntax.SkipQuoted(s, i)
		case '(':
			i = mailsyntax.SkipComment(s, i)
		case '<':
			return i
		}
	}
	return strings.LastIndexByte(s, '<') // inside a broken quote
}

// phraseText returns the words of s with quoted strings unquoted, comments
// left out and runs of white space made one space, and the text of the
// last comment.
func phraseText(s string) (text, comment string) {
	var b strings.Builder
	space := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '(':
			end := mailsyntax.SkipComment(s, i)
			comment = strings.TrimSpace(enclosed(s, i, end))
			space = true
			i = end
		case '"':
			end := mailsyntax.SkipQuoted(s, i)
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			b.WriteString(enclosed(s, i, end))
			i = end
		case ' ', '\t', '\r', '\n':
			space = true
		default:
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			b.WriteByte(c)
		}
	}
	return b.String(), comment
}

// addrSpec returns the address in s with comments and white space left
// out (quoted strings kept as they are), and the text of the last comment.
func addrSpec(s string) (addr, comment string) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			end := mailsyntax.SkipQuoted(s, i)
			b.WriteString(s[i:min(end+1, len(s))])
			i = end
		case '(':
			end := mailsyntax.SkipComment(s, i)
			comment = strings.TrimSpace(enclosed(s, i, end))
			i = end
		case ' ', '\t', '\r', '\n':
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), comment
}

// enclosed returns the unescaped inside of the quoted string or comment
// running from s[start] to s[end] (len(s) when it is not closed).
func enclosed(s string, start, end int) string {
	return unescape(s[start+1 : min(end, len(s))])
}

// unescape removes the backslashes of quoted pairs (RFC 5322 section
// 3.2.1).
func unescape(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unquoteLocal unquotes a quoted local part ("a b"@example.org), as the
// ENVELOPE mailbox carries it.
func unquoteLocal(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return unescape(s[1 : len(s)-1])
	}
	return s
}

// wordDecoder decodes RFC 2047 encoded words in the charsets Go knows
// (UTF-8, ISO-8859-1, US-ASCII), Windows-1252, and those of
// gomessage.CharsetReader: every IANA charset, as go-message/charset
// (imported for it) sets it, so that SEARCH SUBJECT and FROM find a
// KOI8-R or ISO-2022-JP subject or name as Dovecot does.
var wordDecoder = &mime.WordDecoder{CharsetReader: func(charset string, r io.Reader) (io.Reader, error) {
	switch strings.ToLower(charset) {
	case "windows-1252", "cp1252", "x-cp1252":
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, err
		}
		return strings.NewReader(latin1ToUTF8(b)), nil
	}
	if gomessage.CharsetReader != nil {
		return gomessage.CharsetReader(charset, r)
	}
	return nil, fmt.Errorf("unknown charset %q", charset)
}}

// decodeText decodes the encoded words of an unstructured header value
// (RFC 2047) as Go's mime.WordDecoder.DecodeHeader does, but word by
// word: a word in an unknown charset is left as it is, and does not cost
// the others. Raw 8-bit text is made valid UTF-8 (fix8bit).
func decodeText(s string) string {
	if !strings.Contains(s, "=?") {
		return fix8bit(s)
	}
	var b strings.Builder
	betweenWords := false
	for {
		start := strings.Index(s, "=?")
		if start < 0 {
			break
		}
		end := encodedWordEnd(s, start)
		var dec string
		err := errNotWord
		if end >= 0 {
			dec, err = wordDecoder.Decode(s[start:end])
		}
		if err != nil {
			// Not a word, or one we cannot decode: keep it as text.
			b.WriteString(fix8bit(s[:start+2]))
			s = s[start+2:]
			betweenWords = false
			continue
		}
		// White space between two encoded words is dropped (RFC 2047
		// section 6.2).
		if !betweenWords || strings.TrimLeft(s[:start], " \t\r\n") != "" {
			b.WriteString(fix8bit(s[:start]))
		}
		b.WriteString(strings.ToValidUTF8(dec, "\uFFFD"))
		s = s[end:]
		betweenWords = true
	}
	b.WriteString(fix8bit(s))
	return b.String()
}

var errNotWord = errors.New("not an encoded word")

// wordsDecode reports whether every encoded word in s can be decoded.
func wordsDecode(s string) bool {
	for {
		start := strings.Index(s, "=?")
		if start < 0 {
			return true
		}
		end := encodedWordEnd(s, start)
		if end < 0 {
			s = s[start+2:]
			continue
		}
		if _, err := wordDecoder.Decode(s[start:end]); err != nil {
			return false
		}
		s = s[end:]
	}
}

// encodedWordEnd returns the end of the encoded word "=?charset?e?text?="
// at s[start:], or -1. Neither the charset nor the text holds a "?"
// (RFC 2047 section 2), so each byte is looked at a bounded number of
// times however many "=?" the value holds.
func encodedWordEnd(s string, start int) int {
	cur := start + 2
	i := strings.IndexByte(s[cur:], '?')
	if i < 0 {
		return -1
	}
	cur += i + 1
	if len(s) < cur+2 || s[cur+1] != '?' {
		return -1
	}
	cur += 2
	j := strings.IndexByte(s[cur:], '?')
	if j < 0 || cur+j+1 >= len(s) || s[cur+j+1] != '=' {
		return -1
	}
	return cur + j + 2
}

// fix8bit returns s unchanged if it is valid UTF-8, and otherwise reads
// its bytes as Windows-1252 (a superset of the printable ISO-8859-1), the
// usual charset of raw 8-bit header text: ENVELOPE strings reach clients
// as UTF-8 (go-imap labels them so), and must be.
func fix8bit(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return latin1ToUTF8([]byte(s))
}

// cp1252 maps the bytes 0x80 to 0x9f of Windows-1252; the five it leaves
// undefined map to the C1 controls, as the WHATWG encoding standard does.
var cp1252 = [32]rune{
	0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021,
	0x2c6, 0x2030, 0x160, 0x2039, 0x152, 0x8d, 0x17d, 0x8f,
	0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014,
	0x2dc, 0x2122, 0x161, 0x203a, 0x153, 0x9d, 0x17e, 0x178,
}

func latin1ToUTF8(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b) + len(b)/2)
	for _, c := range b {
		switch {
		case c < 0x80:
			sb.WriteByte(c)
		case c < 0xa0:
			sb.WriteRune(cp1252[c-0x80])
		default:
			sb.WriteRune(rune(c))
		}
	}
	return sb.String()
}

// structure describes one entity (RFC 9051 section 7.5.2, BODYSTRUCTURE;
// RFC 2045, RFC 2046); inDigest is set for the parts of a multipart/digest.
func (p *mimeParser) structure(h textproto.Header, body []byte, depth int, inDigest bool) imap.BodyStructure {
	p.parts++
	header := gomessage.Header{Header: h}
	mediaType, params := ContentType(unfoldedValue(h, "Content-Type"), inDigest)
	typ, sub, _ := strings.Cut(mediaType, "/")
	if typ == "multipart" {
		if depth >= p.maxDepth || len(body) > p.scanLeft || p.parts >= maxMIMEParts {
			// Too deep or too costly: an opaque part.
			return p.single(header, "application", "octet-stream", nil, body, depth)
		}
		p.scanLeft -= len(body)
		if parts := splitMultipart(body, params["boundary"], maxMIMEParts-p.parts); len(parts) > 0 {
			return p.multipart(header, sub, params, parts, depth)
		}
		// Not one delimiter line: the field cannot describe this body,
		// which is taken as having none (see ContentType). The IMAP
		// section locator does the same.
		mediaType, params = ContentType("", inDigest)
		typ, sub, _ = strings.Cut(mediaType, "/")
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
		bs.Children = append(bs.Children, p.structure(ph, part[phlen:], depth+1, sub == "digest"))
	}
	bs.Extended = &imap.BodyStructureMultiPartExt{
		Params:      params,
		Disposition: disposition(header),
		Language:    language(header),
		Location:    header.Get("Content-Location"),
	}
	return bs
}

// unfoldedValue returns the value of the first field k, unfolded as RFC
// 5322 section 2.2.3 says (line breaks removed, the white space after them
// kept) and as the IMAP section locator unfolds it: a boundary folded
// inside its quotes must be the same for both. (textproto's Get makes
// each fold a single space.)
func unfoldedValue(h textproto.Header, k string) string {
	raw, _ := h.Raw(k)
	_, v, ok := bytes.Cut(raw, []byte(":"))
	if !ok {
		return ""
	}
	v = bytes.TrimRight(v, "\r\n")
	if bytes.IndexByte(v, '\n') < 0 {
		return strings.TrimSpace(string(v)) // not folded
	}
	return strings.TrimSpace(unfolder.Replace(string(v)))
}

var unfolder = strings.NewReplacer("\r\n", "", "\n", "")

// ContentType returns the media type ("type/subtype", lower case) and the
// parameters of an entity whose Content-Type field has the value v (""
// when there is none), as BODYSTRUCTURE describes the entity and the IMAP
// server locates its parts, so that both agree:
//
//   - The field is parsed leniently (comments, unquoted values with
//     tspecials such as "=", empty values; see parseParamField), as
//     Dovecot does.
//   - A field that is missing or invalid gives the default (RFC 2045
//     section 5.2): text/plain; charset=us-ascii, but message/rfc822 for
//     a part of a multipart/digest (RFC 2046 section 5.1.5).
//   - A multipart without a boundary parameter (which RFC 2046 section
//     5.1.1 requires) is invalid: it is not split into parts, and BODY[1]
//     is its whole body, as for any non-multipart entity.
//
// Callers take a multipart whose body has no delimiter line as having the
// default type too (ContentType("", inDigest)).
func ContentType(v string, inDigest bool) (string, map[string]string) {
	mediaType, params, ok := parseParamField(v)
	typ, sub, _ := strings.Cut(mediaType, "/")
	if !ok || !isToken(typ) || !isToken(sub) || typ == "multipart" && params["boundary"] == "" {
		if inDigest {
			return "message/rfc822", nil
		}
		return "text/plain", map[string]string{"charset": "us-ascii"}
	}
	return mediaType, params
}

// parseParamField parses a Content-Type or Content-Disposition value: a
// lower-case value and its parameters, with RFC 2231 continuations and
// charsets and RFC 2047 encoded words decoded (except in the boundary,
// which must match the body byte for byte). Go's mime.ParseMediaType is
// strict; when it refuses the field, comments are dropped, each
// parameter is taken up to the next ";" outside quotes (so that an
// unquoted "boundary=----=_Part" or an empty "charset=" are kept), the
// first of duplicate parameters wins, and the result is parsed again.
func parseParamField(v string) (string, map[string]string, bool) {
	if strings.TrimSpace(v) == "" {
		return "", nil, false
	}
	value, params, err := mime.ParseMediaType(v)
	if err != nil {
		value, params = lenientParams(v)
		if value == "" {
			return "", nil, false
		}
	}
	for k, pv := range params {
		if k != "boundary" {
			params[k] = decodeText(pv)
		}
	}
	if strings.Contains(v, "*") {
		params = extendedParams(v, params)
	}
	if len(params) == 0 {
		params = nil
	}
	return strings.ToLower(value), params, true
}

// paramFields splits a parameterized header value at its semicolons
// outside quoted strings, comments removed: the value, then each
// parameter as it is written.
func paramFields(v string) []string {
	v = stripComments(v)
	var fields []string
	start := 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			i = mailsyntax.SkipQuoted(v, i)
		case ';':
			fields = append(fields, v[start:i])
			start = i + 1
		}
	}
	return append(fields, v[start:])
}

// extendedParams sets in params the RFC 2231 parameters of v (name*=,
// name*0*=, name*1= ...): Go's parser drops those in a charset other than
// UTF-8 and US-ASCII, or keeps only their later segments, and a Latin-1
// or Shift_JIS attachment name was lost from BODYSTRUCTURE. Their octets
// are turned into UTF-8 from the charset the first segment names. One
// with segments missing, or in a charset nobody knows, is left out; a
// plain parameter of the same name is taken instead, as Go does.
func extendedParams(v string, params map[string]string) map[string]string {
	type segment struct {
		n       int
		encoded bool
		value   string
	}
	segs := map[string][]segment{}
	plain := map[string]bool{}
	for _, f := range paramFields(v)[1:] {
		k, pv, ok := strings.Cut(f, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		base, rest, star := strings.Cut(k, "*")
		if !ok || !isToken(base) {
			continue
		}
		if !star {
			plain[base] = true
			continue
		}
		sg := segment{}
		rest, sg.encoded = strings.CutSuffix(rest, "*")
		if rest == "" && k == base+"*" {
			sg.encoded = true
		} else if n, err := strconv.Atoi(rest); err == nil && n >= 0 && n < 1000 {
			sg.n = n
		} else {
			continue
		}
		pv = strings.TrimSpace(pv)
		if strings.HasPrefix(pv, `"`) {
			pv = enclosed(pv, 0, mailsyntax.SkipQuoted(pv, 0))
		}
		sg.value = pv
		segs[base] = append(segs[base], sg)
	}
	for base, ss := range segs {
		if plain[base] {
			continue // the plain parameter is the one taken
		}
		slices.SortFunc(ss, func(a, b segment) int { return a.n - b.n })
		charset := "us-ascii"
		var raw []byte
		ok := true
		for i, sg := range ss {
			if sg.n != i {
				ok = false // a segment missing or twice
				break
			}
			val := sg.value
			if !sg.encoded {
				raw = append(raw, val...)
				continue
			}
			if i == 0 {
				cs, rest, found := strings.Cut(val, "'")
				_, val, found2 := strings.Cut(rest, "'") // the language is dropped
				if !found || !found2 {
					ok = false
					break
				}
				if cs != "" {
					charset = cs
				}
				raw = appendPercentDecoded(raw, val)
				continue
			}
			raw = appendPercentDecoded(raw, val)
		}
		text, err := toUTF8(charset, raw)
		if !ok || err != nil {
			delete(params, base) // what Go made of it: later segments only
			continue
		}
		if params == nil {
			params = map[string]string{}
		}
		params[base] = text
	}
	return params
}

// appendPercentDecoded appends s with its %XX octets decoded; a % not
// followed by two hex digits is kept as it is.
func appendPercentDecoded(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return b
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// toUTF8 turns b, text in charset, into UTF-8 (bytes that are not are
// read as Latin-1, as everywhere in the parser).
func toUTF8(charset string, b []byte) (string, error) {
	switch strings.ToLower(charset) {
	case "us-ascii", "utf-8", "utf8":
		return fix8bit(string(b)), nil
	case "iso-8859-1", "latin1":
		return latin1ToUTF8(b), nil
	}
	r, err := wordDecoder.CharsetReader(charset, bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	out, err := io.ReadAll(io.LimitReader(r, 4*int64(len(b))+16))
	if err != nil {
		return "", err
	}
	return fix8bit(string(out)), nil
}

func lenientParams(v string) (string, map[string]string) {
	fields := paramFields(v)
	value := strings.ToLower(strings.Join(strings.Fields(fields[0]), ""))
	if value == "" {
		return "", nil
	}
	params := map[string]string{}
	var canon strings.Builder
	canon.WriteString(value)
	for _, f := range fields[1:] {
		k, pv, _ := strings.Cut(f, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !isToken(k) {
			continue
		}
		if _, dup := params[k]; dup {
			continue
		}
		pv = strings.TrimSpace(pv)
		if strings.HasPrefix(pv, `"`) {
			pv = enclosed(pv, 0, mailsyntax.SkipQuoted(pv, 0))
		}
		params[k] = pv
		canon.WriteString("; " + k + `="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", "", "\n", "").Replace(pv) + `"`)
	}
	// Once cleaned up, Go's parser decodes RFC 2231 parameters.
	if value2, params2, err := mime.ParseMediaType(canon.String()); err == nil {
		return value2, params2
	}
	return value, params
}

// stripComments removes the comments (RFC 822 section 3.4.3) outside
// quoted strings.
func stripComments(v string) string {
	if !strings.Contains(v, "(") {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			end := min(mailsyntax.SkipQuoted(v, i)+1, len(v))
			b.WriteString(v[i:end])
			i = end - 1
		case '(':
			i = mailsyntax.SkipComment(v, i)
			b.WriteByte(' ')
		default:
			b.WriteByte(v[i])
		}
	}
	return b.String()
}

// isToken: a non-empty RFC 2045 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
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
		Encoding:    mailsyntax.TransferEncoding(header.Get("Content-Transfer-Encoding")),
		Size:        clampU32(len(body)),
	}
	lines := countLines(body)
	if isMessage {
		ch, chlen := p.header(body)
		bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      envelope(ch),
			BodyStructure: p.structure(ch, body[chlen:], depth+1, false),
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
	disp, params, ok := parseParamField(header.Get("Content-Disposition"))
	if !ok {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: disp, Params: params}
}

func language(header gomessage.Header) []string {
	v := header.Get("Content-Language")
	if v == "" {
		return nil
	}
	var l []string
	for _, lang := range strings.Split(mailsyntax.StripComments(v), ",") {
		if lang = strings.TrimSpace(lang); lang != "" {
			l = append(l, lang)
		}
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
