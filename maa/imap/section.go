package imap

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime/quotedprintable"
	"strings"

	imapv2 "github.com/emersion/go-imap/v2"

	"github.com/posthorn/posthorn/internal/mailsyntax"
	"github.com/posthorn/posthorn/store"
)

// Body sections (RFC 9051 section 6.4.5) are located by offsets in the
// message, found by scanning only the headers and boundary lines on the way
// to the part, over the store's chunked io.ReaderAt; then the bytes are
// streamed with an io.SectionReader. Nothing is parsed beyond the part.

// maxHeaderBytes bounds how much of one header is read into memory; the
// store's parser reads the fields of as much (store.MaxHeaderBytes).
const maxHeaderBytes = store.MaxHeaderBytes

// errNoPart: the section does not exist; the FETCH answers an empty string
// (as Dovecot does) rather than failing the command.
var errNoPart = errors.New("no such body part")

// errNoParts: a multipart body without a single delimiter line, which the
// store describes as a part of the default type (store.ContentType).
var errNoParts = errors.New("multipart without body parts")

// span is one entity of a message: its header runs [start, hdrEnd), its
// body [hdrEnd, end).
type span struct {
	start, hdrEnd, end int64
	mediaType          string // lower case, as store.ContentType gives it (message/global as message/rfc822)
	boundary           string
	encoding           string // Content-Transfer-Encoding, lower case
	inDigest           bool   // a part of a multipart/digest
}

// msgReader reads one message's bytes (Prefix and blob) at offsets.
type msgReader struct {
	ra   io.ReaderAt
	size int64
	// hdrLen is the top-level header's length when the store knows it
	// (len(Prefix) + BlobInfo.HeaderLen), else 0.
	hdrLen int64
}

// entity parses the header of the entity at [start, end). Its type is
// the one BODYSTRUCTURE gives (store.ContentType): the same lenient
// parsing and defaults, so that part numbers agree.
func (mr *msgReader) entity(start, end int64, parentType string) (span, error) {
	hdr, hdrEnd, err := mr.headerInto(nil, start, end)
	if err != nil {
		return span{}, err
	}
	inDigest := parentType == "multipart/digest"
	mt, params := store.ContentType(headerValue(hdr, "Content-Type"), inDigest)
	if mt == "message/global" {
		// An internationalized message (RFC 6532 section 3.7): the store
		// describes it as it does message/rfc822, and so is it opened.
		mt = "message/rfc822"
	}
	s := span{start: start, hdrEnd: hdrEnd, end: end, mediaType: mt, boundary: params["boundary"], inDigest: inDigest}
	s.encoding = mailsyntax.TransferEncoding(headerValue(hdr, "Content-Transfer-Encoding"))
	return s, nil
}

// headerInto reads the header at start into buf: up to and including the
// blank line, or everything when there is none.
func (mr *msgReader) headerInto(buf []byte, start, end int64) ([]byte, int64, error) {
	limit := end - start
	if limit > maxHeaderBytes {
		limit = maxHeaderBytes
	}
	buf = buf[:0]
	step := int64(4096)
	for {
		n := int64(len(buf)) + step
		if n > limit {
			n = limit
		}
		old := int64(len(buf))
		if int64(cap(buf)) >= n {
			buf = buf[:n]
		} else {
			buf = append(buf, make([]byte, n-old)...)
		}
		if _, err := mr.ra.ReadAt(buf[old:n], start+old); err != nil && err != io.EOF {
			return nil, 0, err
		}
		if i := headerLen(buf); i >= 0 {
			return buf[:i], start + int64(i), nil
		}
		if n >= limit {
			hdrEnd, err := mr.headerEnd(buf, start+n, end)
			return buf, hdrEnd, err
		}
		step *= 2
	}
}

// headerEnd finds the end of a header longer than the maxHeaderBytes kept
// in buf, from pos on: the store's parser takes the body to start after
// the blank line however far it is (only the fields in the first
// maxHeaderBytes count), and so must the section locator.
func (mr *msgReader) headerEnd(buf []byte, pos, end int64) (int64, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(mr.ra, pos, end-pos), 8192)
	lineStart := false
	// The line that buf ends in goes on; is it only CRs so far?
	onlyCR := len(bytes.TrimLeft(buf[bytes.LastIndexByte(buf, '\n')+1:], "\r")) == 0
	for {
		chunk, err := br.ReadSlice('\n')
		pos += int64(len(chunk))
		if lineStart {
			onlyCR = true
		}
		body, lf := bytes.CutSuffix(chunk, []byte("\n"))
		onlyCR = onlyCR && len(bytes.TrimLeft(body, "\r")) == 0
		if lf && onlyCR {
			return pos, nil
		}
		lineStart = lf
		switch {
		case err == io.EOF:
			return end, nil
		case err != nil && err != bufio.ErrBufferFull:
			return 0, err
		}
	}
}

