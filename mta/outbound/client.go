package outbound

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/internal/smtpaddr"
	"github.com/posthorn/posthorn/store"
)

// Limits on what a remote server may send us before we give up on it.
const (
	maxReplyLines = 100
	replyBufSize  = 4096 // longest reply line read (RFC 5321 allows 512)
)

var (
	errInjection = errors.New("server sent data after its 220 reply to STARTTLS (possible response injection)")
	errNeedTLS   = errors.New("smarthost does not offer STARTTLS; refusing to send credentials or mail in clear text")
	errSTSNoTLS  = &routeError{Status: "4.7.5", Msg: "STARTTLS not offered or refused, and the domain's MTA-STS policy requires it"}
)

// tlsFailure marks a failed TLS handshake: the host is tried again without
// STARTTLS (opportunistic TLS, RFC 7435 section 3). A host whose domain's
// MTA-STS policy requires TLS fails with a routeError instead (prelude).
type tlsFailure struct{ err error }

func (e *tlsFailure) Error() string { return "TLS handshake: " + e.err.Error() }

// resumedConn replays a synthetic greeting to go-smtp's client, which
// expects one, in front of a connection whose greeting (and STARTTLS) we
// already handled. It also bounds every write: go-smtp sets a deadline
// for each command and its reply, but none while the body is written
// after DATA's 354 (it clears the deadline then), so a server that stops
// reading would hold the worker forever. Each write of the message (go-smtp
// writes it in pieces of its 4 KiB buffer) gets writeTimeout, RFC 5321
// section 4.5.3.2.5's data block timeout (Postfix's smtp_data_xfer_timeout);
// a command's write gets the same, within the command's own deadline.
type resumedConn struct {
	net.Conn
	r            io.Reader
	writeTimeout time.Duration
}

func (c *resumedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *resumedConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// deliverDomain delivers one message to the recipients of one domain,
// trying its hosts in order.
func (q *Queue) deliverDomain(ctx context.Context, e store.QueueEntry, domain string, rcpts []string, body []byte) []result {
	hosts, err := q.hosts(ctx, domain)
	if err == nil && q.Smarthost == "" {
		ascii, _ := aLabel(domain) // hosts checked it
		hosts, err = q.applySTS(ctx, ascii, hosts, q.Logger.With("queue_id", e.ID))
	}
	if err != nil {
		return failAll(rcpts, err, "")
	}
	var last []result
	for _, h := range hosts {
		for _, addr := range h.Addrs {
			res, next := q.deliverHost(ctx, e, h, addr, rcpts, body)
			if !next || ctx.Err() != nil {
				return res
			}
			last = res
		}
	}
	return last
}

// deliverHost runs one SMTP transaction with one address of a host, on a
// kept connection when there is one. next reports that nothing was
// decided there and the next host may be tried.
func (q *Queue) deliverHost(ctx context.Context, e store.QueueEntry, h host, addr string, rcpts []string, body []byte) ([]result, bool) {
	log := q.Logger.With("queue_id", e.ID, "host", h.Name, "addr", addr)
	key := h.Name + " " + net.JoinHostPort(addr, strconv.Itoa(h.Port))
	if h.RequireTLS {
		key += " verified" // never a connection made without the policy
	}
	c := q.pool.get(key)
	if c == nil {
		var err error
		if c, err = q.connect(ctx, h, addr, log); err != nil {
			log.Info("connection failed", "err", err)
			// Whatever the greeting said, another host or a later try may do.
			return failAll(rcpts, temporary(err), h.Name), true
		}
	}
	// Shutdown (ctx) cuts the conversation: the outcome is then not
	// recorded and the message is sent again later (a duplicate at worst).
	stop := context.AfterFunc(ctx, func() { c.Close() })
	keep := false
	defer func() {
		if stop() && keep {
			q.pool.put(key, c)
		} else {
			c.Close()
		}
	}()
	env, err := envelopeFor(c, e, h.Name, rcpts, body)
	if err != nil {
		keep = true // nothing was sent
		return failAll(rcpts, err, h.Name), false
	}
	var results []result
	for first := true; ; first = false {
		if err := c.Mail(env.from, &env.opts); err != nil {
			// Another host may take it, unless a transaction here has
			// decided some recipients already.
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				return append(results, failAll(rcpts, err, h.Name)...), first
			}
			keep = true
			return append(results, failAll(rcpts, err, h.Name)...), first && se.Code < 500
		}
		out := q.transaction(c, env, h, rcpts, body)
		results = append(results, out.results...)
		keep = out.reusable
		if len(out.rest) == 0 {
			// A server that deferred every recipient (a 4xx to each
			// RCPT, or to the end of the data: its spool is full, say)
			// decided nothing: the next host may take the message now,
			// as Postfix tries a backup MX, rather than after the
			// retry backoff.
			return results, first && allTemporary(results)
		}
		// RFC 5321 section 4.5.3.1.10: a 452 reply to RCPT after others
		// were accepted is the server's limit of recipients per
		// transaction, not a problem with the recipient: the others go
		// at once in a new transaction on this connection, as Postfix
		// sends them, rather than after the retry backoff.
		if !out.reusable || c.Reset() != nil {
			keep = false
			return append(results, failAll(out.rest, out.restErr, h.Name)...), false
		}
		log.Info("recipient limit reached; sending the rest in a new transaction", "sent", len(rcpts)-len(out.rest), "rest", len(out.rest))
		rcpts = out.rest
	}
}

