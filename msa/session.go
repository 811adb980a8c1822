package msa

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/internal/membudget"
	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/mta"
	"github.com/posthorn/posthorn/store"
)

// deliverTimeout bounds the local delivery and queueing of one message.
const deliverTimeout = 2 * time.Minute

// headRoom is the room kept before a submitted body for the fields put on
// top of it (DKIM signatures, Received, Date, Message-ID: about 1.5 KiB
// with an RSA and an ed25519 key), so that the message is not copied.
const headRoom = 4096

// session is one client connection after EHLO. States: not
// authenticated (only AUTH, and the commands go-smtp handles itself),
// authenticated (MAIL), in a transaction (RCPT, DATA/BDAT).
type session struct {
	s    *Server
	conn *smtp.Conn
	id   string
	tls  bool
	log  *slog.Logger

	account string // "" until AUTH succeeds

	// The transaction.
	from     string
	size     int64 // MAIL FROM SIZE=, 0 if none
	foldHeld int64 // budget held for the folded copy of a message (foldLongLines)
	utf8     bool
	eightBit bool
	local    []string
	remote   []string
	seen     map[string]bool
	inTx     bool   // MAIL was accepted; Reset ends the transaction
	tx       mta.Tx // the transaction as shutdown counts it
	bdat     mta.BDATGuard
}

// AuthMechanisms implements smtp.AuthSession; go-smtp offers them only
// under TLS unless plaintext auth is allowed.
func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

// Auth implements smtp.AuthSession.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	remote := ss.conn.Conn().RemoteAddr()
	done := func(account string) {
		ss.account = account
		ss.log = ss.log.With("account", account)
		ss.log.Info("authenticated", "mech", mech)
	}
	var inner sasl.Server
	switch mech {
	case sasl.Plain:
		inner = ss.s.Auth.PlainServer(remote, done)
	case sasl.Login:
		inner = ss.s.Auth.LoginServer(remote, done)
	default:
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return &saslServer{inner: inner, ss: ss}, nil
}

// saslServer turns the auth package's errors into SMTP replies.
type saslServer struct {
	inner sasl.Server
	ss    *session
}

func (a *saslServer) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := a.inner.Next(response)
	if err != nil {
		a.ss.s.Metrics.Inc(metrics.AuthFailures, "protocol", "smtp")
		a.ss.log.Info("authentication failed", "err", err)
		return nil, true, authReply(a.ss.log, err)
	}
	return challenge, done, nil
}

// Mail implements smtp.Session: MAIL FROM, after AUTH, for an address the
// account owns.
func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if ss.account == "" {
		return errAuthRequired // RFC 4954 section 6
	}
	if ss.inTx {
		return mta.ErrNestedMail
	}
	// An account disabled (posthorn user disable) since its AUTH sends
	// nothing more: a stolen password is often why it was.
	switch a, err := ss.s.Store.Account(ss.account); {
	case errors.Is(err, store.ErrNoSuchAccount) || err == nil && a.Disabled:
		ss.log.Info("sender refused: account disabled or deleted")
		return errAccountDisabled
	case err != nil:
		return reply(ss.log, err)
	}
	if err := mta.CheckCharset(from, opts != nil && opts.UTF8); err != nil {
		return err
	}
	var size int64
	if opts != nil {
		size = opts.Size
	}
	if err := ss.s.Store.CheckRoom(size); err != nil {
		return reply(ss.log, err)
	}
	ss.Reset()
	ss.size = size
	if from != "" {
		ok, err := ss.s.owns(ss.account, from)
		if err != nil {
			return reply(ss.log, err)
		}
		if !ok {
			ss.log.Info("sender refused", "from", from)
			ss.s.Metrics.Inc(metrics.Rejected, "via", "submission", "reason", "sender")
			return errSenderNotOwned
		}
	}
	if err := ss.tx.Begin(&ss.s.drain); err != nil {
		return err
	}
	ss.from, ss.inTx = from, true
	if opts != nil {
		ss.utf8 = opts.UTF8
		ss.eightBit = opts.Body == smtp.Body8BitMIME
	}
	return nil
}

// Rcpt implements smtp.Session: any address; ours go to the delivery
// agent, others to the queue.
func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if ss.account == "" {
		return errAuthRequired
	}
	// A domain may come with a trailing dot (a fully qualified name);
	// RFC 5321 section 4.1.2 has none, and a strict next hop refuses it.
	to = strings.TrimSuffix(to, ".")
	at := strings.LastIndexByte(to, '@')
	if at <= 0 || at == len(to)-1 || strings.HasSuffix(to, ".") {
		return errBadAddress // "..": no domain name
	}
	if err := mta.CheckCharset(to, ss.utf8); err != nil {
		return err
	}
	_, err := ss.s.MDA.Resolve(to)
	// A repeated RCPT gets one copy. Ours are compared without case;
	// another host's local parts may differ by case alone (RFC 5321
	// section 2.4), so only their domains are.
	key := to[:at] + strings.ToLower(to[at:])
	if err == nil {
		key = strings.ToLower(to)
	}
	if ss.seen[key] {
		return nil
	}
	switch {
	case err == nil:
		ss.local = append(ss.local, to)
	case errors.Is(err, mda.ErrNotOurDomain):
		if ss.s.Queue == nil {
			return errNoQueue
		}
		ss.remote = append(ss.remote, to)
	default:
		ss.s.Metrics.Inc(metrics.Rejected, "via", "submission", "reason", "recipient")
		return reply(ss.log, err)
	}
	if ss.seen == nil {
		ss.seen = map[string]bool{}
	}
	ss.seen[key] = true
	return nil
}

