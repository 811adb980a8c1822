package mta

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/auth"
	"github.com/posthorn/posthorn/internal/connlimit"
	"github.com/posthorn/posthorn/internal/membudget"
	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/metrics"
)

// session is one SMTP connection's state. go-smtp enforces the command
// sequence (EHLO before MAIL, MAIL before RCPT, RCPT before DATA); the
// session keeps the envelope and the verdicts.
type session struct {
	srv  *Server
	conn *smtp.Conn
	log  *slog.Logger
	ip   net.IP

	from     string
	mailOpts *smtp.MailOptions
	spf      *spfCheck
	rcpts    []string
	badRcpts int
	inTx     bool // MAIL was accepted; Reset ends the transaction
	tx       Tx   // the transaction as shutdown counts it
	bdat     BDATGuard
	// budget is this client's share of the server's budget for bodies
	// in flight (membudget.For): one client cannot take it all.
	budget     *membudget.Budget
	budgetDone func()
}

func newSession(srv *Server, c *smtp.Conn) *session {
	id := newID()
	ip := net.ParseIP(connlimit.ClientIP(c.Conn().RemoteAddr()))
	s := &session{srv: srv, conn: c, ip: ip,
		log: srv.Logger.With("conn", id, "remote", ip.String())}
	s.budget, s.budgetDone = srv.budget.For(auth.Prefix(c.Conn().RemoteAddr()), srv.MaxMessageBytes)
	s.log.Debug("session", "helo", c.Hostname())
	return s
}

// Reset implements smtp.Session (RSET, a new EHLO, end of a transaction).
func (s *session) Reset() {
	s.bdat.Wait()
	s.from, s.mailOpts, s.rcpts, s.spf, s.inTx = "", nil, nil, nil, false
	s.tx.End(&s.srv.drain)
}

// Logout implements smtp.Session.
func (s *session) Logout() error {
	s.tx.End(&s.srv.drain)
	s.budgetDone()
	return nil
}

// Mail implements smtp.Session: MAIL FROM (RFC 5321 section 4.1.1.2).
// SPF is checked from here on, once per transaction (RFC 7208 section
// 2.4), while the client goes on with RCPT and DATA.
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.inTx {
		return ErrNestedMail
	}
	if !ValidHELO(s.conn.Hostname()) {
		return errBadHelo
	}
	if err := CheckCharset(from, opts != nil && opts.UTF8); err != nil {
		return err
	}
	if from != "" && !strings.Contains(from, "@") {
		return &smtp.SMTPError{Code: codeSyntaxParam, EnhancedCode: smtp.EnhancedCode{5, 1, 7},
			Message: "Bad sender address"}
	}
	var size int64
	if opts != nil {
		size = opts.Size
	}
	if err := s.srv.MDA.CheckRoom(size); err != nil {
		return reply(s.log, err)
	}
	s.Reset()
	if err := s.tx.Begin(&s.srv.drain); err != nil {
		return err
	}
	s.from, s.mailOpts, s.inTx = from, opts, true
	s.spf = startSPF(s.srv, s.ip, s.conn.Hostname(), from)
	return nil
}

// spfCheck is an SPF evaluation running in the background.
type spfCheck struct {
	done chan struct{}
	v    spfVerdict
}

func startSPF(srv *Server, ip net.IP, helo, from string) *spfCheck {
	c := &spfCheck{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		ctx, cancel := context.WithTimeout(context.Background(), srv.DNSTimeout)
		defer cancel()
		c.v = checkSPF(ctx, srv.dns, ip, helo, from)
	}()
	return c
}

func (c *spfCheck) verdict() spfVerdict {
	if c == nil {
		return spfVerdict{result: "none"}
	}
	<-c.done
	return c.v
}

