package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// smtpConn is a minimal SMTP client (RFC 5321) without PIPELINING: each
// command waits for its reply, as most MTAs' first attempt does.
type smtpConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialSMTP(addr string) (*smtpConn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	s := &smtpConn{c: c, r: bufio.NewReader(c)}
	if err := s.expect(220); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if err := s.cmd(250, "EHLO loadgen.peer.test"); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// reply reads one (possibly multi-line) reply and returns its code.
func (s *smtpConn) reply() (int, string, error) {
	var last string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return 0, last, err
		}
		if len(line) < 4 {
			return 0, line, fmt.Errorf("short reply %q", line)
		}
		last = strings.TrimRight(line, "\r\n")
		if line[3] == ' ' {
			code, err := strconv.Atoi(line[:3])
			return code, last, err
		}
	}
}

func (s *smtpConn) expect(code int) error {
	got, text, err := s.reply()
	if err != nil {
		return err
	}
	if got != code {
		return fmt.Errorf("want %d, got %q", code, text)
	}
	return nil
}

func (s *smtpConn) cmd(code int, line string) error {
	if _, err := s.c.Write([]byte(line + "\r\n")); err != nil {
		return err
	}
	if err := s.expect(code); err != nil {
		return fmt.Errorf("%s: %w", strings.Fields(line)[0], err)
	}
	return nil
}

// send runs one transaction; msg must be CRLF and not dot-stuffed (message
// never starts a line with a dot).
func (s *smtpConn) send(from, rcpt string, msg []byte) error {
	if err := s.cmd(250, "MAIL FROM:<"+from+">"); err != nil {
		return err
	}
	if err := s.cmd(250, "RCPT TO:<"+rcpt+">"); err != nil {
		return err
	}
	if err := s.cmd(354, "DATA"); err != nil {
		return err
	}
	if _, err := s.c.Write(msg); err != nil {
		return err
	}
	return s.cmd(250, ".")
}

func (s *smtpConn) quit() {
	s.cmd(221, "QUIT")
	s.c.Close()
}

// sendOne delivers one message on a new connection.
func sendOne(addr, rcpt string, msg []byte) error {
	s, err := dialSMTP(addr)
	if err != nil {
		return err
	}
	defer s.quit()
	return s.send("sender@peer.test", rcpt, msg)
}

// acceptance is the result of one SMTP load step.
type acceptance struct {
	Accepted int
	Failed   int
	Rate     float64 // accepted messages per second
	P50, P99 time.Duration
	FirstErr error
}

// smtpLoad sends msg to rcpt from conns workers for d, a new connection per
// message, and measures each transaction from dial to the 250 after DATA.
func smtpLoad(addr, rcpt string, msg []byte, conns int, d time.Duration) acceptance {
	var (
		mu        sync.Mutex
		latencies []time.Duration
		failed    atomic.Int64
		firstErr  atomic.Value
		wg        sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := sendOne(addr, rcpt, msg); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, errBox{err})
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	a := acceptance{Accepted: len(latencies), Failed: int(failed.Load())}
	if e, ok := firstErr.Load().(errBox); ok {
		a.FirstErr = e.error
	}
	a.Rate = float64(a.Accepted) / elapsed.Seconds()
	a.P50, a.P99 = percentiles(latencies)
	return a
}

type errBox struct{ error }

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2], d[(len(d)*99)/100]
}

// seed delivers n messages (numbered from 0) to rcpt over conns
// connections, perConn messages per connection, and returns messages/s.
func seed(addr, rcpt string, n, conns, perConn, maxBody int) (float64, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	start := time.Now()
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := seedWorker(addr, rcpt, n, perConn, maxBody, &next); err != nil {
				firstErr.CompareAndSwap(nil, errBox{err})
			}
		}()
	}
	wg.Wait()
	if e, ok := firstErr.Load().(errBox); ok {
		return 0, e.error
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func seedWorker(addr, rcpt string, n, perConn, maxBody int, next *atomic.Int64) error {
	for {
		s, err := dialSMTP(addr)
		if err != nil {
			return err
		}
		for k := 0; k < perConn; k++ {
			i := int(next.Add(1)) - 1
			if i >= n {
				s.quit()
				return nil
			}
			s.c.SetDeadline(time.Now().Add(2 * time.Minute))
			if err := s.send("sender@peer.test", rcpt, message(i, rcpt, syncSize(i, maxBody))); err != nil {
				s.c.Close()
				return fmt.Errorf("message %d: %w", i, err)
			}
		}
		s.quit()
	}
}

var errTimeout = errors.New("timed out")
