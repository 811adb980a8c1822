package hostile

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/harness"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// size is full, or reduced under the race detector (which slows parsing
// and argon2id tenfold) so that `make test` stays short; the full sizes
// run without -race in `make crashtest`, or with POSTHORN_HOSTILE_FULL=1.
func size(full, underRace int) int {
	if raceEnabled && os.Getenv("POSTHORN_HOSTILE_FULL") == "" {
		return underRace
	}
	return full
}

// start runs the server with plaintext authentication allowed (these
// tests are about input, not about TLS) and any further changes.
func start(t *testing.T, configure func(*config.Config)) *harness.Env {
	t.Helper()
	return harness.Start(t, harness.Options{Configure: func(c *config.Config) {
		c.AllowPlaintextAuth = true
		if configure != nil {
			configure(c)
		}
	}})
}

// textConn is a line-oriented client over raw TCP.
type textConn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dial(t testing.TB, addr string) *textConn {
	t.Helper()
	return dialFrom(t, "", addr)
}

// dialFrom dials from a local loopback address ("127.0.0.2"), "" for any.
func dialFrom(t testing.TB, local, addr string) *textConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	tc := &textConn{t: t, c: c, r: bufio.NewReaderSize(c, 64<<10)}
	t.Cleanup(func() { c.Close() })
	tc.deadline(10 * time.Second)
	return tc
}

func (tc *textConn) deadline(d time.Duration) { tc.c.SetDeadline(time.Now().Add(d)) }

// write sends raw bytes in one write (one TCP segment on loopback for
// small writes).
func (tc *textConn) write(s string) {
	tc.t.Helper()
	if _, err := tc.c.Write([]byte(s)); err != nil {
		tc.t.Fatalf("write: %v", err)
	}
}

// line reads one line without its CRLF; it fails the test on error.
func (tc *textConn) line() string {
	tc.t.Helper()
	l, err := tc.readLine()
	if err != nil {
		tc.t.Fatalf("read: %v", err)
	}
	return l
}

func (tc *textConn) readLine() (string, error) {
	l, err := tc.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// smtpReply reads a whole SMTP reply and returns its code and lines.
func (tc *textConn) smtpReply() (int, []string) {
	tc.t.Helper()
	var lines []string
	for {
		l := tc.line()
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			code, _ := strconv.Atoi(l[:min(3, len(l))])
			return code, lines
		}
	}
}

func (tc *textConn) expectSMTP(code int) []string {
	tc.t.Helper()
	got, lines := tc.smtpReply()
	if got != code {
		tc.t.Fatalf("want SMTP %d, got %q", code, lines)
	}
	return lines
}

// imapUntil reads IMAP responses up to the tagged one for tag and returns
// every line read; the last one is the tagged response.
func (tc *textConn) imapUntil(tag string) []string {
	tc.t.Helper()
	var lines []string
	for {
		l := tc.line()
		lines = append(lines, l)
		if strings.HasPrefix(l, tag+" ") {
			return lines
		}
	}
}

func (tc *textConn) imapOK(tag, cmd string) []string {
	tc.t.Helper()
	tc.write(tag + " " + cmd + "\r\n")
	lines := tc.imapUntil(tag)
	if !strings.HasPrefix(lines[len(lines)-1], tag+" OK") {
		tc.t.Fatalf("%s: %q", cmd, lines[len(lines)-1])
	}
	return lines
}

// imapLogin logs in as the harness user.
func imapLogin(t testing.TB, env *harness.Env) *textConn {
	t.Helper()
	tc := dial(t, env.Addr("imap"))
	if g := tc.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("IMAP greeting %q", g)
	}
	tc.imapOK("L", fmt.Sprintf("LOGIN %q %q", harness.User, harness.Password))
	return tc
}

// startTLS upgrades the connection (after the server's go-ahead).
func (tc *textConn) startTLS(env *harness.Env) error {
	conn := tls.Client(tc.c, env.ClientTLS())
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := conn.Handshake(); err != nil {
		return err
	}
	tc.c = conn
	tc.r = bufio.NewReaderSize(conn, 64<<10)
	return nil
}

// memUse is the Go heap and stacks in use after a full collection.
func memUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// memWatch samples the Go heap and stacks every 20 ms from its start, so
// that a budget holds for the peak of a hostile phase, not only for what
// is left after it.
type memWatch struct {
	base uint64
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

// watchMem starts sampling; check ends it.
func watchMem() *memWatch {
	w := &memWatch{base: memUse(), stop: make(chan struct{}), done: make(chan struct{})}
	w.peak.Store(w.base)
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var m runtime.MemStats
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			runtime.ReadMemStats(&m)
			if v := m.HeapInuse + m.StackInuse; v > w.peak.Load() {
				w.peak.Store(v)
			}
		}
	}()
	return w
}

// check fails the test when the peak grew past limit bytes over the base.
// The peak includes garbage not yet collected, so budgets allow for GOGC.
func (w *memWatch) check(t testing.TB, what string, limit uint64) {
	t.Helper()
	close(w.stop)
	<-w.done
	peak := max(w.peak.Load(), memUse())
	grew := peak - w.base
	t.Logf("%s: memory peak %.1f MiB over the start (budget %.1f MiB)", what, float64(grew)/(1<<20), float64(limit)/(1<<20))
	if grew > limit {
		t.Errorf("%s: memory peaked %.1f MiB over the start, over the budget of %.1f MiB", what, float64(grew)/(1<<20), float64(limit)/(1<<20))
	}
}

// raiseNOFILE lifts the open-file limit to its hard maximum.
func raiseNOFILE(t testing.TB, need uint64) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		t.Fatal(err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	if l.Cur < need {
		t.Skipf("RLIMIT_NOFILE is %d, the test needs %d", l.Cur, need)
	}
}

// within fails the test if f takes longer than d.
func within(t testing.TB, what string, d time.Duration, f func()) time.Duration {
	t.Helper()
	t0 := time.Now()
	f()
	took := time.Since(t0)
	if took > d {
		t.Errorf("%s took %v, more than %v", what, took, d)
	}
	return took
}
