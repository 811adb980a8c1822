package pop3

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/posthorn/posthorn/auth"
	"github.com/posthorn/posthorn/metrics"
)

const (
	msgPlaintextRefused = codeAuth + "Plaintext authentication disallowed on non-secure (SSL/TLS) connections, use STLS"
	msgAuthFailed       = codeAuth + "Authentication failed"
	// A throttled login is a temporary condition: [SYS/TEMP] (RFC 3206
	// section 4). [LOGIN-DELAY] (RFC 2449 section 8.1.1) is for a user
	// who logs in successfully too often, which is not what this is.
	msgThrottled = codeSysTemp + "Too many failed logins, try again later"
	// maxSASLSteps bounds a SASL exchange; PLAIN and LOGIN need two.
	maxSASLSteps = 4
)

// cmdSTLS starts TLS (RFC 2595 section 4). Any plaintext the client sent
// after STLS is discarded, so that a man in the middle cannot inject
// commands that would run inside the TLS session (as in CVE-2011-0411).
func (ss *session) cmdSTLS(args string) error {
	switch {
	case args != "":
		ss.errf("STLS takes no argument")
		return nil
	case ss.tls:
		ss.errf("Already in TLS")
		return nil
	case ss.srv.TLSConfig == nil:
		ss.errf("STLS is not available")
		return nil
	}
	ss.okf("Begin TLS negotiation")
	if err := ss.flush(); err != nil {
		return err
	}
	if n := ss.r.Buffered(); n > 0 {
		ss.log.Warn("discarding plaintext pipelined after STLS", "bytes", n)
		ss.r.Discard(n)
	}
	tc := tls.Server(ss.raw, ss.srv.TLSConfig)
	if err := ss.handshake(tc); err != nil {
		return err
	}
	ss.tls = true
	ss.user = "" // RFC 2595 section 4: forget what was said before TLS
	ss.setConn(tc)
	return nil
}

// handshake runs a TLS handshake within handshakeTimeout.
func (ss *session) handshake(tc *tls.Conn) error {
	ss.raw.SetDeadline(time.Now().Add(handshakeTimeout))
	err := tc.Handshake()
	ss.raw.SetDeadline(time.Time{})
	if err != nil {
		return connError{err}
	}
	return nil
}

// cmdUSER takes the user name (RFC 1939 section 7). It answers +OK for any
// name, so that it does not tell which accounts exist.
func (ss *session) cmdUSER(args string) error {
	switch {
	case !ss.authAllowed():
		ss.errf(msgPlaintextRefused)
	case args == "" || strings.ContainsAny(args, " \t"):
		ss.errf("Usage: USER name")
	default:
		ss.user = args
		ss.okf("Send your password")
	}
	return nil
}

// cmdPASS checks the password of the USER name. The argument is the whole
// rest of the line: RFC 1939 section 7 lets a password contain spaces.
func (ss *session) cmdPASS(args string) error {
	switch {
	case !ss.authAllowed():
		ss.errf(msgPlaintextRefused)
		return nil
	case ss.user == "":
		ss.errf("Send USER first")
		return nil
	case args == "":
		ss.errf("Usage: PASS password")
		return nil
	}
	user := ss.user
	ss.user = ""
	account, err := ss.srv.Auth.Authenticate(ss.ctx, ss.raw.RemoteAddr(), user, args)
	return ss.loggedIn(account, err)
}

// cmdAUTH runs a SASL exchange (RFC 5034 section 4): "AUTH mech
// [initial-response]", challenges as "+ base64", "*" cancels. A bare AUTH
// lists the mechanisms, as many servers and clients expect.
func (ss *session) cmdAUTH(args string) error {
	if !ss.authAllowed() {
		ss.errf(msgPlaintextRefused)
		return nil
	}
	fields := strings.Fields(args)
	if len(fields) == 0 {
		ss.okf("Supported mechanisms follow")
		ss.line("PLAIN")
		ss.line("LOGIN")
		ss.line(".")
		return nil
	}
	if len(fields) > 2 {
		ss.errf("Usage: AUTH mechanism [initial-response]")
		return nil
	}
	var account string
	done := func(a string) { account = a }
	server := ss.saslServer(strings.ToUpper(fields[0]), done)
	if server == nil {
		ss.errf("Unsupported authentication mechanism")
		return nil
	}
	var response []byte // nil: no initial response
	if len(fields) == 2 {
		// RFC 5034 section 4: "=" is an empty initial response.
		if fields[1] != "=" {
			b, err := base64.StdEncoding.DecodeString(fields[1])
			if err != nil {
				ss.errf("Invalid base64 in the initial response")
				return nil
			}
			response = b
		} else {
			response = []byte{}
		}
	}
	return ss.saslExchange(server, response, &account)
}

