package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/miekg/dns"
)

// dnsCmd runs a DNS server on loopback that answers NXDOMAIN to every
// query at once. Posthorn checks SPF, DKIM and DMARC for each inbound
// message; on this machine the system resolver has no network and every
// lookup would time out, which measures the sandbox rather than the
// server. A real deployment has a resolver nearby; this is the fastest
// possible one, and the peer (Postfix without SPF/DKIM/DMARC milters)
// makes no such lookups at all.
func dnsCmd(args []string) error {
	fs := flag.NewFlagSet("dns", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "UDP and TCP address")
	fs.Parse(args)
	pc, ln, err := listenDNS(*addr)
	if err != nil {
		return err
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNameError)
		m.Authoritative = true
		w.WriteMsg(m)
	})
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	fmt.Println(pc.LocalAddr().String())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	udp.Shutdown()
	tcp.Shutdown()
	return nil
}

// listenDNS binds UDP and TCP on the same port; with port 0 it tries
// again when the TCP side of the port the kernel chose for UDP is taken.
func listenDNS(addr string) (net.PacketConn, net.Listener, error) {
	var lastErr error
	for try := 0; try < 20; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, lastErr
}
