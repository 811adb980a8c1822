// Package connlimit counts open connections against a total cap and a
// cap per client address: limits.max_connections and
// limits.max_connections_per_ip.
package connlimit

import (
	"net"
	"sync"
	"time"
)

// Limiter admits connections while both caps allow. Its zero value is
// not usable: use New.
type Limiter struct {
	max, perIP int

	mu   sync.Mutex
	open int
	byIP map[string]int
}

// New returns a Limiter of max connections in all and perIP per address.
func New(max, perIP int) *Limiter {
	return &Limiter{max: max, perIP: perIP, byIP: map[string]int{}}
}

// Admit takes a slot for a connection from ip, if both caps allow.
func (l *Limiter) Admit(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.max || l.byIP[ip] >= l.perIP {
		return false
	}
	l.open++
	l.byIP[ip]++
	return true
}

// Release gives back a slot Admit took.
func (l *Limiter) Release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
}

// ClientIP is the address part of a connection's remote address.
func ClientIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// SMTPRefusal is the reply to an SMTP client over a cap (RFC 5321
// section 3.8: 421 and close).
func SMTPRefusal(hostname string) []byte {
	return []byte("421 4.7.0 " + hostname + " too many connections, try again later\r\n")
}

// Listener admits the connections it accepts through Limiter. A refused
// connection is reported to Refused, sent Refusal (if any) and closed;
// an admitted one is returned, through Wrap if set, and gives its slot
// back when closed, once, after calling Closed (if set).
type Listener struct {
	net.Listener
	Limiter *Limiter
	Refusal []byte
	Refused func(ip string)
	Wrap    func(net.Conn) net.Conn
	Closed  func()
}

func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := ClientIP(c.RemoteAddr())
		if l.Limiter.Admit(ip) {
			var inner net.Conn = c
			if l.Wrap != nil {
				inner = l.Wrap(c)
			}
			return &conn{Conn: inner, l: l, ip: ip}, nil
		}
		if l.Refused != nil {
			l.Refused(ip)
		}
		go func() {
			if l.Refusal != nil {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				c.Write(l.Refusal)
			}
			c.Close()
		}()
	}
}

// conn gives its slot back once, however often it is closed.
type conn struct {
	net.Conn
	l    *Listener
	ip   string
	once sync.Once
}

// Unwrap returns the connection it counts (a Wrap's result, if any).
func (c *conn) Unwrap() net.Conn { return c.Conn }

func (c *conn) Close() error {
	c.once.Do(func() {
		c.l.Limiter.Release(c.ip)
		if c.l.Closed != nil {
			c.l.Closed()
		}
	})
	return c.Conn.Close()
}