// Rcpt implements smtp.Session: RCPT TO (RFC 5321 section 4.1.1.3). Only
// addresses that resolve here are accepted: no open relay.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := CheckCharset(to, s.mailOpts != nil && s.mailOpts.UTF8); err != nil {
		return err
	}
	route, err := s.srv.MDA.Resolve(to)
	if err == nil {
		err = s.checkRoute(route)
	}
	if err != nil {
		r := reply(s.log, err)
		s.log.Info("recipient refused", "from", s.from, "rcpt", to, "code", r.Code, "reason", errString(err))
		s.srv.Metrics.Inc(metrics.Rejected, "via", "smtp", "reason", "recipient")
		if r.Code/100 == 5 {
			s.badRcpts++
		}
		if s.badRcpts >= s.srv.MaxBadRecipients {
			s.hangup(errTooManyBad)
		}
		return r
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

// checkRoute refuses what cannot be delivered now: remote alias targets
// without a queue, and full mailboxes (RFC 1870 section 6.2: 452).
func (s *session) checkRoute(route mda.Route) error {
	if len(route.Remote) > 0 && s.srv.MDA.Queue == nil {
		return mda.ErrNoQueue
	}
	var size int64
	if s.mailOpts != nil {
		size = s.mailOpts.Size
	}
	return s.srv.MDA.CheckQuota(route, size)
}

// hangup sends a last reply and closes the connection; go-smtp's own reply
// to the current command then goes nowhere.
func (s *session) hangup(e *smtp.SMTPError) { hangUp(s.conn, e) }

// hangUp writes a last reply on c and closes it.
func hangUp(c *smtp.Conn, e *smtp.SMTPError) {
	nc := c.Conn()
	nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(nc, formatReply(e))
	c.Close()
}

// Data implements smtp.Session for DATA and for BDAT (RFC 3030): it reads
// and checks the body, authenticates it, delivers it and returns nil only
// once the delivery is durable.
func (s *session) Data(r io.Reader) error {
	defer s.bdat.Start(s.conn, r)()
	start := time.Now()
	buf, off, release, err := s.readBody(r)
	defer release() // after delivery: nothing keeps the body once it is stored
	s.bdat.Cut(err)
	if err != nil {
		return s.refuse(err, 0, "data")
	}
	body := buf[off:]
	if err := CheckHops(body); err != nil {
		s.log.Info("message rejected", "from", s.from, "rcpts", s.rcpts, "reason", "too many hops")
		s.srv.Metrics.Inc(metrics.Rejected, "via", "smtp", "reason", "hops")
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.DNSTimeout)
	v := verify(ctx, s.srv.dns, body, s.spf.verdict())
	cancel()
	attrs := []any{"from", s.from, "rcpts", s.rcpts, "size", len(body),
		"spf", v.spf.result, "dkim", v.dkimSummary(), "dmarc", v.dmarc.result}
	if v.dmarc.policy == "reject" && v.dmarc.result == "fail" {
		if v.dmarc.from == "" {
			// No author domain could be evaluated (verify.go,
			// authorDomains): the header is at fault, whatever any
			// domain's policy, and the reply says so.
			s.log.Info("message rejected", append(attrs, "reason", v.dmarc.reason)...)
			s.srv.Metrics.Inc(metrics.Rejected, "via", "smtp", "reason", "header")
			return &smtp.SMTPError{Code: codeNoMailbox, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
				Message: "Message refused: " + v.dmarc.reason + " (RFC 5322 section 3.6.2)"}
		}
		s.log.Info("message rejected", append(attrs, "reason", "dmarc p=reject")...)
		s.srv.Metrics.Inc(metrics.Rejected, "via", "smtp", "reason", "dmarc")
		return errDMARCReject
	}
	if parts := EndHeader(body); parts != nil {
		// Rare: the header lacks its closing empty line. One copy, with
		// room for our fields, held against the budget.
		size := traceRoom
		for _, p := range parts {
			size += len(p)
		}
		var held int64
		if !s.budget.Hold(&held, int64(size)) {
			return s.refuse(errNoRoom, len(body), "data")
		}
		defer s.budget.Give(held)
		nb := make([]byte, traceRoom, size)
		for _, p := range parts {
			nb = append(nb, p...)
		}
		buf, off = nb, traceRoom
	}
	id := newID()
	full := s.traceHeaders(id, v, buf, off)
	env := mda.Envelope{From: s.from, Recipients: s.rcpts, Junk: v.dmarc.result == "fail" && v.dmarc.policy == "quarantine",
		SMTPUTF8: s.mailOpts != nil && s.mailOpts.UTF8}
	// A full mailbox among several recipients does not fail the message:
	// the MDA stores it for the others and queues the full one's copy
	// (res.Deferred), and only when no recipient has room does the
	// sender get 452 4.2.2 for the whole message.
	res, err := s.srv.MDA.Deliver(context.Background(), env, full)
	if err != nil {
		return s.refuse(err, len(body), "delivery")
	}
	s.log.Info("message accepted", append(attrs, "id", id, "junk", env.Junk, "local", len(res.Delivered),
		"queued", len(res.Queued), "deferred", len(res.Deferred), "ms", time.Since(start).Milliseconds())...)
	s.srv.Metrics.Inc(metrics.Accepted, "via", "smtp")
	return nil
}

// readBody reads the message from go-smtp's DATA reader (strictly, from
// the raw stream under it) or from a BDAT pipe. The body is buf[off:];
// buf[:off] is free room for our header fields. release (never nil) ends
// the use of buf.
func (s *session) readBody(r io.Reader) (buf []byte, off int, release func(), err error) {
	release = func() {}
	defer PaceData(s.conn.Conn(), s.srv.DataTimeout, s.srv.MinDataRate, s.srv.CommandTimeout)()
	br, markEOF, ok := rawData(r)
	if !ok {
		// BDAT: chunks are counted, not dot-terminated, so only the line
		// endings need a look. Or go-smtp's reader changed shape.
		b, rel, err := readBounded(r, traceRoom, s.srv.MaxMessageBytes, s.budget)
		release = rel
		if err != nil {
			return nil, 0, release, err
		}
		if err := checkLineEndings(b[traceRoom:]); err != nil {
			if _, bdat := r.(*io.PipeReader); !bdat {
				s.log.Error("go-smtp's DATA reader changed: falling back to a weaker check")
				s.hangup(errBareEOL)
			}
			return nil, 0, release, err
		}
		return b, traceRoom, release, nil
	}
	// Bytes already buffered when DATA was read were sent before our 354:
	// RFC 2920 section 3.1 makes DATA the last command of a group. They
	// may be in go-smtp's reader, in the cmdReader under it (which hands
	// it commands a line at a time) or, past its 4 KiB, in the read-ahead
	// under that (in plaintext; under TLS the TLS layer holds them).
	pipelined := br.Buffered() > 0 || heldBack(s.conn) > 0 || readAhead(s.conn.Conn()) > 0
	var hint int64
	if s.mailOpts != nil {
		hint = s.mailOpts.Size
	}
	limits := dataLimits{max: s.srv.MaxMessageBytes, hint: hint, headroom: traceRoom, budget: s.budget}
	restore := LiftLineLimit(s.conn, r)
	buf, release, err = readStrictData(br, limits)
	restore()
	markEOF()
	s.conn.Conn().SetReadDeadline(time.Now().Add(s.srv.CommandTimeout))
	switch {
	case errors.Is(err, errTimeout) || (err != nil && !isReply(err) && err != errBadData):
		return nil, 0, release, err
	case pipelined:
		s.log.Warn("client sent data before the 354 reply", "from", s.from)
		s.hangup(errSync)
		return nil, 0, release, errSync
	case err == errBadData:
		s.log.Warn("bare CR, LF or NUL in data", "from", s.from)
		s.hangup(errBareEOL)
		return nil, 0, release, errBareEOL
	}
	return buf, traceRoom, release, err
}

func isReply(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se)
}

