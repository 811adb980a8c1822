// Package mda is the mail delivery agent: it resolves recipients (domains,
// aliases, catch-all, user+tag), applies quotas, adds Return-Path and
// Delivered-To, and writes messages into mailboxes through the store.
//
// Implementation notes:
//
//   - Resolve never routes on: a local part with '%', '!', '@', ':',
//     quotes, spaces or control characters is ErrBadAddress, whatever the
//     domain (the relay forms of RFC 5321 appendix C and the "percent
//     hack"). Source routes are stripped by the SMTP parser (RFC 5321
//     section 4.1.2 says they SHOULD be ignored) and a domain part that is
//     not a plain host name (an address literal) is never ours.
//   - Lookup order for user@domain: the account, then an alias of that
//     exact address, then the same two for "user" without its "+tag"
//     (subaddressing; the message goes to INBOX), then the domain's
//     catch-all alias "@domain", which has the lowest priority; then,
//     for postmaster only, the domain's oldest account, or the server's
//     postmaster for a domain without accounts (RFC 5321 section 4.5.1
//     requires postmaster to be accepted).
//   - Alias targets in our domains, and postmaster at the server's own
//     name, are resolved again, so aliases nest; an address met twice on
//     one path, or a nesting deeper than maxAliasDepth, is ErrAliasLoop.
//     A target that leads nowhere (a member deleted or disabled) is left
//     out while another takes the message. Targets elsewhere are
//     Route.Remote.
//   - Deliver hands every local account to store.Deliver in one call: the
//     body is stored once, the per-recipient Return-Path and Delivered-To
//     (RFC 5321 section 4.4; RFC 9228) go in store.Delivery.Prefix, and
//     the call returns only after the commit is fsynced, so a 250 sent
//     after it is durable. Remote alias targets go to Queue afterwards.
//   - Delivered-To is the address that reached the account: the RCPT
//     address with its +tag (alice+news@), or the alias target, as
//     Postfix's local(8) and Dovecot's LMTP write it, so that Sieve and
//     client filters can match the tag. An account reached by several
//     recipients of one message gets one copy, with the first one's.
//   - One full mailbox does not hold back the others (as in Postfix and
//     Dovecot LMTP, which deliver per recipient): the accounts with room
//     get the message at once and a copy for each full one goes to Queue,
//     whose worker delivers it locally when there is room and sends the
//     sender delay and failure DSNs on the usual schedule. Only when no
//     recipient can take the message (or no queue is wired) is it refused
//     as a whole with store.ErrOverQuota (452 4.2.2), which hands the
//     retrying back to the sending MTA with nothing accepted.
package mda

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/posthorn/posthorn/internal/smtpaddr"
	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/store"
)

var (
	// ErrNotOurDomain: the domain is not served here (550 5.7.1 on port 25).
	ErrNotOurDomain = errors.New("domain not served here")
	// ErrUnknownUser: our domain, no such user or alias (550 5.1.1).
	ErrUnknownUser = errors.New("no such user")
	// ErrBadAddress: a local part we never route (%, !, quotes, source routes).
	ErrBadAddress = errors.New("address not accepted")
	// ErrAliasLoop: an alias expands into itself or too deep.
	ErrAliasLoop = errors.New("alias loop")
	// ErrQuotaTooSmall: the message is larger than a recipient's whole
	// quota: no mailbox clean-up would make room, so it is a permanent
	// failure (552 5.2.3), where a full mailbox is a temporary one.
	ErrQuotaTooSmall = errors.New("message larger than the mailbox quota")
	// ErrNoQueue: an alias forwards to a remote address but no outbound
	// queue is wired; the sender should retry later (a temporary failure).
	ErrNoQueue = errors.New("remote delivery is not available")
)

// maxAliasDepth bounds alias nesting.
const maxAliasDepth = 10

// Queue takes mail for remote addresses (aliases that forward outside).
// The outbound queue implements it.
type Queue interface {
	Enqueue(ctx context.Context, e store.QueueEntry, body []byte) (store.QueueEntry, error)
}

// Route is where one recipient address leads.
type Route struct {
	Accounts []string // local accounts
	// DeliveredTo[i] is the address that reached Accounts[i], written in
	// its Delivered-To field: the resolved address with its +tag, or the
	// alias target, or the account itself (postmaster's fallback).
	DeliveredTo []string
	Remote      []string // remote addresses (alias targets)
}