// envelope is what goes over the wire for one message to one server: the
// addresses in the form the server takes, and the MAIL parameters.
type envelope struct {
	from  string
	rcpts map[string]string // by address as queued
	opts  smtp.MailOptions
}

// envelopeFor returns the envelope for sending e to rcpts through c, or a
// permanent routeError when the message cannot go to this server as it is.
func envelopeFor(c *smtp.Client, e store.QueueEntry, hostName string, rcpts []string, body []byte) (envelope, error) {
	env := envelope{rcpts: map[string]string{}, opts: smtp.MailOptions{Size: int64(len(body))}}
	// RFC 1870 section 6.3: a message larger than the server's
	// advertised SIZE is not sent (it would be refused after its
	// transfer).
	if limit, ok := c.MaxMessageSize(); ok && limit > 0 && int64(len(body)) > int64(limit) {
		return env, &routeError{Permanent: true, Status: "5.3.4",
			Msg: fmt.Sprintf("message size %d exceeds the limit of %s (%d bytes)", len(body), hostName, limit)}
	}
	// SMTPUTF8 when the entry asks for it or an envelope address needs
	// it (an entry queued before the flag was set for an alias target).
	needUTF8 := e.SMTPUTF8 || !isASCII(e.From)
	for _, r := range rcpts {
		needUTF8 = needUTF8 || !isASCII(r)
	}
	if ok, _ := c.Extension("SMTPUTF8"); ok && needUTF8 {
		env.opts.UTF8 = true
		env.from = smtpaddr.Quote(e.From)
		for _, r := range rcpts {
			env.rcpts[r] = smtpaddr.Quote(r)
		}
	} else {
		// RFC 6531 section 3.2: without SMTPUTF8, only a message that
		// does not need it can go: every envelope address ASCII once its
		// domain is in A-labels (RFC 5891), and, for a message flagged
		// SMTPUTF8, its header ASCII. A client may set the flag on any
		// message (Postfix delivers those too, smtputf8_autodetect).
		from, ok := asciiAddress(e.From)
		needs := !ok || e.SMTPUTF8 && !isASCII(headerOf(body))
		env.from = smtpaddr.Quote(from)
		for _, r := range rcpts {
			a, ok := asciiAddress(r)
			needs = needs || !ok
			env.rcpts[r] = smtpaddr.Quote(a)
		}
		if needs {
			return env, &routeError{Permanent: true, Status: "5.6.7",
				Msg: hostName + " does not support SMTPUTF8, which this message needs"}
		}
	}
	// RFC 6152 section 3: no 8-bit data to a server without 8BITMIME.
	// Postfix would convert the 8-bit parts to quoted-printable, but the
	// message was DKIM-signed at submission and a new encoding changes
	// its body hash: the signature would fail, and with it DMARC for the
	// sender's domain, so the recipient's server could reject or file as
	// spam a message we call delivered. A bounce the sender can act on is
	// the safer choice, and servers without 8BITMIME are rare. The
	// content decides, not the client's BODY= declaration: a 7-bit body
	// declared 8BITMIME goes as it is.
	if ok, _ := c.Extension("8BITMIME"); !ok && !isASCII(body) {
		return env, &routeError{Permanent: true, Status: "5.6.3",
			Msg: hostName + " does not support 8BITMIME, and the message has 8-bit content (it cannot be converted without breaking its DKIM signature)"}
	}
	return env, nil
}

