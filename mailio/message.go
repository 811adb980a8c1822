package mailio

import (
	"bytes"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/posthorn/posthorn/internal/mailsyntax"
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

// statusFlags maps the Status: and X-Status: fields that mutt and
// Thunderbird write in mbox files to IMAP flags.
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
	return flags
}

// headerDate is the Date: field's time, zero if absent or unreadable.
func headerDate(h mail.Header) time.Time {
	t, err := h.Date()
	if err != nil {
		return time.Time{}
	}
	return t
}
