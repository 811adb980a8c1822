package auth

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"

	"github.com/emersion/go-sasl"
)

// ErrMalformed is returned by the SASL servers for a response that does
// not follow the mechanism's syntax. Its text is safe to show a client.
var ErrMalformed = errors.New("malformed SASL response")

// maxSASLField bounds each field of a response. RFC 4616 section 2 asks
// servers to accept at least 255 octets per field.
const maxSASLField = 1024

// PlainServerContext is PlainServer whose login delay ends with ctx (the
// connection's context).
func (a *Authenticator) PlainServerContext(ctx context.Context, remote net.Addr, done func(account string)) sasl.Server {
	return &plainServer{ctx: ctx, a: a, remote: remote, done: done}
}

// LoginServerContext is LoginServer whose login delay ends with ctx.
func (a *Authenticator) LoginServerContext(ctx context.Context, remote net.Addr, done func(account string)) sasl.Server {
	return &loginServer{ctx: ctx, a: a, remote: remote, done: done}
}

// Protocol is the Authenticator as one protocol's server uses it: its
// log lines name the protocol, so that one line says who failed to log
// in, from where, over what and why (for fail2ban and the like).
type Protocol struct {
	a    *Authenticator
	name string
}

// For returns the Authenticator as the server of protocol uses it.
func (a *Authenticator) For(protocol string) Protocol { return Protocol{a, protocol} }

// Authenticate is Authenticator.Authenticate.
func (p Protocol) Authenticate(ctx context.Context, remote net.Addr, username, password string) (string, error) {
	return p.a.authenticate(ctx, remote, username, password, p.name)
}

// PlainServer is Authenticator.PlainServer.
func (p Protocol) PlainServer(remote net.Addr, done func(account string)) sasl.Server {
	return p.PlainServerContext(context.Background(), remote, done)
}

// LoginServer is Authenticator.LoginServer.
func (p Protocol) LoginServer(remote net.Addr, done func(account string)) sasl.Server {
	return p.LoginServerContext(context.Background(), remote, done)
}

// PlainServerContext is Authenticator.PlainServerContext.
func (p Protocol) PlainServerContext(ctx context.Context, remote net.Addr, done func(account string)) sasl.Server {
	return &plainServer{ctx: ctx, a: p.a, protocol: p.name, remote: remote, done: done}
}

// LoginServerContext is Authenticator.LoginServerContext.
func (p Protocol) LoginServerContext(ctx context.Context, remote net.Addr, done func(account string)) sasl.Server {
	return &loginServer{ctx: ctx, a: p.a, protocol: p.name, remote: remote, done: done}
}

type plainServer struct {
	ctx      context.Context
	a        *Authenticator
	protocol string
	remote   net.Addr
	done     func(string)
	finished bool
	asked    bool
}

// Next implements sasl.Server. RFC 4616 section 2:
//
//	message = [authzid] UTF8NUL authcid UTF8NUL passwd
//
// Without an initial response the server sends an empty challenge
// (RFC 4422 section 5).
func (s *plainServer) Next(response []byte) ([]byte, bool, error) {
	if s.finished {
		return nil, true, sasl.ErrUnexpectedClientResponse
	}
	if response == nil && !s.asked {
		s.asked = true
		return []byte{}, false, nil
	}
	s.finished = true
	parts := bytes.Split(response, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 || len(parts[2]) == 0 {
		return nil, true, ErrMalformed
	}
	for _, p := range parts {
		if len(p) > maxSASLField {
			return nil, true, ErrMalformed
		}
	}
	authzid, authcid, passwd := string(parts[0]), string(parts[1]), string(parts[2])
	// RFC 4616 section 2: an authzid that differs from the authcid asks to
	// act as another user; Posthorn has no proxy authorization.
	if authzid != "" && !strings.EqualFold(strings.TrimSpace(authzid), strings.TrimSpace(authcid)) {
		return nil, true, ErrInvalidCredentials
	}
	account, err := s.a.authenticate(s.ctx, s.remote, authcid, passwd, s.protocol)
	if err != nil {
		return nil, true, err
	}
	if s.done != nil {
		s.done(account)
	}
	return nil, true, nil
}

// loginServer implements the LOGIN mechanism of
// draft-murchison-sasl-login-00 section 2: the server asks "Username:"
// then "Password:"; a client may send the username as initial response.
type loginServer struct {
	ctx      context.Context
	a        *Authenticator
	protocol string
	remote   net.Addr
	done     func(string)
	step     int // 0: nothing yet, 1: asked for username, 2: asked for password, 3: finished
	username string
}

// Challenges of the LOGIN mechanism.
var (
	challengeUsername = []byte("Username:")
	challengePassword = []byte("Password:")
)

// Next implements sasl.Server.
func (s *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch s.step {
	case 0:
		if response == nil {
			s.step = 1
			return challengeUsername, false, nil
		}
		return s.takeUsername(response)
	case 1:
		return s.takeUsername(response)
	case 2:
		s.step = 3
		if len(response) == 0 || len(response) > maxSASLField {
			return nil, true, ErrMalformed
		}
		account, err := s.a.authenticate(s.ctx, s.remote, s.username, string(response), s.protocol)
		if err != nil {
			return nil, true, err
		}
		if s.done != nil {
			s.done(account)
		}
		return nil, true, nil
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}

func (s *loginServer) takeUsername(response []byte) ([]byte, bool, error) {
	if len(response) == 0 || len(response) > maxSASLField || bytes.IndexByte(response, 0) >= 0 {
		s.step = 3
		return nil, true, ErrMalformed
	}
	s.username = string(response)
	s.step = 2
	return challengePassword, false, nil
}
