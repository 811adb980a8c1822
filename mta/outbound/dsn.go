package outbound

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/posthorn/posthorn/internal/smtpaddr"
	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/store"
)

// DSN actions (RFC 3464 section 2.3.3).
const (
	actionFailed  = "failed"
	actionDelayed = "delayed"
)

// maxDiag bounds a Diagnostic-Code line.
const maxDiag = 900

// sendDSN reports failed or delayed recipients of e to its sender, when a
// report is owed (see the package notes): locally through MDA when the
// sender is ours, else through the queue with NoBounce.
func (q *Queue) sendDSN(ctx context.Context, e store.QueueEntry, body []byte, rs []result, action string) error {
	log := q.Logger.With("queue_id", e.ID, "action", action)
	if e.From == "" || e.NoBounce || len(rs) == 0 {
		log.Info("no DSN: null sender or NoBounce entry")
		return nil
	}
	local := false
	if q.MDA != nil {
		_, err := q.MDA.Resolve(e.From)
		switch {
		case err == nil:
			local = true
		case errors.Is(err, mda.ErrNotOurDomain):
		case errors.Is(err, mda.ErrUnknownUser), errors.Is(err, mda.ErrBadAddress), errors.Is(err, mda.ErrAliasLoop):
			log.Warn("no DSN: the sender is in our domain but not deliverable", "from", e.From, "err", err)
			return nil
		default:
			return err
		}
	}
	// A copy for a mailbox of ours that was full (local.go) is owed its
	// DSNs whoever sent it: after our 250 the delivery is ours to report
	// (RFC 5321 section 6.1), and Postfix too bounces a local recipient
	// it accepted. A forged sender could get it as backscatter, but only
	// for mail that passed our DMARC check, to a user of ours who is
	// full, which is rare; forwarding to remote addresses is routine.
	if e.AuthUser == "" && !local && !allLocal(rs) {
		log.Info("no DSN: not submitted by a user and the sender is remote (no backscatter)", "from", e.From)
		return nil
	}
	msg := buildDSN(q.hostname(), e, headerOf(body), rs, action, q.now(), e.Created.Add(q.giveUpAfter()))
	if local {
		_, err := q.MDA.Deliver(ctx, mda.Envelope{From: "", Recipients: []string{e.From}}, msg)
		if err == nil {
			log.Info("DSN delivered locally", "to", e.From)
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		// The sender's mailbox is full, say. The DSN waits in the queue
		// as an entry of its own, and the entry it reports on goes on
		// without it (Postfix too keeps a bounce apart from the message):
		// holding the entry for the DSN would try its failed recipients
		// again. The queue delivers a local recipient through MDA
		// (local.go), and an entry from <> never makes a DSN of its own,
		// so one still undeliverable after GiveUpAfter is dropped with a
		// log line.
		log.Warn("DSN not delivered locally; queued for a retry", "to", e.From, "err", err)
	}
	d, err := q.Enqueue(ctx, store.QueueEntry{
		From: "", Recipients: []store.QueueRecipient{{Address: e.From}}, NoBounce: true,
		SMTPUTF8: e.SMTPUTF8,
	}, msg)
	if err != nil {
		return err
	}
	log.Info("DSN queued", "to", e.From, "dsn_id", d.ID)
	return nil
}

// headerOf returns the header of a message, with its final blank line.
func headerOf(body []byte) []byte {
	if i := bytes.Index(body, []byte("\r\n\r\n")); i >= 0 {
		return body[:i+4]
	}
	h := bytes.TrimRight(body, "\r\n")
	return append(h[:len(h):len(h)], "\r\n\r\n"...) // a copy: body stays as it is
}

// buildDSN writes a delivery status notification (RFC 3464): a
// multipart/report (RFC 6522) with a human-readable part, the
// message/delivery-status part and the original header
// (text/rfc822-headers).
func buildDSN(hostname string, e store.QueueEntry, header []byte, rs []result, action string, now, retryUntil time.Time) []byte {
	boundary := randomHex(12) + "=_posthorn"
	var b bytes.Buffer
	subject := "Undelivered Mail Returned to Sender"
	if action == actionDelayed {
		subject = "Delayed Mail (still being retried)"
	}
	fmt.Fprintf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", hostname)
	fmt.Fprintf(&b, "To: <%s>\r\n", smtpaddr.Quote(e.From))
	fmt.Fprintf(&b, "Subject: %s\r\n", subject)
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s.dsn@%s>\r\n", randomHex(12), hostname)
	b.WriteString("Auto-Submitted: auto-replied\r\n") // RFC 3834 section 5
	b.WriteString("MIME-Version: 1.0\r\n")
	// RFC 6533 section 6: the UTF-8 forms for an SMTPUTF8 message. The
	// report-type names the subtype of the second part (RFC 6522
	// section 3).
	reportType, headersType := "delivery-status", "text/rfc822-headers"
	if e.SMTPUTF8 {
		reportType, headersType = "global-delivery-status", "message/global-headers"
	}
	var human, status bytes.Buffer
	writeHuman(&human, hostname, e, rs, action, retryUntil)
	writeStatus(&status, hostname, e, rs, action, now, retryUntil)
	header = toCRLF(header)
	// A part with octets over 127 (a UTF-8 address or diagnostic, the
	// original's raw header) is 8bit, and so is the whole: the default,
	// 7bit, has none (RFC 2045 section 6.1).
	eightBit := !isASCII(human.String()) || !isASCII(status.String()) || !isASCII(string(header))
	fmt.Fprintf(&b, "Content-Type: multipart/report; report-type=%s;\r\n\tboundary=\"%s\"\r\n", reportType, boundary)
	if eightBit {
		b.WriteString("Content-Transfer-Encoding: 8bit\r\n")
	}
	b.WriteString("\r\nThis is a MIME-encapsulated delivery status notification.\r\n")
	part := func(contentType string, body []byte) {
		fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: %s\r\n", boundary, contentType)
		if !isASCII(string(body)) {
			b.WriteString("Content-Transfer-Encoding: 8bit\r\n")
		}
		b.WriteString("\r\n")
		b.Write(body)
	}
	part("text/plain; charset=utf-8", human.Bytes())
	part("message/"+reportType, status.Bytes())
	part(headersType, header)
	fmt.Fprintf(&b, "\r\n--%s--\r\n", boundary)
	return b.Bytes()
}

func writeHuman(b *bytes.Buffer, hostname string, e store.QueueEntry, rs []result, action string, retryUntil time.Time) {
	if action == actionDelayed {
		fmt.Fprintf(b, "This is the mail system at %s.\r\n\r\n", hostname)
		b.WriteString("Your message could not be delivered yet to the recipients below.\r\n")
		fmt.Fprintf(b, "It will be retried until %s; you need not send it again.\r\n\r\n", retryUntil.Format(time.RFC1123Z))
	} else {
		fmt.Fprintf(b, "This is the mail system at %s.\r\n\r\n", hostname)
		b.WriteString("Your message could not be delivered to the recipients below.\r\n")
		switch gaveUp := countGaveUp(rs); {
		case gaveUp == 0:
			b.WriteString("This is a permanent error; it will not be retried.\r\n\r\n")
		case gaveUp == len(rs):
			// The last error was temporary: it is time, not the
			// error, that ends the attempts.
			b.WriteString("The errors were temporary, but the message has waited too long;\r\n")
			b.WriteString("it will not be retried.\r\n\r\n")
		default:
			b.WriteString("Some errors were permanent, the others lasted too long;\r\n")
			b.WriteString("it will not be retried.\r\n\r\n")
		}
	}
	for _, r := range rs {
		if o := originalOf(e, r.Address); o != "" {
			fmt.Fprintf(b, "<%s> (expanded from <%s>): %s\r\n", r.Address, o, clean(r.Diag))
			continue
		}
		fmt.Fprintf(b, "<%s>: %s\r\n", r.Address, clean(r.Diag))
	}
}

// originalOf is the address the sender gave for the recipient addr of e,
// when an alias led from it to addr; "" otherwise.
func originalOf(e store.QueueEntry, addr string) string {
	for _, r := range e.Recipients {
		if r.Address == addr {
			return r.Original
		}
	}
	return ""
}

func writeStatus(b *bytes.Buffer, hostname string, e store.QueueEntry, rs []result, action string, now, retryUntil time.Time) {
	// Per-message fields (RFC 3464 section 2.2).
	fmt.Fprintf(b, "Reporting-MTA: dns; %s\r\n", hostname)
	fmt.Fprintf(b, "X-Posthorn-Queue-ID: %s\r\n", e.ID)
	fmt.Fprintf(b, "Arrival-Date: %s\r\n", e.Created.Format(time.RFC1123Z))
	// Per-recipient fields (section 2.3).
	for _, r := range rs {
		b.WriteString("\r\n")
		// RFC 6533 section 3: a UTF-8 address has the type utf-8 (only
		// an SMTPUTF8 message has one).
		addrType := "rfc822"
		if !isASCII(r.Address) {
			addrType = "utf-8"
		}
		// The address the sender gave, when an alias led to this one
		// (section 2.3.1; Postfix writes it too): the sender never saw
		// the final one.
		if o := originalOf(e, r.Address); o != "" {
			oType := "rfc822"
			if !isASCII(o) {
				oType = "utf-8"
			}
			fmt.Fprintf(b, "Original-Recipient: %s; %s\r\n", oType, smtpaddr.Quote(o))
		}
		fmt.Fprintf(b, "Final-Recipient: %s; %s\r\n", addrType, smtpaddr.Quote(r.Address))
		fmt.Fprintf(b, "Action: %s\r\n", action)
		fmt.Fprintf(b, "Status: %s\r\n", statusFor(r, action))
		if r.RemoteMTA != "" {
			fmt.Fprintf(b, "Remote-MTA: dns; %s\r\n", r.RemoteMTA)
		}
		diag := clean(r.Diag)
		if r.GaveUp && r.LastDiag != "" {
			// What the remote server last said, as its own type ("smtp;
			// 451 4.2.1 ...", RFC 3464 section 2.3.6), as Postfix
			// does; Status 5.4.7 and the text part say that time ran
			// out.
			diag = clean(r.LastDiag)
		}
		if !e.SMTPUTF8 {
			diag = asciiOnly(diag)
		}
		if strings.HasPrefix(diag, "smtp; ") {
			fmt.Fprintf(b, "Diagnostic-Code: %s\r\n", diag)
		} else if diag != "" {
			fmt.Fprintf(b, "Diagnostic-Code: X-Posthorn; %s\r\n", diag)
		}
		fmt.Fprintf(b, "Last-Attempt-Date: %s\r\n", now.Format(time.RFC1123Z))
		if action == actionDelayed {
			fmt.Fprintf(b, "Will-Retry-Until: %s\r\n", retryUntil.Format(time.RFC1123Z))
		}
	}
}

// countGaveUp counts the results failed by GiveUpAfter.
func countGaveUp(rs []result) int {
	n := 0
	for _, r := range rs {
		if r.GaveUp {
			n++
		}
	}
	return n
}

// statusFor gives a status whose class matches the action (RFC 3464
// section 2.3.4: failed is 5.x.x, delayed is 4.x.x).
func statusFor(r result, action string) string {
	s := r.Status
	if len(s) < 5 || s[1] != '.' {
		s = "4.0.0"
	}
	if action == actionFailed {
		return "5" + s[1:]
	}
	return "4" + s[1:]
}

// clean makes a diagnostic one bounded line.
// A hostile server's reply may be megabytes long, with any octets: it is
// cut first, so that the work is bounded too, at a character boundary,
// invalid UTF-8 becomes '?' and control characters (C0, DEL, C1) spaces.
func clean(s string) string {
	if len(s) > 4*maxDiag {
		s = s[:4*maxDiag]
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f && r < 0xa0 {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) > maxDiag {
		cut := maxDiag
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return strings.TrimSpace(s)
}

// asciiOnly puts '?' for the non-ASCII characters of s: the
// message/delivery-status part of a DSN is 7bit (RFC 3464 section 2.1);
// only the global form (RFC 6533), for SMTPUTF8 mail, has UTF-8.
func asciiOnly(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 0x80 {
			return '?'
		}
		return r
	}, s)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
