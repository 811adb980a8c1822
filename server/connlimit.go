package server

import (
	"net"

	"github.com/posthorn/posthorn/internal/connlimit"
	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/mta"
)

// refusal is what a listener's client reads when it is over a limit: a
// temporary failure in its protocol, or nothing on implicit TLS (a
// plaintext line would only be a bad TLS record there).
func refusal(service, hostname string) []byte {
	switch service {
	case "submission":
		return connlimit.SMTPRefusal(hostname)
	case "imap":
		return []byte("* BYE [UNAVAILABLE] Too many connections, try again later\r\n") // RFC 5530
	case "pop3":
		return []byte("-ERR [SYS/TEMP] Too many connections, try again later\r\n") // RFC 3206
	}
	return nil
}

// limitListener counts a listener's connections against s.conns before
// its server sees them.
func (s *Server) limitListener(ln net.Listener, service string) net.Listener {
	return &connlimit.Listener{
		Listener: ln,
		Limiter:  s.conns,
		Refusal:  refusal(service, s.Config.Hostname),
		Refused: func(ip string) {
			s.Logger.Warn("connection refused: too many connections", "listener", service, "remote", ip)
			s.Metrics.Inc(metrics.Rejected, "via", service, "reason", "connections")
		},
		Wrap: wrapBelowTLS[service],
	}
}

// wrapBelowTLS wraps the connections of implicit-TLS listeners under
// their TLS (go-smtp must see the *tls.Conn itself). Submission on 587
// and port 25 wrap theirs in msa and mta.
var wrapBelowTLS = map[string]func(net.Conn) net.Conn{
	"submissions": mta.TimeoutConnTLS,
}