// addAccount adds an account once, reached by the address via.
func (r *Route) addAccount(acct, via string) {
	for _, a := range r.Accounts {
		if a == acct {
			return
		}
	}
	r.Accounts = append(r.Accounts, acct)
	r.DeliveredTo = append(r.DeliveredTo, via)
}

// merge adds o's accounts and remote addresses to r, each once.
func (r *Route) merge(o Route) {
	for i, acct := range o.Accounts {
		r.addAccount(acct, o.DeliveredTo[i])
	}
	for _, rem := range o.Remote {
		addUnique(&r.Remote, rem)
	}
}

// Envelope is one message's SMTP envelope.
type Envelope struct {
	From       string   // reverse path, "" for <>
	Recipients []string // as given in RCPT TO, each accepted by Resolve
	Junk       bool     // deliver to Junk instead of INBOX
	SMTPUTF8   bool     // the transaction used SMTPUTF8 (for the queue's DSNs)
	// original maps an address an alias led to, to the recipient the
	// sender gave (set by Deliver, for the queue entries' Original).
	original map[string]string
}

// Result says what Deliver did.
type Result struct {
	Delivered []store.Delivered
	Queued    []string // remote addresses queued
	// Deferred are the local recipients (Delivered-To addresses) whose
	// mailbox was full: their copy is queued until it has room.
	Deferred []string
}

// Agent delivers mail.
type Agent struct {
	Store  store.Store
	Queue  Queue // nil: remote alias targets are refused
	Logger *slog.Logger
	// Hostname is the server's own name: postmaster and MAILER-DAEMON at
	// it are taken (the From: of our DSNs is MAILER-DAEMON@Hostname, and
	// RFC 5321 section 4.5.1 asks that postmaster be reachable), as
	// Postfix does for myhostname. "": not.
	Hostname string
	// Metrics counts local deliveries (nil: not counted).
	Metrics *metrics.Registry
}

// Resolve says where an address leads, or why it does not.
func (a *Agent) Resolve(address string) (Route, error) {
	local, domain, err := splitAddress(address)
	if errors.Is(err, ErrBadAddress) {
		return Route{}, a.badLocal(address)
	}
	if err != nil {
		return Route{}, err
	}
	ok, err := a.Store.HasDomain(domain)
	if err != nil {
		return Route{}, err
	}
	var r Route
	switch {
	case ok:
		err = a.expand(local, domain, 0, map[string]bool{}, &r)
	case a.isHost(domain):
		err = a.hostPostmaster(local, 0, map[string]bool{}, &r)
	default:
		err = ErrNotOurDomain
	}
	if err != nil {
		return Route{}, err
	}
	return r, nil
}

// badLocal is Resolve's error for an address whose local part we never
// deliver to: ErrBadAddress at our domains, but ErrNotOurDomain at
// another host's, whose local parts are its own to read (RFC 5321 section
// 2.4): submission relays "john doe"@, john%host@ or a 65-octet local
// part there, as Postfix does, and the queue quotes it on the wire.
func (a *Agent) badLocal(address string) error {
	at := strings.LastIndexByte(address, '@')
	if at <= 0 || strings.Count(address, "@") != 1 || strings.ContainsFunc(address, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return ErrBadAddress
	}
	domain := strings.ToLower(strings.TrimSuffix(address[at+1:], "."))
	if d, ok := smtpaddr.ALabels(domain); ok {
		domain = d // café.example is xn--caf-dma.example (see splitAddress)
	}
	if !validDomain(domain) || a.isHost(domain) {
		return ErrBadAddress
	}
	if ours, err := a.Store.HasDomain(domain); err != nil {
		return err
	} else if ours {
		return ErrBadAddress
	}
	return ErrNotOurDomain
}

// isHost tells whether domain is the server's own name.
func (a *Agent) isHost(domain string) bool {
	return a.Hostname != "" && domain == strings.ToLower(strings.TrimSuffix(a.Hostname, "."))
}

