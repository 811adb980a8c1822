package mta

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"

	"github.com/posthorn/posthorn/internal/mailsyntax"
	"github.com/posthorn/posthorn/store"
)

// Implementation notes on the inbound checks.
//
// Much of what a sender writes ends up in our Authentication-Results
// field, which readers trust because it carries our authserv-id:
// addresses, domains, selectors. So a value goes in only when it cannot
// end a quoted string or a result (authDomain, authMailbox, authReason),
// the field is folded only between results (foldAuthRes), and fields with
// our authserv-id that came with the message are removed however they
// are written (dropOurAuthResults).
//
// DMARC is decided on the author domains a reader would see: the header
// as it is stored (up to where EndHeader ends it), the From field taken
// leniently as the IMAP ENVELOPE takes it, every author checked. A From
// field whose authors cannot be told fails rather than passing as "no
// policy" (checkDMARC).

// maxDKIMSignatures bounds the DKIM signatures verified per message, each
// of which costs a DNS lookup and a hash of the body. KumoMTA verifies
// 10 for the same reason. The ones over it are recorded as dkim=policy.
const maxDKIMSignatures = 10

// maxAuthorDomains bounds the distinct From domains whose DMARC policy is
// looked up (two lookups each at most).
const maxAuthorDomains = 5

// spfVerdict is the SPF result of one transaction (RFC 7208 section 2.6).
type spfVerdict struct {
	result string // "pass", "fail", ... "" when not checked
	domain string // the domain checked: MAIL FROM's, or HELO's for <>
	helo   bool   // domain is the HELO identity
}

type dkimVerdict struct {
	result     string // pass, fail, policy, neutral, temperror, permerror
	domain     string // d=
	selector   string // s=
	identifier string // i=, when the signature has one
	reason     string
}

