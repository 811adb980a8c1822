package msa

import (
	"bytes"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/posthorn/posthorn/dkim"
	"github.com/posthorn/posthorn/internal/mailsyntax"
	"github.com/posthorn/posthorn/internal/membudget"
	"github.com/posthorn/posthorn/internal/smtpaddr"
	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/mta"
)

// owns reports whether account may use address as a sender: the address
// leads (through the delivery agent's resolution: +tag, aliases,
// catch-all) to the account.
func (s *Server) owns(account, address string) (bool, error) {
	if strings.EqualFold(account, address) {
		return true, nil
	}
	route, err := s.MDA.Resolve(address)
	switch {
	case err == nil:
	case errors.Is(err, mda.ErrNotOurDomain), errors.Is(err, mda.ErrUnknownUser),
		errors.Is(err, mda.ErrBadAddress), errors.Is(err, mda.ErrAliasLoop):
		return false, nil
	default:
		return false, err
	}
	for _, a := range route.Accounts {
		if strings.EqualFold(a, account) {
			return true, nil
		}
	}
	return false, nil
}

// prepare checks a submitted message and returns what it is sent on as
// the parts to put together: head, the fields to put before the body
// (DKIM signatures when its From domain is ours, a Received field, Date
// and Message-ID when missing: RFC 6409 section 8.3), then the message
// itself, in parts: the body as it came, or with the empty line that ends
// its header put in where it was missing. The parts are returned rather
// than copied together so that the caller makes the one copy, with budget
// for it, or none (a single part is the body itself).
func (s *Server) prepare(ss *session, body []byte) (head []byte, parts [][]byte, err error) {
	if !cleanLineEndings(body) {
		return nil, nil, errBareEOL
	}
	// A header that ends without its empty line gets it (mta.EndHeader).
	if parts = mta.EndHeader(body); parts == nil {
		parts = [][]byte{body}
	}
	// The header as readers take it: "From :" is a From field (RFC 5322
	// section 4.5), which Go's net/mail kept apart from "From", and a tab
	// before a colon failed its parse.
	header := mail.Header(mailsyntax.Fields(parts[0][:headerEnd(parts)]))
	if len(header["From"]) > 1 {
		// RFC 5322 section 3.6 allows one; clients differ in which of
		// several they show, and only one would be checked below.
		return nil, nil, errManyFrom
	}
	from, err := header.AddressList("From")
	if err != nil || len(from) == 0 {
		return nil, nil, errNoFrom
	}
	for _, a := range from {
		ok, err := s.owns(ss.account, a.Address)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			ss.log.Info("From: refused", "from", a.Address)
			return nil, nil, errFromNotOwned
		}
	}
	parts = dropBcc(parts)
	if len(ss.remote) > 0 {
		if parts, err = foldLongLines(parts, s.budget, &ss.foldHeld); err != nil {
			return nil, nil, err
		}
	}
	now := time.Now()
	var pre bytes.Buffer
	writeReceived(&pre, s.Hostname, ss, now)
	if len(header["Date"]) == 0 {
		fmt.Fprintf(&pre, "Date: %s\r\n", now.Format(time.RFC1123Z))
	}
	if len(header["Message-Id"]) == 0 {
		fmt.Fprintf(&pre, "Message-ID: <%s.%s@%s>\r\n", ss.id, newID(), s.Hostname)
	}
	sig, err := s.sign(ss, domainOf(from[0].Address), append([][]byte{pre.Bytes()}, parts...)...)
	if err != nil {
		return nil, nil, err
	}
	return append(sig, pre.Bytes()...), parts, nil
}

// maxLine is the longest line SMTP carries, without its CRLF (RFC 5321
// section 4.5.3.1.6, RFC 5322 section 2.1.1).
const maxLine = 998

// foldLongLines breaks the lines of parts longer than maxLine by putting
// CRLF SP into them, as Postfix does when it sends (smtp_line_length_limit,
// "to minimize the damage to MIME formatted mail"), so that a message for
// another host carries none that a strict receiver would refuse or cut.
// It is done before the message is signed, so that the DKIM signature
// holds. A part without such a line is kept as it is. A copy is held
// against budget, in *held (the caller gives it back once the message is
// put together); membudget.ErrNoRoom when there is none.
func foldLongLines(parts [][]byte, budget *membudget.Budget, held *int64) ([][]byte, error) {
	out := parts
	for i, p := range parts {
		if !hasLongLine(p) {
			continue
		}
		if &out[0] == &parts[0] {
			out = append([][]byte(nil), parts...)
		}
		size := len(p) + len(p)/maxLine*3
		if !budget.Hold(held, *held+int64(size)) {
			return nil, membudget.ErrNoRoom
		}
		var b bytes.Buffer
		b.Grow(size)
		for len(p) > 0 {
			line := p
			if j := bytes.IndexByte(p, '\n'); j >= 0 {
				line = p[:j+1]
			}
			p = p[len(line):]
			text := bytes.TrimSuffix(line, []byte("\r\n"))
			end := line[len(text):]
			for n := maxLine; len(text) > n; n = maxLine - 1 {
				b.Write(text[:n])
				b.WriteString("\r\n ")
				text = text[n:]
			}
			b.Write(text)
			b.Write(end)
		}
		out[i] = b.Bytes()
	}
	return out, nil
}

