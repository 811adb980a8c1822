package harness

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// DNS is an authoritative DNS server on loopback (UDP and TCP on the same
// port) answering from records that tests set. Names it has no records
// for get NXDOMAIN.
type DNS struct {
	Addr string // "127.0.0.1:port"

	mu      sync.Mutex
	records map[string][]dns.RR // by lower-case FQDN
	udp     *dns.Server
	tcp     *dns.Server
}

// StartDNS starts a DNS server that stops when the test ends.
func StartDNS(t testing.TB) *DNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		// The TCP port may be taken; DNS over UDP alone is enough.
		ln = nil
	}
	d := &DNS{Addr: pc.LocalAddr().String(), records: map[string][]dns.RR{}}
	d.udp = &dns.Server{PacketConn: pc, Handler: d}
	go d.udp.ActivateAndServe()
	if ln != nil {
		d.tcp = &dns.Server{Listener: ln, Handler: d}
		go d.tcp.ActivateAndServe()
	}
	t.Cleanup(func() {
		d.udp.Shutdown()
		if d.tcp != nil {
			d.tcp.Shutdown()
		}
	})
	return d
}

// Add adds records in zone-file syntax, e.g.
// "example.test. 300 IN MX 10 mail.example.test.". Long TXT values may be
// split into several quoted strings.
func (d *DNS) Add(t testing.TB, lines ...string) {
	t.Helper()
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("bad record %q: %v", l, err)
		}
		if rr == nil {
			continue
		}
		d.AddRR(rr)
	}
}

// AddRR adds one parsed record.
func (d *DNS) AddRR(rr dns.RR) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := strings.ToLower(rr.Header().Name)
	d.records[name] = append(d.records[name], rr)
}

// Remove drops every record of a name and type (dns.TypeNone for all).
func (d *DNS) Remove(name string, qtype uint16) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name = strings.ToLower(dns.Fqdn(name))
	var keep []dns.RR
	for _, rr := range d.records[name] {
		if qtype != dns.TypeNone && rr.Header().Rrtype != qtype {
			keep = append(keep, rr)
		}
	}
	d.records[name] = keep
}

// ServeDNS implements dns.Handler.
func (d *DNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
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
	d.mu.Lock()
	rrs, exists := d.records[name]
	for _, rr := range rrs {
		if rr.Header().Rrtype == q.Qtype || (rr.Header().Rrtype == dns.TypeCNAME && q.Qtype != dns.TypeCNAME) {
			c := dns.Copy(rr)
			c.Header().Name = q.Name
			m.Answer = append(m.Answer, c)
		}
	}
	// Chase a CNAME to records of its target, as a recursive resolver
	// does (Go's stub resolver does not ask again).
	for hops := 0; hops < 8 && q.Qtype != dns.TypeCNAME && len(m.Answer) > 0; hops++ {
		cn, ok := m.Answer[len(m.Answer)-1].(*dns.CNAME)
		if !ok {
			break
		}
		for _, rr := range d.records[strings.ToLower(cn.Target)] {
			if rr.Header().Rrtype == q.Qtype || rr.Header().Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
		if last, ok := m.Answer[len(m.Answer)-1].(*dns.CNAME); ok && last == cn {
			break
		}
	}
	d.mu.Unlock()
	if !exists || len(rrs) == 0 {
		m.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(m)
}
