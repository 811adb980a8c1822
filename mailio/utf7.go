package mailio

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf16"
)

// IMAP's modified UTF-7 (RFC 3501 section 5.1.3), in which Maildir++
// folder names are written on disk: printable ASCII stands for itself,
// "&" is "&-", anything else is "&" + modified base64 of UTF-16 + "-".

var b64 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// encodeUTF7 encodes s; runes for which literal returns false are encoded
// even if printable (the Maildir++ hierarchy separator '.').
func encodeUTF7(s string, literal func(rune) bool) string {
	var b strings.Builder
	var run []rune
	flush := func() {
		if len(run) > 0 {
			u := utf16.Encode(run)
			raw := make([]byte, 0, 2*len(u))
			for _, c := range u {
				raw = append(raw, byte(c>>8), byte(c))
			}
			b.WriteString("&" + b64.EncodeToString(raw) + "-")
			run = run[:0]
		}
	}
	for _, r := range s {
		switch {
		case r == '&':
			flush()
			b.WriteString("&-")
		case r >= 0x20 && r <= 0x7e && literal(r):
			flush()
			b.WriteRune(r)
		default:
			run = append(run, r)
		}
	}
	flush()
	return b.String()
}

var errBadUTF7 = errors.New("malformed modified UTF-7")

// decodeUTF7 decodes a modified UTF-7 name.
func decodeUTF7(s string) (string, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '&')
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		s = s[i+1:]
		j := strings.IndexByte(s, '-')
		if j < 0 {
			return "", errBadUTF7
		}
		if j == 0 {
			b.WriteByte('&')
		} else {
			raw, err := b64.DecodeString(s[:j])
			if err != nil || len(raw)%2 != 0 {
				return "", errBadUTF7
			}
			u := make([]uint16, len(raw)/2)
			for k := range u {
				u[k] = uint16(raw[2*k])<<8 | uint16(raw[2*k+1])
			}
			b.WriteString(string(utf16.Decode(u)))
		}
		s = s[j+1:]
	}
}
