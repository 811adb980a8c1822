package mailio

import (
	"bytes"
	"errors"
	"fmt"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/mailsyntax"
	"github.com/posthorn/posthorn/store"
)

// maxMessageBytes bounds one imported message; a larger one is skipped
// without being held in memory.
const maxMessageBytes = 128 << 20

var errNoHeader = errors.New("no header: not a mail message")

// crlf converts line endings to CRLF: a bare LF becomes CRLF, an existing
// CRLF is kept.
func crlf(b []byte) []byte {
	n := bytes.Count(b, []byte{'\n'}) - bytes.Count(b, []byte("\r\n"))
	if n == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+n)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// parseHeader checks that body starts with a well-formed header of at least
// one field and returns it. A field name may have white space before its
// colon (the obsolete syntax of RFC 5322 section 4.5, which mail readers
// and Dovecot take): Go's net/mail refused such a message.
func parseHeader(body []byte) (mail.Header, error) {
	hdr := body[:mailsyntax.HeaderLen(body)]
	fields := mailsyntax.HeaderFields(hdr)
	if len(fields) == 0 {
		return nil, errNoHeader
	}
	for _, f := range fields {
		if name, _, ok := mailsyntax.FieldName(f); !ok || !mailsyntax.ValidFieldName(name) {
			line, _, _ := bytes.Cut(f, []byte("\n"))
			return nil, fmt.Errorf("malformed header: not a field: %q", trimLine(line))
		}
	}
	return mail.Header(mailsyntax.Fields(hdr)), nil
}

// trimLine shortens a line quoted in an error.
func trimLine(b []byte) string {
	b = bytes.TrimRight(b, "\r")
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}

// statusFlags maps the fields in which mbox writers keep a message's
// state (mutt, Thunderbird, Dovecot, UW-IMAP) to IMAP flags: Status: R is
// \Seen (O, old, is no flag); X-Status: A, F, T, D are \Answered,
// \Flagged, \Draft, \Deleted; X-Keywords: lists keywords, separated by
// spaces or commas.
func statusFlags(h mail.Header) []string {
	var flags []string
	if strings.Contains(h.Get("Status"), "R") {
		flags = append(flags, `\Seen`)
	}
	for _, c := range h.Get("X-Status") {
		switch c {
		case 'A':
			flags = append(flags, `\Answered`)
		case 'F':
			flags = append(flags, `\Flagged`)
		case 'D':
			flags = append(flags, `\Deleted`)
		case 'T':
			flags = append(flags, `\Draft`)
		}
	}
	for _, v := range h["X-Keywords"] {
		for _, k := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' }) {
			if store.ValidKeyword(k) { // anything else is left out, not refused with the message
				flags = append(flags, k)
			}
		}
	}
	return flags
}

// mboxFields are the header fields that belong to the mbox, not to the
// message: the state that statusFlags reads, the folder's UID data
// (X-UID:, X-IMAP:, X-IMAPbase:) and the Content-Length that framed it.
// Dovecot hides them when it serves an mbox; kept, they would show the
// state of the old server in every copy of the message and make the same
// message differ by its flags.
var mboxFields = map[string]bool{
	"Status": true, "X-Status": true, "X-Keywords": true, "X-Uid": true,
	"X-Imap": true, "X-Imapbase": true, "Content-Length": true,
}

// stripMboxFields removes the mboxFields from the header of body (not
// from those of attached messages or MIME parts).
func stripMboxFields(body []byte) []byte {
	n := mailsyntax.HeaderLen(body)
	fields := mailsyntax.HeaderFields(body[:n])
	out := make([]byte, 0, len(body))
	for _, f := range fields {
		if name, _, ok := mailsyntax.FieldName(f); ok && mboxFields[textproto.CanonicalMIMEHeaderKey(string(name))] {
			continue
		}
		out = append(out, f...)
	}
	if len(out) == n {
		return body
	}
	return append(out, body[n:]...)
}

// headerDate is the Date: field's time, zero if absent or unreadable.
func headerDate(h mail.Header) time.Time {
	t, err := h.Date()
	if err != nil {
		return time.Time{}
	}
	return t
}
