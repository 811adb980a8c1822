package mta

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"net"
	"net/mail"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// maxDKIMSignatures bounds the DKIM signatures verified per message, each
// of which costs a DNS lookup and a hash of the body.
const maxDKIMSignatures = 5

// spfVerdict is the SPF result of one transaction (RFC 7208 section 2.6).
type spfVerdict struct {
	result string // "pass", "fail", ... "" when not checked
	domain string // the domain checked: MAIL FROM's, or HELO's for <>
	helo   bool   // domain is the HELO identity
}

type dkimVerdict struct {
	result   string // pass, fail, neutral, temperror, permerror
	domain   string // d=
	selector string
	reason   string
}

type dmarcVerdict struct {
	result string // pass, fail, none, temperror, permerror
	policy string // none, quarantine, reject: what applies to this message
	from   string // RFC5322.From domain
}

// verdicts is everything learnt about a message's origin.
type verdicts struct {
	spf   spfVerdict
	dkim  []dkimVerdict
	dmarc dmarcVerdict
}

func (v verdicts) dkimSummary() string {
	if len(v.dkim) == 0 {
		return "none"
	}
	parts := make([]string, len(v.dkim))
	for i, d := range v.dkim {
		parts[i] = d.result + ":" + d.domain
	}
	return strings.Join(parts, ",")
}

// checkSPF evaluates SPF for the MAIL FROM identity, or the HELO identity
// for a null reverse path (RFC 7208 sections 2.3 and 2.4).
func checkSPF(ctx context.Context, res spf.DNSResolver, ip net.IP, helo, from string) spfVerdict {
	v := spfVerdict{domain: domainOf(from)}
	if from == "" {
		v.domain, v.helo = helo, true
	}
	r, _ := spf.CheckHostWithSender(ip, helo, from, spf.WithResolver(res), spf.WithContext(ctx))
	v.result = string(r)
	return v
}

// verify checks the DKIM signatures and the DMARC policy of a message.
func verify(ctx context.Context, res spf.DNSResolver, body []byte, s spfVerdict) verdicts {
	v := verdicts{spf: s}
	v.dkim = checkDKIM(ctx, res, body)
	v.dmarc = checkDMARC(ctx, res, body, v)
	return v
}

func lookupTXT(ctx context.Context, res spf.DNSResolver) func(string) ([]string, error) {
	return func(name string) ([]string, error) { return res.LookupTXT(ctx, name) }
}

func checkDKIM(ctx context.Context, res spf.DNSResolver, body []byte) []dkimVerdict {
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(body), &dkim.VerifyOptions{
		LookupTXT:        lookupTXT(ctx, res),
		MaxVerifications: maxDKIMSignatures,
	})
	if err != nil && len(vs) == 0 {
		return []dkimVerdict{{result: "permerror", reason: "malformed message"}}
	}
	out := make([]dkimVerdict, 0, len(vs))
	for _, ver := range vs {
		d := dkimVerdict{result: "pass", domain: strings.ToLower(ver.Domain)}
		switch {
		case ver.Err == nil:
		case dkim.IsTempFail(ver.Err):
			d.result, d.reason = "temperror", ver.Err.Error()
		case dkim.IsPermFail(ver.Err):
			d.result, d.reason = "permerror", ver.Err.Error()
		default:
			d.result, d.reason = "fail", ver.Err.Error()
		}
		out = append(out, d)
	}
	return out
}

// checkDMARC applies RFC 7489 section 6.6: find the policy of the
// RFC5322.From domain (or its organizational domain), and pass if SPF or
// DKIM passed for an aligned domain.
func checkDMARC(ctx context.Context, res spf.DNSResolver, body []byte, v verdicts) dmarcVerdict {
	from, err := headerFromDomain(body)
	if err != nil {
		return dmarcVerdict{result: "none"}
	}
	d := dmarcVerdict{from: from, policy: "none"}
	org := orgDomain(from)
	opts := &dmarc.LookupOptions{LookupTXT: lookupTXT(ctx, res)}
	rec, err := dmarc.LookupWithOptions(from, opts)
	sub := false
	if errors.Is(err, dmarc.ErrNoPolicy) && org != from {
		rec, err = dmarc.LookupWithOptions(org, opts)
		sub = true
	}
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		d.result = "none"
		return d
	case dmarc.IsTempFail(err):
		d.result = "temperror"
		return d
	case err != nil:
		d.result = "permerror"
		return d
	}
	if aligned(v, from, rec) {
		d.result = "pass"
		return d
	}
	d.result = "fail"
	d.policy = string(rec.Policy)
	if sub && rec.SubdomainPolicy != "" {
		d.policy = string(rec.SubdomainPolicy)
	}
	// Section 6.6.4: with pct below 100, the rest get the next policy down.
	if rec.Percent != nil && *rec.Percent < 100 && rand.IntN(100) >= *rec.Percent {
		switch d.policy {
		case "reject":
			d.policy = "quarantine"
		case "quarantine":
			d.policy = "none"
		}
	}
	return d
}

func aligned(v verdicts, from string, rec *dmarc.Record) bool {
	if v.spf.result == "pass" && !v.spf.helo && alignedDomain(v.spf.domain, from, rec.SPFAlignment) {
		return true
	}
	for _, d := range v.dkim {
		if d.result == "pass" && alignedDomain(d.domain, from, rec.DKIMAlignment) {
			return true
		}
	}
	return false
}