// splitAddress validates an address and returns its lower-case parts.
func splitAddress(address string) (local, domain string, err error) {
	address = strings.ToLower(strings.TrimSpace(address))
	i := strings.LastIndexByte(address, '@')
	if i <= 0 || i == len(address)-1 {
		return "", "", ErrBadAddress
	}
	local, domain = address[:i], strings.TrimSuffix(address[i+1:], ".")
	if !validLocal(local) {
		return "", "", ErrBadAddress
	}
	if a, ok := smtpaddr.ALabels(domain); ok {
		// A domain in U-labels (café.example, RFC 6531) is the same as
		// in A-labels (RFC 5890 section 2.3.2.1): ours are kept so.
		domain = a
	}
	if !validDomain(domain) {
		// Address literals and anything else that is not a host name
		// are never one of our domains.
		return "", "", ErrNotOurDomain
	}
	return local, domain, nil
}

// validLocal accepts a dot-atom local part (RFC 5322 section 3.2.3) with
// UTF-8 allowed (RFC 6531), minus '%' and '!' which old relays route on.
func validLocal(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x80, c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte(".#$&'*+-/=?^_`{|}~", c) >= 0:
		default: // % ! @ : " space, controls, ( ) < > [ ] , ; \
			return false
		}
	}
	return true
}

func validDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 0x80 || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// fellKey marks in expand's seen set an address that is no account or
// alias and went to the catch-all ("@domain" marks the catch-all). No
// address has a colon.
const fellKey = "catch-all:"

// expand adds where local@domain leads to r.
func (a *Agent) expand(local, domain string, depth int, seen map[string]bool, r *Route) error {
	addr := local + "@" + domain
	if seen[addr] && seen[fellKey+addr] {
		// No account or alias, and the catch-all led back here: an
		// unknown user (its account deleted since), not a loop.
		return ErrUnknownUser
	}
	if depth > maxAliasDepth || seen[addr] {
		return fmt.Errorf("%w: %s", ErrAliasLoop, addr)
	}
	seen[addr] = true
	defer delete(seen, addr)

	candidates := []string{addr}
	if base, _, ok := strings.Cut(local, "+"); ok && base != "" {
		candidates = append(candidates, base+"@"+domain) // RFC 5233 subaddress
	}
	for _, c := range candidates {
		found, err := a.expandExact(c, addr, depth, seen, r)
		if found || err != nil {
			return err
		}
	}
	base, _, _ := strings.Cut(local, "+")
	catchAll := "@" + domain
	if seen[catchAll] {
		// The catch-all led here, and this address would take it
		// again: a target that is no account or alias (one deleted
		// since) is an unknown user, not a routing loop.
		if base == "postmaster" {
			return a.postmaster(domain, r)
		}
		return ErrUnknownUser
	}
	targets, err := a.Store.Alias(catchAll)
	if errors.Is(err, store.ErrNotFound) {
		if base == "postmaster" {
			return a.postmaster(domain, r)
		}
		return ErrUnknownUser
	}
	if err != nil {
		return err
	}
	seen[catchAll], seen[fellKey+addr] = true, true
	defer delete(seen, catchAll)
	defer delete(seen, fellKey+addr)
	if base != "postmaster" {
		return a.expandTargets(targets, depth, seen, r)
	}
	// postmaster by the catch-all: where that leads nowhere (its targets
	// gone, or back to postmaster), postmaster is still taken (RFC 5321
	// section 4.5.1), as without a catch-all.
	var tmp Route
	err = a.expandTargets(targets, depth, seen, &tmp)
	if errors.Is(err, ErrUnknownUser) || errors.Is(err, ErrAliasLoop) {
		return a.postmaster(domain, r)
	}
	if err != nil {
		return err
	}
	r.merge(tmp)
	return nil
}

// expandExact resolves an address that is an account or an alias; via is
// the address being expanded (addr with its +tag), for Delivered-To.
func (a *Agent) expandExact(addr, via string, depth int, seen map[string]bool, r *Route) (bool, error) {
	acct, err := a.Store.Account(addr)
	switch {
	case err == nil && !acct.Disabled:
		r.addAccount(acct.Address, via)
		return true, nil
	case err == nil: // disabled: like an unknown user
		return true, ErrUnknownUser
	case !errors.Is(err, store.ErrNoSuchAccount) && !errors.Is(err, store.ErrNotFound):
		return false, err
	}
	targets, err := a.Store.Alias(addr)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, a.expandTargets(targets, depth, seen, r)
}

