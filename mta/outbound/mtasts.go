package outbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/posthorn/posthorn/store"
)

// MTA-STS (RFC 8461), the sending side.
//
// A domain that publishes a TXT record at _mta-sts.DOMAIN and a policy at
// https://mta-sts.DOMAIN/.well-known/mta-sts.txt says which of its MX
// hosts are genuine and that they take mail over TLS. In "enforce" mode,
// mail goes only to MX hosts that match the policy, over STARTTLS with a
// certificate that verifies for the host's name, and is deferred (4.7.5)
// otherwise: an attacker on the path can no longer strip STARTTLS or
// redirect the mail. In "testing" mode what would have failed is logged
// and delivery goes on as without a policy; "none" withdraws a policy.
//
// Policies are kept in the store until their max_age, so that a restart
// forgets none; the TXT record's id tells when to fetch a new one
// (section 5.1). A lookup or fetch that fails leaves the cached
// policy in force; with none cached, the domain is treated as having no
// policy.
//
// One fetch per domain runs at a time, and the deliveries to that domain
// meanwhile wait for its outcome rather than start their own. A fetch
// that failed is not tried again for the same record id for
// stsFetchBackoff (as mox does): a domain that publishes a record but
// serves no policy, or whose policy host does not answer, would otherwise
// cost every message to it a fetch, up to stsFetchTimeout each.
const (
	stsMaxBody      = 64 << 10 // section 3.3
	stsFetchTimeout = 30 * time.Second
	stsFetchBackoff = 5 * time.Minute
	stsMaxFailures  = 10000    // failed fetches remembered, at most
	stsMaxAge       = 31557600 // seconds, section 3.2
	stsDefaultPort  = 443
)

// stsPolicy is a domain's MTA-STS policy.
type stsPolicy struct {
	id      string
	mode    string // "enforce", "testing" or "none"
	mx      []string
	maxAge  int64 // seconds
	expires time.Time
}

// matches reports whether the MX host name matches one of the policy's
// mx patterns: equal, or "*.example.org" for one more label (section 4.1).
func (p *stsPolicy) matches(name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for _, pat := range p.mx {
		pat = strings.ToLower(strings.TrimSuffix(pat, "."))
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			label, parent, found := strings.Cut(name, ".")
			if found && label != "" && parent == rest {
				return true
			}
		} else if name == pat {
			return true
		}
	}
	return false
}

// stsPolicy returns the MTA-STS policy in force for domain, or nil.
func (q *Queue) stsPolicy(ctx context.Context, domain string, log *slog.Logger) *stsPolicy {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	now := q.now()
	cached := q.storedSTS(domain, now, log)
	id, err := q.stsRecord(ctx, domain)
	if err != nil || id == "" {
		if err != nil {
			log.Info("MTA-STS record lookup failed", "domain", domain, "err", err)
		}
		// Section 5.1: a cached policy stays in force until it expires,
		// whatever became of the record.
		return cached
	}
	if cached != nil && cached.id == id {
		return cached
	}
	p, err := q.fetchOnce(ctx, domain, id, log)
	if err != nil {
		return cached
	}
	return p
}

// stsFetch is a policy fetch of a domain, running or failed.
type stsFetch struct {
	id   string
	done chan struct{} // closed when it ended
	p    *stsPolicy
	err  error
	at   time.Time // when it ended
}

