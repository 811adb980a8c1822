package pop3_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/auth"
	"github.com/posthorn/posthorn/certs"
	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/maa/pop3"
	"github.com/posthorn/posthorn/store"
)

// The reference: Dovecot retrieved a 10,000-message, 167 MB
// maildrop at about 59 MB/s, with login+STAT in 0.06 s.
const (
	benchAccount  = "alice@example.test"
	benchPassword = "correct horse battery staple"
	benchMsgSize  = 16700
)

// benchMessages is the maildrop size; POSTHORN_BENCH_MESSAGES overrides
// it for quick runs.
func benchMessages() int {
	if n, err := strconv.Atoi(os.Getenv("POSTHORN_BENCH_MESSAGES")); err == nil && n > 0 {
		return n
	}
	return 10000
}

// benchBody is a message of about benchMsgSize octets, CRLF, with a
// dot-stuffed line now and then.
func benchBody(i int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: bob@example.test\r\nTo: %s\r\nSubject: bench %d\r\nMessage-ID: <b%d@example.test>\r\n\r\n", benchAccount, i, i)
	for line := 0; b.Len() < benchMsgSize-80; line++ {
		if line%50 == 49 {
			b.WriteString(".")
		}
		fmt.Fprintf(&b, "%06d %06d the quick brown fox jumps over the lazy dog 0123456789 abcdefghij\r\n", i, line)
	}
	return b.Bytes()
}

// benchEnv is a POP3 server over a real store with a filled INBOX.
type benchEnv struct {
	addr  string
	st    store.Store
	auth  *auth.Authenticator
	total int64 // octets of the maildrop
	n     int
}

// newBenchEnv fills a store (without fsync: this measures reading) and
// serves POP3 on loopback, with STLS and plaintext auth allowed.
func newBenchEnv(b *testing.B) *benchEnv {
	dir := b.TempDir()
	st, err := store.Open(filepath.Join(dir, "posthorn.db"), store.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	hash, err := auth.HashPassword(benchPassword)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.AddDomain("example.test"); err != nil {
		b.Fatal(err)
	}
	if err := st.AddAccount(benchAccount, hash); err != nil {
		b.Fatal(err)
	}
	n := benchMessages()
	total := fillParallel(b, st, n)
	cfg := config.Default()
	cfg.Path = filepath.Join(dir, "posthorn.toml")
	cfg.Hostname = "mail.example.test"
	cfg.DataDir = "."
	tlsConf, err := certs.Load(&cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	a := auth.New(st, nil)
	srv := &pop3.Server{Hostname: "mail.example.test", Store: st, Auth: a, TLSConfig: tlsConf, AllowPlaintextAuth: true}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Shutdown(context.Background()) })
	return &benchEnv{addr: ln.Addr().String(), st: st, auth: a, total: total, n: n}
}

// fillParallel delivers n messages from several goroutines, so that the
// store's group commit applies.
func fillParallel(b *testing.B, st store.Store, n int) int64 {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total int64
	const workers = 16
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				body := benchBody(i)
				if _, err := st.Deliver(context.Background(), body, []store.Delivery{{Account: benchAccount, Mailbox: "INBOX"}}); err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				total += int64(len(body))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return total
}

// benchConn is a fast POP3 client.
type benchConn struct {
	b    *testing.B
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

func (e *benchEnv) dial(b *testing.B, useTLS bool) *benchConn {
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		b.Fatal(err)
	}
	c := &benchConn{b: b, conn: conn, r: bufio.NewReaderSize(conn, 64*1024), w: bufio.NewWriter(conn)}
	c.line()
	if useTLS {
		c.cmd("STLS")
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			b.Fatal(err)
		}
		c.conn, c.r, c.w = tc, bufio.NewReaderSize(tc, 64*1024), bufio.NewWriter(tc)
	}
	return c
}

func (c *benchConn) line() []byte {
	l, err := c.r.ReadSlice('\n')
	if err != nil {
		c.b.Fatal(err)
	}
	if l[0] != '+' {
		c.b.Fatalf("reply %q", l)
	}
	return l
}

func (c *benchConn) cmd(s string) []byte {
	c.w.WriteString(s + "\r\n")
	c.w.Flush()
	return c.line()
}