// hasLongLine: p has a line longer than maxLine octets, without its CRLF.
func hasLongLine(p []byte) bool {
	for len(p) > 0 {
		j := bytes.IndexByte(p, '\n')
		if j < 0 {
			return len(p) > maxLine
		}
		if n := len(bytes.TrimSuffix(p[:j+1], []byte("\r\n"))); n > maxLine {
			return true
		}
		p = p[j+1:]
	}
	return false
}

// headerEnd is where the header ends in parts[0], the first of prepare's
// parts: at its empty line or, when EndHeader split the message, at the
// end of the part.
func headerEnd(parts [][]byte) int {
	if len(parts) == 1 {
		return mailsyntax.HeaderLen(parts[0])
	}
	return len(parts[0])
}

// dropBcc takes the Bcc: and Resent-Bcc: fields out of the header, as
// Postfix's cleanup does (message_drop_headers): the blind copies' own
// addresses must not reach the other recipients (RFC 5322 section
// 3.6.3). Clients rarely send one (mutt does, with write_bcc). parts is
// prepare's (see headerEnd). Only when there is
// such a field is a new first part made (the header's size), before the
// message is signed.
func dropBcc(parts [][]byte) [][]byte {
	first, end := parts[0], headerEnd(parts)
	var kept []byte
	found, off := false, 0
	for _, f := range mailsyntax.HeaderFields(first[:end]) {
		name, _, _ := mailsyntax.FieldName(f)
		if bytes.EqualFold(name, []byte("Bcc")) || bytes.EqualFold(name, []byte("Resent-Bcc")) {
			if !found {
				kept = append(kept, first[:off]...)
				found = true
			}
		} else if found {
			kept = append(kept, f...)
		}
		off += len(f)
	}
	if !found {
		return parts
	}
	rest := parts[1:]
	if !bytes.HasSuffix(first[:end], []byte("\n")) && (len(kept) == 0 || bytes.HasSuffix(kept, []byte("\n"))) &&
		len(rest) > 0 && bytes.Equal(rest[0], []byte("\r\n")) {
		// The field taken out was the last, without its line end, which
		// EndHeader's next part gave it.
		rest = rest[1:]
	}
	return append([][]byte{kept, first[end:]}, rest...)
}

// sign returns the DKIM-Signature fields for msg, given in parts, when
// domain is ours and has keys, and nothing otherwise.
func (s *Server) sign(ss *session, domain string, msg ...[]byte) ([]byte, error) {
	ours, err := s.Store.HasDomain(domain)
	if err != nil || !ours {
		return nil, err
	}
	keys, err := s.Store.DKIMKeys(domain)
	if err != nil {
		return nil, err
	}
	sig, err := dkim.Sign(keys, msg...)
	if errors.Is(err, dkim.ErrNoKeys) {
		ss.log.Warn("no active DKIM key; sending unsigned", "domain", domain)
		return nil, nil
	}
	return sig, err
}

// writeReceived writes our trace field (RFC 5321 section 4.4), with the
// protocol names of RFC 3848 and RFC 6531, but without the client's
// address.
func writeReceived(b *bytes.Buffer, hostname string, ss *session, now time.Time) {
	proto := "ESMTPA"
	if ss.tls {
		proto = "ESMTPSA"
	}
	if ss.utf8 {
		proto = "UTF8SMTPA"
		if ss.tls {
			proto = "UTF8SMTPSA"
		}
	}
	helo := strings.Map(func(r rune) rune {
		if r <= ' ' || r == '(' || r == ')' || r == ';' || r > '~' {
			return -1
		}
		return r
	}, ss.conn.Hostname())
	if helo == "" {
		helo = "unknown"
	}
	fmt.Fprintf(b, "Received: from %s\r\n\tby %s (Posthorn) with %s id %s;\r\n\t%s\r\n",
		helo, hostname, proto, ss.id, now.Format(time.RFC1123Z))
}

// cleanLineEndings reports whether every CR is followed by LF, every LF
// follows a CR, and there is no NUL.
func cleanLineEndings(b []byte) bool {
	for i, c := range b {
		switch c {
		case 0:
			return false
		case '\r':
			if i+1 == len(b) || b[i+1] != '\n' {
				return false
			}
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				return false
			}
		}
	}
	return true
}

// domainOf returns the domain of an address, lower case and in A-labels
// (RFC 5890), as the store keeps domains and as DKIM's d= and DMARC name
// them: a From of jörg@bücher.example (RFC 6532) is signed for
// xn--bcher-kva.example.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	d := strings.ToLower(addr[i+1:])
	if a, ok := smtpaddr.ALabels(d); ok {
		return a
	}
	return d
}
