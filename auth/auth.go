// Package auth owns account credentials: argon2id password hashes, the SASL
// PLAIN and LOGIN servers, and the failed-login limiter shared by every
// protocol.
//
// Implementation notes:
//
//   - Hashes are argon2id (RFC 9106) in the PHC string format with their
//     parameters inside ($argon2id$v=19$m=19456,t=2,p=1$salt$hash), so the
//     cost can be raised later without invalidating stored hashes.
//     CheckPassword honours the parameters of the hash it is given, within
//     bounds that stop a corrupt hash from costing gigabytes.
//   - Authenticate gives one answer, ErrInvalidCredentials, for an unknown
//     user, a wrong password and a disabled account, and costs the same
//     time for each: for an unknown user it verifies against a dummy hash
//     made with the parameters of the last real hash it saw (DefaultParams
//     until then), and a disabled account's password is still checked.
//   - Before any check the Limiter may delay the attempt or refuse it with
//     ErrThrottled (a temporary failure: SMTP 454 4.7.0, IMAP NO
//     [UNAVAILABLE], POP3 -ERR [LOGIN-DELAY]); see Limiter.
//   - The SASL servers decode only the mechanism; the base64 layer of SMTP
//     AUTH (RFC 4954) and IMAP AUTHENTICATE (RFC 9051 section 6.2.2) is the
//     protocol library's.
//   - Passwords never reach a log; usernames do, with the remote address.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"

	"github.com/posthorn/posthorn/internal/smtpaddr"
	"github.com/posthorn/posthorn/store"
)

var (
	// ErrInvalidCredentials is the one answer for an unknown user, a wrong
	// password and a disabled account.
	ErrInvalidCredentials = errors.New("invalid credentials")
	// ErrThrottled is a temporary refusal after too many failures.
	ErrThrottled = errors.New("too many failed logins, try again later")
)

// maxUsername bounds a username (an address: RFC 5321 section 4.5.3.1.3
// allows 256 octets for a path).
const maxUsername = 320

// Authenticator checks credentials against the store, throttled by Limiter.
type Authenticator struct {
	Store   store.Store
	Limiter *Limiter
	Logger  *slog.Logger

	mu         sync.Mutex
	lastParams *Params           // of the last real hash checked
	dummies    map[Params]string // hashes of a fixed password, by params
}

// New returns an Authenticator with a default Limiter.
func New(st store.Store, logger *slog.Logger) *Authenticator {
	return &Authenticator{Store: st, Limiter: NewLimiter(), Logger: logger}
}

// Authenticate checks username (an address) and password for a client at
// remote and returns the canonical account address.
func (a *Authenticator) Authenticate(ctx context.Context, remote net.Addr, username, password string) (string, error) {
	return a.authenticate(ctx, remote, username, password, "")
}

// authenticate is Authenticate for protocol (in the log lines, if not "").
func (a *Authenticator) authenticate(ctx context.Context, remote net.Addr, username, password, protocol string) (string, error) {
	log := a.logger()
	if protocol != "" {
		log = log.With("proto", protocol)
	}
	user := strings.ToLower(strings.TrimSpace(username))
	if len(user) > maxUsername {
		user = user[:maxUsername]
	}
	// The domain as its user sees it, in U-labels, is the one the store
	// keeps in A-labels (clients use the address as the login).
	user = smtpaddr.ALabelAddress(user)
	if a.Limiter != nil {
		if err := a.Limiter.Wait(ctx, remote, user); err != nil {
			if errors.Is(err, ErrThrottled) {
				log.Info("login refused: throttled", "remote", addrString(remote), "user", user)
			}
			return "", err
		}
	}
	acct, err := a.Store.Account(user)
	switch {
	case errors.Is(err, store.ErrNoSuchAccount) || errors.Is(err, store.ErrNotFound) ||
		errors.Is(err, store.ErrNoSuchDomain) || errors.Is(err, store.ErrInvalidName):
		CheckPassword(a.dummyHash(), password) // the same cost as a real check
		return "", a.fail(log, remote, user, "no such account")
	case err != nil:
		return "", fmt.Errorf("auth: looking up account: %w", err)
	}
	ok, err := CheckPassword(acct.PasswordHash, password)
	if err != nil {
		log.Error("stored password hash is unusable", "user", user, "err", err)
		return "", fmt.Errorf("auth: account %s: %w", user, err)
	}
	a.learnParams(acct.PasswordHash)
	if !ok {
		return "", a.fail(log, remote, user, "wrong password")
	}
	if acct.Disabled {
		return "", a.fail(log, remote, user, "account disabled")
	}
	if a.Limiter != nil {
		a.Limiter.Success(remote, user)
	}
	log.Debug("login", "remote", addrString(remote), "user", acct.Address)
	return strings.ToLower(acct.Address), nil
}

// fail records a failure and returns ErrInvalidCredentials. The reason is
// logged, never sent to the client.
func (a *Authenticator) fail(log *slog.Logger, remote net.Addr, user, reason string) error {
	if a.Limiter != nil {
		a.Limiter.Failure(remote, user)
	}
	log.Info("login failed", "remote", addrString(remote), "user", user, "reason", reason)
	return ErrInvalidCredentials
}

// dummyHash returns the hash an unknown user is checked against: one made
// with the parameters of the last real hash checked.
func (a *Authenticator) dummyHash() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := DefaultParams
	if a.lastParams != nil {
		p = *a.lastParams
	}
	return a.dummyLocked(p)
}

// learnParams makes the dummy hash follow the parameters of real hashes,
// so that an unknown user costs what a known one does even after the
// parameters change (or in tests with cheap ones).
func (a *Authenticator) learnParams(encoded string) {
	p, err := ParseParams(encoded)
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastParams = &p
	a.dummyLocked(p)
}

// dummyLocked returns the dummy hash for p, making it once. A few
// parameter sets are kept so that accounts with mixed parameters do not
// remake it on every login.
func (a *Authenticator) dummyLocked(p Params) string {
	if h, ok := a.dummies[p]; ok {
		return h
	}
	if a.dummies == nil || len(a.dummies) >= 8 {
		a.dummies = map[Params]string{}
	}
	h := mustDummy(p)
	a.dummies[p] = h
	return h
}

func mustDummy(p Params) string {
	h, err := HashPasswordParams("posthorn-dummy-password", p)
	if err != nil {
		// p comes from DefaultParams or a hash that parsed: cannot fail
		// short of crypto/rand failing.
		panic(err)
	}
	return h
}

func (a *Authenticator) logger() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// PlainServer is a SASL PLAIN server (RFC 4616) that calls done with the
// account address on success.
func (a *Authenticator) PlainServer(remote net.Addr, done func(account string)) sasl.Server {
	return a.PlainServerContext(context.Background(), remote, done)
}

// LoginServer is a SASL LOGIN server (draft-murchison-sasl-login).
func (a *Authenticator) LoginServer(remote net.Addr, done func(account string)) sasl.Server {
	return a.LoginServerContext(context.Background(), remote, done)
}