type dmarcVerdict struct {
	result string // pass, fail, none, temperror, permerror
	policy string // none, quarantine, reject: what applies to this message
	from   string // RFC5322.From domain, as an A-label
	reason string
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
	r, _ := spf.CheckHostWithSender(ip, helo, from, spf.WithResolver(spfResolver{res}), spf.WithContext(ctx))
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

// errBodyLength is the text of go-msgauth's (v0.7.0) refusal of a
// signature with l=. It is a failError, a type it does not export, and
// its own comment says it should be a policy error: the text is the only
// way to tell it from a signature that did not verify.
const errBodyLength = "dkim: message contains an insecure body length tag"

func checkDKIM(ctx context.Context, res spf.DNSResolver, body []byte) []dkimVerdict {
	sigs := dkimSignatures(body[:mailsyntax.HeaderLen(body)])
	if len(sigs) == 0 {
		return nil
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(body), &dkim.VerifyOptions{
		LookupTXT:        lookupTXT(ctx, res),
		MaxVerifications: maxDKIMSignatures,
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// Any other error leaves the Verification it came from with a
		// nil Err (parallelVerify), which must not read as a pass.
		return []dkimVerdict{{result: "permerror", reason: "malformed message"}}
	}
	// The verifier returns one Verification per DKIM-Signature field, in
	// order; sigs has the tags it does not return. Paired only when the
	// domains agree, in case the two ever read the header differently.
	paired := len(sigs) >= len(vs)
	for i := 0; paired && i < len(vs); i++ {
		paired = vs[i].Domain == "" || vs[i].Domain == sigs[i].domain
	}
	out := make([]dkimVerdict, 0, len(vs)+1)
	for i, ver := range vs {
		d := dkimVerdict{result: "pass", domain: strings.ToLower(ver.Domain)}
		if paired {
			d.domain, d.selector, d.identifier = strings.ToLower(sigs[i].domain), sigs[i].selector, sigs[i].identifier
		}
		switch {
		case ver.Err == nil:
		case paired && sigs[i].bodyLength && ver.Err.Error() == errBodyLength:
			// RFC 6376 section 6.1 lets a verifier ignore l= signatures;
			// RFC 8601 section 2.7.1 names that "policy". It is not a
			// pass, so DMARC does not count it, but neither does it say
			// the signature is broken.
			d.result, d.reason = "policy", "body length tag not accepted"
		case dkim.IsTempFail(ver.Err):
			d.result, d.reason = "temperror", reasonOf(ver.Err)
		case dkim.IsPermFail(ver.Err):
			d.result, d.reason = "permerror", reasonOf(ver.Err)
		default:
			d.result, d.reason = "fail", reasonOf(ver.Err)
		}
		out = append(out, d)
	}
	if n := len(sigs) - len(vs); n > 0 {
		out = append(out, dkimVerdict{result: "policy",
			reason: fmt.Sprintf("%d more signatures not verified, limit %d", n, maxDKIMSignatures)})
	}
	return out
}

// dkimSignature is what the verifier's result lacks of one
// DKIM-Signature field (RFC 6376 section 3.5).
type dkimSignature struct {
	domain, selector, identifier string
	bodyLength                   bool // has l=
}

// dkimSignatures returns the DKIM-Signature fields of hdr as go-msgauth
// finds them: each field with its continuation lines, the name before the
// first colon with white space trimmed, tags split at ";" and "=".
func dkimSignatures(hdr []byte) []dkimSignature {
	var out []dkimSignature
	for _, f := range mailsyntax.HeaderFields(hdr) {
		name, value, _ := bytes.Cut(f, []byte(":"))
		if !strings.EqualFold(string(bytes.TrimSpace(name)), "DKIM-Signature") {
			continue
		}
		tags := map[string]string{}
		for _, t := range strings.Split(string(value), ";") {
			k, v, _ := strings.Cut(t, "=")
			tags[strings.TrimSpace(k)] = strings.Join(strings.FieldsFunc(v, unicode.IsSpace), "")
		}
		_, l := tags["l"]
		out = append(out, dkimSignature{domain: tags["d"], selector: tags["s"], identifier: tags["i"], bodyLength: l})
	}
	return out
}

// reasonOf is the reason written for a DKIM error: go-msgauth's own text
// up to its first ": ", after which come details (DNS names, our
// resolver's address) that are not ours to publish.
func reasonOf(err error) string {
	r := strings.TrimPrefix(err.Error(), "dkim: ")
	r, _, _ = strings.Cut(r, ": ")
	return r
}

// checkDMARC applies RFC 7489 section 6.6 to every author domain and
// returns the strictest outcome: find the policy of the RFC5322.From
// domain (or its organizational domain), and pass if SPF or DKIM passed
// for an aligned domain.
//
// A message whose authors cannot be told (several From fields, an author
// without a usable domain) fails under p=reject: section 6.6.1 says such
// messages are typically rejected, and taken as "no policy" they would
// let anyone spoof a p=reject domain. A message with no From field at
// all names no author a reader could be misled by, and is delivered with
// dmarc=none: refusing it would refuse the empty message and the bare
// header that EndHeader exists to deliver.
func checkDMARC(ctx context.Context, res spf.DNSResolver, body []byte, v verdicts) dmarcVerdict {
	domains, err := authorDomains(body)
	switch {
	case errors.Is(err, errNoFrom):
		return dmarcVerdict{result: "none", policy: "none", reason: err.Error()}
	case err != nil:
		return dmarcVerdict{result: "fail", policy: "reject", reason: err.Error()}
	}
	var worst dmarcVerdict
	for i, from := range domains {
		if d := dmarcFor(ctx, res, from, v); i == 0 || d.severity() > worst.severity() {
			worst = d
		}
	}
	return worst
}

// severity orders outcomes from pass to a failure under p=reject.
func (d dmarcVerdict) severity() int {
	switch d.result {
	case "pass":
		return 0
	case "none":
		return 1
	case "permerror":
		return 2
	case "temperror":
		return 3
	}
	return 4 + map[string]int{"quarantine": 1, "reject": 2}[d.policy]
}

// dmarcFor evaluates DMARC for one author domain.
func dmarcFor(ctx context.Context, res spf.DNSResolver, from string, v verdicts) dmarcVerdict {
	d := dmarcVerdict{from: from, policy: "none"}
	org := orgDomain(from)
	rec, err := lookupDMARC(ctx, res, from)
	sub := false
	if errors.Is(err, errNoDMARC) && org != from {
		rec, err = lookupDMARC(ctx, res, org)
		sub = true
	}
	switch {
	case errors.Is(err, errNoDMARC):
		d.result = "none"
		return d
	case errors.Is(err, errManyDMARC):
		d.result, d.reason = "none", err.Error()
		return d
	case errors.Is(err, errDMARCTemp):
		d.result = "temperror"
		return d
	case err != nil:
		d.result, d.reason = "permerror", err.Error()
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

// aligned reports whether SPF or a DKIM signature passed for a domain
// aligned with from. For a null reverse path the SPF result is that of
// postmaster@HELO (RFC 7208 section 2.4), which is then the MAIL FROM
// identity DMARC takes (RFC 7489 section 3.1.2; DMARCbis says so in as
// many words): bounces from a domain's own MTA align.
func aligned(v verdicts, from string, rec *dmarc.Record) bool {
	if v.spf.result == "pass" && alignedDomain(v.spf.domain, from, rec.SPFAlignment) {
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
// organizational domain (RFC 7489 section 3.1), both compared as A-labels
// so that an IDN written either way aligns.
func alignedDomain(d, from string, mode dmarc.AlignmentMode) bool {
	d, ok1 := asciiDomain(d)
	from, ok2 := asciiDomain(from)
	if !ok1 || !ok2 {
		return false
	}
	if mode == dmarc.AlignmentStrict {
		return d == from
	}
	return orgDomain(d) == orgDomain(from)
}

func orgDomain(d string) string {
	org, err := publicsuffix.EffectiveTLDPlusOne(strings.ToLower(strings.TrimSuffix(d, ".")))
	if err != nil {
		return strings.ToLower(d)
	}
	return org
}

// asciiDomain returns d as DNS looks it up: without a trailing dot, lower
// case, IDN labels as A-labels (RFC 5891 section 5). A U-label From
// domain would otherwise never find its _dmarc record. ok is false when d
// is not a domain name (empty, an address literal, stray characters).
func asciiDomain(d string) (string, bool) {
	d = strings.TrimSuffix(d, ".")
	for i := 0; i < len(d); i++ {
		if d[i] >= utf8.RuneSelf {
			a, err := idna.Lookup.ToASCII(d)
			if err != nil {
				return "", false
			}
			d = a
			break
		}
	}
	d = strings.ToLower(d)
	if d == "" || len(d) > 253 {
		return "", false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return "", false
		}
	}
	return d, true
}

// Why a message has no author domain DMARC can evaluate.
var (
	errNoFrom        = errors.New("no From field")
	errManyFrom      = errors.New("more than one From field")
	errNoFromDomain  = errors.New("From field has no usable domain")
	errManyFromHosts = errors.New("too many From domains")
)

// authorDomains returns the distinct domains (A-labels) of the
// RFC5322.From authors of the header as it is stored: up to its first
// line that is not a field, before which EndHeader ends it. Each author
// must have a usable domain.
func authorDomains(body []byte) ([]string, error) {
	hdr := body[:mailsyntax.HeaderLen(body)]
	if split := headerSplit(body); split >= 0 && split < len(hdr) {
		hdr = body[:split]
	}
	var from []byte
	n := 0
	for _, f := range mailsyntax.HeaderFields(hdr) {
		// "From :" is a From field too (RFC 5322 section 4.5), as the
		// store and every reader take it.
		if name, value, ok := mailsyntax.FieldName(f); ok && strings.EqualFold(string(name), "From") {
			from, n = value, n+1
		}
	}
	switch {
	case n == 0:
		return nil, errNoFrom
	case n > 1:
		return nil, errManyFrom
	}
	addrs := fromAddresses(string(bytes.ReplaceAll(bytes.ReplaceAll(from, []byte("\r"), nil), []byte("\n"), nil)))
	if len(addrs) == 0 {
		return nil, errNoFromDomain
	}
	var domains []string
	for _, a := range addrs {
		d, ok := asciiDomain(domainOf(a))
		if !ok {
			return nil, errNoFromDomain
		}
		if !slices.Contains(domains, d) {
			domains = append(domains, d)
		}
		if len(domains) > maxAuthorDomains {
			return nil, errManyFromHosts
		}
	}
	return domains, nil
}

// fromAddresses returns the addresses of a From field value: as net/mail
// parses them, or, when it cannot, as the IMAP ENVELOPE shows them to a
// mail reader (store.AddressList, lenient as Dovecot is). An address
// without a domain comes without its "@", for the caller to refuse.
func fromAddresses(v string) []string {
	var out []string
	if list, err := mail.ParseAddressList(v); err == nil {
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out
	}
	for _, a := range store.AddressList(v) {
		switch {
		case a.Host == "":
			// A group's start or end marker: no author.
		case a.Host == store.MissingDomain:
			out = append(out, a.Mailbox) // no domain: refused by the caller
		default:
			out = append(out, a.Mailbox+"@"+a.Host)
		}
	}
	return out
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
	b.WriteString(foldAuthRes(quoteLiterals(authres.Format(host, v.results(s.conn.Hostname(), s.from)))))
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

// quoteLiterals quotes the property values that hold an address literal
// (smtp.helo=[192.0.2.1], smtp.mailfrom=a@[192.0.2.1]), which
// authres.Format leaves bare: a pvalue is a token or quoted-string, or an
// address with a domain-name (RFC 8601 section 2.2), and "[" and "]" are
// tspecials, so parsers refuse the whole field. The values come from
// authDomain and authMailbox, which let no '"' or '\' through.
func quoteLiterals(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			j := mailsyntax.SkipQuoted(s, i)
			b.WriteString(s[i:min(j+1, len(s))])
			i = j
			continue
		case '(':
			j := mailsyntax.SkipComment(s, i)
			b.WriteString(s[i:min(j+1, len(s))])
			i = j
			continue
		case '=':
			end := i + 1 + strings.IndexAny(s[i+1:]+" ", " ;")
			if v := s[i+1 : end]; strings.Contains(v, "[") {
				b.WriteString(`="` + v + `"`)
				i = end - 1
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// foldAuthRes puts each result of authres.Format on its own line: it
// folds at the "; " between results (RFC 8601 section 2.2 resinfo), never
// at one inside a quoted string or a comment, where it would turn a
// value into results of its own under our authserv-id.
func foldAuthRes(s string) string {
	var b strings.Builder
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			i = mailsyntax.SkipQuoted(s, i)
		case '(':
			i = mailsyntax.SkipComment(s, i)
		case ';':
			if i+1 < len(s) && s[i+1] == ' ' {
				b.WriteString(strings.TrimRight(s[start:i], " "))
				b.WriteString(";\r\n\t")
				start = i + 2
			}
		}
	}
	b.WriteString(strings.TrimRight(s[start:], " "))
	return b.String()
}

func (v verdicts) results(helo, from string) []authres.Result {
	spfRes := &authres.SPFResult{Value: authres.ResultValue(v.spf.result)}
	if v.spf.helo {
		spfRes.Helo = authDomain(helo)
	} else {
		spfRes.From = authMailbox(from)
	}
	out := []authres.Result{spfRes}
	if len(v.dkim) == 0 {
		out = append(out, &authres.DKIMResult{Value: authres.ResultNone})
	}
	for _, d := range v.dkim {
		out = append(out, &authres.GenericResult{Method: "dkim", Value: authres.ResultValue(d.result),
			Params: map[string]string{
				"reason":   authReason(d.reason),
				"header.d": authDomain(d.domain),
				"header.s": authDomain(d.selector),
				"header.i": authMailbox(d.identifier),
			}})
	}
	return append(out, &authres.DMARCResult{Value: authres.ResultValue(v.dmarc.result),
		Reason: authReason(v.dmarc.reason), From: v.dmarc.from})
}

// Values written into our Authentication-Results come from the sender.
// authres.Format quotes a value with tspecials but does not escape a
// backslash, so a value must hold no '"' or '\', nor anything else that
// could end it: the writers below let through only what a domain, a
// dot-atom or a plain sentence is made of, and drop the rest.

// authDomain returns d when it is a domain name (UTF-8 labels allowed,
// RFC 6532) or an address literal, and "" otherwise.
func authDomain(d string) string {
	if lit, ok := strings.CutPrefix(d, "["); ok && strings.HasSuffix(lit, "]") {
		if strings.Trim(lit[:len(lit)-1], "0123456789abcdefABCDEFIPv.:") == "" {
			return d
		}
		return ""
	}
	if d == "" || !utf8.ValidString(d) {
		return ""
	}
	for _, r := range d {
		if r < utf8.RuneSelf && !isLDH(byte(r)) && r != '.' && r != '_' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return ""
		}
	}
	return d
}

func isLDH(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

// authMailbox returns the address a for smtp.mailfrom or header.i. RFC
// 8601 section 2.2 lets a pvalue be [ [ local-part ] "@" ] domain-name:
// the local part is written only when it is a dot-atom, which needs no
// quoting (a quoted one, "x; dkim=pass ..."@example.org, is what a
// sender would inject results with), and left out otherwise.
func authMailbox(a string) string {
	i := strings.LastIndexByte(a, '@')
	if i < 0 {
		return authDomain(a)
	}
	local, domain := a[:i], authDomain(a[i+1:])
	switch {
	case domain == "":
		return ""
	case local == "":
		return "@" + domain
	case !isDotAtom(local):
		return domain
	}
	return local + "@" + domain
}

// isDotAtom reports whether s is a dot-atom (RFC 5322 section 3.2.3,
// with the UTF-8 of RFC 6532).
func isDotAtom(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, atom := range strings.Split(s, ".") {
		if atom == "" {
			return false
		}
		for _, r := range atom {
			if r < utf8.RuneSelf && !isLDH(byte(r)) && !strings.ContainsRune("!#$%&'*+/=?^_`{|}~", r) ||
				unicode.IsSpace(r) || unicode.IsControl(r) {
				return false
			}
		}
	}
	return true
}

// authReason keeps of a reason the letters, digits, spaces and a few
// marks: no quote, backslash, "=" or ";" that could make it read as a
// result.
func authReason(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf && (isLDH(byte(r)) || strings.ContainsRune(" .,:_/", r)) {
			return r
		}
		return -1
	}, s)
	if len(s) > 100 {
		s = s[:100]
	}
	return strings.TrimSpace(s)
}

// dropOurAuthResults removes the Authentication-Results fields whose
// authserv-id is ours from the message header (RFC 8601 section 5: a
// receiver MUST remove or rename them, as they cannot be told from our
// own). The authserv-id is read as the grammar has it (section 2.2): a
// token or quoted-string, optionally followed by a version, with CFWS
// around it, on any of the field's folded lines; compared without case
// (it is a domain name) and without a trailing dot.
func dropOurAuthResults(body []byte, host string) []byte {
	end := mailsyntax.HeaderLen(body)
	hdr := body[:end]
	if !bytes.Contains(bytes.ToLower(hdr), []byte("authentication-results")) {
		return body
	}
	host = strings.TrimSuffix(host, ".")
	var out bytes.Buffer
	for _, f := range mailsyntax.HeaderFields(hdr) {
		name, value, ok := bytes.Cut(f, []byte(":"))
		if ok && strings.EqualFold(string(bytes.TrimSpace(name)), "Authentication-Results") &&
			strings.EqualFold(strings.TrimSuffix(strings.TrimSpace(authservID(string(value))), "."), host) {
			continue
		}
		out.Write(f)
	}
	out.Write(body[end:])
	return out.Bytes()
}

// authservID returns the authserv-id an Authentication-Results value
// starts with, unquoted. (White space inside the quotes stays; the caller
// trims it: a reader that trims would take " host " for host.)
func authservID(v string) string {
	i := skipCFWS(v, 0)
	if i < len(v) && v[i] == '"' {
		end := mailsyntax.SkipQuoted(v, i)
		var b strings.Builder
		for j := i + 1; j < end; j++ {
			switch v[j] {
			case '\\':
				if j++; j < end {
					b.WriteByte(v[j])
				}
			case '\r', '\n': // folding inside the quoted string
			default:
				b.WriteByte(v[j])
			}
		}
		return b.String()
	}
	j := i
	for j < len(v) && v[j] > ' ' && v[j] != 0x7f && !strings.ContainsRune(`()<>@,;:\"/[]?=`, rune(v[j])) {
		j++
	}
	return v[i:j]
}

// skipCFWS returns the index of the first byte at or after i that is
// neither white space (folding included) nor in a comment.
func skipCFWS(s string, i int) int {
	for ; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\r', '\n':
		case '(':
			i = mailsyntax.SkipComment(s, i)
		default:
			return i
		}
	}
	return len(s)
}
