package outbound

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// host is one server to try for a domain.
type host struct {
	Name string // MX target or smarthost name, for TLS and logs
	Port int
	// Addrs are its IP addresses; empty: Name is resolved at dial time
	// (a smarthost given as an address literal).
	Addrs []string
	// RequireTLS: STARTTLS with a certificate that verifies for Name, or
	// no delivery (the domain's MTA-STS policy enforces it, or the
	// smarthost gets our password).
	RequireTLS bool
	Smarthost  bool
}

// routeError is a failure to find where a domain's mail goes.
type routeError struct {
	Permanent bool
	Status    string
	Msg       string
}

func (e *routeError) Error() string { return e.Msg }

// resolver returns the resolver to use.
func (q *Queue) resolver() *net.Resolver {
	if q.Resolver != nil {
		return q.Resolver
	}
	return net.DefaultResolver
}

func (q *Queue) mxPort() int {
	if q.MXPort > 0 {
		return q.MXPort
	}
	return defaultMXPort
}

// hosts returns the servers to try for domain, in order.
func (q *Queue) hosts(ctx context.Context, domain string) ([]host, error) {
	if q.Smarthost != "" {
		name, port, err := net.SplitHostPort(q.Smarthost)
		if err != nil {
			return nil, &routeError{Status: "4.3.5", Msg: "bad smarthost " + q.Smarthost}
		}
		p, _ := strconv.Atoi(port)
		addrs, err := q.lookupHost(ctx, name)
		if err != nil {
			return nil, err
		}
		// AUTH sends the password: over a certificate that does not
		// verify, it would go to whoever is in the middle. Without
		// credentials, TLS stays opportunistic, as for an MX.
		return []host{{Name: name, Port: p, Addrs: addrs, Smarthost: true, RequireTLS: q.SmarthostUser != ""}}, nil
	}
	domain, err := aLabel(domain)
	if err != nil {
		return nil, err
	}
	mxs, err := q.resolver().LookupMX(ctx, domain)
	var dnsErr *net.DNSError
	switch {
	case err == nil && len(mxs) == 1 && (mxs[0].Host == "." || mxs[0].Host == ""):
		// RFC 7505 section 3: a null MX means the domain takes no mail.
		return nil, &routeError{Permanent: true, Status: "5.1.10",
			Msg: "domain " + domain + " does not accept mail (null MX, RFC 7505)"}
	case err == nil && len(mxs) > 0:
		return q.mxHosts(ctx, mxs)
	case err == nil || errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		// RFC 5321 section 5.1: no MX records, the domain itself is the
		// implicit MX.
		addrs, err := q.lookupHost(ctx, domain)
		if err != nil {
			return nil, err
		}
		return []host{{Name: domain, Port: q.mxPort(), Addrs: addrs}}, nil
	default:
		return nil, &routeError{Status: "4.4.3", Msg: "MX lookup for " + domain + ": " + dnsText(err)}
	}
}

// mxHosts orders MX records by preference, shuffling equal preferences
// (RFC 5321 section 5.1), and resolves each target. Targets that do not
// resolve are skipped; if none resolves the failure is temporary.
func (q *Queue) mxHosts(ctx context.Context, mxs []*net.MX) ([]host, error) {
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
	var hosts []host
	var lastErr error
	for _, mx := range mxs {
		name := strings.TrimSuffix(mx.Host, ".")
		if name == "" {
			continue // a null MX mixed with others: ignore it
		}
		addrs, err := q.lookupHost(ctx, name)
		if err != nil {
			lastErr = err
			continue
		}
		hosts = append(hosts, host{Name: name, Port: q.mxPort(), Addrs: addrs})
	}
	if len(hosts) == 0 {
		msg := "no MX host has an address"
		if lastErr != nil {
			msg += ": " + lastErr.Error()
		}
		// A broken MX target is usually fixed by its owner: retry.
		return nil, &routeError{Status: "4.4.4", Msg: msg}
	}
	return hosts, nil
}

// lookupHost returns the addresses of name through our resolver. An IP
// literal is returned as is.
func (q *Queue) lookupHost(ctx context.Context, name string) ([]string, error) {
	if ip := net.ParseIP(strings.Trim(name, "[]")); ip != nil {
		return []string{ip.String()}, nil
	}
	name, err := aLabel(name)
	if err != nil {
		return nil, err
	}
	ips, err := q.resolver().LookupIPAddr(ctx, name)
	var dnsErr *net.DNSError
	switch {
	case err == nil && len(ips) > 0:
		addrs := make([]string, len(ips))
		for i, ip := range ips {
			addrs[i] = ip.IP.String()
		}
		return addrs, nil
	case err == nil || errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return nil, &routeError{Permanent: true, Status: "5.1.2",
			Msg: "host " + name + " has no address (NXDOMAIN or no A/AAAA)"}
	default:
		return nil, &routeError{Status: "4.4.3", Msg: "address lookup for " + name + ": " + dnsText(err)}
	}
}

// aLabel returns a domain name as DNS knows it: an internationalized
// name's U-labels are turned into A-labels ("bücher.test" into
// "xn--bcher-kva.test", IDNA2008's lookup profile, RFC 5891 section 5),
// which is what its zone holds and what a resolver looks up (RFC 6531
// section 3.7.1). An ASCII name is returned as it is, so a name the
// lookup profile would refuse (an underscore) fails in DNS as before.
func aLabel(name string) (string, error) {
	if isASCII(name) {
		return name, nil
	}
	a, err := idna.Lookup.ToASCII(name)
	if err != nil {
		return "", &routeError{Permanent: true, Status: "5.1.2",
			Msg: "domain " + name + " is not a valid internationalized domain name: " + err.Error()}
	}
	return a, nil
}

// isASCII reports whether s has no byte above 127.
func isASCII[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// dnsText is a lookup error's text without the resolver's address. Go
// names in it the server of the system's resolv.conf even when
// outbound.dns_server is queried instead (the Resolver's Dial goes
// elsewhere), which misleads the admin and would show an internal
// address to users in DSNs.
func dnsText(err error) string {
	var de *net.DNSError
	if !errors.As(err, &de) {
		return err.Error()
	}
	c := *de
	c.Server = ""
	return c.Error()
}