// expandTargets adds where an alias's targets lead to r. A target that
// leads nowhere (an account deleted or disabled since the alias was made)
// is left out, with a warning, while another target takes the message,
// as Postfix delivers to a list's other members: one gone member must not
// have the whole alias refuse mail. When none does, that is the error.
//
// A target at the server's own name (postmaster@mail.example.org) is
// resolved here, on the same path, as Resolve does: were it queued as
// remote, the queue would deliver it locally (it is ours), resolving the
// alias again on a path of its own, and an alias (or a catch-all) that
// leads to it would forward one message to itself without end.
func (a *Agent) expandTargets(targets []string, depth int, seen map[string]bool, r *Route) error {
	var gone error
	took := false
	for _, t := range targets {
		local, domain, err := splitAddress(t)
		if errors.Is(err, ErrBadAddress) && errors.Is(a.badLocal(t), ErrNotOurDomain) {
			// Another host's address, with a local part of its own
			// (john%x@): forwarded as it is.
			addUnique(&r.Remote, t)
			took = true
			continue
		}
		if err != nil {
			return fmt.Errorf("alias target %q: %w", t, err)
		}
		ours, err := a.Store.HasDomain(domain)
		if err != nil {
			return err
		}
		switch {
		case ours:
			err = a.expand(local, domain, depth+1, seen, r)
		case a.isHost(domain):
			err = a.hostPostmaster(local, depth+1, seen, r)
			if errors.Is(err, ErrNotOurDomain) {
				err = nil
				addUnique(&r.Remote, local+"@"+domain)
			}
		default:
			addUnique(&r.Remote, local+"@"+domain)
		}
		switch {
		case err == nil:
			took = true
		case errors.Is(err, ErrUnknownUser):
			if a.Logger != nil {
				a.Logger.Warn("alias target leads nowhere: left out", "target", t)
			}
			gone = err
		default:
			return err
		}
	}
	if !took && gone != nil {
		return gone
	}
	return nil
}

// postmaster routes postmaster@domain when neither an account, an alias
// nor a catch-all takes it: RFC 5321 section 4.5.1 requires every domain
// we receive for to accept it, and the DMARC record `posthorn dns` prints
// sends its reports there. It goes to the domain's oldest enabled account
// (the first user added, usually the one who set the server up); an
// alias postmaster@domain overrides this. With domain "", the oldest
// account of any domain.
func (a *Agent) postmaster(domain string, r *Route) error {
	accts, err := a.Store.Accounts()
	if err != nil {
		return err
	}
	var first *store.Account
	for i, acct := range accts {
		if acct.Disabled || domain != "" && !strings.HasSuffix(acct.Address, "@"+domain) {
			continue
		}
		if first == nil || acct.Created.Before(first.Created) ||
			acct.Created.Equal(first.Created) && acct.Address < first.Address {
			first = &accts[i]
		}
	}
	if first == nil {
		if domain != "" {
			// A domain of aliases only (or forwards): its postmaster is
			// the server's.
			return a.postmaster("", r)
		}
		return ErrUnknownUser
	}
	r.addAccount(first.Address, first.Address)
	return nil
}

// hostPostmaster adds to r where postmaster and MAILER-DAEMON at the
// server's own name (which is not one of its mail domains) lead: to the
// postmaster of the domain the name is in, when that is ours
// (mail.example.org: that of example.org), or else to the oldest account.
// Other local parts there are ErrNotOurDomain.
func (a *Agent) hostPostmaster(local string, depth int, seen map[string]bool, r *Route) error {
	base, _, _ := strings.Cut(local, "+")
	if base != "postmaster" && base != "mailer-daemon" {
		return ErrNotOurDomain
	}
	host := strings.ToLower(strings.TrimSuffix(a.Hostname, "."))
	for d := host; ; {
		_, parent, ok := strings.Cut(d, ".")
		if !ok || parent == "" {
			break
		}
		if served, err := a.Store.HasDomain(parent); err != nil {
			return err
		} else if served {
			return a.expand("postmaster", parent, depth, seen, r)
		}
		d = parent
	}
	return a.postmaster("", r)
}

func addUnique(list *[]string, s string) {
	for _, x := range *list {
		if x == s {
			return
		}
	}
	*list = append(*list, s)
}