// headerLen finds the end of a header (after the blank line) or -1. As in
// the store's parser, a blank line is one of only line-break characters
// (LF, CRLF, or a stray CR before the LF): the two must agree on where
// each body starts.
func headerLen(b []byte) int {
	for pos := 0; pos < len(b); {
		i := bytes.IndexByte(b[pos:], '\n')
		if i < 0 {
			return -1
		}
		if len(bytes.TrimLeft(b[pos:pos+i], "\r")) == 0 {
			return pos + i + 1
		}
		pos += i + 1
	}
	return -1
}

// findPart walks a part path (RFC 9051 section 6.4.5): part numbers index
// the children of a multipart; a message/rfc822 part is opened to reach
// its own parts; part 1 of a non-multipart message (the top level, or one
// opened) is its body, and a non-multipart part has no parts of its own
// ("1.1" of a single-part message does not exist). A multipart without
// delimiter lines is not one, as in BODYSTRUCTURE.
func (mr *msgReader) findPart(path []int) (span, error) {
	cur, err := mr.entity(0, mr.size, "")
	if err != nil {
		return span{}, err
	}
	for i, n := range path {
		opened := i == 0 // cur is a message, not a part
		if i > 0 && cur.mediaType == "message/rfc822" {
			if cur, err = mr.entity(cur.hdrEnd, cur.end, ""); err != nil {
				return span{}, err
			}
			opened = true
		}
		if strings.HasPrefix(cur.mediaType, "multipart/") {
			next, err := mr.child(cur, n)
			if err == nil {
				cur = next
				continue
			}
			if !errors.Is(err, errNoParts) {
				return span{}, err
			}
			cur.mediaType, _ = store.ContentType("", cur.inDigest)
			cur.boundary = ""
		}
		if n != 1 || !opened {
			return span{}, errNoPart
		}
	}
	return cur, nil
}

// child finds the n-th body part of a multipart entity by scanning for its
// boundary lines (RFC 2046 section 5.1.1: the CRLF before a delimiter
// belongs to the delimiter). It returns errNoParts when the body has no
// part at all, errNoPart when it has fewer than n.
func (mr *msgReader) child(mp span, n int) (span, error) {
	if n < 1 {
		return span{}, errNoPart
	}
	if mp.boundary == "" {
		return span{}, errNoParts
	}
	delim := []byte("--" + mp.boundary)
	// The buffer holds at least a delimiter and its "--": a line is
	// compared with the delimiter on its first buffer-full.
	br := bufio.NewReaderSize(io.NewSectionReader(mr.ra, mp.hdrEnd, mp.end-mp.hdrEnd), max(8192, len(delim)+4))
	off := mp.hdrEnd
	prevEOL := int64(0) // length of the line ending before this line
	count := 0
	partStart := int64(-1)
	for {
		line, err := br.ReadSlice('\n')
		lineLen := int64(len(line))
		isDelim, closing := false, false
		if bytes.HasPrefix(line, delim) {
			rest := bytes.TrimRight(line[len(delim):], " \t\r\n")
			closing = bytes.Equal(rest, []byte("--"))
			isDelim = len(rest) == 0 || closing
		}
		// The rest of a line longer than the buffer. A delimiter line
		// may end in any amount of white space, as the store's parser
		// (splitMultipart) sees it: all of it belongs to the delimiter
		// line, and anything else makes the line an ordinary one.
		for err == bufio.ErrBufferFull {
			line, err = br.ReadSlice('\n')
			lineLen += int64(len(line))
			if len(bytes.TrimRight(line, " \t\r\n")) != 0 {
				isDelim = false
			}
		}
		if isDelim {
			if count == n {
				return mr.entity(partStart, max(partStart, off-prevEOL), mp.mediaType)
			}
			if closing {
				return span{}, noPart(count)
			}
			count++
			partStart = off + lineLen
		}
		off += lineLen
		prevEOL = eolLen(line)
		if err != nil {
			if err == io.EOF && count == n {
				return mr.entity(partStart, mp.end, mp.mediaType)
			}
			if err == io.EOF {
				return span{}, noPart(count)
			}
			return span{}, err
		}
	}
}

