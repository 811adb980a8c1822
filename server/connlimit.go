package server

import (
	"net"

	"github.com/posthorn/posthorn/internal/connlimit"
	"github.com/posthorn/posthorn/metrics"
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
// its server sees them, wrapped by sv.wrapConn if set.
func (s *Server) limitListener(ln net.Listener, sv service) net.Listener {
	l := &connlimit.Listener{
		Listener: ln,
		Limiter:  s.conns,
		Refusal:  refusal(sv.name, s.Config.Hostname),
		Refused: func(ip string) {
			s.Logger.Warn("connection refused: too many connections", "listener", sv.name, "remote", ip)
			s.Metrics.Inc(metrics.Rejected, "via", sv.name, "reason", "connections")
		},
		Wrap: sv.wrapConn,
	}
	// The IMAP and POP3 servers count their own open connections, as
	// the port 25 server does; submission is counted here.
	if sv.name == "submission" || sv.name == "submissions" {
		wrap := sv.wrapConn
		l.Wrap = func(c net.Conn) net.Conn {
			s.Metrics.Inc(metrics.Connections, "protocol", "submission")
			if wrap != nil {
				return wrap(c)
			}
			return c
		}
		l.Closed = func() { s.Metrics.Dec(metrics.Connections, "protocol", "submission") }
	}
	return l
}