// fetchOnce fetches the policy of domain, whose record has id, and keeps
// it in the store; or waits for the fetch already running; or, if the
// last fetch for id failed less than stsFetchBackoff ago, returns that
// failure.
func (q *Queue) fetchOnce(ctx context.Context, domain, id string, log *slog.Logger) (*stsPolicy, error) {
	q.stsMu.Lock()
	if f := q.stsFetches[domain]; f != nil && f.id == id {
		select {
		case <-f.done:
			if q.now().Sub(f.at) < stsFetchBackoff {
				q.stsMu.Unlock()
				return nil, f.err
			}
		default:
			q.stsMu.Unlock()
			select {
			case <-f.done:
				return f.p, f.err
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	if q.stsFetches == nil {
		q.stsFetches = map[string]*stsFetch{}
	}
	if len(q.stsFetches) >= stsMaxFailures {
		q.pruneFetches()
	}
	f := &stsFetch{id: id, done: make(chan struct{})}
	q.stsFetches[domain] = f
	q.stsMu.Unlock()

	p, err := q.fetchSTS(ctx, domain)
	if err == nil {
		p.id = id
		p.expires = q.now().Add(time.Duration(min(p.maxAge, stsMaxAge)) * time.Second)
		if err := q.Store.PutSTSPolicy(store.STSPolicy{Domain: domain, ID: p.id, Mode: p.mode, MX: p.mx, Expires: p.expires}); err != nil {
			log.Warn("MTA-STS policy not stored", "domain", domain, "err", err)
		}
		log.Info("MTA-STS policy fetched", "domain", domain, "mode", p.mode, "mx", p.mx, "id", id)
	} else {
		log.Warn("MTA-STS policy fetch failed", "domain", domain, "err", err, "retry_after", stsFetchBackoff)
	}
	q.stsMu.Lock()
	f.p, f.err, f.at = p, err, q.now()
	close(f.done)
	// Kept only as a failure to wait out: a policy is in the store now,
	// and a fetch cut by our own context says nothing of the domain.
	if (err == nil || ctx.Err() != nil) && q.stsFetches[domain] == f {
		delete(q.stsFetches, domain)
	}
	q.stsMu.Unlock()
	return p, err
}

// pruneFetches forgets the failures older than stsFetchBackoff, or all of
// them if that is not enough. stsMu is held.
func (q *Queue) pruneFetches() {
	now := q.now()
	for d, f := range q.stsFetches {
		select {
		case <-f.done:
			if now.Sub(f.at) >= stsFetchBackoff {
				delete(q.stsFetches, d)
			}
		default:
		}
	}
	if len(q.stsFetches) >= stsMaxFailures {
		for d, f := range q.stsFetches {
			select {
			case <-f.done:
				delete(q.stsFetches, d)
			default:
			}
		}
	}
}

// storedSTS returns the policy of domain kept in the store, if it has
// not expired.
func (q *Queue) storedSTS(domain string, now time.Time, log *slog.Logger) *stsPolicy {
	sp, err := q.Store.STSPolicy(domain)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			log.Warn("MTA-STS policy not read from the store", "domain", domain, "err", err)
		}
		return nil
	}
	if !now.Before(sp.Expires) {
		return nil
	}
	return &stsPolicy{id: sp.ID, mode: sp.Mode, mx: sp.MX, expires: sp.Expires}
}

// stsRecord looks up _mta-sts.DOMAIN and returns the id of its one
// "v=STSv1" record; "" when there is none, several, or a bad one
// (section 3.1: then the domain has no policy available).
func (q *Queue) stsRecord(ctx context.Context, domain string) (string, error) {
	txts, err := q.resolver().LookupTXT(ctx, "_mta-sts."+domain)
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var recs []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=STSv1;") || t == "v=STSv1" {
			recs = append(recs, t)
		}
	}
	if len(recs) != 1 {
		return "", nil
	}
	id := ""
	for i, f := range strings.Split(recs[0], ";") {
		f = strings.TrimSpace(f)
		k, v, ok := strings.Cut(f, "=")
		switch {
		case f == "" && i > 0:
		case !ok:
			return "", nil
		case i == 0 && (k != "v" || v != "STSv1"):
			return "", nil
		case k == "id":
			id = v
		}
	}
	if id == "" || len(id) > 32 || strings.IndexFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) >= 0 {
		return "", nil
	}
	return id, nil
}

func (q *Queue) stsPort() int {
	if q.STSPort > 0 {
		return q.STSPort
	}
	return stsDefaultPort
}

