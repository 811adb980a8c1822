// Package dkim owns the DKIM keys of Posthorn's domains: generating them,
// rotating them, the DNS records that publish them, and signing outgoing
// mail with them (RFC 6376, with Ed25519 keys per RFC 8463).
//
// Implementation notes:
//
//   - Every domain has two active keys, ed25519 and RSA-2048, and mail is
//     signed with both (RFC 8463 section 4 advises signing with RSA as
//     well, since not every verifier knows Ed25519). RSA-2048 follows RFC
//     8301 section 3.2 (at least 1024, 2048 recommended, and a 2048-bit
//     record still fits a DNS TXT record as two strings).
//   - Private keys are stored as PKCS#8 DER in store.DKIMKey. Selectors are
//     "ph<yyyymmdd>e" (ed25519) and "ph<yyyymmdd>r" (rsa), with a counter
//     appended when one is already taken, so a rotation always gets a new
//     name. A rotation makes the new keys active; the old ones stay in the
//     store inactive, and stay published, so that mail signed before the
//     rotation still verifies until they are deleted.
//   - The record's p= is, for ed25519, the base64 of the raw 32-byte public
//     key (RFC 8463 section 4.2) and, for rsa, the base64 of the DER
//     SubjectPublicKeyInfo (what RFC 6376 section 3.6.1's examples and
//     every signer publish). A TXT value longer than 255 bytes is split
//     into several character-strings (RFC 6376 section 3.6.2.2, RFC 1035
//     section 3.3.14); verifiers concatenate them.
//   - Signing uses github.com/emersion/go-msgauth with relaxed/relaxed
//     canonicalization (RFC 6376 section 3.4), which survives the header
//     rewrapping relays do. The signed header fields are those of RFC 6376
//     section 5.4.1 that are present, and From is signed once more than
//     it occurs (oversigning, section 5.4.2 / 8.15) so that a second From
//     added later breaks the signature.
package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/store"
)

// Algorithms of store.DKIMKey.Algorithm.
const (
	Ed25519 = "ed25519"
	RSA     = "rsa"
)

// rsaBits is the size of generated RSA keys.
const rsaBits = 2048

// GenerateKey makes a new active key for domain with the given selector.
func GenerateKey(domain, algorithm, selector string, now time.Time) (store.DKIMKey, error) {
	var priv crypto.PrivateKey
	switch algorithm {
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return store.DKIMKey{}, err
		}
		priv = k
	case RSA:
		k, err := rsa.GenerateKey(rand.Reader, rsaBits)
		if err != nil {
			return store.DKIMKey{}, err
		}
		priv = k
	default:
		return store.DKIMKey{}, fmt.Errorf("dkim: unknown algorithm %q", algorithm)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return store.DKIMKey{}, err
	}
	return store.DKIMKey{
		Domain:     strings.ToLower(domain),
		Selector:   selector,
		Algorithm:  algorithm,
		PrivateKey: der,
		Created:    now,
		Active:     true,
	}, nil
}

// NewSelector returns "ph<yyyymmdd>e" or "ph<yyyymmdd>r" for algorithm,
// with a counter appended ("ph20261125e2") if taken has that name.
func NewSelector(algorithm string, now time.Time, taken []store.DKIMKey) string {
	letter := "e"
	if algorithm == RSA {
		letter = "r"
	}
	base := "ph" + now.UTC().Format("20060102") + letter
	used := map[string]bool{}
	for _, k := range taken {
		used[strings.ToLower(k.Selector)] = true
	}
	s := base
	for n := 2; used[s]; n++ {
		s = base + strconv.Itoa(n)
	}
	return s
}

// Ensure gives domain an active ed25519 and an active RSA key, making the
// ones it lacks, and returns all of the domain's keys.
func Ensure(st store.Store, domain string) ([]store.DKIMKey, error) {
	domain = strings.ToLower(domain)
	keys, err := st.DKIMKeys(domain)
	if err != nil {
		return nil, err
	}
	added := false
	for _, alg := range []string{Ed25519, RSA} {
		if hasActive(keys, alg) {
			continue
		}
		if err := addKey(st, domain, alg, &keys); err != nil {
			return nil, err
		}
		added = true
	}
	if !added {
		return keys, nil
	}
	return st.DKIMKeys(domain)
}

// Rotate makes a new ed25519 and a new RSA key for domain under new
// selectors, pending: published (dns, dkim show) but not signing, since
// receivers that cannot find a key yet fail the signature. Activate then
// makes them the active ones, once their records are published; the old
// keys stay stored, inactive, for mail already signed with them. It
// returns the new keys, and refuses while keys of an earlier rotation
// still wait.
func Rotate(st store.Store, domain string) ([]store.DKIMKey, error) {
	domain = strings.ToLower(domain)
	keys, err := st.DKIMKeys(domain)
	if err != nil {
		return nil, err
	}
	if p := Pending(keys); len(p) > 0 {
		return nil, fmt.Errorf("dkim: %s has keys of an earlier rotation waiting (%s): publish them and run dkim activate", domain, selectors(p))
	}
	n := len(keys)
	for _, alg := range []string{Ed25519, RSA} {
		if err := addKeyAs(st, domain, alg, true, &keys); err != nil {
			return nil, err
		}
	}
	return keys[n:], nil
}

