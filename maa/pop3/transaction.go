package pop3

import (
	"strconv"
	"strings"

	"github.com/posthorn/posthorn/store"
)

// message parses a message-number argument (RFC 1939 section 3) and
// returns it with its entry, or writes the -ERR reply and returns nil. Messages
// marked as deleted may not be referred to (RFC 1939 section 5).
func (ss *session) message(arg string) (int, *entry) {
	n, err := strconv.ParseUint(arg, 10, 32)
	if err != nil || n == 0 || n > uint64(len(ss.drop.msgs)) {
		ss.errf("No such message")
		return 0, nil
	}
	e := &ss.drop.msgs[n-1]
	if e.deleted {
		ss.errf("Message %d is already deleted", n)
		return 0, nil
	}
	return int(n), e
}

// oneArg splits args and checks that there is exactly one.
func (ss *session) oneArg(args, usage string) (string, bool) {
	f := strings.Fields(args)
	if len(f) != 1 {
		ss.errf("Usage: %s", usage)
		return "", false
	}
	return f[0], true
}

// cmdSTAT gives the drop listing (RFC 1939 section 5).
func (ss *session) cmdSTAT(args string) error {
	if args != "" {
		ss.errf("STAT takes no argument")
		return nil
	}
	count, size := ss.drop.stat()
	ss.okf("%d %d", count, size)
	return nil
}

// cmdLIST gives scan listings (RFC 1939 section 5): the size is the octets
// RETR sends before dot-stuffing.
func (ss *session) cmdLIST(args string) error {
	return ss.listing(args, "LIST [msg]", func(n int, e *entry) string {
		return strconv.FormatInt(e.Size, 10)
	})
}

// cmdUIDL gives unique-id listings (RFC 1939 section 7).
func (ss *session) cmdUIDL(args string) error {
	return ss.listing(args, "UIDL [msg]", func(n int, e *entry) string {
		return ss.drop.uidl(e)
	})
}

// listing answers LIST and UIDL: one message with an argument, else every
// message not marked as deleted, as a multi-line reply.
func (ss *session) listing(args, usage string, value func(n int, e *entry) string) error {
	f := strings.Fields(args)
	switch len(f) {
	case 0:
	case 1:
		if n, e := ss.message(f[0]); e != nil {
			ss.okf("%d %s", n, value(n, e))
		}
		return nil
	default:
		ss.errf("Usage: %s", usage)
		return nil
	}
	ss.okf("Listing follows")
	b := make([]byte, 0, 64)
	for i := range ss.drop.msgs {
		e := &ss.drop.msgs[i]
		if e.deleted {
			continue
		}
		b = strconv.AppendInt(b[:0], int64(i+1), 10)
		b = append(b, ' ')
		b = append(b, value(i+1, e)...)
		b = append(b, '\r', '\n')
		ss.w.Write(b)
	}
	ss.line(".")
	return nil
}

// messages says "1 message" or "n messages" (RFC 1939 section 6's
// examples: "+OK dewey POP3 server signing off (2 messages left)").
func messages(n int) string {
	if n == 1 {
		return "1 message"
	}
	return strconv.Itoa(n) + " messages"
}

// cmdDELE marks a message as deleted (RFC 1939 section 5); it is removed
// only at QUIT.
func (ss *session) cmdDELE(args string) error {
	arg, ok := ss.oneArg(args, "DELE msg")
	if !ok {
		return nil
	}
	if n, e := ss.message(arg); e != nil {
		e.deleted = true
		ss.okf("Message %d deleted", n)
	}
	return nil
}

// cmdRSET unmarks every message marked as deleted (RFC 1939 section 5).
func (ss *session) cmdRSET(args string) error {
	if args != "" {
		ss.errf("RSET takes no argument")
		return nil
	}
	for i := range ss.drop.msgs {
		ss.drop.msgs[i].deleted = false
	}
	count, size := ss.drop.stat()
	ss.okf("Maildrop has %s (%d octets)", messages(count), size)
	return nil
}

// update is the UPDATE state (RFC 1939 section 6): the marked messages are
// removed in one Store.Expunge call. If that fails the client gets -ERR
// [SYS/TEMP] and nothing is removed. Messages retrieved and kept get
// \Seen, as IMAP would have set it.
func (ss *session) update() error {
	d := ss.drop
	// A failure ends the session too (RFC 1939 section 6: -ERR, and the
	// UPDATE state has no other command to take): the maildrop is
	// released, and what was marked stays.
	failed := func(what string, err error, n int) error {
		id := errorID()
		ss.log.Error(what, "err_id", id, "err", err, "messages", n)
		ss.errf(codeSysTemp+"Some deleted messages not removed, try again later (id %s)", id)
		return errAbort
	}
	if err := d.sync(); err != nil {
		return failed("maildrop state at QUIT unknown", err, len(d.toRemove()))
	}
	uids := d.toRemove()
	if len(uids) > 0 {
		if _, err := ss.srv.Store.Expunge(ss.account, inbox, uids); err != nil {
			return failed("expunge at QUIT failed", err, len(uids))
		}
	}
	if seen := d.toMarkSeen(); len(seen) > 0 {
		if _, err := ss.srv.Store.StoreFlags(ss.account, inbox, seen, store.FlagsAdd, []string{`\Seen`}); err != nil {
			ss.log.Warn("setting \\Seen at QUIT failed", "err", err)
		}
	}
	ss.log.Info("logged out", "deleted", len(uids))
	// Wording of RFC 1939 section 6. The messages left are those of the
	// snapshot neither deleted here nor expunged elsewhere meanwhile.
	if count := d.left(); count == 0 {
		ss.okf("%s POP3 server signing off (maildrop empty)", ss.srv.Hostname)
	} else {
		ss.okf("%s POP3 server signing off (%s left)", ss.srv.Hostname, messages(count))
	}
	return nil
}