// fetchSTS fetches and parses https://mta-sts.DOMAIN/.well-known/mta-sts.txt:
// the host's certificate must verify (with the roots of the TLS template),
// redirects are not followed, and the body is at most stsMaxBody bytes of
// text/plain (section 3.3). The host is resolved through our resolver.
func (q *Queue) fetchSTS(ctx context.Context, domain string) (*stsPolicy, error) {
	host := "mta-sts." + domain
	dialer := &net.Dialer{Timeout: dialTimeout}
	client := &http.Client{
		Timeout: stsFetchTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("redirected (section 3.3: not followed)")
		},
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				addrs, err := q.lookupHost(ctx, host)
				if err != nil {
					return nil, err
				}
				var last error
				for _, a := range addrs {
					c, err := dialer.DialContext(ctx, network, net.JoinHostPort(a, strconv.Itoa(q.stsPort())))
					if err == nil {
						return c, nil
					}
					last = err
				}
				return nil, last
			},
			TLSClientConfig:        &tls.Config{RootCAs: q.rootCAs(), MinVersion: tls.VersionTLS12},
			ResponseHeaderTimeout:  stsFetchTimeout,
			MaxResponseHeaderBytes: 16 << 10,
			DisableKeepAlives:      true,
		},
	}
	url := "https://" + host
	if q.stsPort() != stsDefaultPort {
		url += ":" + strconv.Itoa(q.stsPort())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/.well-known/mta-sts.txt", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %s", host, resp.Status)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("%s: policy served as %q, not text/plain", host, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, stsMaxBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > stsMaxBody {
		return nil, fmt.Errorf("%s: policy longer than %d bytes", host, stsMaxBody)
	}
	return parseSTSPolicy(body)
}

// parseSTSPolicy parses a policy body (section 3.2): "key: value" lines,
// version STSv1, mode, max_age, and mx lines (at least one unless mode is
// none); other keys are ignored.
func parseSTSPolicy(body []byte) (*stsPolicy, error) {
	p := &stsPolicy{}
	var version string
	age := int64(-1)
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 0, 1024), stsMaxBody)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("policy line %q is not key: value", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "version":
			version = v
		case "mode":
			p.mode = v
		case "max_age":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || len(v) > 10 {
				return nil, fmt.Errorf("policy max_age %q is not a number of seconds", v)
			}
			age = n
		case "mx":
			if v == "" || strings.ContainsAny(v, " \t") {
				return nil, fmt.Errorf("policy mx %q is not a host name pattern", v)
			}
			p.mx = append(p.mx, v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	switch {
	case version != "STSv1":
		return nil, fmt.Errorf("policy version %q, not STSv1", version)
	case p.mode != "enforce" && p.mode != "testing" && p.mode != "none":
		return nil, fmt.Errorf("policy mode %q is not enforce, testing or none", p.mode)
	case age < 0:
		return nil, errors.New("policy has no max_age")
	case p.mode != "none" && len(p.mx) == 0:
		return nil, errors.New("policy names no mx")
	}
	p.maxAge = age
	return p, nil
}

// FetchPolicy fetches and parses the MTA-STS policy of domain as the
// queue does before a delivery (the same checks), through res, with the
// certificate verified by roots (nil: the system's), from port (0: 443).
// posthorn doctor uses it on our own domains.
func FetchPolicy(ctx context.Context, res *net.Resolver, roots *x509.CertPool, port int, domain string) (mode string, mx []string, err error) {
	q := &Queue{Resolver: res, STSPort: port, TLS: &tls.Config{RootCAs: roots}}
	p, err := q.fetchSTS(ctx, strings.ToLower(strings.TrimSuffix(domain, ".")))
	if err != nil {
		return "", nil, err
	}
	return p.mode, p.mx, nil
}

// rootCAs are the roots that verify remote certificates: the TLS
// template's, or the system's (nil).
func (q *Queue) rootCAs() *x509.CertPool {
	if q.TLS != nil {
		return q.TLS.RootCAs
	}
	return nil
}

// applySTS filters the hosts of domain by its policy. In enforce mode
// only matching hosts are kept, each requiring verified TLS, and none left
// is a temporary failure; in testing mode the hosts that would not be
// used are logged, and all are.
func (q *Queue) applySTS(ctx context.Context, domain string, hosts []host, log *slog.Logger) ([]host, error) {
	p := q.stsPolicy(ctx, domain, log)
	if p == nil || p.mode == "none" {
		return hosts, nil
	}
	var keep []host
	for _, h := range hosts {
		if !p.matches(h.Name) {
			log.Warn("MX host does not match the domain's MTA-STS policy", "domain", domain, "host", h.Name, "mode", p.mode)
			continue
		}
		h.RequireTLS = true
		keep = append(keep, h)
	}
	if p.mode == "testing" {
		return hosts, nil
	}
	if len(keep) == 0 {
		return nil, &routeError{Status: "4.7.5", Msg: "no MX host of " + domain + " matches its MTA-STS policy (mx " + strings.Join(p.mx, ", ") + ")"}
	}
	return keep, nil
}
