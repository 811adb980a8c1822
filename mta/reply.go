package mta

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/internal/mailsyntax"
	"github.com/posthorn/posthorn/internal/membudget"
	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/store"
)

// Reply codes used by this package (RFC 5321 section 4.2.3) with their
// enhanced status codes (RFC 3463).
const (
	codeClosing     = 421 // service not available, closing channel
	codeMailboxFull = 452 // insufficient system storage / over quota
	codeTempLocal   = 451 // local error in processing
	codeNoMailbox   = 550 // mailbox unavailable / policy refusal
	codeSyntaxParam = 501 // syntax error in parameters
	codeTooBig      = 552 // exceeded storage allocation
	codeTransFailed = 554 // transaction failed
)

var (
	errBadHelo = &smtp.SMTPError{Code: codeSyntaxParam, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "HELO/EHLO needs a domain name or an address literal"}
	errNotOurDomain = &smtp.SMTPError{Code: codeNoMailbox, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Relaying denied: not a domain served here"}
	errUnknownUser = &smtp.SMTPError{Code: codeNoMailbox, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
		Message: "No such user here"}
	errBadAddress = &smtp.SMTPError{Code: codeNoMailbox, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Relaying denied: address form not accepted"}
	errAliasLoop = &smtp.SMTPError{Code: codeNoMailbox, EnhancedCode: smtp.EnhancedCode{5, 4, 6},
		Message: "Routing loop detected"}
	errNoQueue = &smtp.SMTPError{Code: codeTempLocal, EnhancedCode: smtp.EnhancedCode{4, 4, 3},
		Message: "Cannot forward mail for this address now, try again later"}
	errOverQuota = &smtp.SMTPError{Code: codeMailboxFull, EnhancedCode: smtp.EnhancedCode{4, 2, 2},
		Message: "Mailbox full, try again later"}
	errQuotaTooSmall = &smtp.SMTPError{Code: codeTooBig, EnhancedCode: smtp.EnhancedCode{5, 2, 3},
		Message: "Message larger than the mailbox quota"}
	errNoSpace = &smtp.SMTPError{Code: codeMailboxFull, EnhancedCode: smtp.EnhancedCode{4, 3, 1},
		Message: "Insufficient system storage, try again later"}
	errTooBig = &smtp.SMTPError{Code: codeTooBig, EnhancedCode: smtp.EnhancedCode{5, 3, 4},
		Message: "Message too big"}
	errNoRoom = &smtp.SMTPError{Code: codeMailboxFull, EnhancedCode: smtp.EnhancedCode{4, 3, 1},
		Message: "Insufficient system resources for this message now, try again later"}
	errBareEOL = &smtp.SMTPError{Code: codeNoMailbox, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Message refused: bare CR, bare LF or NUL in data (RFC 5321 section 2.3.8)"}
	errSync = &smtp.SMTPError{Code: codeTransFailed, EnhancedCode: smtp.EnhancedCode{5, 5, 0},
		Message: "SMTP protocol synchronization error: data sent before the 354 reply"}
	errTooManyBad = &smtp.SMTPError{Code: codeClosing, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many unknown recipients, closing connection"}
	errTooManyHops = &smtp.SMTPError{Code: codeTransFailed, EnhancedCode: smtp.EnhancedCode{5, 4, 6},
		Message: "Too many hops (Received fields): routing loop detected"}
	errDMARCReject = &smtp.SMTPError{Code: codeNoMailbox, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Message rejected by the sender domain's DMARC policy"}
	// ErrNestedMail answers a MAIL inside a transaction (RFC 5321
	// section 4.1.4: MAIL starts one only after RSET or the end of the
	// last), as Postfix does. go-smtp lets it through; taken as a new
	// transaction it would drop the recipients already accepted.
	ErrNestedMail = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1},
		Message: "Nested MAIL command: send RSET first"}
	errBadUTF8 = &smtp.SMTPError{Code: codeSyntaxParam, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Address is not valid UTF-8"}
	errControlInAddress = &smtp.SMTPError{Code: codeSyntaxParam, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Control character in address"}
	errNeedUTF8 = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
		Message: "Non-ASCII address without SMTPUTF8 (RFC 6531 section 3.4)"}
	errTimeout = &smtp.SMTPError{Code: codeClosing, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
		Message: "Timeout receiving data, closing connection"}
)

func reply(log *slog.Logger, err error) *smtp.SMTPError { return Reply(log, err) }

// Reply turns any error into a reply a client may see. An *smtp.SMTPError
// and the mda/store errors with a meaning are passed on; anything else is
// an internal error: 451 4.3.0 with an id that is logged with the error,
// so the client retries and never sees err.Error(). Submission (msa) uses
// it too, for the errors both servers share.
func Reply(log *slog.Logger, err error) *smtp.SMTPError {
	var se *smtp.SMTPError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return se
	case errors.Is(err, mda.ErrNotOurDomain):
		return errNotOurDomain
	case errors.Is(err, mda.ErrUnknownUser):
		return errUnknownUser
	case errors.Is(err, mda.ErrBadAddress):
		return errBadAddress
	case errors.Is(err, mda.ErrAliasLoop):
		return errAliasLoop
	case errors.Is(err, mda.ErrNoQueue):
		return errNoQueue
	case errors.Is(err, mda.ErrQuotaTooSmall):
		return errQuotaTooSmall
	case errors.Is(err, store.ErrOverQuota):
		return errOverQuota
	case store.NoSpace(err):
		if report, missed := store.ReportNoSpace(); report {
			log.Error("no space left for the store", "err", err, "refused_unlogged", missed)
		}
		return errNoSpace
	case errors.Is(err, membudget.ErrNoRoom):
		log.Warn("message refused for now: too many bodies being received at once")
		return errNoRoom
	case errors.Is(err, errClientTimeout) || errors.Is(err, os.ErrDeadlineExceeded):
		// The client stopped sending in a message transfer: 421, and the
		// caller ends the session (see EndAtTimeout).
		log.Info("message not received: the client timed out", "err", err)
		return errTimeout
	case clientGone(err):
		// The client's doing, not ours: no error to alert on. The reply
		// goes nowhere, or ends an aborted BDAT transfer.
		log.Info("message not received: the client ended it", "err", err)
		return &smtp.SMTPError{Code: codeTempLocal, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
			Message: "Message not received whole, try again"}
	}
	id := newID()
	log.Error("internal error", "error_id", id, "err", err)
	return &smtp.SMTPError{Code: codeTempLocal, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Internal error, try again later (id " + id + ")"}
}

// clientGone reports whether err is the client's ending of a transfer:
// the connection closed or reset inside DATA or BDAT, or a BDAT transfer
// aborted by RSET (go-smtp's ErrDataReset).
// EndAtTimeout ends the session of c if r is the reply to a client that
// stopped sending in a message transfer (Reply): the 421 4.4.2 is written
// at once and the connection closed, as at a timeout between commands,
// so that nothing the client sends later is read out of step.
func EndAtTimeout(c *smtp.Conn, r error) {
	if r == error(errTimeout) {
		hangUp(c, errTimeout)
	}
}

func clientGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, smtp.ErrDataReset) ||
		errors.Is(err, errClientTimeout) || errors.Is(err, os.ErrDeadlineExceeded)
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func newID() string { return NewID() }

// NewID returns a short random id for messages, sessions and errors.
func NewID() string {
	var b [10]byte
	rand.Read(b[:])
	return strings.ToLower(idEncoding.EncodeToString(b[:]))
}

func sprintf(format string, v ...any) string { return fmt.Sprintf(format, v...) }
func sprint(v ...any) string                 { return fmt.Sprint(v...) }

// formatReply renders a reply line as go-smtp would.
func formatReply(e *smtp.SMTPError) string {
	return fmt.Sprintf("%d %d.%d.%d %s\r\n", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
}

// CheckCharset refuses an address that is not valid UTF-8, or that is
// not ASCII in a transaction begun without SMTPUTF8 (RFC 6531 section
// 3.4): written into Return-Path and Received, it would be 8-bit header
// text the message never declared. A control character (CR, NUL...) is
// in no address (RFC 5321 section 4.1.2): go-smtp's parser took them, and
// a bare CR went into the stored Return-Path, past the bare-CR rule of
// the data.
func CheckCharset(addr string, smtpUTF8 bool) error {
	ascii := true
	for i := 0; i < len(addr); i++ {
		switch c := addr[i]; {
		case c < ' ' || c == 0x7f:
			return errControlInAddress
		case c >= 0x80:
			ascii = false
		}
	}
	switch {
	case ascii:
		return nil
	case !utf8.ValidString(addr):
		return errBadUTF8
	case !smtpUTF8:
		return errNeedUTF8
	}
	return nil
}

// MaxHops is how many Received fields make a message refused as looping:
// RFC 5321 section 6.3 asks for a large threshold, "normally at least
// 100" (Postfix's hopcount_limit is 50). Without one, a forwarding loop
// between two servers (an alias here to an address there that forwards
// back) would go on for ever.
const MaxHops = 100

// CheckHops refuses a message with MaxHops Received fields or more (554
// 5.4.6), on port 25 and on submission.
func CheckHops(msg []byte) error {
	if mailsyntax.Hops(msg) >= MaxHops {
		return errTooManyHops
	}
	return nil
}
