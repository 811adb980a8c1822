package mta

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// txtCache keeps TXT answers (SPF, DKIM keys, DMARC policies) for a short
// time, so a sender that sends many messages in a row costs one lookup of
// each record instead of one per message. Answers and "no such name" are
// kept for ttl, whatever the record's own TTL (the *net.Resolver does not
// report it); temporary failures are never kept. Other lookups (A, MX, PTR
// for SPF mechanisms) go straight to the resolver.
type txtCache struct {
	res *net.Resolver
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[string]txtEntry
}

type txtEntry struct {
	txt     []string
	err     error
	expires time.Time
}

func newTXTCache(res *net.Resolver, ttl time.Duration, max int) *txtCache {
	return &txtCache{res: res, ttl: ttl, max: max, entries: map[string]txtEntry{}}
}

// LookupTXT implements the TXT part of spf.DNSResolver.
func (c *txtCache) LookupTXT(ctx context.Context, name string) ([]string, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.entries[name]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.txt, e.err
	}
	txt, err := c.res.LookupTXT(ctx, name)
	var de *net.DNSError
	if err == nil || (errors.As(err, &de) && de.IsNotFound) {
		c.mu.Lock()
		if len(c.entries) >= c.max {
			clear(c.entries)
		}
		c.entries[name] = txtEntry{txt: txt, err: err, expires: now.Add(c.ttl)}
		c.mu.Unlock()
	}
	return txt, err
}

// LookupMX implements spf.DNSResolver.
func (c *txtCache) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return c.res.LookupMX(ctx, name)
}

// LookupIPAddr implements spf.DNSResolver.
func (c *txtCache) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return c.res.LookupIPAddr(ctx, host)
}

// LookupAddr implements spf.DNSResolver.
func (c *txtCache) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	return c.res.LookupAddr(ctx, addr)
}
