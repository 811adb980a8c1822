// Package auth owns account credentials: argon2id password hashes, the SASL
// PLAIN and LOGIN servers, and the failed-login limiter shared by every
// protocol.
//
// CONTRACT (filled in by the auth implementation; signatures are fixed).
package auth

import (
	"context"
	"errors"
	"log/slog"
	"net"

	"github.com/emersion/go-sasl"

	"github.com/posthorn/posthorn/store"
)

var (
	// ErrInvalidCredentials is the one answer for an unknown user, a wrong
	// password and a disabled account.
	ErrInvalidCredentials = errors.New("invalid credentials")
	// ErrThrottled is a temporary refusal after too many failures.
	ErrThrottled = errors.New("too many failed logins, try again later")
)

// Authenticator checks credentials against the store, throttled by Limiter.
type Authenticator struct {
	Store   store.Store
	Limiter *Limiter
	Logger  *slog.Logger
}

// New returns an Authenticator with a default Limiter.
func New(st store.Store, logger *slog.Logger) *Authenticator {
	return &Authenticator{Store: st, Limiter: NewLimiter(), Logger: logger}
}

// Authenticate checks username (an address) and password for a client at
// remote and returns the canonical account address.
func (a *Authenticator) Authenticate(ctx context.Context, remote net.Addr, username, password string) (string, error) {
	panic("not implemented")
}

// PlainServer is a SASL PLAIN server (RFC 4616) that calls done with the
// account address on success.
func (a *Authenticator) PlainServer(remote net.Addr, done func(account string)) sasl.Server {
	panic("not implemented")
}

// LoginServer is a SASL LOGIN server (draft-murchison-sasl-login).
func (a *Authenticator) LoginServer(remote net.Addr, done func(account string)) sasl.Server {
	panic("not implemented")
}

// HashPassword returns an encoded argon2id hash with its parameters.
func HashPassword(password string) (string, error) { panic("not implemented") }

// CheckPassword reports whether password matches an encoded hash.
func CheckPassword(encoded, password string) (bool, error) { panic("not implemented") }

// Limiter throttles failed logins by IP prefix and by account.
type Limiter struct{}

// NewLimiter returns a Limiter with default thresholds.
func NewLimiter() *Limiter { return &Limiter{} }