// noPart is the error for a part number past the last of count parts.
func noPart(count int) error {
	if count == 0 {
		return errNoParts
	}
	return errNoPart
}

func eolLen(line []byte) int64 {
	switch {
	case bytes.HasSuffix(line, []byte("\r\n")):
		return 2
	case bytes.HasSuffix(line, []byte("\n")):
		return 1
	}
	return 0
}

// headerValue returns the unfolded value of the first field name in hdr.
func headerValue(hdr []byte, name string) string {
	var val string
	found := false
	eachField(hdr, func(field []byte) bool {
		// The store's parser allows white space before the colon, not
		// other bytes (RFC 5322 sections 2.2 and 4.5).
		k, v, ok := bytes.Cut(field, []byte(":"))
		if ok && strings.EqualFold(string(bytes.TrimRight(k, " \t")), name) {
			val, found = unfold(v), true
			return false
		}
		return true
	})
	if !found {
		return ""
	}
	return val
}

func unfold(v []byte) string {
	s := strings.NewReplacer("\r\n", "", "\n", "").Replace(string(v))
	return strings.TrimSpace(s)
}

// eachField calls fn with each header field (with its continuation lines
// and line endings) until fn returns false. The blank line ends the header.
func eachField(hdr []byte, fn func(field []byte) bool) {
	i := 0
	for i < len(hdr) {
		if blankLine(hdr[i:]) {
			return
		}
		j := i
		for {
			k := bytes.IndexByte(hdr[j:], '\n')
			if k < 0 {
				j = len(hdr)
				break
			}
			j += k + 1
			if j >= len(hdr) || (hdr[j] != ' ' && hdr[j] != '\t') {
				break
			}
		}
		if !fn(hdr[i:j]) {
			return
		}
		i = j
	}
}

// blankLine reports whether b starts with a blank line: only CRs up to
// the LF (or the end), as headerLen and the store's parser see it.
func blankLine(b []byte) bool {
	i := 0
	for i < len(b) && b[i] == '\r' {
		i++
	}
	return i == len(b) || b[i] == '\n'
}

// filterHeader keeps (or, with not, drops) the named fields and ends with
// the blank line, as HEADER.FIELDS (.NOT) returns (RFC 9051 6.4.5).
func filterHeader(dst, hdr []byte, names []string, not bool) []byte {
	eachField(hdr, func(field []byte) bool {
		k, _, ok := bytes.Cut(field, []byte(":"))
		if !ok {
			return true
		}
		k = bytes.TrimRight(k, " \t")
		match := false
		for _, n := range names {
			if len(n) == len(k) && strings.EqualFold(n, string(k)) {
				match = true
				break
			}
		}
		if match != not {
			dst = append(dst, field...)
			if !bytes.HasSuffix(field, []byte("\n")) {
				dst = append(dst, '\r', '\n')
			}
		}
		return true
	})
	return append(dst, '\r', '\n')
}

// decoder returns a reader decoding a body with a Content-Transfer-Encoding
// (RFC 3516 BINARY), or an UNKNOWN-CTE error.
func decoder(enc string, r io.Reader) (io.Reader, error) {
	switch enc {
	case "", "7bit", "8bit", "binary":
		return r, nil
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &base64Cleaner{r: r}), nil
	case "quoted-printable":
		return quotedprintable.NewReader(r), nil
	}
	return nil, noErr(imapv2.ResponseCodeUnknownCTE, "Unknown Content-Transfer-Encoding")
}

// base64Cleaner drops line breaks and other characters outside the base64
// alphabet, which RFC 2045 section 6.8 says decoders must ignore.
type base64Cleaner struct{ r io.Reader }

func (c *base64Cleaner) Read(p []byte) (int, error) {
	for {
		n, err := c.r.Read(p)
		j := 0
		for _, b := range p[:n] {
			if b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '+' || b == '/' || b == '=' {
				p[j] = b
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// partial applies <offset.size> to a length: the byte range to send.
func partial(p *imapv2.SectionPartial, length int64) (int64, int64) {
	if p == nil {
		return 0, length
	}
	if p.Offset >= length {
		return length, 0
	}
	n := length - p.Offset
	if p.Size < n {
		n = p.Size
	}
	return p.Offset, n
}
