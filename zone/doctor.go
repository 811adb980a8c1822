package zone

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/mta/outbound"
	"github.com/posthorn/posthorn/store"
)

// Status of one Check.
const (
	StatusOK      = "ok"
	StatusMissing = "missing" // nothing is published (or nothing is configured)
	StatusWrong   = "wrong"   // something is published but not what works
	StatusWarn    = "warn"    // works today, needs attention soon
	StatusUnknown = "unknown" // could not be checked (DNS did not answer)
)

// Check is the result of one thing Doctor looked at.
type Check struct {
	Name   string // "MX example.org.", "certificate", "queue"...
	Status string // one of the Status constants
	Detail string // what was found
	Fix    string // what to do; empty when Status is ok
}

// QueueSummary is what Doctor needs to know of the outbound queue.
type QueueSummary struct {
	Entries  int       // messages waiting
	Retrying int       // entries that failed at least one attempt
	Oldest   time.Time // creation time of the oldest entry; zero if none
}

// SummarizeQueue summarizes queue entries for Doctor.
func SummarizeQueue(entries []store.QueueEntry) QueueSummary {
	var q QueueSummary
	for _, e := range entries {
		q.Entries++
		if e.Attempts > 0 {
			q.Retrying++
		}
		if q.Oldest.IsZero() || e.Created.Before(q.Oldest) {
			q.Oldest = e.Created
		}
	}
	return q
}

// lookupTimeout bounds each DNS question Doctor asks.
const lookupTimeout = 10 * time.Second

// Doctor looks up every record Records returns for domain through resolver
// and says, per record, whether it is published as it should be; then it
// checks the certificate's expiry (certExpiry, zero if there is no
// certificate) and the outbound queue. Lookups run concurrently; the
// checks come back in the order of Records.
func Doctor(ctx context.Context, cfg *config.Config, resolver *net.Resolver, domain string,
	keys []store.DKIMKey, queue QueueSummary, certExpiry time.Time) []Check {
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	records := Records(cfg, domain, keys)
	checks := make([]Check, len(records))
	var wg sync.WaitGroup
	for i, r := range records {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
			defer cancel()
			checks[i] = checkRecord(lctx, resolver, r)
		}()
	}
	wg.Wait()
	now := time.Now()
	if unknown := countStatus(checks, StatusUnknown); unknown == len(checks) && unknown > 0 {
		// No lookup answered: one line says so, not one per record (nor
		// one for the MTA-STS policy, which needs a lookup too).
		checks = []Check{{Name: "DNS", Status: StatusUnknown,
			Detail: "no lookup answered, nothing could be checked (" + checks[0].Detail + ")",
			Fix:    "check the resolver this server uses ([outbound] dns_server, else /etc/resolv.conf) and the network"}}
	} else if ListenerPort(cfg, "https") != 0 {
		// Without the https listener there is no policy to serve, and
		// Records asks to publish none.
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		defer cancel()
		checks = append(checks, checkPolicy(lctx, cfg, resolver, domain))
	}
	return append(checks, checkCert(cfg, certExpiry, now), checkQueue(queue, now))
}

