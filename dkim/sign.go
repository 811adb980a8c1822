package dkim

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strings"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/posthorn/posthorn/internal/mailsyntax"
	"github.com/posthorn/posthorn/store"
)

// SignedHeaders are the header fields signed when present (RFC 6376
// section 5.4.1's list, trimmed to what a submitted message carries).
var SignedHeaders = []string{
	"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding",
}

// ErrNoKeys is returned by NewSigner when no key is active.
var ErrNoKeys = errors.New("dkim: no active key")

// Signer signs messages with every active key of one domain.
type Signer struct {
	Domain string
	keys   []signingKey
}

type signingKey struct {
	selector string
	signer   crypto.Signer
}

// NewSigner prepares the active keys among keys, which must all belong to
// one domain. RSA signatures come first in the output, then ed25519.
func NewSigner(keys []store.DKIMKey) (*Signer, error) {
	s := &Signer{}
	for _, alg := range []string{RSA, Ed25519} {
		for _, k := range keys {
			if !k.Active || k.Algorithm != alg {
				continue
			}
			d := strings.ToLower(k.Domain)
			if s.Domain != "" && d != s.Domain {
				return nil, fmt.Errorf("dkim: keys of %s and %s given together", s.Domain, d)
			}
			s.Domain = d
			sig, err := ParsePrivateKey(k)
			if err != nil {
				return nil, err
			}
			s.keys = append(s.keys, signingKey{k.Selector, sig})
		}
	}
	if len(s.keys) == 0 {
		return nil, ErrNoKeys
	}
	return s, nil
}

// Sign signs msg (a whole RFC 5322 message with CRLF line endings,
// given as the parts it is made of, one after the other, so that a caller
// need not copy them together first) and returns the DKIM-Signature
// header fields to put before it, each ending in CRLF.
func (s *Signer) Sign(msg ...[]byte) ([]byte, error) {
	headers, err := headerKeys(msg)
	if err != nil {
		return nil, err
	}
	signers := make([]*msgdkim.Signer, 0, len(s.keys))
	defer func() {
		for _, sg := range signers {
			sg.Close()
		}
	}()
	writers := make([]io.Writer, 0, len(s.keys))
	for _, k := range s.keys {
		sg, err := msgdkim.NewSigner(&msgdkim.SignOptions{
			Domain:                 s.Domain,
			Selector:               k.selector,
			Signer:                 k.signer,
			HeaderCanonicalization: msgdkim.CanonicalizationRelaxed,
			BodyCanonicalization:   msgdkim.CanonicalizationRelaxed,
			HeaderKeys:             headers,
		})
		if err != nil {
			return nil, err
		}
		signers = append(signers, sg)
		writers = append(writers, sg)
	}
	// One pass over the message feeds every signer.
	w := io.MultiWriter(writers...)
	for _, part := range msg {
		if _, err := w.Write(part); err != nil {
			return nil, err
		}
	}
	var out bytes.Buffer
	for i, sg := range signers {
		if err := sg.Close(); err != nil {
			return nil, fmt.Errorf("dkim: signing with %s: %w", s.keys[i].selector, err)
		}
		out.WriteString(sg.Signature())
	}
	return out.Bytes(), nil
}

// Sign signs msg with the active keys among keys; see Signer.Sign.
func Sign(keys []store.DKIMKey, msg ...[]byte) ([]byte, error) {
	s, err := NewSigner(keys)
	if err != nil {
		return nil, err
	}
	return s.Sign(msg...)
}

// headerKeys returns the h= list for msg: each SignedHeaders field as many
// times as it occurs, and From once more (oversigning).
// The fields are counted as the signer (go-msgauth) and verifiers find
// them: by name without the white space the obsolete syntax allows
// before the colon ("Subject : x" is a Subject, RFC 5322 section 4.5; it
// was left unsigned), and a header Go's textproto refuses (a tab before
// a colon, a control character) is no error (it was a 451 every time).
func headerKeys(msg [][]byte) ([]string, error) {
	var hdr []byte // the parts joined up to the empty line, not the body
	for _, p := range msg {
		if i := bytes.Index(p, []byte("\r\n\r\n")); i >= 0 {
			hdr = append(hdr, p[:i+4]...)
			break
		}
		hdr = append(hdr, p...)
		if mailsyntax.HeaderLen(hdr) < len(hdr) {
			break
		}
	}
	h := mailsyntax.Fields(hdr[:mailsyntax.HeaderLen(hdr)])
	if len(h["From"]) == 0 {
		return nil, errors.New("dkim: message has no From header field")
	}
	var keys []string
	for _, name := range SignedHeaders {
		for range h[textproto.CanonicalMIMEHeaderKey(name)] {
			keys = append(keys, name)
		}
	}
	return append(keys, "From"), nil
}