// refuse logs a refused message and maps err to its reply.
func (s *session) refuse(err error, size int, stage string) error {
	if err == errBadData {
		err = errBareEOL
	}
	err = ShutdownCut(err, &s.srv.drain)
	r := reply(s.log, err)
	s.log.Info("message rejected", "from", s.from, "rcpts", s.rcpts, "size", size,
		"stage", stage, "code", r.Code, "reason", errString(err))
	s.srv.Metrics.Inc(metrics.Rejected, "via", "smtp", "reason", stage)
	EndAtTimeout(s.conn, r)
	return r
}

func errString(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Message
	}
	return err.Error()
}

// validIPv4Literal: IPv4-address-literal of RFC 5321 section 4.1.3.
func validIPv4Literal(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if len(p) == 0 || len(p) > 3 || err != nil || p[0] == '+' || p[0] == '-' || n > 255 {
			return false
		}
	}
	return true
}

// ValidHELO checks an EHLO/HELO argument: a domain (RFC 5321 section
// 4.1.2 Domain) or an address literal ("[192.0.2.1]", "[IPv6:...]").
func ValidHELO(h string) bool {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		// RFC 5321 section 4.1.3: an IPv6 literal in any of its forms,
		// "::ffff:127.0.0.1" among them; an IPv4 one of four Snum, up
		// to three digits each ("127.000.000.001"), which Go's parser
		// refuses with leading zeros.
		lit := h[1 : len(h)-1]
		if len(lit) > 5 && strings.EqualFold(lit[:5], "IPv6:") { // ABNF strings ignore case
			v6 := lit[5:]
			return strings.Contains(v6, ":") && net.ParseIP(v6) != nil
		}
		return validIPv4Literal(lit)
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 || !utf8.ValidString(h) {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c >= 0x80) {
				return false
			}
		}
	}
	return true
}
