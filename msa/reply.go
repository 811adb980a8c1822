package msa

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"log/slog"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/auth"
	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/store"
)

// Reply codes (RFC 5321 section 4.2.3, RFC 4954 section 6) with enhanced
// status codes (RFC 3463).
const (
	codeAuthRequired = 530 // authentication required
	codeAuthFailed   = 535 // authentication credentials invalid
	codeTempAuth     = 454 // temporary authentication failure
	codeTempLocal    = 451 // local error in processing
	codeMailboxFull  = 452 // insufficient storage / over quota
	codePolicy       = 550 // mailbox unavailable / policy refusal
	codeBadMailbox   = 553 // mailbox name not allowed
	codeSyntaxParam  = 501 // syntax error in parameters
)

var (
	errAuthRequired = &smtp.SMTPError{Code: codeAuthRequired, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "Authentication required"}
	errAuthFailed = &smtp.SMTPError{Code: codeAuthFailed, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
		Message: "Authentication credentials invalid"}
	errThrottled = &smtp.SMTPError{Code: codeTempAuth, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many failed logins, try again later"}
	errAuthMalformed = &smtp.SMTPError{Code: codeSyntaxParam, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Malformed authentication data"}
	errSenderNotOwned = &smtp.SMTPError{Code: codePolicy, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Sender address not owned by the authenticated user"}
	errFromNotOwned = &smtp.SMTPError{Code: codePolicy, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "From: address not owned by the authenticated user"}
	errNoFrom = &smtp.SMTPError{Code: codePolicy, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message has no valid From: header field"}
	errBadHeader = &smtp.SMTPError{Code: codePolicy, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message header cannot be parsed"}
	errBareEOL = &smtp.SMTPError{Code: codePolicy, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Message refused: bare CR, bare LF or NUL in data (RFC 5321 section 2.3.8)"}
	errUnknownUser = &smtp.SMTPError{Code: codePolicy, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
		Message: "No such user here"}
	errBadAddress = &smtp.SMTPError{Code: codeBadMailbox, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
		Message: "Address not accepted"}
	errAliasLoop = &smtp.SMTPError{Code: codePolicy, EnhancedCode: smtp.EnhancedCode{5, 4, 6},
		Message: "Routing loop detected"}
	errNoQueue = &smtp.SMTPError{Code: codeTempLocal, EnhancedCode: smtp.EnhancedCode{4, 4, 3},
		Message: "Remote delivery is not available now, try again later"}
	errOverQuota = &smtp.SMTPError{Code: codeMailboxFull, EnhancedCode: smtp.EnhancedCode{4, 2, 2},
		Message: "Mailbox full, try again later"}
)

// reply turns an error into what the client may see. Errors with a
// meaning become their reply; anything else is internal: 451 4.3.0 with an
// id that is logged together with the error.
func reply(log *slog.Logger, err error) error {
	var se *smtp.SMTPError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return se
	case errors.Is(err, mda.ErrUnknownUser):
		return errUnknownUser
	case errors.Is(err, mda.ErrBadAddress):
		return errBadAddress
	case errors.Is(err, mda.ErrAliasLoop):
		return errAliasLoop
	case errors.Is(err, mda.ErrNoQueue):
		return errNoQueue
	case errors.Is(err, store.ErrOverQuota):
		return errOverQuota
	}
	id := newID()
	log.Error("internal error", "error_id", id, "err", err)
	return &smtp.SMTPError{Code: codeTempLocal, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Internal error, try again later (id " + id + ")"}
}

// authReply maps an authentication error (RFC 4954 section 6).
func authReply(log *slog.Logger, err error) error {
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials):
		return errAuthFailed
	case errors.Is(err, auth.ErrThrottled):
		return errThrottled
	case errors.Is(err, auth.ErrMalformed), errors.Is(err, sasl.ErrUnexpectedClientResponse):
		return errAuthMalformed
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	id := newID()
	log.Error("authentication error", "error_id", id, "err", err)
	return &smtp.SMTPError{Code: codeTempAuth, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Temporary authentication failure (id " + id + ")"}
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newID returns a short random id for logs and replies.
func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return idEncoding.EncodeToString(b)
}
