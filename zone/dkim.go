package zone

import (
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"

	"github.com/posthorn/posthorn/store"
)

// DKIMRecord returns the name and TXT value publishing k's public key
// (RFC 6376 section 3.6.1): "v=DKIM1; k=ed25519; p=<raw 32-byte key>"
// (RFC 8463 section 4.2) or "v=DKIM1; k=rsa; p=<DER SubjectPublicKeyInfo>".
func DKIMRecord(k store.DKIMKey) (name, value string, err error) {
	priv, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
	if err != nil {
		return "", "", fmt.Errorf("dkim key %s: %w", k.Selector, err)
	}
	var alg string
	var p []byte
	switch key := priv.(type) {
	case ed25519.PrivateKey:
		alg = "ed25519"
		p = key.Public().(ed25519.PublicKey)
	case *rsa.PrivateKey:
		alg = "rsa"
		p, err = x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			return "", "", err
		}
	default:
		return "", "", fmt.Errorf("dkim key %s: unsupported key type %T", k.Selector, priv)
	}
	name = fqdn(k.Selector + "._domainkey." + k.Domain)
	value = "v=DKIM1; k=" + alg + "; p=" + base64.StdEncoding.EncodeToString(p)
	return name, value, nil
}
