package outbound

import (
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Connection reuse: after a transaction the connection is kept for a
// short while, so the next message to the same host skips the TCP and
// TLS handshakes and the EHLOs (RFC 5321 section 3.3 allows many
// transactions per session). A kept connection is checked with RSET
// before use; one that fails is closed and a new one opened.
const (
	poolIdle    = 5 * time.Second // a kept connection is closed after this
	poolPerHost = 4               // connections kept per host address
	// poolCheckTimeout bounds RSET on a kept connection and QUIT.
	poolCheckTimeout = 10 * time.Second
)

type pooledConn struct {
	c    *smtp.Client
	idle time.Time
}

// connPool keeps idle SMTP connections by "host addr".
type connPool struct {
	mu    sync.Mutex
	conns map[string][]pooledConn
	timer *time.Timer
}

// get returns a kept connection that answers RSET, or nil.
func (p *connPool) get(key string) *smtp.Client {
	for {
		p.mu.Lock()
		list := p.conns[key]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		pc := list[len(list)-1]
		p.conns[key] = list[:len(list)-1]
		p.mu.Unlock()
		if time.Since(pc.idle) < poolIdle && reset(pc.c) == nil {
			return pc.c
		}
		pc.c.Close()
	}
}

// put keeps a connection after a completed transaction.
func (p *connPool) put(key string, c *smtp.Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		p.conns = map[string][]pooledConn{}
	}
	if len(p.conns[key]) >= poolPerHost {
		go quit(c)
		return
	}
	p.conns[key] = append(p.conns[key], pooledConn{c: c, idle: time.Now()})
	if p.timer == nil {
		p.timer = time.AfterFunc(poolIdle, p.expire)
	}
}

// expire closes connections idle for poolIdle.
func (p *connPool) expire() {
	p.mu.Lock()
	var old []*smtp.Client
	for key, list := range p.conns {
		keep := list[:0]
		for _, pc := range list {
			if time.Since(pc.idle) >= poolIdle {
				old = append(old, pc.c)
			} else {
				keep = append(keep, pc)
			}
		}
		p.conns[key] = keep
		if len(keep) == 0 {
			delete(p.conns, key)
		}
	}
	p.timer = nil
	if len(p.conns) > 0 {
		p.timer = time.AfterFunc(poolIdle, p.expire)
	}
	p.mu.Unlock()
	for _, c := range old {
		quit(c)
	}
}

// closeAll says QUIT on every kept connection.
func (p *connPool) closeAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.mu.Unlock()
	for _, list := range conns {
		for _, pc := range list {
			quit(pc.c)
		}
	}
}

// reset checks a kept connection with RSET, with a short timeout.
func reset(c *smtp.Client) error {
	c.CommandTimeout = poolCheckTimeout
	defer func() { c.CommandTimeout = commandTimeout }()
	return c.Reset()
}

// quit ends a session politely, without waiting long for the reply.
func quit(c *smtp.Client) {
	c.CommandTimeout = poolCheckTimeout
	c.Quit()
	c.Close()
}