// checkPolicy fetches the domain's MTA-STS policy as a sender does (over
// HTTPS, the certificate verified for mta-sts.DOMAIN) and compares it
// with this server's.
func checkPolicy(ctx context.Context, cfg *config.Config, res *net.Resolver, domain string) Check {
	host := "mta-sts." + strings.TrimSuffix(domain, ".")
	c := Check{Name: "HTTPS " + host + " (MTA-STS policy)"}
	roots, err := cfg.OutboundRoots()
	if err != nil {
		c.Status, c.Detail = StatusWrong, "outbound.ca_file: "+err.Error()
		return c
	}
	mode, mx, err := outbound.FetchPolicy(ctx, res, roots, cfg.Outbound.MTASTSPort, domain)
	want := MTASTSMode(cfg)
	wantMX := strings.ToLower(strings.TrimSuffix(cfg.Hostname, "."))
	switch {
	case err != nil:
		c.Status, c.Detail = StatusWrong, "senders cannot fetch it: "+err.Error()
		// The https listener is on (Doctor checks the policy only
		// then): say which half is missing.
		var certErr *tls.CertificateVerificationError
		if errors.As(err, &certErr) {
			c.Fix = "the https listener's certificate must name " + host + " and be trusted by senders: " +
				"[tls] acme = true obtains one, or set cert_file to one that names it; until then do not publish the MTA-STS records"
		} else {
			c.Fix = "point " + host + " at this server (CNAME " + wantMX + ".) and let port 443 reach the https listener (" +
				cfg.Listen.HTTPS + "); or do not publish the MTA-STS records"
		}
	case mode != want || len(mx) != 1 || !strings.EqualFold(mx[0], wantMX):
		c.Status = StatusWrong
		c.Detail = fmt.Sprintf("serves mode %s, mx %s; this server's policy is mode %s, mx %s", mode, strings.Join(mx, " "), want, wantMX)
		c.Fix = "point " + host + " at this server (CNAME " + wantMX + ".)"
	default:
		c.Status, c.Detail = StatusOK, fmt.Sprintf("mode %s, mx %s", mode, mx[0])
	}
	return c
}

// CheckRecord looks one record up and says whether it is published as
// it should be (dkim activate checks a new key's so).
func CheckRecord(ctx context.Context, res *net.Resolver, r Record) Check {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	return checkRecord(ctx, res, r)
}

// checkRecord looks one record up.
func checkRecord(ctx context.Context, res *net.Resolver, r Record) Check {
	c := Check{Name: r.Type + " " + r.Name}
	var err error
	switch r.Type {
	case "MX":
		err = checkMX(ctx, res, r, &c)
	case "TXT":
		err = checkTXT(ctx, res, r, &c)
	case "CNAME":
		err = checkCNAME(ctx, res, r, &c)
	case "SRV":
		err = checkSRV(ctx, res, r, &c)
	default:
		err = fmt.Errorf("cannot check %s records", r.Type)
	}
	if err != nil {
		c.Status = StatusMissing
		c.Detail = lookupProblem(err)
		switch {
		case r.Type == "SRV" && r.Value == "0 0 0 ." && notFound(err):
			// A service that is off may also be left unpublished.
			c.Status, c.Detail = StatusOK, "not published; the service is off"
		case !notFound(err):
			// A lookup that failed says nothing of what is published.
			c.Status = StatusUnknown
			return c
		}
	}
	if c.Status != StatusOK && c.Fix == "" {
		c.Fix = "publish: " + Line(r)
	}
	return c
}

func countStatus(checks []Check, status string) int {
	n := 0
	for _, c := range checks {
		if c.Status == status {
			n++
		}
	}
	return n
}

func notFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

func lookupProblem(err error) string {
	if notFound(err) {
		return "no such record"
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return "lookup failed: " + de.Err
	}
	return "lookup failed: " + err.Error()
}

func sameName(a, b string) bool { return fqdn(a) == fqdn(b) }

func checkMX(ctx context.Context, res *net.Resolver, r Record, c *Check) error {
	mxs, err := res.LookupMX(ctx, r.Name)
	if err != nil {
		return err
	}
	want := strings.Fields(r.Value)[1]
	var hosts []string
	for _, mx := range mxs {
		hosts = append(hosts, mx.Host)
		if sameName(mx.Host, want) {
			c.Status, c.Detail = StatusOK, "MX "+strconv.Itoa(int(mx.Pref))+" "+mx.Host
			return nil
		}
	}
	c.Status = StatusWrong
	c.Detail = "MX points to " + strings.Join(hosts, ", ") + ", not to " + want
	c.Fix = "replace the MX records of " + r.Name + " with: " + r.Value
	return nil
}

// txtPrefix is the tag that identifies which TXT record of a name is ours.
func txtPrefix(value string) string {
	tag, _, _ := strings.Cut(value, ";")
	tag, _, _ = strings.Cut(tag, " ")
	return strings.TrimSpace(tag)
}

