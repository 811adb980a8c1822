// Package zone knows the DNS records a Posthorn domain needs and checks
// that they are published: Records lists them, Zone prints them as
// zone-file lines (what `posthorn dns` shows) and Doctor looks each one up
// through a resolver (what `posthorn doctor` shows).
//
// Implementation notes:
//
//   - MX points the domain at the hostname (RFC 5321 section 5.1).
//   - SPF is "v=spf1 mx -all": only the MX hosts send for the domain
//     (RFC 7208). When the hostname differs from the domain, the hostname
//     gets "v=spf1 a -all" too, because bounces have an empty MAIL FROM and
//     are checked against the HELO name (RFC 7208 section 2.3).
//   - DKIM publishes every key in the store under <selector>._domainkey
//     (RFC 6376 section 3.6.2); retired keys stay published until removed
//     so that mail signed with them still verifies. ed25519 keys publish the
//     raw 32-byte public key (RFC 8463 section 4.2), RSA keys the DER
//     SubjectPublicKeyInfo.
//   - DMARC asks for quarantine and aggregate reports to postmaster
//     (RFC 7489 section 6.3).
//   - MTA-STS: the TXT record's id is derived from the policy text, so it
//     changes exactly when the policy does (RFC 8461 section 3.1); the
//     mta-sts host is a CNAME to the hostname, whose https listener serves
//     the policy (senders fetch it over TLS only). TLS-RPT asks for reports to postmaster (RFC 8460
//     section 3).
//   - RFC 6186 SRV records announce submission, IMAP and POP3, implicit
//     TLS and IMAP preferred (lower priority numbers); a listener
//     that is off is published as "0 0 0 ." which says the service is not
//     offered (RFC 6186 section 4, RFC 2782).
//   - TXT values longer than 255 bytes are split into several quoted
//     strings of one record (RFC 1035 section 3.3.14, RFC 7208 section
//     3.3); resolvers join them back.
package zone

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/store"
)

// TTL is the time to live of every record printed.
const TTL = 3600

// Record is one DNS record to publish.
type Record struct {
	Name string // fully qualified, with the trailing dot
	Type string // "MX", "TXT", "CNAME", "SRV"
	// Value is what a DNS provider's form asks for: for TXT the text
	// itself, unquoted and unsplit (Zone quotes and splits it); for the
	// others the record data in zone-file syntax ("10 mail.example.org.").
	Value   string
	Comment string // one line: what the record is for
}

// fqdn lower-cases a name and adds the trailing dot.
func fqdn(name string) string {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	return name + "."
}

// ListenerPort returns the port of a [listen] entry by name ("imaps",
// "submission"...), 0 when it is off or has no port.
func ListenerPort(cfg *config.Config, name string) int {
	addr := map[string]string{
		"smtp": cfg.Listen.SMTP, "submission": cfg.Listen.Submission,
		"submissions": cfg.Listen.Submissions, "imap": cfg.Listen.IMAP,
		"imaps": cfg.Listen.IMAPS, "pop3": cfg.Listen.POP3, "pop3s": cfg.Listen.POP3S,
		"http": cfg.Listen.HTTP, "https": cfg.Listen.HTTPS, "metrics": cfg.Listen.Metrics,
	}[name]
	if addr == "" {
		return 0
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return 0
	}
	return n
}

// MTASTSMode is "enforce" when a real certificate is configured (cert_file
// or ACME), else "testing": with a self-signed certificate, enforcing
// senders would refuse to deliver (RFC 8461 section 5).
func MTASTSMode(cfg *config.Config) string {
	if cfg.TLS.ACME || cfg.TLS.CertFile != "" {
		return "enforce"
	}
	return "testing"
}

// MTASTSMaxAge is the policy lifetime in seconds (one week).
const MTASTSMaxAge = 604800

// MTASTSPolicy returns the policy served at
// https://mta-sts.<domain>/.well-known/mta-sts.txt (RFC 8461 section 3.2).
func MTASTSPolicy(cfg *config.Config) string {
	return fmt.Sprintf("version: STSv1\r\nmode: %s\r\nmx: %s\r\nmax_age: %d\r\n",
		MTASTSMode(cfg), strings.ToLower(strings.TrimSuffix(cfg.Hostname, ".")), MTASTSMaxAge)
}

// MTASTSID is the policy id published in the _mta-sts TXT record: up to 32
// alphanumeric characters (RFC 8461 section 3.1), here a hash of the policy
// so that it changes whenever the policy changes.
func MTASTSID(cfg *config.Config) string {
	sum := sha256.Sum256([]byte(MTASTSPolicy(cfg)))
	enc := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:])
	return strings.ToLower(enc[:20])
}