// Activate makes the pending keys of domain (Rotate's) the active ones,
// and returns them.
func Activate(st store.Store, domain string) ([]store.DKIMKey, error) {
	domain = strings.ToLower(domain)
	keys, err := st.DKIMKeys(domain)
	if err != nil {
		return nil, err
	}
	pending := Pending(keys)
	if len(pending) == 0 {
		return nil, fmt.Errorf("dkim: %s has no new keys to activate (dkim rotate makes them)", domain)
	}
	for i := range pending {
		pending[i].Pending = false
		if err := st.AddDKIMKey(pending[i]); err != nil {
			return nil, fmt.Errorf("dkim: activating %s of %s: %w", pending[i].Selector, domain, err)
		}
		pending[i].Active = true
	}
	return pending, nil
}

// Pending returns the keys of keys that wait for activation.
func Pending(keys []store.DKIMKey) []store.DKIMKey {
	var out []store.DKIMKey
	for _, k := range keys {
		if k.Pending {
			out = append(out, k)
		}
	}
	return out
}

func selectors(keys []store.DKIMKey) string {
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = k.Selector
	}
	return strings.Join(s, ", ")
}

// addKey makes and stores an active key of alg, appending it to keys.
func addKey(st store.Store, domain, alg string, keys *[]store.DKIMKey) error {
	return addKeyAs(st, domain, alg, false, keys)
}

// addKeyAs is addKey for a pending key too.
func addKeyAs(st store.Store, domain, alg string, pending bool, keys *[]store.DKIMKey) error {
	now := time.Now()
	k, err := GenerateKey(domain, alg, NewSelector(alg, now, *keys), now)
	if err != nil {
		return err
	}
	k.Active, k.Pending = !pending, pending
	if err := st.AddDKIMKey(k); err != nil {
		return fmt.Errorf("dkim: storing key %s for %s: %w", k.Selector, domain, err)
	}
	*keys = append(*keys, k)
	return nil
}

func hasActive(keys []store.DKIMKey, alg string) bool {
	for _, k := range keys {
		if k.Active && k.Algorithm == alg {
			return true
		}
	}
	return false
}

// ParsePrivateKey returns the signer of a stored key and checks that its
// type matches k.Algorithm.
func ParsePrivateKey(k store.DKIMKey) (crypto.Signer, error) {
	priv, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("dkim: key %s of %s: %w", k.Selector, k.Domain, err)
	}
	switch p := priv.(type) {
	case ed25519.PrivateKey:
		if k.Algorithm == Ed25519 {
			return p, nil
		}
	case *rsa.PrivateKey:
		if k.Algorithm == RSA {
			return p, nil
		}
	}
	return nil, fmt.Errorf("dkim: key %s of %s is a %T, not %q", k.Selector, k.Domain, priv, k.Algorithm)
}

// RecordName is the DNS name of a key's record:
// "<selector>._domainkey.<domain>" (RFC 6376 section 3.6.2.1).
func RecordName(k store.DKIMKey) string {
	return k.Selector + "._domainkey." + strings.ToLower(k.Domain)
}

// DNSRecord returns the name and TXT value that publish k, e.g.
// "v=DKIM1; k=ed25519; p=..." (RFC 6376 section 3.6.1).
func DNSRecord(k store.DKIMKey) (name, value string, err error) {
	signer, err := ParsePrivateKey(k)
	if err != nil {
		return "", "", err
	}
	var p []byte
	switch pub := signer.Public().(type) {
	case ed25519.PublicKey:
		p = pub
	case *rsa.PublicKey:
		if p, err = x509.MarshalPKIXPublicKey(pub); err != nil {
			return "", "", err
		}
	default:
		return "", "", errors.New("dkim: unsupported public key")
	}
	value = "v=DKIM1; k=" + k.Algorithm + "; p=" + base64.StdEncoding.EncodeToString(p)
	return RecordName(k), value, nil
}

// TXTStrings splits a TXT value into character-strings of at most 255
// bytes (RFC 1035 section 3.3.14).
func TXTStrings(value string) []string {
	var out []string
	for len(value) > 255 {
		out = append(out, value[:255])
		value = value[255:]
	}
	return append(out, value)
}

// ZoneLine formats one TXT record as a zone-file line (RFC 1035 section
// 5.1), the value split into quoted strings of at most 255 bytes:
//
//	ph20261125r._domainkey.example.org. 3600 IN TXT "v=DKIM1; k=rsa; p=MIIB..." "...AQAB"
func ZoneLine(name, value string) string {
	var b strings.Builder
	b.WriteString(strings.TrimSuffix(name, ".") + ". 3600 IN TXT")
	for _, s := range TXTStrings(value) {
		b.WriteString(" \"")
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s))
		b.WriteByte('"')
	}
	return b.String()
}

// ZoneLines returns the zone-file line of every key given (active or not:
// an inactive key stays published until it is deleted).
func ZoneLines(keys []store.DKIMKey) ([]string, error) {
	var lines []string
	for _, k := range keys {
		name, value, err := DNSRecord(k)
		if err != nil {
			return nil, err
		}
		lines = append(lines, ZoneLine(name, value))
	}
	return lines, nil
}
