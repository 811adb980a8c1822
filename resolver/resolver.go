// Package resolver gives every component the one DNS resolver they share.
// With outbound.dns_server set, all lookups (MX, TXT for SPF/DKIM/DMARC,
// A/AAAA) go to that server, which is how tests put a DNS server on
// loopback in front of the whole binary.
package resolver

import (
	"context"
	"net"
	"time"
)

// New returns the system resolver for server "", or a resolver that sends
// every query to server ("host:port").
func New(server string) *net.Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			d := net.Dialer{Timeout: 5 * time.Second}
			return d.DialContext(ctx, network, server)
		},
	}
}