// srvServices are the RFC 6186 services, with the listener behind each
// and its priority: implicit TLS before STARTTLS (RFC 8314 section 5.1),
// and IMAP before POP3 (RFC 6186 section 3.4: the protocol a domain
// prefers gets the lower number), so that a client that reads SRV records
// picks what the server does best.
var srvServices = []struct {
	service, listener, what string
	priority                int
}{
	{"submission", "submission", "mail submission with STARTTLS (RFC 6186)", 10},
	{"submissions", "submissions", "mail submission with implicit TLS (RFC 8314)", 0},
	{"imap", "imap", "IMAP with STARTTLS (RFC 6186)", 10},
	{"imaps", "imaps", "IMAP with implicit TLS (RFC 6186)", 0},
	{"pop3", "pop3", "POP3 with STARTTLS (RFC 6186)", 30},
	{"pop3s", "pop3s", "POP3 with implicit TLS (RFC 6186)", 20},
}

// Records returns the records to publish for domain, given its DKIM keys.
func Records(cfg *config.Config, domain string, keys []store.DKIMKey) []Record {
	d := fqdn(domain)
	host := fqdn(cfg.Hostname)
	bare := strings.TrimSuffix(d, ".")
	rs := []Record{
		{d, "MX", "10 " + host, "MX: other servers deliver mail for " + bare + " to " + strings.TrimSuffix(host, ".")},
		{d, "TXT", "v=spf1 mx -all", "SPF: only the MX hosts send mail from " + bare},
	}
	if host != d {
		c := "SPF for the HELO name: bounces (empty sender) are checked against it"
		if !strings.HasSuffix(host, "."+d) {
			// Pasted into this domain's zone it would be out of
			// zone (ignored, or named host.domain by a provider's form).
			c += "; it belongs in the zone of " + strings.TrimSuffix(host, ".") + ", not of " + bare
		}
		rs = append(rs, Record{host, "TXT", "v=spf1 a -all", c})
	}
	for _, k := range keys {
		k.Domain = bare
		name, value, err := DKIMRecord(k)
		if err != nil {
			continue
		}
		c := "DKIM: public " + k.Algorithm + " key of selector " + k.Selector + "; receivers verify signatures with it"
		if k.Pending {
			c = "DKIM: new " + k.Algorithm + " key " + k.Selector + "; publish it, then `posthorn dkim activate " + bare + "` signs with it"
		} else if !k.Active {
			c = "DKIM: retired " + k.Algorithm + " key " + k.Selector + "; keep until mail signed with it has arrived"
		}
		rs = append(rs, Record{name, "TXT", value, c})
	}
	rs = append(rs,
		Record{"_dmarc." + d, "TXT", "v=DMARC1; p=quarantine; rua=mailto:postmaster@" + bare,
			"DMARC: quarantine mail failing SPF and DKIM; aggregate reports to postmaster"},
	)
	// The MTA-STS policy is served by the https listener only (RFC 8461
	// section 3.3): without it, a published policy id would make senders
	// fetch a policy that is not there.
	if ListenerPort(cfg, "https") != 0 {
		rs = append(rs,
			Record{"_mta-sts." + d, "TXT", "v=STSv1; id=" + MTASTSID(cfg),
				"MTA-STS: senders fetch the policy; the id changes when the policy does"},
			Record{"mta-sts." + d, "CNAME", host,
				"MTA-STS: host serving https://mta-sts." + bare + "/.well-known/mta-sts.txt"})
	}
	rs = append(rs, Record{"_smtp._tls." + d, "TXT", "v=TLSRPTv1; rua=mailto:postmaster@" + bare,
		"TLS-RPT: senders report TLS failures to postmaster"})
	for _, s := range srvServices {
		value := "0 0 0 ."
		comment := "SRV: " + s.what + " is not offered"
		if p := ListenerPort(cfg, s.listener); p != 0 {
			value = fmt.Sprintf("%d 1 %d %s", s.priority, p, host)
			comment = "SRV: " + s.what + " for mail clients"
		}
		rs = append(rs, Record{"_" + s.service + "._tcp." + d, "SRV", value, comment})
	}
	if ListenerPort(cfg, "http") != 0 || ListenerPort(cfg, "https") != 0 {
		rs = append(rs, Record{"autoconfig." + d, "CNAME", host,
			"autoconfig: Thunderbird fetches its settings from http://autoconfig." + bare})
	}
	return rs
}

// Zone prints records as zone-file lines, each after a comment line.
func Zone(records []Record) string {
	var b strings.Builder
	for _, r := range records {
		fmt.Fprintf(&b, "; %s\n%s\n", r.Comment, Line(r))
	}
	return b.String()
}

// Line is one record as a zone-file line, without the comment.
func Line(r Record) string {
	return fmt.Sprintf("%s\t%d\tIN\t%s\t%s", r.Name, TTL, r.Type, rdata(r))
}

// rdata is the record data in zone-file syntax.
func rdata(r Record) string {
	if r.Type != "TXT" {
		return r.Value
	}
	return QuoteTXT(r.Value)
}

// QuoteTXT splits a TXT value into quoted character-strings of at most 255
// bytes (RFC 1035 section 3.3.14), escaping quotes and backslashes.
func QuoteTXT(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, v[:255])
		v = v[255:]
	}
	parts = append(parts, v)
	for i, p := range parts {
		p = strings.ReplaceAll(p, `\`, `\\`)
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `\"`) + `"`
	}
	return strings.Join(parts, " ")
}