// contextAuthenticator is implemented by *auth.Authenticator: SASL servers
// whose login delay ends with the session.
type contextAuthenticator interface {
	PlainServerContext(ctx context.Context, remote net.Addr, done func(account string)) sasl.Server
	LoginServerContext(ctx context.Context, remote net.Addr, done func(account string)) sasl.Server
}

// saslServer returns the server of a mechanism, nil if not offered.
func (ss *session) saslServer(mech string, done func(string)) sasl.Server {
	remote := ss.raw.RemoteAddr()
	ca, withCtx := ss.srv.Auth.(contextAuthenticator)
	switch {
	case mech == "PLAIN" && withCtx:
		return ca.PlainServerContext(ss.ctx, remote, done)
	case mech == "PLAIN":
		return ss.srv.Auth.PlainServer(remote, done)
	case mech == "LOGIN" && withCtx:
		return ca.LoginServerContext(ss.ctx, remote, done)
	case mech == "LOGIN":
		return ss.srv.Auth.LoginServer(remote, done)
	}
	return nil
}

// saslExchange drives server until it is done, fails or the client
// cancels.
func (ss *session) saslExchange(server sasl.Server, response []byte, account *string) error {
	for step := 0; ; step++ {
		challenge, done, err := server.Next(response)
		if err != nil || done {
			if err == nil && *account == "" {
				err = errors.New("sasl: done without an account")
			}
			return ss.loggedIn(*account, err)
		}
		if step >= maxSASLSteps {
			ss.errf(msgAuthFailed)
			return nil
		}
		ss.line("+ " + base64.StdEncoding.EncodeToString(challenge))
		if err := ss.flush(); err != nil {
			return err
		}
		line, err := ss.readLine()
		if err != nil {
			ss.endWith(err)
			return connError{err}
		}
		if line == "*" {
			ss.errf("Authentication canceled")
			return nil
		}
		response, err = base64.StdEncoding.DecodeString(line)
		if err != nil {
			ss.errf("Invalid base64 in the response")
			return nil
		}
	}
}

// loggedIn answers the outcome of an authentication. The reply for an
// unknown user and for a wrong password is the same.
func (ss *session) loggedIn(account string, err error) error {
	switch {
	case err == nil:
		return ss.openMaildrop(account)
	case errors.Is(err, context.Canceled) && ss.srv.closing.Load():
		ss.errf(codeSysTemp + "Server shutting down")
		return nil
	case errors.Is(err, auth.ErrThrottled):
		ss.srv.Metrics.Inc(metrics.AuthFailures, "protocol", "pop3")
		ss.log.Info("login throttled")
		ss.errf(msgThrottled)
		return nil
	case errors.Is(err, auth.ErrMalformed), errors.Is(err, sasl.ErrUnexpectedClientResponse):
		ss.srv.Metrics.Inc(metrics.AuthFailures, "protocol", "pop3")
		ss.errf("Malformed SASL response")
		return nil
	case errors.Is(err, auth.ErrInvalidCredentials):
		ss.srv.Metrics.Inc(metrics.AuthFailures, "protocol", "pop3")
		// auth's own line (proto, user, remote, reason) is the one to
		// count failures by; this one adds the session, for debugging.
		ss.log.Debug("login failed")
		ss.errf(msgAuthFailed)
		return nil
	}
	return err
}

// openMaildrop locks the account's maildrop and snapshots INBOX
// (RFC 1939 section 4: the TRANSACTION state starts with the maildrop
// opened and locked).
func (ss *session) openMaildrop(account string) error {
	if !ss.srv.lock(account, ss) {
		ss.log.Info("maildrop in use", "account", account)
		// RFC 2449 section 8.1.2: authenticated, but the maildrop is
		// in use; the session stays in AUTHORIZATION.
		ss.errf(codeInUse + "Maildrop is locked by another POP3 session")
		return nil
	}
	ss.account = account
	drop, err := openMaildrop(ss.srv.Store, account)
	if err != nil {
		ss.srv.unlock(account, ss)
		ss.account = ""
		return err
	}
	ss.drop = drop
	ss.state = stateTransaction
	ss.log = ss.log.With("account", account)
	count, size := drop.stat()
	ss.log.Info("logged in", "messages", count)
	ss.okf("Maildrop has %s (%d octets)", messages(count), size)
	return nil
}
