package store

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// decodeAccount decodes an account record. Records are written by
// json.Marshal(Account), and for that exact form (fields in order, plain
// ASCII strings, canonical numbers) it reads the fields directly:
// encoding/json's reflection cost about 15 us per record, and every
// message delivered reads its recipients' records three or four times
// (RCPT, quota, delivery). Anything else goes to json.Unmarshal, so the
// result is always what json.Unmarshal gives (FuzzDecodeAccount).
func decodeAccount(v []byte) (Account, error) {
	if a, ok := decodeAccountFast(v); ok {
		return a, nil
	}
	var a Account
	err := json.Unmarshal(v, &a)
	return a, err
}

// decodeMailbox decodes a mailbox record the same way: written by
// json.Marshal(Mailbox), read directly in that exact form, by
// json.Unmarshal otherwise (FuzzDecodeMailbox). Every append and delivery
// reads its mailbox's record, and json.Unmarshal was an eighth of the
// commit of a lone APPEND.
func decodeMailbox(v []byte) (Mailbox, error) {
	if mb, ok := decodeMailboxFast(v); ok {
		return mb, nil
	}
	var mb Mailbox
	err := json.Unmarshal(v, &mb)
	return mb, err
}

func decodeMailboxFast(v []byte) (Mailbox, bool) {
	var mb Mailbox
	var id, modseq uint64
	var validity, next, msgs, unseen uint64
	p := recordParser{b: v}
	ok := p.lit(`{"Name":`) && p.str(&mb.Name) &&
		p.lit(`,"ID":`) && p.uint(&id, 64) &&
		p.lit(`,"UIDValidity":`) && p.uint(&validity, 32) &&
		p.lit(`,"UIDNext":`) && p.uint(&next, 32) &&
		p.lit(`,"HighestModSeq":`) && p.uint(&modseq, 64) &&
		p.lit(`,"SpecialUse":`) && p.str(&mb.SpecialUse) &&
		p.lit(`,"Subscribed":`) && p.bool(&mb.Subscribed) &&
		p.lit(`,"Messages":`) && p.uint(&msgs, 32) &&
		p.lit(`,"Unseen":`) && p.uint(&unseen, 32) &&
		p.lit(`,"Size":`) && p.int(&mb.Size) &&
		p.lit(`}`) && len(p.b) == 0
	mb.ID, mb.HighestModSeq = id, modseq
	mb.UIDValidity, mb.UIDNext, mb.Messages, mb.Unseen = uint32(validity), uint32(next), uint32(msgs), uint32(unseen)
	return mb, ok
}

func decodeAccountFast(v []byte) (Account, bool) {
	var a Account
	p := recordParser{b: v}
	ok := p.lit(`{"Address":`) && p.str(&a.Address) &&
		p.lit(`,"PasswordHash":`) && p.str(&a.PasswordHash) &&
		p.lit(`,"QuotaBytes":`) && p.int(&a.QuotaBytes) &&
		p.lit(`,"UsedBytes":`) && p.int(&a.UsedBytes) &&
		p.lit(`,"Disabled":`) && p.bool(&a.Disabled) &&
		p.lit(`,"Created":`) && p.time(&a.Created) &&
		p.lit(`}`) && len(p.b) == 0
	return a, ok
}

type recordParser struct{ b []byte }

func (p *recordParser) lit(s string) bool {
	if len(p.b) < len(s) || string(p.b[:len(s)]) != s {
		return false
	}
	p.b = p.b[len(s):]
	return true
}

// quoted returns the contents of a JSON string made of printable ASCII
// without escapes, or false.
func (p *recordParser) quoted() ([]byte, bool) {
	s, escaped, ok := p.scan()
	if !ok || escaped {
		return nil, false
	}
	p.b = p.b[2+len(s):]
	return s, true
}

// scan finds the JSON string at the start of p.b, made of printable
// ASCII, and reports whether it has escapes: only \\ is allowed (as in
// the special-use attributes, `\Sent`).
func (p *recordParser) scan() (raw []byte, escaped, ok bool) {
	if len(p.b) == 0 || p.b[0] != '"' {
		return nil, false, false
	}
	for i := 1; i < len(p.b); i++ {
		switch c := p.b[i]; {
		case c == '"':
			return p.b[1:i], escaped, true
		case c == '\\':
			if i+1 == len(p.b) || p.b[i+1] != '\\' {
				return nil, false, false
			}
			escaped = true
			i++
		case c < 0x20 || c >= 0x7f:
			return nil, false, false
		}
	}
	return nil, false, false
}

func (p *recordParser) str(dst *string) bool {
	s, escaped, ok := p.scan()
	if !ok {
		return false
	}
	p.b = p.b[2+len(s):]
	if escaped {
		*dst = string(bytes.ReplaceAll(s, []byte(`\\`), []byte(`\`)))
	} else {
		*dst = string(s)
	}
	return true
}

// int reads a number as encoding/json writes an int64: an optional minus
// and digits without a leading zero, in range.
func (p *recordParser) int(dst *int64) bool {
	n := 0
	if n < len(p.b) && p.b[n] == '-' {
		n++
	}
	start := n
	for n < len(p.b) && p.b[n] >= '0' && p.b[n] <= '9' {
		n++
	}
	digits := n - start
	if digits == 0 || digits > 19 || (digits > 1 && p.b[start] == '0') {
		return false
	}
	x, err := strconv.ParseInt(string(p.b[:n]), 10, 64)
	if err != nil {
		return false
	}
	*dst, p.b = x, p.b[n:]
	return true
}

// uint reads a number as encoding/json writes an unsigned integer of
// the given bits: digits without a leading zero, in range.
func (p *recordParser) uint(dst *uint64, bits int) bool {
	n := 0
	for n < len(p.b) && p.b[n] >= '0' && p.b[n] <= '9' {
		n++
	}
	if n == 0 || n > 20 || (n > 1 && p.b[0] == '0') {
		return false
	}
	x, err := strconv.ParseUint(string(p.b[:n]), 10, bits)
	if err != nil {
		return false
	}
	*dst, p.b = x, p.b[n:]
	return true
}

func (p *recordParser) bool(dst *bool) bool {
	switch {
	case p.lit("true"):
		*dst = true
	case p.lit("false"):
		*dst = false
	default:
		return false
	}
	return true
}

// time reads a time as time.Time.UnmarshalJSON does, by calling it.
func (p *recordParser) time(dst *time.Time) bool {
	rest := p.b
	s, ok := p.quoted()
	if !ok {
		return false
	}
	if err := dst.UnmarshalJSON(rest[:len(s)+2]); err != nil {
		return false
	}
	return true
}
