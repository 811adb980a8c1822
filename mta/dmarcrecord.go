package mta

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dmarc"
)

// DMARC policy discovery and records (RFC 7489 sections 6.3, 6.4 and
// 6.6.3), done here rather than with go-msgauth's dmarc.Lookup (v0.7.0),
// which throws a whole record away for one bad optional tag or for
// "p=Reject", takes the first of two records, and misses "v = DMARC1":
// each of those let mail that fails a p=reject policy into the inbox.

// Outcomes of lookupDMARC besides a record.
var (
	// errNoDMARC: no DMARC record at the name (the organizational
	// domain is asked next).
	errNoDMARC = errors.New("no DMARC record")
	// errManyDMARC: several records: "policy discovery terminates and
	// DMARC processing is not applied" (section 6.6.3 step 5).
	errManyDMARC = errors.New("several DMARC records")
	// errDMARCTemp: the lookup failed for now.
	errDMARCTemp = errors.New("DMARC record lookup failed")
	// errBadDMARC: the record has no valid p= (or a bad sp=) and no
	// report address to fall back on p=none with (section 6.6.3).
	errBadDMARC = errors.New("DMARC record without a valid policy")
)

// lookupDMARC returns the DMARC record of domain.
func lookupDMARC(ctx context.Context, res spf.DNSResolver, domain string) (*dmarc.Record, error) {
	txts, err := res.LookupTXT(ctx, "_dmarc."+domain)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, errNoDMARC
		}
		return nil, errDMARCTemp
	}
	var found []string
	for _, txt := range txts {
		if isDMARC1(txt) {
			found = append(found, txt)
		}
	}
	switch len(found) {
	case 0:
		return nil, errNoDMARC
	case 1:
		return parseDMARC(found[0])
	}
	return nil, errManyDMARC
}

// isDMARC1 tells whether txt is a DMARC record: its first tag is
// v=DMARC1, white space allowed around "=" (section 6.4: dmarc-version;
// the value is case-sensitive, the tag name is not).
func isDMARC1(txt string) bool {
	first, _, _ := strings.Cut(txt, ";")
	name, value, ok := strings.Cut(first, "=")
	return ok && strings.EqualFold(strings.TrimRight(name, " \t"), "v") &&
		strings.TrimSpace(value) == "DMARC1"
}

// parseDMARC reads a record that isDMARC1. A tag with a value it cannot
// read is ignored, its default kept (section 6.3: "syntax errors in the
// remainder of the record SHOULD be discarded in favor of default values
// (if any) or ignored outright"); unknown tags are ignored. Keywords are
// case-insensitive (RFC 5234 section 2.3). Without a valid p= (or with an
// invalid sp=), the record counts as p=none when it names a valid report
// address, and is invalid (errBadDMARC) otherwise (section 6.6.3).
func parseDMARC(txt string) (*dmarc.Record, error) {
	rec := &dmarc.Record{DKIMAlignment: dmarc.AlignmentRelaxed, SPFAlignment: dmarc.AlignmentRelaxed}
	seen := map[string]bool{}
	policyOK, spOK := false, true
	for i, tag := range strings.Split(txt, ";") {
		name, value, ok := strings.Cut(tag, "=")
		name, value = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)
		if i == 0 || !ok || seen[name] {
			continue
		}
		seen[name] = true
		switch name {
		case "p":
			rec.Policy, policyOK = dmarcPolicy(value)
		case "sp":
			rec.SubdomainPolicy, spOK = dmarcPolicy(value)
		case "adkim":
			rec.DKIMAlignment = dmarcAlignment(value)
		case "aspf":
			rec.SPFAlignment = dmarcAlignment(value)
		case "pct":
			if n, err := strconv.Atoi(value); err == nil && n >= 0 && n <= 100 {
				rec.Percent = &n
			}
		case "rua":
			rec.ReportURIAggregate = dmarcURIs(value)
		case "ruf":
			rec.ReportURIFailure = dmarcURIs(value)
		}
	}
	if !policyOK || !spOK {
		if len(rec.ReportURIAggregate) == 0 {
			return nil, errBadDMARC
		}
		rec.Policy, rec.SubdomainPolicy = dmarc.PolicyNone, ""
	}
	return rec, nil
}

func dmarcPolicy(v string) (dmarc.Policy, bool) {
	switch p := dmarc.Policy(strings.ToLower(v)); p {
	case dmarc.PolicyNone, dmarc.PolicyQuarantine, dmarc.PolicyReject:
		return p, true
	}
	return "", false
}

func dmarcAlignment(v string) dmarc.AlignmentMode {
	if strings.EqualFold(v, "s") {
		return dmarc.AlignmentStrict
	}
	return dmarc.AlignmentRelaxed
}

// dmarcURIs returns the valid URIs of a rua/ruf list (section 6.4:
// dmarc-uri, a URI with an optional "!" size limit).
func dmarcURIs(v string) []string {
	var out []string
	for _, u := range strings.Split(v, ",") {
		u = strings.TrimSpace(u)
		base, _, _ := strings.Cut(u, "!")
		if p, err := url.Parse(base); err == nil && p.Scheme != "" && p.Opaque+p.Host+p.Path != "" {
			out = append(out, u)
		}
	}
	return out
}
