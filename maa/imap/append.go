package imap

import (
	"bytes"
	"context"
	"errors"
	"io"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"

	"github.com/posthorn/posthorn/internal/membudget"
	"github.com/posthorn/posthorn/store"
)

// errLiteralOverrun: a literal reader gave more than its size (never).
var errLiteralOverrun = errors.New("literal longer than announced")

// errAppendEnd answers an APPEND with more after its message literal
// than the end of the command (MULTIAPPEND, RFC 3502, is not offered).
var errAppendEnd = &imapv2.Error{Type: imapv2.StatusResponseTypeBad, Code: imapv2.ResponseCodeClientBug,
	Text: "Unexpected data after the message literal: nothing stored"}

// errAppendNUL answers an APPEND whose message holds NUL in a literal
// (RFC 9051 section 9: a literal is CHAR8, NUL excepted; a literal8 of
// BINARY, RFC 3516, may hold it).
var errAppendNUL = &imapv2.Error{Type: imapv2.StatusResponseTypeBad, Code: imapv2.ResponseCodeClientBug,
	Text: "NUL in a literal: send the message as a literal8 (~{n}) to store binary data"}

// appendLiteral8 tells whether the APPEND's message came as a literal8.
func (ss *session) appendLiteral8() bool {
	gc, ok := ss.conn.NetConn().(*guardConn)
	return ok && gc.g.lit8
}

// appendEnded tells whether the APPEND whose message literal was just
// read ends as it should (see guardConn.checkAppendEnd).
func (ss *session) appendEnded() bool {
	gc, ok := ss.conn.NetConn().(*guardConn)
	return !ok || gc.checkAppendEnd()
}

// appendWait bounds how long APPEND to the selected mailbox waits for the
// store's event, so that its EXISTS comes before the tagged OK.
const appendWait = 200 * time.Millisecond

// Append implements APPEND (RFC 9051 section 6.3.12) with APPENDUID
// (RFC 4315). imapserver has checked the size against AppendLimit before
// accepting the literal; store.Append returns once the message is durable.
func (ss *session) Append(name string, r imapv2.LiteralReader, options *imapv2.AppendOptions) (*imapv2.AppendData, error) {
	fail := func(err error) (*imapv2.AppendData, error) {
		io.Copy(io.Discard, r)
		if !ss.appendEnded() {
			return nil, errAppendEnd
		}
		return nil, err
	}
	if !ss.s.appending.Enter() {
		return fail(noErr(imapv2.ResponseCodeUnavailable, "Server shutting down, try again later"))
	}
	defer ss.s.appending.Leave()
	if options != nil {
		if err := checkFlags(options.Flags); err != nil {
			return fail(err)
		}
	}
	name, err := checkName(name)
	if err != nil {
		return fail(err)
	}
	// The body is held against the budget shared by every listener, and
	// allocated at the literal's size only once its first MiB has come.
	body, release, err := ss.s.Budget.ReadAll(r, 0, r.Size(), r.Size(), errLiteralOverrun)
	defer release()
	if !ss.appendEnded() {
		return nil, errAppendEnd
	}
	if errors.Is(err, membudget.ErrNoRoom) {
		ss.log().Warn("APPEND refused for now: too many messages being received at once", "size", r.Size())
		return nil, noErr(imapv2.ResponseCodeUnavailable, "Too many messages being received at once, try again later")
	}
	if err == nil && int64(len(body)) != r.Size() {
		err = io.ErrUnexpectedEOF // the connection ended inside the literal
	}
	if err != nil {
		return nil, err
	}
	if !ss.appendLiteral8() && bytes.IndexByte(body, 0) >= 0 {
		return nil, errAppendNUL
	}
	body = normalizeCRLF(body)
	msg := store.NewMessage{Body: body}
	if options != nil {
		msg.Flags, msg.InternalDate = fromFlags(options.Flags), options.Time
	}
	d, err := ss.s.Store.Append(context.Background(), ss.account, name, msg)
	if err != nil {
		return nil, ss.tryCreate("append", err)
	}
	if ss.sel != nil {
		ss.sel.t.mu.RLock()
		same := ss.sel.t.key.mailbox == name
		ss.sel.t.mu.RUnlock()
		if same {
			ss.sel.t.waitAppended(d.UID, appendWait)
		}
	}
	return &imapv2.AppendData{UID: imapv2.UID(d.UID), UIDValidity: d.UIDValidity}, nil
}

// normalizeCRLF turns bare LF into CRLF (the store keeps CRLF messages);
// it returns b itself when there is nothing to change.
func normalizeCRLF(b []byte) []byte {
	bare := false
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			bare = true
			break
		}
	}
	if !bare {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/32)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}
