package msa

import (
	"errors"
	"log/slog"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/auth"
	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/mta"
)

// Reply codes (RFC 5321 section 4.2.3, RFC 4954 section 6) with enhanced
// status codes (RFC 3463).
const (
	codeAuthRequired = 530 // authentication required
	codeAuthFailed   = 535 // authentication credentials invalid
	codeTempAuth     = 454 // temporary authentication failure
	codeTempLocal    = 451 // local error in processing
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
	errAccountDisabled = &smtp.SMTPError{Code: codePolicy, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Account disabled or deleted: nothing more is sent from it"}
	errSenderNotOwned = &smtp.SMTPError{Code: codePolicy, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Sender address not owned by the authenticated user"}
	errFromNotOwned = &smtp.SMTPError{Code: codePolicy, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "From: address not owned by the authenticated user"}
	errNoFrom = &smtp.SMTPError{Code: codePolicy, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message has no valid From: header field"}
	errManyFrom = &smtp.SMTPError{Code: codePolicy, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message has more than one From: header field"}
	errBareEOL = &smtp.SMTPError{Code: codePolicy, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Message refused: bare CR, bare LF or NUL in data (RFC 5321 section 2.3.8)"}
	errBadAddress = &smtp.SMTPError{Code: codeBadMailbox, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
		Message: "Address not accepted"}
	errNoQueue = &smtp.SMTPError{Code: codeTempLocal, EnhancedCode: smtp.EnhancedCode{4, 4, 3},
		Message: "Remote delivery is not available now, try again later"}
)

// reply turns an error into what the client may see: a bad address form
// is 553 5.1.3 here (RFC 6409: the user's own mistake, not a relay
// attempt), everything else as on port 25 (mta.Reply: meaningful errors
// become their reply, anything else 451 4.3.0 with a logged id).
func reply(log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, mda.ErrBadAddress) {
		return errBadAddress
	}
	return mta.Reply(log, err)
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

func newID() string { return mta.NewID() }