// CheckQuota refuses a recipient at RCPT time (452 4.2.2, or 552 5.2.3
// for a message larger than a whole quota) instead of failing the whole
// message at the end of DATA, when no target of its route could take size
// more bytes (size 0: when none has room left). An alias with several
// targets is refused only when every one is full: one full member does
// not hold the message back from the others (Deliver stores it for them
// and queues the full one's copy, or bounces that copy alone), as Postfix
// and Dovecot deliver to each member of a list on its own. A route with a
// remote target is never refused here.
func (a *Agent) CheckQuota(r Route, size int64) error {
	if len(r.Remote) > 0 {
		return nil
	}
	var tooSmall, full string
	for _, addr := range r.Accounts {
		acct, err := a.Store.Account(addr)
		if err != nil {
			return err
		}
		switch {
		case acct.QuotaBytes > 0 && size > acct.QuotaBytes:
			tooSmall = addr
		case acct.QuotaBytes > 0 && acct.UsedBytes+size >= acct.QuotaBytes:
			full = addr
		default:
			return nil // this one has room
		}
	}
	switch {
	case full != "":
		return fmt.Errorf("%w: %s", store.ErrOverQuota, full)
	case tooSmall != "":
		return fmt.Errorf("%w: %s", ErrQuotaTooSmall, tooSmall)
	}
	return nil
}

// CheckRoom fails (store.NoSpace) when the store's disk cannot take a
// message of size bytes (0: of any size) and keep its reserve: the SMTP
// server's answer to MAIL FROM, 452 4.3.1, as Postfix gives below
// queue_minfree.
func (a *Agent) CheckRoom(size int64) error { return a.Store.CheckRoom(size) }

// Deliver writes body (CRLF, without our per-recipient headers) to every
// local recipient in one durable transaction and queues remote ones. A
// full mailbox's copy is queued to wait for room (Result.Deferred) when
// another recipient takes the message; store.ErrOverQuota (452 4.2.2) is
// returned when none does.
func (a *Agent) Deliver(ctx context.Context, env Envelope, body []byte) (Result, error) {
	var route Route
	orig := map[string]string{} // a target, by what an alias led to: the recipient the sender gave
	for _, rcpt := range env.Recipients {
		r, err := a.Resolve(rcpt)
		if err != nil {
			return Result{}, fmt.Errorf("recipient %s: %w", rcpt, err)
		}
		route.merge(r)
		for _, targets := range [][]string{r.DeliveredTo, r.Remote} {
			for _, t := range targets {
				if _, ok := orig[t]; !ok && !strings.EqualFold(t, rcpt) {
					orig[t] = rcpt
				}
			}
		}
	}
	env.original = orig
	if len(route.Remote) > 0 && a.Queue == nil {
		return Result{}, ErrNoQueue
	}
	var res Result
	if len(route.Accounts) > 0 {
		d, full, err := a.deliverLocal(ctx, env, route, body)
		if err != nil {
			return Result{}, err
		}
		res.Delivered = d
		a.Metrics.Add(metrics.Delivered, int64(len(d)), "to", "local")
		if len(full) > 0 {
			if err := a.deferFull(ctx, env, full, body); err != nil {
				return res, err
			}
			res.Deferred = full
		}
	}
	if len(route.Remote) > 0 {
		if err := a.forward(ctx, env, route.Remote, body); err != nil {
			return res, err
		}
		res.Queued = route.Remote
	}
	return res, nil
}

// localCopy is one account's copy of a message.
type localCopy struct {
	to  store.Delivery
	via string // the Delivered-To address
}

// deliverLocal stores body for the route's accounts and returns the
// Delivered-To addresses of those it left out because they are full.
// store.Deliver is all or nothing, so on store.ErrOverQuota the full
// accounts are found, taken out, and the rest tried again; each round
// takes out at least one, unless a mailbox was emptied meanwhile, so a
// round per account bounds it. When every account is full and there is
// nothing remote to accept the message for, or no queue to hold the
// full ones' copies, the error stands: nothing is accepted.
func (a *Agent) deliverLocal(ctx context.Context, env Envelope, route Route, body []byte) (d []store.Delivered, full []string, err error) {
	mailbox := "INBOX"
	if env.Junk {
		mailbox = "Junk"
	}
	copies := make([]localCopy, len(route.Accounts))
	for i, acct := range route.Accounts {
		via := route.DeliveredTo[i]
		copies[i] = localCopy{via: via,
			to: store.Delivery{Account: acct, Mailbox: mailbox, Prefix: Prefix(env.From, via)}}
	}
	for round := 0; ; round++ {
		to := make([]store.Delivery, len(copies))
		for i, c := range copies {
			to[i] = c.to
		}
		d, err := a.Store.Deliver(ctx, body, to)
		if !errors.Is(err, store.ErrOverQuota) {
			return d, full, err
		}
		if a.Queue == nil || round >= len(route.Accounts) {
			return nil, nil, a.tooSmall(copies, len(body), err)
		}
		room, over, cerr := a.splitFull(copies, len(body))
		if cerr != nil {
			return nil, nil, cerr
		}
		full = append(full, over...)
		if len(room) == 0 {
			if len(route.Remote) == 0 {
				return nil, nil, a.tooSmall(copies, len(body), err)
			}
			// Accepted for the remote ones: the queue delivers a full
			// mailbox's copy later, and bounces at once one that can
			// never take it.
			return nil, full, nil
		}
		copies = room
	}
}

