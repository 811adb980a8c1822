package mailio

import (
	"bytes"
	"errors"
	"io"
	"net/mail"
	"strings"
	"time"
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
// one field and returns it.
func parseHeader(body []byte) (mail.Header, error) {
	m, err := mail.ReadMessage(bytes.NewReader(body))
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, errors.New("malformed header: " + err.Error())
	}
	if m == nil || len(m.Header) == 0 {
		return nil, errNoHeader
	}
	return m.Header, nil
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