func checkTXT(ctx context.Context, res *net.Resolver, r Record, c *Check) error {
	txts, err := res.LookupTXT(ctx, r.Name)
	if err != nil {
		return err
	}
	prefix := txtPrefix(r.Value)
	var found []string
	for _, t := range txts {
		if strings.HasPrefix(strings.TrimSpace(t), prefix) {
			found = append(found, t)
		} else if prefix == "v=DKIM1" && tags(t)["v"] == "" && tags(t)["p"] != "" {
			// v= is optional in a DKIM key record (RFC 6376
			// section 3.6.1): a record with p= and no v= is a key.
			found = append(found, t)
		}
	}
	switch {
	case len(found) == 0:
		c.Status, c.Detail = StatusMissing, "no "+prefix+" record among "+strconv.Itoa(len(txts))+" TXT records"
	case len(found) > 1:
		c.Status = StatusWrong
		c.Detail = strconv.Itoa(len(found)) + " " + prefix + " records; there must be exactly one"
		c.Fix = "delete all but one and publish: " + QuoteTXT(r.Value)
	case prefix == "v=STSv1" && txtEquivalent(prefix, found[0], r.Value) && tags(found[0])["id"] != tags(r.Value)["id"]:
		// Senders fetch the policy again only when the id changes
		// (RFC 8461 section 3.1): a stale id keeps an old policy cached.
		c.Status, c.Detail = StatusWarn, "found "+strconv.Quote(found[0])+"; the current policy's id differs"
		c.Fix = "replace it with: " + QuoteTXT(r.Value)
	case txtEquivalent(prefix, found[0], r.Value):
		c.Status, c.Detail = StatusOK, found[0]
	default:
		c.Status, c.Detail = StatusWrong, "found "+strconv.Quote(found[0])
		c.Fix = "replace it with: " + QuoteTXT(r.Value)
	}
	return nil
}

// txtEquivalent says whether a published TXT value does the job of the
// wanted one: an SPF record must hold our terms and end in the same "all"
// term; DMARC must quarantine or reject; MTA-STS and TLS-RPT need an id and
// a report address; DKIM must publish the same key.
func txtEquivalent(prefix, got, want string) bool {
	switch prefix {
	case "v=spf1":
		// More mechanisms (a smarthost's include:) are fine as long as
		// ours are there and the record still ends in the same "all".
		g, w := strings.Fields(strings.ToLower(got)), strings.Fields(strings.ToLower(want))
		for _, term := range w {
			if !slices.Contains(g, term) && !slices.Contains(g, "+"+term) {
				return false
			}
		}
		return g[len(g)-1] == w[len(w)-1]
	case "v=STSv1":
		// Any id works; it only has to change with the policy.
		return tags(got)["id"] != ""
	}
	g, w := tags(got), tags(want)
	switch prefix {
	case "v=DMARC1":
		// Reports may go elsewhere; the policy must not be weaker.
		return g["p"] == "quarantine" || g["p"] == "reject"
	case "v=TLSRPTv1":
		return g["rua"] != ""
	}
	if g["k"] == "" {
		g["k"] = "rsa" // the default (RFC 6376 section 3.6.1)
	}
	return g["k"] == w["k"] && g["p"] == w["p"] // DKIM: the key itself
}

// tags parses "a=b; c=d" (RFC 6376 section 3.2).
func tags(s string) map[string]string {
	m := map[string]string{}
	for _, part := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		v = strings.Join(strings.Fields(v), "")
		m[strings.TrimSpace(k)] = v
	}
	return m
}

func checkCNAME(ctx context.Context, res *net.Resolver, r Record, c *Check) error {
	cname, err := res.LookupCNAME(ctx, r.Name)
	if err != nil {
		return err
	}
	if sameName(cname, r.Value) {
		c.Status, c.Detail = StatusOK, "CNAME "+cname
		return nil
	}
	// An A/AAAA record with the hostname's addresses works as well.
	got, err1 := res.LookupHost(ctx, r.Name)
	want, err2 := res.LookupHost(ctx, r.Value)
	if err1 == nil && err2 == nil && len(got) > 0 {
		slices.Sort(got)
		slices.Sort(want)
		if slices.Equal(got, want) {
			c.Status, c.Detail = StatusOK, "same addresses as "+r.Value
			return nil
		}
	}
	c.Status = StatusWrong
	c.Detail = r.Name + " resolves to " + cname + ", not to " + r.Value
	c.Fix = "replace it with: " + r.Name + " CNAME " + r.Value
	return nil
}