// asciiAddress returns addr with its domain in A-labels, and whether the
// result is ASCII (a UTF-8 local part has no ASCII form).
func asciiAddress(addr string) (string, bool) {
	if isASCII(addr) {
		return addr, true
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr, false
	}
	domain, err := aLabel(addr[at+1:])
	if err != nil {
		return addr, false
	}
	a := addr[:at+1] + domain
	return a, isASCII(a)
}

// connect opens a new connection, falling back to clear text when the TLS
// handshake fails (not for a smarthost), and logs in to a smarthost.
func (q *Queue) connect(ctx context.Context, h host, addr string, log *slog.Logger) (*smtp.Client, error) {
	c, err := q.open(ctx, h, addr, true, log)
	var tf *tlsFailure
	if errors.As(err, &tf) && q.Smarthost == "" {
		log.Warn("TLS failed, retrying without STARTTLS", "err", tf.err)
		c, err = q.open(ctx, h, addr, false, log)
	}
	if err != nil {
		return nil, err
	}
	if q.Smarthost != "" && q.SmarthostUser != "" {
		if err := c.Auth(sasl.NewPlainClient("", q.SmarthostUser, q.SmarthostPassword)); err != nil {
			// A refused login is our configuration: keep the mail.
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// outcome is what one transaction decided.
type outcome struct {
	results []result
	// rest are the recipients not sent because a 452 reply (restErr)
	// said the transaction has all it takes.
	rest    []string
	restErr error
	// reusable reports that the session is still in step (every command
	// got its reply), so the connection can carry another transaction.
	reusable bool
}

// transaction sends the recipients and the body; MAIL was accepted.
func (q *Queue) transaction(c *smtp.Client, env envelope, h host, rcpts []string, body []byte) (out outcome) {
	var accepted []string
	for i, r := range rcpts {
		err := c.Rcpt(env.rcpts[r], nil)
		if err == nil {
			accepted = append(accepted, r)
			continue
		}
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			// The connection broke: nothing was sent, everything waits.
			out.results = append(out.results, failAll(accepted, err, h.Name)...)
			out.results = append(out.results, failAll(rcpts[i:], err, h.Name)...)
			return out
		}
		if se.Code == 452 && len(accepted) > 0 {
			out.rest, out.restErr = rcpts[i:], err
			break
		}
		out.results = append(out.results, failAll([]string{r}, err, h.Name)...)
	}
	if len(accepted) == 0 {
		out.reusable = true
		return out
	}
	w, err := c.Data()
	if err != nil {
		out.results = append(out.results, failAll(accepted, err, h.Name)...)
		out.reusable = isReply(err)
		return out
	}
	if _, err := w.Write(toCRLF(body)); err != nil {
		out.results = append(out.results, failAll(accepted, fmt.Errorf("sending the message: %w", err), h.Name)...)
		return out
	}
	if err := w.Close(); err != nil {
		// Without the final reply we cannot know: retry, which may
		// duplicate but never loses (RFC 5321 section 6.1).
		if !isReply(err) {
			err = fmt.Errorf("ending the message: %w", err)
		}
		out.results = append(out.results, failAll(accepted, err, h.Name)...)
		out.reusable = isReply(err)
		return out
	}
	for _, r := range accepted {
		out.results = append(out.results, result{Address: r, Delivered: true, Status: "2.0.0", RemoteMTA: h.Name})
	}
	out.reusable = true
	return out
}

// allTemporary reports whether every result is a temporary failure.
func allTemporary(rs []result) bool {
	for _, r := range rs {
		if r.Delivered || r.Permanent {
			return false
		}
	}
	return len(rs) > 0
}

func isReply(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se)
}

// open connects to addr, reads the greeting, says EHLO and starts TLS when
// offered (and useTLS), and returns a go-smtp client after its own EHLO.
func (q *Queue) open(ctx context.Context, h host, addr string, useTLS bool, log *slog.Logger) (*smtp.Client, error) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(addr, strconv.Itoa(h.Port)))
	if err != nil {
		return nil, err
	}
	raw := conn
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	implicit := q.Smarthost != "" && h.Port == 465
	if implicit {
		conn.SetDeadline(time.Now().Add(commandTimeout))
		tc := tls.Client(conn, q.tlsConfig(h.Name, h.RequireTLS, log))
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			if h.RequireTLS {
				return nil, tlsRequired(h, err)
			}
			return nil, err
		}
		conn = tc
	}
	conn, err = q.prelude(ctx, conn, h, useTLS && !implicit, log)
	if err != nil {
		return nil, err
	}
	greeting := io.MultiReader(strings.NewReader("220 "+h.Name+" resumed\r\n"), conn)
	c := smtp.NewClient(&resumedConn{Conn: conn, r: greeting, writeTimeout: q.dataTimeout()})
	c.CommandTimeout = commandTimeout
	if err := c.Hello(q.hostname()); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// prelude reads the greeting, sends EHLO and, when offered, STARTTLS. It
