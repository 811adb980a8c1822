package server

import (
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/posthorn/posthorn/metrics"
)

// connLimiter enforces limits.max_connections over every mail listener
// together and limits.max_connections_per_ip per client address, before
// a protocol server sees the connection. (Port 25's server also applies
// them to SMTP alone, where it can answer with its own 421.)
type connLimiter struct {
	max, perIP int

	mu   sync.Mutex
	open int
	byIP map[string]int
}

func newConnLimiter(max, perIP int) *connLimiter {
	return &connLimiter{max: max, perIP: perIP, byIP: map[string]int{}}
}

func (l *connLimiter) admit(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.max || l.byIP[ip] >= l.perIP {
		return false
	}
	l.open++
	l.byIP[ip]++
	return true
}

func (l *connLimiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
}

// refusal is what a listener's client reads when it is over a limit: a
// temporary failure in its protocol, or nothing on implicit TLS (a
// plaintext line would only be a bad TLS record there).
func refusal(service, hostname string) []byte {
	switch service {
	case "smtp", "submission":
		return []byte("421 4.7.0 " + hostname + " too many connections, try again later\r\n")
	case "imap":
		return []byte("* BYE [UNAVAILABLE] Too many connections, try again later\r\n") // RFC 5530
	case "pop3":
		return []byte("-ERR [SYS/TEMP] Too many connections, try again later\r\n") // RFC 3206
	}
	return nil
}

// limitedListener admits connections through a connLimiter; a refused one
// gets its refusal and is closed without reaching the server.
type limitedListener struct {
	net.Listener
	lim     *connLimiter
	service string
	refuse  []byte
	logger  *slog.Logger
	metrics *metrics.Registry
}

func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := clientIP(c.RemoteAddr())
		if l.lim.admit(ip) {
			return &limitedConn{Conn: c, lim: l.lim, ip: ip}, nil
		}
		l.logger.Warn("connection refused: too many connections", "listener", l.service, "remote", ip)
		l.metrics.Inc(metrics.Rejected, "via", l.service, "reason", "connections")
		go func() {
			if l.refuse != nil {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				c.Write(l.refuse)
			}
			c.Close()
		}()
	}
}

// limitedConn gives its slot back once, however often it is closed.
type limitedConn struct {
	net.Conn
	lim  *connLimiter
	ip   string
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.lim.release(c.ip) })
	return err
}

func clientIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