func checkSRV(ctx context.Context, res *net.Resolver, r Record, c *Check) error {
	_, srvs, err := res.LookupSRV(ctx, "", "", r.Name)
	if err != nil {
		return err
	}
	f := strings.Fields(r.Value) // priority weight port target
	port, _ := strconv.Atoi(f[2])
	target := f[3]
	for _, s := range srvs {
		if target == "." && (s.Target == "." || s.Port == 0) {
			c.Status, c.Detail = StatusOK, "published as not offered"
			return nil
		}
		if target != "." && sameName(s.Target, target) && int(s.Port) == port {
			c.Status, c.Detail = StatusOK, fmt.Sprintf("%s port %d", s.Target, s.Port)
			return nil
		}
	}
	c.Status = StatusWrong
	if len(srvs) > 0 {
		c.Detail = fmt.Sprintf("points to %s port %d", srvs[0].Target, srvs[0].Port)
	}
	c.Fix = "replace it with: " + r.Name + " SRV " + r.Value
	return nil
}

// certWarnBefore is how long before expiry Doctor starts warning.
const certWarnBefore = 14 * 24 * time.Hour

func checkCert(cfg *config.Config, expiry, now time.Time) Check {
	c := Check{Name: "certificate for " + cfg.Hostname}
	renew := "renew it (or set [tls] acme = true so that it renews itself)"
	if cfg.TLS.ACME {
		renew = "check the log for ACME errors and that port 80 reaches listen.http"
	}
	switch {
	case expiry.IsZero():
		c.Status, c.Detail = StatusMissing, "no certificate loaded"
		c.Fix = "set [tls] cert_file and key_file, or acme = true"
	case !expiry.After(now):
		c.Status, c.Detail, c.Fix = StatusWrong, "expired on "+expiry.UTC().Format(time.DateOnly), renew
	case expiry.Sub(now) < certWarnBefore:
		days := int(expiry.Sub(now).Hours() / 24)
		c.Status, c.Detail, c.Fix = StatusWarn, fmt.Sprintf("expires in %d days", days), renew
	default:
		c.Status, c.Detail = StatusOK, "valid until "+expiry.UTC().Format(time.DateOnly)
	}
	if c.Status == StatusOK && !cfg.TLS.ACME && cfg.TLS.CertFile == "" {
		c.Status = StatusWarn
		c.Detail += "; self-signed: clients will warn and MTA-STS stays in testing mode"
		c.Fix = "set [tls] acme = true, or cert_file and key_file"
	}
	return c
}

// queueWarnAge is how old the oldest queue entry may get before Doctor
// warns: a day of retries usually means a remote problem worth a look.
const queueWarnAge = 24 * time.Hour

func checkQueue(q QueueSummary, now time.Time) Check {
	c := Check{Name: "outbound queue", Status: StatusOK}
	if q.Entries == 0 {
		c.Detail = "empty"
		return c
	}
	c.Detail = fmt.Sprintf("%d waiting, %d retrying, oldest since %s",
		q.Entries, q.Retrying, q.Oldest.UTC().Format(time.RFC3339))
	if !q.Oldest.IsZero() && now.Sub(q.Oldest) > queueWarnAge {
		c.Status = StatusWarn
		c.Fix = "see `posthorn queue list` for the errors; if port 25 is blocked, set [outbound] smarthost"
	}
	return c
}

// CertificateExpiry returns when the first certificate of c expires, zero
// if c holds none (a configuration that only has GetCertificate, as with
// ACME, has to be asked through a handshake instead).
func CertificateExpiry(c *tls.Config) time.Time {
	if c == nil || len(c.Certificates) == 0 || len(c.Certificates[0].Certificate) == 0 {
		return time.Time{}
	}
	leaf := c.Certificates[0].Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificates[0].Certificate[0]); err != nil {
			return time.Time{}
		}
	}
	return leaf.NotAfter
}