// returns the connection to go on with (TLS or not).
func (q *Queue) prelude(ctx context.Context, conn net.Conn, h host, useTLS bool, log *slog.Logger) (net.Conn, error) {
	conn.SetDeadline(time.Now().Add(commandTimeout))
	defer conn.SetDeadline(time.Time{})
	br := bufio.NewReaderSize(conn, replyBufSize)
	fail := func(err error) (net.Conn, error) { conn.Close(); return nil, err }
	if _, err := expect(br, 220); err != nil {
		return fail(err)
	}
	if _, isTLS := conn.(*tls.Conn); isTLS || !useTLS {
		return conn, nil
	}
	if _, err := fmt.Fprintf(conn, "EHLO %s\r\n", q.hostname()); err != nil {
		return fail(err)
	}
	lines, err := expect(br, 250)
	var se *smtp.SMTPError
	if errors.As(err, &se) && (se.Code == 500 || se.Code == 502) {
		// EHLO is not known (a server older than ESMTP): no STARTTLS
		// either, and go-smtp's client falls back to HELO (RFC 5321
		// section 3.2: the client SHOULD), as Postfix does.
		lines, err = nil, nil
	}
	if err != nil {
		return fail(err)
	}
	if !hasExtension(lines, "STARTTLS") {
		if q.Smarthost != "" {
			return fail(errNeedTLS)
		}
		if h.RequireTLS {
			return fail(errSTSNoTLS)
		}
		return conn, nil
	}
	if _, err := io.WriteString(conn, "STARTTLS\r\n"); err != nil {
		return fail(err)
	}
	if _, err := expect(br, 220); err != nil {
		if q.Smarthost != "" {
			return fail(errNeedTLS)
		}
		if h.RequireTLS {
			return fail(errSTSNoTLS)
		}
		if errors.As(err, &se) {
			return conn, nil // refused: go on in clear text
		}
		return fail(err)
	}
	// RFC 3207 section 4.2: nothing may follow the 220; anything that
	// did would be read as if it came over TLS.
	if br.Buffered() > 0 {
		// The host is tried again in clear text, on a new connection,
		// as after a failed handshake: whoever can inject a reply can
		// strip STARTTLS as well (RFC 7435), and Postfix delivers too.
		if h.RequireTLS {
			return fail(tlsRequired(h, errInjection))
		}
		return fail(&tlsFailure{errInjection})
	}
	tc := tls.Client(conn, q.tlsConfig(h.Name, h.RequireTLS, log))
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		if h.RequireTLS {
			return nil, tlsRequired(h, err)
		}
		return nil, &tlsFailure{err}
	}
	return tc, nil
}

