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

func decodeAccountFast(v []byte) (Account, bool) {
	var a Account
	p := accountParser{b: v}
	ok := p.lit(`{"Address":`) && p.str(&a.Address) &&
		p.lit(`,"PasswordHash":`) && p.str(&a.PasswordHash) &&
		p.lit(`,"QuotaBytes":`) && p.int(&a.QuotaBytes) &&
		p.lit(`,"UsedBytes":`) && p.int(&a.UsedBytes) &&
		p.lit(`,"Disabled":`) && p.bool(&a.Disabled) &&
		p.lit(`,"Created":`) && p.time(&a.Created) &&
		p.lit(`}`) && len(p.b) == 0
	return a, ok
}

type accountParser struct{ b []byte }

func (p *accountParser) lit(s string) bool {
	if len(p.b) < len(s) || string(p.b[:len(s)]) != s {
		return false
	}
	p.b = p.b[len(s):]
	return true
}

// quoted returns the contents of a JSON string made of printable ASCII
// without escapes, or false.
func (p *accountParser) quoted() ([]byte, bool) {
	if len(p.b) == 0 || p.b[0] != '"' {
		return nil, false
	}
	end := bytes.IndexByte(p.b[1:], '"')
	if end < 0 {
		return nil, false
	}
	s := p.b[1 : 1+end]
	for _, c := range s {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return nil, false
		}
	}
	p.b = p.b[2+end:]
	return s, true
}

func (p *accountParser) str(dst *string) bool {
	s, ok := p.quoted()
	if ok {
		*dst = string(s)
	}
	return ok
}

// int reads a number as encoding/json writes an int64: an optional minus
// and digits without a leading zero, short enough not to overflow.
func (p *accountParser) int(dst *int64) bool {
	n := 0
	if n < len(p.b) && p.b[n] == '-' {
		n++
	}
	start := n
	for n < len(p.b) && p.b[n] >= '0' && p.b[n] <= '9' {
		n++
	}
	digits := n - start
	if digits == 0 || digits > 18 || (digits > 1 && p.b[start] == '0') {
		return false
	}
	x, err := strconv.ParseInt(string(p.b[:n]), 10, 64)
	if err != nil {
		return false
	}
	*dst, p.b = x, p.b[n:]
	return true
}

func (p *accountParser) bool(dst *bool) bool {
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
func (p *accountParser) time(dst *time.Time) bool {
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
