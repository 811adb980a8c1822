package mta

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// zoneDNS is a DNS server on loopback answering from a map of records,
// with CNAME chasing and names that answer SERVFAIL. The tests use it
// through a real *net.Resolver, the same path the server's lookups take.
type zoneDNS struct {
	addr     string
	mu       sync.Mutex
	rrs      map[string][]dns.RR // lower-case FQDN
	servfail map[string]bool
	queries  atomic.Int64
}

func startZoneDNS(t testing.TB) *zoneDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z := &zoneDNS{addr: pc.LocalAddr().String(), rrs: map[string][]dns.RR{}, servfail: map[string]bool{}}
	srv := &dns.Server{PacketConn: pc, Handler: z}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return z
}

func (z *zoneDNS) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		d := net.Dialer{Timeout: 2 * time.Second}
		return d.DialContext(ctx, "udp", z.addr)
	}}
}

func (z *zoneDNS) add(t testing.TB, lines ...string) {
	t.Helper()
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("record %q: %v", l, err)
		}
		if rr != nil {
			z.addRR(rr)
		}
	}
}

func (z *zoneDNS) addRR(rr dns.RR) {
	z.mu.Lock()
	defer z.mu.Unlock()
	n := strings.ToLower(rr.Header().Name)
	z.rrs[n] = append(z.rrs[n], rr)
}

func (z *zoneDNS) setServfail(name string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.servfail[strings.ToLower(dns.Fqdn(name))] = true
}

func (z *zoneDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	z.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	z.mu.Lock()
	defer z.mu.Unlock()
	for hops := 0; hops < 8; hops++ {
		if z.servfail[name] {
			m.Rcode = dns.RcodeServerFailure
			m.Answer = nil
			w.WriteMsg(m)
			return
		}
		rrs, ok := z.rrs[name]
		if !ok && hops == 0 {
			m.Rcode = dns.RcodeNameError
		}
		var cname string
		for _, rr := range rrs {
			switch {
			case rr.Header().Rrtype == q.Qtype:
				m.Answer = append(m.Answer, rr)
			case rr.Header().Rrtype == dns.TypeCNAME && q.Qtype != dns.TypeCNAME:
				m.Answer = append(m.Answer, rr)
				cname = strings.ToLower(rr.(*dns.CNAME).Target)
			}
		}
		if cname == "" {
			break
		}
		name = cname
	}
	w.WriteMsg(m)
}