// tlsRequired is the error for a host that must be reached over TLS with
// a certificate that verifies, when the handshake failed: temporary, as
// the certificate may be fixed or the attacker gone.
func tlsRequired(h host, err error) error {
	why := "the domain's MTA-STS policy requires it"
	if h.Smarthost {
		why = "the smarthost's certificate must verify before the AUTH password is sent (outbound.ca_file or the system's roots)"
	}
	return &routeError{Status: "4.7.5", Msg: "TLS with " + h.Name + " failed, and " + why + ": " + err.Error()}
}

// tlsConfig makes the client TLS configuration for one host. The
// certificate is verified here and a problem is logged, not fatal
// (opportunistic TLS, RFC 7435), unless the template says InsecureSkipVerify;
// with required (MTA-STS), it is verified and a problem fails the
// handshake.
func (q *Queue) tlsConfig(serverName string, required bool, log *slog.Logger) *tls.Config {
	cfg := &tls.Config{}
	if q.TLS != nil {
		cfg = q.TLS.Clone()
	}
	verify := !cfg.InsecureSkipVerify || required
	roots := cfg.RootCAs
	cfg.ServerName = serverName
	cfg.InsecureSkipVerify = true
	cfg.MinVersion = max(cfg.MinVersion, tls.VersionTLS12)
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if !verify || len(cs.PeerCertificates) == 0 {
			return nil
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
			DNSName: serverName, Roots: roots, Intermediates: inter,
		})
		if err != nil && required {
			return err
		}
		if err != nil {
			log.Warn("TLS certificate does not verify; delivering anyway", "err", err)
		}
		return nil
	}
	return cfg
}

func (q *Queue) hostname() string {
	if q.Hostname != "" {
		return q.Hostname
	}
	return "localhost"
}

// expect reads one reply and returns its text lines; a reply with another
// code is returned as an *smtp.SMTPError.
func expect(br *bufio.Reader, want int) ([]string, error) {
	code, lines, err := readReply(br)
	if err != nil {
		return nil, err
	}
	if code != want {
		return nil, replyError(code, lines)
	}
	return lines, nil
}

// readReply reads a possibly multi-line reply (RFC 5321 section 4.2.1)
// with bounded line length and line count.
func readReply(br *bufio.Reader) (int, []string, error) {
	var lines []string
	for n := 0; n < maxReplyLines; n++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, nil, errors.New("reply line too long")
		}
		if err != nil {
			return 0, nil, err
		}
		s := strings.TrimRight(string(line), "\r\n")
		if len(s) < 3 {
			return 0, nil, fmt.Errorf("malformed reply %q", s)
		}
		code, err := strconv.Atoi(s[:3])
		if err != nil || code < 200 || code > 599 || len(s) > 3 && s[3] != ' ' && s[3] != '-' {
			return 0, nil, fmt.Errorf("malformed reply %q", s)
		}
		text := ""
		if len(s) > 4 {
			text = s[4:]
		}
		lines = append(lines, text)
		if len(s) == 3 || s[3] == ' ' {
			return code, lines, nil
		}
	}
	return 0, nil, errors.New("reply has too many lines")
}

func replyError(code int, lines []string) *smtp.SMTPError {
	msg := strings.Join(lines, " ")
	ec := smtp.EnhancedCode{code / 100, 0, 0}
	if f := strings.Fields(msg); len(f) > 0 {
		if p := strings.Split(f[0], "."); len(p) == 3 {
			a, e1 := strconv.Atoi(p[0])
			b, e2 := strconv.Atoi(p[1])
			c, e3 := strconv.Atoi(p[2])
			if e1 == nil && e2 == nil && e3 == nil && a == code/100 {
				ec = smtp.EnhancedCode{a, b, c}
				msg = strings.TrimSpace(strings.TrimPrefix(msg, f[0]))
			}
		}
	}
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg}
}

