package pop3

// command is one POP3 command: the states it is valid in and its handler.
// A handler writes its own reply; a returned error is either a connError,
// errQuit/errAbort (the session ends) or an internal error (answered with
// -ERR [SYS/TEMP] and an id).
type command struct {
	states state
	run    func(ss *session, args string) error
}

const anyState = stateAuthorization | stateTransaction

// commands says which commands each state allows (RFC 1939 sections 4-6,
// RFC 2449 section 5 for CAPA, RFC 2595 section 4 for STLS, RFC 5034
// section 4 for AUTH). APOP is not offered: it needs the plaintext
// password on the server.
var commands = map[string]command{
	"CAPA": {anyState, (*session).cmdCAPA},
	"QUIT": {anyState, (*session).cmdQUIT},
	"STLS": {stateAuthorization, (*session).cmdSTLS},
	"USER": {stateAuthorization, (*session).cmdUSER},
	"PASS": {stateAuthorization, (*session).cmdPASS},
	"AUTH": {stateAuthorization, (*session).cmdAUTH},
	"STAT": {stateTransaction, (*session).cmdSTAT},
	"LIST": {stateTransaction, (*session).cmdLIST},
	"UIDL": {stateTransaction, (*session).cmdUIDL},
	"RETR": {stateTransaction, (*session).cmdRETR},
	"TOP":  {stateTransaction, (*session).cmdTOP},
	"DELE": {stateTransaction, (*session).cmdDELE},
	"RSET": {stateTransaction, (*session).cmdRSET},
	"NOOP": {stateTransaction, (*session).cmdNOOP},
}

// cmdCAPA lists the capabilities (RFC 2449 section 5). Capabilities of the
// AUTHORIZATION state are announced in both states; USER and SASL only
// where credentials may be sent (RFC 2595 section 4, as Dovecot does).
func (ss *session) cmdCAPA(args string) error {
	if args != "" {
		ss.errf("CAPA takes no argument")
		return nil
	}
	ss.okf("Capability list follows")
	ss.line("TOP")
	ss.line("UIDL")
	ss.line("RESP-CODES")
	ss.line("AUTH-RESP-CODE") // RFC 3206 section 6
	ss.line("PIPELINING")
	if ss.srv.TLSConfig != nil && !ss.tls && ss.state == stateAuthorization {
		ss.line("STLS")
	}
	if ss.authAllowed() {
		ss.line("USER")
		ss.line("SASL PLAIN LOGIN")
	}
	ss.line("IMPLEMENTATION Posthorn")
	ss.line(".")
	return nil
}

// cmdQUIT ends the session; in the TRANSACTION state it first enters
// UPDATE and removes the messages marked as deleted (RFC 1939 section 6).
func (ss *session) cmdQUIT(args string) error {
	if ss.state == stateTransaction {
		ss.state = stateUpdate
		err := ss.update()
		// Release the maildrop before the client sees the reply, so
		// that it can log in again at once.
		ss.release()
		if err != nil {
			return err
		}
		return errQuit
	}
	ss.okf("%s POP3 server signing off", ss.srv.Hostname)
	return errQuit
}

// cmdNOOP does nothing (RFC 1939 section 5).
func (ss *session) cmdNOOP(args string) error {
	ss.okf("")
	return nil
}