// body reads a multi-line reply and returns the octets before the
// terminating line.
func (c *benchConn) body() int64 {
	var n int64
	for {
		l, err := c.r.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			c.b.Fatal(err)
		}
		if len(l) == 3 && l[0] == '.' && l[1] == '\r' {
			return n
		}
		n += int64(len(l))
	}
}

func (c *benchConn) login() {
	c.cmd("USER " + benchAccount)
	c.cmd("PASS " + benchPassword)
}

// BenchmarkPOP3 measures RETR of every message of the maildrop and the
// time to log in and STAT. Run with -benchtime=1x (or 3x): one op is a
// whole maildrop.
func BenchmarkPOP3(b *testing.B) {
	e := newBenchEnv(b)
	b.Logf("maildrop: %d messages, %d octets", e.n, e.total)
	for _, tc := range []struct {
		name      string
		tls       bool
		pipelined bool
	}{{"RETR-all", false, false}, {"RETR-all-STLS", true, false}, {"RETR-all-pipelined", false, true}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(e.total)
			cpu0 := cpuTime()
			for b.Loop() {
				c := e.dial(b, tc.tls)
				c.login()
				c.cmd("STAT")
				got := e.retrAll(c, tc.pipelined)
				c.cmd("QUIT")
				c.conn.Close()
				if got < e.total {
					b.Fatalf("received %d octets, want at least %d", got, e.total)
				}
			}
			b.ReportMetric(float64(e.n)*float64(b.N)/b.Elapsed().Seconds(), "msg/s")
			// CPU seconds (client and server, user and system) per GB:
			// unlike MB/s, it does not depend on how busy the machine is.
			b.ReportMetric((cpuTime()-cpu0).Seconds()/(float64(e.total)*float64(b.N)/1e9), "cpu-s/GB")
		})
	}
	b.Run("login+STAT", func(b *testing.B) {
		var total, pass, stat time.Duration
		for b.Loop() {
			start := time.Now()
			c := e.dial(b, false)
			c.cmd("USER " + benchAccount)
			t0 := time.Now()
			c.cmd("PASS " + benchPassword)
			t1 := time.Now()
			c.cmd("STAT")
			t2 := time.Now()
			c.cmd("QUIT")
			c.conn.Close()
			total += t2.Sub(start)
			pass += t1.Sub(t0)
			stat += t2.Sub(t1)
		}
		n := float64(b.N)
		b.ReportMetric(float64(total.Microseconds())/n/1000, "login+STAT-ms")
		b.ReportMetric(float64(pass.Microseconds())/n/1000, "PASS-ms")
		b.ReportMetric(float64(stat.Microseconds())/n/1000, "STAT-ms")
	})
	b.Run("split", func(b *testing.B) {
		// What PASS costs: argon2id in Authenticate, then the snapshot.
		var authT, snapT time.Duration
		for b.Loop() {
			t0 := time.Now()
			if _, err := e.auth.Authenticate(context.Background(), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, benchAccount, benchPassword); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if _, err := e.st.Messages(benchAccount, "INBOX"); err != nil {
				b.Fatal(err)
			}
			authT += t1.Sub(t0)
			snapT += time.Since(t1)
		}
		n := float64(b.N)
		b.ReportMetric(float64(authT.Microseconds())/n/1000, "auth-ms")
		b.ReportMetric(float64(snapT.Microseconds())/n/1000, "snapshot-ms")
	})
}

// cpuTime is the CPU time this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// retrAll retrieves messages 1..n, one command at a time or pipelined.
func (e *benchEnv) retrAll(c *benchConn, pipelined bool) int64 {
	var got int64
	if !pipelined {
		for i := 1; i <= e.n; i++ {
			c.cmd("RETR " + strconv.Itoa(i))
			got += c.body()
		}
		return got
	}
	go func() {
		w := bufio.NewWriter(c.conn)
		for i := 1; i <= e.n; i++ {
			w.WriteString("RETR " + strconv.Itoa(i) + "\r\n")
		}
		w.Flush()
	}()
	for i := 1; i <= e.n; i++ {
		c.line()
		got += c.body()
	}
	return got
}