// hasExtension reports whether an EHLO reply lists ext.
func hasExtension(lines []string, ext string) bool {
	for _, l := range lines[min(1, len(lines)):] {
		f := strings.Fields(l)
		if len(f) > 0 && strings.EqualFold(f[0], ext) {
			return true
		}
	}
	return false
}

// toCRLF returns body with every bare CR or LF turned into CRLF, so that
// what we send has no line ending but CRLF (RFC 5321 section 2.3.8).
func toCRLF(body []byte) []byte {
	clean := true
	for i, c := range body {
		if c == '\r' && (i+1 == len(body) || body[i+1] != '\n') || c == '\n' && (i == 0 || body[i-1] != '\r') {
			clean = false
			break
		}
	}
	if clean {
		return body
	}
	var b bytes.Buffer
	b.Grow(len(body) + len(body)/50)
	for i := 0; i < len(body); i++ {
		switch c := body[i]; c {
		case '\r':
			b.WriteString("\r\n")
			if i+1 < len(body) && body[i+1] == '\n' {
				i++
			}
		case '\n':
			b.WriteString("\r\n")
		default:
			b.WriteByte(c)
		}
	}
	return b.Bytes()
}

// failAll gives every recipient the outcome of err.
func failAll(rcpts []string, err error, remote string) []result {
	status, diag, permanent := classify(err)
	// One bounded line: it goes to the log, the queue entry and the DSN,
	// and a hostile server's reply may be megabytes long.
	diag = clean(diag)
	if se := (*smtp.SMTPError)(nil); !errors.As(err, &se) {
		// Remote-MTA is the MTA that reported the status (RFC 3464
		// section 2.3.5): none did for a refusal of ours (the remote's
		// SIZE, no 8BITMIME), a lost connection or a timeout.
		remote = ""
	}
	out := make([]result, len(rcpts))
	for i, r := range rcpts {
		out[i] = result{Address: r, Permanent: permanent, Status: status, Diag: diag, RemoteMTA: remote}
	}
	return out
}

// tempError turns a permanent reply into a temporary outcome.
type tempError struct{ err error }

func (e *tempError) Error() string { return e.err.Error() }

func temporary(err error) error { return &tempError{err} }

// classify returns the status, the diagnostic and whether err is permanent.
func classify(err error) (status, diag string, permanent bool) {
	var se *smtp.SMTPError
	var re *routeError
	var te *tempError
	switch {
	case errors.As(err, &te):
		status, diag, _ = classify(te.err)
		return "4" + status[1:], diag, false
	case errors.As(err, &se):
		// Diagnostic-Code is the reply as the server sent it (RFC 3464
		// section 2.3.6): an enhanced code only if it had one.
		ec := se.EnhancedCode
		diag = fmt.Sprintf("smtp; %d %s", se.Code, se.Message)
		if ec == smtp.EnhancedCodeNotSet || ec == smtp.NoEnhancedCode {
			ec = smtp.EnhancedCode{se.Code / 100, 0, 0}
		} else {
			diag = fmt.Sprintf("smtp; %d %d.%d.%d %s", se.Code, ec[0], ec[1], ec[2], se.Message)
		}
		status = fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
		return status, diag, se.Code >= 500
	case errors.As(err, &re):
		return re.Status, re.Msg, re.Permanent
	case errors.Is(err, errNeedTLS):
		return "4.7.4", err.Error(), false // RFC 3463 (RFC 7504): TLS required
	}
	// RFC 3463: X.4.1 no answer from the host (the connection could not
	// be made), X.4.2 a bad connection (made, then lost or timed out).
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return "4.4.1", err.Error(), false
	}
	return "4.4.2", err.Error(), false
}