// Data implements smtp.Session: checks and completes the message, signs
// it, and delivers or queues it durably before go-smtp replies 250.
func (ss *session) Data(r io.Reader) error {
	defer ss.bdat.Start(ss.conn, r)()
	if ss.account == "" {
		return errAuthRequired
	}
	// go-smtp checks the size first (it fails the read with its reply).
	// Message lines may be longer than command lines (see
	// mta.LiftLineLimit).
	restore := mta.LiftLineLimit(ss.conn, r)
	mta.AllowExactSize(r)
	stop := mta.PaceData(ss.conn.Conn(), durationOr(ss.s.DataTimeout, 10*time.Minute), ss.s.MinDataRate,
		durationOr(ss.s.CommandTimeout, 5*time.Minute))
	buf, release, err := ss.s.budget.ReadAll(r, headRoom, ss.s.maxMessageBytes(), ss.size, smtp.ErrDataTooLarge)
	stop()
	restore()
	defer release()
	ss.bdat.Cut(err)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se // too big
		}
		r := reply(ss.log, mta.ShutdownCut(err, &ss.s.drain))
		mta.EndAtTimeout(ss.conn, r)
		return r
	}
	body := buf[headRoom:]
	defer func() { ss.s.budget.Give(ss.foldHeld); ss.foldHeld = 0 }() // see foldLongLines
	if err := mta.CheckHops(body); err != nil {
		ss.log.Info("message rejected", "from", ss.from, "reason", "too many hops")
		ss.s.Metrics.Inc(metrics.Rejected, "via", "submission", "reason", "hops")
		return err
	}
	head, parts, err := ss.s.prepare(ss, body)
	if err != nil {
		ss.s.Metrics.Inc(metrics.Rejected, "via", "submission", "reason", "content")
		return reply(ss.log, err)
	}
	msg, give, err := assemble(ss.s.budget, buf, head, parts)
	defer give()
	if err != nil {
		return reply(ss.log, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deliverTimeout)
	defer cancel()
	if err := ss.route(ctx, msg); err != nil {
		return reply(ss.log, err)
	}
	ss.s.Metrics.Inc(metrics.Accepted, "via", "submission")
	return nil
}

// route hands the message to the delivery agent and the queue.
func (ss *session) route(ctx context.Context, msg []byte) error {
	if len(ss.remote) > 0 {
		if err := ss.enqueue(ctx, ss.remote, msg); err != nil {
			return err
		}
	}
	if len(ss.local) > 0 {
		env := mda.Envelope{From: ss.from, Recipients: ss.local, SMTPUTF8: ss.utf8}
		res, err := ss.s.MDA.Deliver(ctx, env, msg)
		if (errors.Is(err, store.ErrOverQuota) || errors.Is(err, mda.ErrQuotaTooSmall)) && len(ss.remote) > 0 {
			// Every local mailbox is full, but the message is accepted
			// for the remote recipients already: the local copies wait
			// in the queue for room, as the MDA queues a full mailbox's
			// copy when another local recipient takes the message. A
			// 452 here would have the client send it again to all.
			return ss.enqueue(ctx, ss.local, msg)
		}
		if err != nil {
			return err
		}
		ss.log.Info("delivered locally", "from", ss.from, "mailboxes", len(res.Delivered), "forwarded", len(res.Queued),
			"deferred", len(res.Deferred), "size", len(msg))
	}
	return nil
}

// enqueue puts the message in the outbound queue for rcpts.
func (ss *session) enqueue(ctx context.Context, rcpts []string, msg []byte) error {
	e := store.QueueEntry{
		From: ss.from, SMTPUTF8: ss.utf8, EightBit: ss.eightBit, AuthUser: ss.account,
		NoBounce: ss.from == "",
	}
	for _, r := range rcpts {
		e.Recipients = append(e.Recipients, store.QueueRecipient{Address: r})
	}
	q, err := ss.s.Queue.Enqueue(ctx, e, msg)
	if err != nil {
		return err
	}
	ss.log.Info("accepted", "queue_id", q.ID, "from", ss.from, "recipients", len(rcpts), "size", len(msg))
	return nil
}

// Reset implements smtp.Session.
func (ss *session) Reset() {
	ss.bdat.Wait()
	ss.from, ss.size, ss.utf8, ss.eightBit = "", 0, false, false
	ss.local, ss.remote, ss.seen, ss.inTx = nil, nil, nil, false
	ss.tx.End(&ss.s.drain)
}

// inPlace: part is body itself, not a copy (foldLongLines makes one).
func inPlace(body, part []byte) bool {
	return len(part) == len(body) && (len(body) == 0 || &part[0] == &body[0])
}

// Logout implements smtp.Session.
func (ss *session) Logout() error {
	ss.tx.End(&ss.s.drain)
	return nil
}

// assemble puts head and parts (see prepare: the first starts the body,
// buf[headRoom:]) together: in buf when parts is the body alone, as it
// was read, and head fits in its room, as they nearly always do, or else
// in a copy, for which it holds budget (ErrNoRoom if there is none). give
// gives that back; it is never nil.
func assemble(budget *membudget.Budget, buf, head []byte, parts [][]byte) (msg []byte, give func(), err error) {
	if len(head) <= headRoom && len(parts) == 1 && inPlace(buf[headRoom:], parts[0]) {
		msg = buf[headRoom-len(head):]
		copy(msg, head)
		return msg, func() {}, nil
	}
	size := len(head)
	for _, p := range parts {
		size += len(p)
	}
	var held int64
	if !budget.Hold(&held, int64(size)) {
		return nil, func() {}, membudget.ErrNoRoom
	}
	msg = append(make([]byte, 0, size), head...)
	for _, p := range parts {
		msg = append(msg, p...)
	}
	return msg, func() { budget.Give(held) }, nil
}