// splitFull sorts copies into those whose account has room for body and
// those whose account has not (their Delivered-To addresses), by the
// rule store.Deliver applies.
func (a *Agent) splitFull(copies []localCopy, size int) (room []localCopy, full []string, err error) {
	for _, c := range copies {
		acct, err := a.Store.Account(c.to.Account)
		if err != nil {
			return nil, nil, err
		}
		if !acct.Fits(int64(len(c.to.Prefix) + size)) {
			full = append(full, c.via)
		} else {
			room = append(room, c)
		}
	}
	return room, full, nil
}

// tooSmall is the error of a message of size octets that none of copies
// could take (err, store.ErrOverQuota): ErrQuotaTooSmall when no account
// of theirs could take it even empty (each has a quota smaller than its
// copy), and err when a clean-up would make room.
func (a *Agent) tooSmall(copies []localCopy, size int, err error) error {
	for _, c := range copies {
		acct, aerr := a.Store.Account(c.to.Account)
		if aerr != nil || acct.QuotaBytes <= 0 || int64(len(c.to.Prefix)+size) <= acct.QuotaBytes {
			return err
		}
	}
	return fmt.Errorf("%w (%v)", ErrQuotaTooSmall, err)
}

// deferFull queues the copies of full mailboxes. The queue's worker
// delivers a recipient of ours through this Agent, so each copy is tried
// again on the queue's retry schedule, with a delay DSN after its
// delay_notice and a failure DSN after give_up_after, as for remote mail.
// The entry keeps Junk, so a quarantined message still goes to Junk.
func (a *Agent) deferFull(ctx context.Context, env Envelope, full []string, body []byte) error {
	return a.enqueue(ctx, env, env.Junk, full, body, "deferred: mailbox full")
}

// forward queues a message for remote alias targets, keeping the original
// envelope sender (no SRS: SPF may fail at the next hop).
func (a *Agent) forward(ctx context.Context, env Envelope, remote []string, body []byte) error {
	return a.enqueue(ctx, env, false, remote, body, "forwarded")
}

// enqueue queues body for the recipients to, under env's sender, and
// logs it as what.
func (a *Agent) enqueue(ctx context.Context, env Envelope, junk bool, to []string, body []byte, what string) error {
	e := store.QueueEntry{From: env.From, NoBounce: env.From == "", Junk: junk, SMTPUTF8: env.SMTPUTF8}
	for _, r := range to {
		e.Recipients = append(e.Recipients, store.QueueRecipient{Address: r, Original: env.original[r]})
		// An alias target with a non-ASCII local part needs SMTPUTF8
		// (RFC 6531 section 3.2), and its DSN a global-delivery-status
		// (RFC 6533), whatever the incoming transaction used.
		e.SMTPUTF8 = e.SMTPUTF8 || !isASCII(r)
	}
	q, err := a.Queue.Enqueue(ctx, e, body)
	if err != nil {
		return fmt.Errorf("queue for %v (%s): %w", to, what, err)
	}
	if a.Logger != nil {
		a.Logger.Info(what, "queue_id", q.ID, "to", to)
	}
	return nil
}

// Prefix is the per-recipient header block put before a delivered
// message: Return-Path (RFC 5321 section 4.4) and Delivered-To, the
// address that reached the account (Route.DeliveredTo).
func Prefix(from, recipient string) []byte {
	return []byte("Return-Path: <" + smtpaddr.Quote(from) + ">\r\nDelivered-To: " + recipient + "\r\n")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