// alignedDomain: strict is equality, relaxed (the default) is the same
// organizational domain (RFC 7489 section 3.1).
func alignedDomain(d, from string, mode dmarc.AlignmentMode) bool {
	d, from = strings.ToLower(d), strings.ToLower(from)
	if mode == dmarc.AlignmentStrict {
		return d == from
	}
	return d != "" && orgDomain(d) == orgDomain(from)
}

func orgDomain(d string) string {
	org, err := publicsuffix.EffectiveTLDPlusOne(strings.ToLower(strings.TrimSuffix(d, ".")))
	if err != nil {
		return strings.ToLower(d)
	}
	return org
}

// headerFromDomain returns the domain of the single RFC5322.From author
// (RFC 7489 section 6.6.1); none or several is an error.
func headerFromDomain(body []byte) (string, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	froms := msg.Header["From"]
	if len(froms) != 1 {
		return "", errors.New("not exactly one From field")
	}
	addrs, err := mail.ParseAddressList(froms[0])
	if err != nil || len(addrs) != 1 {
		return "", errors.New("not exactly one From address")
	}
	d := domainOf(addrs[0].Address)
	if d == "" {
		return "", errors.New("From has no domain")
	}
	return d, nil
}

func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

// traceRoom is the room kept before a DATA body for traceHeaders.
const traceRoom = 2048

// traceHeaders returns the message buf[off:] with our Received: (RFC 5321
// section 4.4) and Authentication-Results: (RFC 8601) fields on top, after
// dropping any Authentication-Results that claim to be ours (RFC 8601
// section 5). The fields go into buf[:off] when they fit there, so the
// message is not copied.
func (s *session) traceHeaders(id string, v verdicts, buf []byte, off int) []byte {
	body := buf[off:]
	hdr := s.traceFields(id, v)
	kept := dropOurAuthResults(body, s.srv.Hostname)
	if len(hdr) <= off && len(kept) == len(body) {
		start := off - len(hdr)
		copy(buf[start:off], hdr)
		return buf[start:]
	}
	full := make([]byte, 0, len(hdr)+len(kept))
	return append(append(full, hdr...), kept...)
}

func (s *session) traceFields(id string, v verdicts) []byte {
	host := s.srv.Hostname
	var b bytes.Buffer
	b.WriteString("Authentication-Results: ")
	b.WriteString(foldAuthRes(authres.Format(host, v.results(s.conn.Hostname(), s.from))))
	b.WriteString("\r\n")
	tlsState, isTLS := s.conn.TLSConnectionState()
	proto := "ESMTP"
	if s.mailOpts != nil && s.mailOpts.UTF8 {
		proto = "UTF8SMTP"
	}
	if isTLS {
		proto += "S" // RFC 3848
	}
	b.WriteString("Received: from " + s.conn.Hostname() + " ([" + s.ip.String() + "])\r\n\tby " + host)
	if isTLS {
		b.WriteString(" (" + tls.VersionName(tlsState.Version) + " " + tls.CipherSuiteName(tlsState.CipherSuite) + ")")
	}
	b.WriteString(" with " + proto + " id " + id)
	if len(s.rcpts) == 1 {
		b.WriteString("\r\n\tfor <" + s.rcpts[0] + ">")
	}
	b.WriteString("; " + time.Now().Format(time.RFC1123Z) + "\r\n")
	return b.Bytes()
}

// foldAuthRes puts each result of authres.Format on its own line.
func foldAuthRes(s string) string {
	parts := strings.Split(s, "; ")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return strings.Join(parts, ";\r\n\t")
}

func (v verdicts) results(helo, from string) []authres.Result {
	spfRes := &authres.SPFResult{Value: authres.ResultValue(v.spf.result)}
	if v.spf.helo {
		spfRes.Helo = helo
	} else {
		spfRes.From = from
	}
	out := []authres.Result{spfRes}
	if len(v.dkim) == 0 {
		out = append(out, &authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, d := range v.dkim {
		out = append(out, &authres.DKIMResult{Value: authres.ResultValue(d.result), Domain: d.domain})
	}
	return append(out, &authres.DMARCResult{Value: authres.ResultValue(v.dmarc.result), From: v.dmarc.from})
}

// dropOurAuthResults removes header fields "Authentication-Results: host;"
// (with host our authserv-id) from the message header.
func dropOurAuthResults(body []byte, host string) []byte {
	end := bytes.Index(body, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(body)
	}
	hdr := body[:end]
	if !bytes.Contains(bytes.ToLower(hdr), []byte("authentication-results")) {
		return body
	}
	var out bytes.Buffer
	lines := bytes.SplitAfter(hdr, []byte("\r\n"))
	skip := false
	for _, l := range lines {
		if len(l) > 0 && (l[0] == ' ' || l[0] == '\t') {
			if !skip {
				out.Write(l)
			}
			continue
		}
		skip = false
		name, val, ok := bytes.Cut(l, []byte(":"))
		if ok && strings.EqualFold(string(bytes.TrimSpace(name)), "Authentication-Results") {
			id, _, _ := strings.Cut(strings.TrimSpace(string(val)), ";")
			skip = strings.EqualFold(strings.TrimSpace(id), host)
		}
		if !skip {
			out.Write(l)
		}
	}
	out.Write(body[end:])
	return out.Bytes()
}
