package imap

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/posthorn/posthorn/store"
)

// Benchmarks of the figures. Seed sizes: 10,000 messages
// (POSTHORN_BENCH_100K=1 adds a 100,000-message header sync).
//
//	go test -run XXX -bench . -benchtime 3x ./maa/imap/

// thunderbirdFields is Thunderbird's initial header sync field list.
var thunderbirdFields = []string{"From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "Priority",
	"X-Priority", "References", "Newsgroups", "In-Reply-To", "Content-Type", "Reply-To"}

// seedMailbox appends n realistic messages to alice's INBOX directly
// through the store, from 8 goroutines so commits are shared.
func seedMailbox(tb testing.TB, st store.Store, n, bodyBytes int) {
	tb.Helper()
	filler := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", bodyBytes/58+1)
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				subj := fmt.Sprintf("Message number %d about topic %d", i, i%97)
				if i%1000 == 7 {
					subj = "quarterly needle report " + strconv.Itoa(i)
				}
				body := benchHeader(i, subj) + filler[:bodyBytes]
				if _, err := st.Append(context.Background(), testAlice, "INBOX",
					store.NewMessage{Body: []byte(body)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 1; i <= n; i++ {
		select {
		case next <- i:
		case err := <-errs:
			tb.Fatal(err)
		}
	}
	close(next)
	wg.Wait()
}

func benchHeader(i int, subject string) string {
	return fmt.Sprintf("Return-Path: <list-bounces@lists.example.org>\r\n"+
		"Received: from mx.example.org (mx.example.org [192.0.2.1])\r\n\tby mail.example.test with ESMTPS id %d\r\n\tfor <alice@example.test>; Mon, 02 Jan 2006 15:04:05 -0700\r\n"+
		"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=sel;\r\n\th=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgaGFzIHRoZSByaWdodCBsZW5ndGggZm9yIGEgYmVuY2htYXJr\r\n"+
		"From: Sender %d <sender%d@example.org>\r\nTo: Alice <alice@example.test>\r\nCc: list@lists.example.org\r\n"+
		"Subject: %s\r\nDate: Mon, 02 Jan 2006 15:04:05 -0700\r\nMessage-ID: <msg%d@example.org>\r\n"+
		"References: <parent%d@example.org>\r\nIn-Reply-To: <parent%d@example.org>\r\n"+
		"List-Id: <list.lists.example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
		i, i, i, subject, i, i, i)
}

// benchFixture is a seeded server shared by the benchmarks of one size.
type benchFixture struct {
	e *testEnv
}

var (
	fixturesMu sync.Mutex
	fixtures   = map[string]*benchFixture{}
)

func fixture(b *testing.B, n, bodyBytes int) *benchFixture {
	fixturesMu.Lock()
	defer fixturesMu.Unlock()
	key := fmt.Sprint(n, "/", bodyBytes)
	if f := fixtures[key]; f != nil {
		return f
	}
	start := time.Now()
	e := newTestEnv(&longLived{TB: b})
	seedMailbox(b, e.st, n, bodyBytes)
	b.Logf("seeded %d messages of ~%d bytes in %v", n, bodyBytes, time.Since(start))
	f := &benchFixture{e: e}
	fixtures[key] = f
	return f
}

// longLived keeps a fixture alive across benchmark runs: its cleanups run
// at the end of the test binary (TestMain).
type longLived struct {
	testing.TB
}

var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

func (l *longLived) Cleanup(f func()) {
	cleanupMu.Lock()
	cleanups = append(cleanups, f)
	cleanupMu.Unlock()
}

func (l *longLived) TempDir() string {
	d, err := os.MkdirTemp("", "posthorn-imap-bench")
	if err != nil {
		l.Fatal(err)
	}
	l.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestMain(m *testing.M) {
	code := m.Run()
	cleanupMu.Lock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	cleanupMu.Unlock()
	os.Exit(code)
}

func (f *benchFixture) client(b *testing.B) *imapclient.Client {
	c, err := imapclient.DialTLS(f.e.implicit, &imapclient.Options{TLSConfig: f.e.tls})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if err := c.Login(testAlice, testPass).Wait(); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		b.Fatal(err)
	}
	return c
}

func benchHeaderSync(b *testing.B, n int) {
	f := fixture(b, n, 2000)
	c := f.client(b)
	opts := &imapv2.FetchOptions{UID: true, RFC822Size: true, Flags: true,
		BodySection: []*imapv2.FetchItemBodySection{{Peek: true, Specifier: imapv2.PartSpecifierHeader, HeaderFields: thunderbirdFields}}}
	b.ResetTimer()
	cpu := startCPU()
	defer cpu.report(b)
	for i := 0; i < b.N; i++ {
		cmd := c.Fetch(imapv2.UIDSet{{Start: 1, Stop: 0}}, opts)
		count := 0
		for m := cmd.Next(); m != nil; m = cmd.Next() {
			if _, err := m.Collect(); err != nil {
				b.Fatal(err)
			}
			count++
		}
		if err := cmd.Close(); err != nil {
			b.Fatal(err)
		}
		if count != n {
			b.Fatalf("%d messages", count)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkHeaderSync10k: Thunderbird's initial sync (target < 1 s).
func BenchmarkHeaderSync10k(b *testing.B) { benchHeaderSync(b, 10000) }

// BenchmarkHeaderSync100k: within 10x of the 10k figure (long run only).
func BenchmarkHeaderSync100k(b *testing.B) {
	if os.Getenv("POSTHORN_BENCH_100K") == "" {
		b.Skip("set POSTHORN_BENCH_100K=1")
	}
	benchHeaderSync(b, 100000)
}

// BenchmarkResync10k: the second sync, UID FETCH 1:* (UID FLAGS) (no
// CONDSTORE yet; Dovecot 0.17 s).
func BenchmarkResync10k(b *testing.B) {
	f := fixture(b, 10000, 2000)
	c := f.client(b)
	b.ResetTimer()
	cpu := startCPU()
	defer cpu.report(b)
	for i := 0; i < b.N; i++ {
		msgs, err := c.Fetch(imapv2.UIDSet{{Start: 1, Stop: 0}}, &imapv2.FetchOptions{UID: true, Flags: true}).Collect()
		if err != nil || len(msgs) != 10000 {
			b.Fatal(err, len(msgs))
		}
	}
}

// BenchmarkResync10kRaw is BenchmarkResync10k with a client that only
// reads lines (as bench/loadgen's), so that cpu-ms/op is nearly all the
// server's.
func BenchmarkResync10kRaw(b *testing.B) {
	f := fixture(b, 10000, 2000)
	conn, err := tls.Dial("tcp", f.e.implicit, f.e.tls)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 64<<10)
	cmd := func(tag, c string) int {
		fmt.Fprintf(conn, "%s %s\r\n", tag, c)
		n := 0
		for {
			line, err := r.ReadSlice('\n')
			if err != nil && err != bufio.ErrBufferFull {
				b.Fatal(err)
			}
			if bytes.HasPrefix(line, []byte(tag+" ")) {
				if !bytes.HasPrefix(line, []byte(tag+" OK")) {
					b.Fatalf("%s: %s", c, line)
				}
				return n
			}
			n++
		}
	}
	r.ReadSlice('\n')
	cmd("a", fmt.Sprintf("LOGIN %s \"%s\"", testAlice, testPass))
	cmd("b", "SELECT INBOX")
	b.ResetTimer()
	cpu := startCPU()
	defer cpu.report(b)
	for i := 0; i < b.N; i++ {
		if n := cmd("c", "UID FETCH 1:* (FLAGS)"); n < 10000 {
			b.Fatalf("%d FETCH lines", n)
		}
	}
}

// BenchmarkSearchSubject10k: UID SEARCH SUBJECT (Dovecot 0.052 s).
func BenchmarkSearchSubject10k(b *testing.B) {
	f := fixture(b, 10000, 2000)
	c := f.client(b)
	b.ResetTimer()
	cpu := startCPU()
	defer cpu.report(b)
	for i := 0; i < b.N; i++ {
		res, err := c.UIDSearch(&imapv2.SearchCriteria{Header: []imapv2.SearchCriteriaHeaderField{{Key: "Subject", Value: "needle"}}}, nil).Wait()
		if err != nil || len(res.AllUIDs()) != 10 {
			b.Fatal(err, res)
		}
	}
}

// BenchmarkFetchFull1k: BODY.PEEK[] of 1,000 messages of ~100 KB (Dovecot
// 245 MB/s).
func BenchmarkFetchFull1k(b *testing.B) {
	f := fixture(b, 1000, 100000)
	c := f.client(b)
	b.ResetTimer()
	cpu := startCPU()
	defer cpu.report(b)
	var total int64
	for i := 0; i < b.N; i++ {
		cmd := c.Fetch(imapv2.SeqSet{{Start: 1, Stop: 0}}, &imapv2.FetchOptions{
			BodySection: []*imapv2.FetchItemBodySection{{Peek: true}}})
		for m := cmd.Next(); m != nil; m = cmd.Next() {
			for item := m.Next(); item != nil; item = m.Next() {
				if bs, ok := item.(imapclient.FetchItemDataBodySection); ok {
					n, err := bufio.NewReader(bs.Literal).WriteTo(discard{})
					if err != nil {
						b.Fatal(err)
					}
					total += n
				}
			}
		}
		if err := cmd.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total)/1e6/b.Elapsed().Seconds(), "MB/s")
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkAppend: APPEND from one connection, with fsync (Dovecot 99/s;
// target 5x).
func BenchmarkAppend(b *testing.B) {
	e := newTestEnv(b)
	syncStore(b, e)
	c, err := imapclient.DialTLS(e.implicit, &imapclient.Options{TLSConfig: e.tls})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(testAlice, testPass).Wait(); err != nil {
		b.Fatal(err)
	}
	msg := []byte(benchHeader(1, "appended") + strings.Repeat("body line of an appended message\r\n", 100))
	b.ResetTimer()
	cpu := startCPU()
	defer cpu.report(b)
	for i := 0; i < b.N; i++ {
		cmd := c.Append("Sent", int64(len(msg)), nil)
		cmd.Write(msg)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkAppendNagleClient APPENDs as Python's imaplib does: Nagle's
// algorithm on, the literal and its CRLF in two writes. The CRLF waits
// for the literal's ACK, which the kernel delayed by 40 ms after our "+"
// until reads turned on TCP_QUICKACK (45 ms per APPEND, against Dovecot's
// 2.6 ms; probe 8).
func BenchmarkAppendNagleClient(b *testing.B) {
	e := newTestEnv(b, func(s *Server) { s.AllowPlaintextAuth = true })
	conn, r, _ := e.dialPlain()
	conn.(*net.TCPConn).SetNoDelay(false)
	conn.SetDeadline(time.Now().Add(10 * time.Minute))
	fmt.Fprintf(conn, "a LOGIN %s \"%s\"\r\n", testAlice, testPass)
	expectTagged(b, r, "a OK")
	msg := []byte(benchHeader(1, "appended") + "a small message\r\n")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		fmt.Fprintf(conn, "b APPEND INBOX {%d}\r\n", len(msg))
		if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+") {
			b.Fatalf("continuation: %q %v", l, err)
		}
		conn.Write(msg)
		conn.Write([]byte("\r\n"))
		expectTagged(b, r, "b OK")
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/append")
}

// syncStore replaces the env's NoSync store by a durable one.
func syncStore(b *testing.B, e *testEnv) {
	dir := b.TempDir()
	st, err := store.Open(dir+"/sync.db", store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	st.AddDomain("example.test")
	st.AddAccount(testAlice, "x")
	srv := &Server{Store: st, Auth: testAuth{st}, Logger: e.srv.Logger, TLS: e.srv.TLS}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.ServeTLS(ln)
	b.Cleanup(func() { srv.Shutdown(context.Background()) })
	e.implicit = ln.Addr().String()
}

// BenchmarkIdleMemory measures the server's memory per idle IDLE
// connection (target <= 24 KiB without TLS). The clients run in a Python
// process so that only the server's memory is in this process.
func BenchmarkIdleMemory(b *testing.B) {
	py, err := exec.LookPath("python3")
	if err != nil {
		b.Skip("python3 not installed")
	}
	n := 500
	if v, _ := strconv.Atoi(os.Getenv("POSTHORN_BENCH_IDLE_CONNS")); v > 0 {
		n = v
	}
	for _, mode := range []string{"plain", "tls"} {
		b.Run(mode, func(b *testing.B) {
			e := newTestEnv(b, func(s *Server) { s.AllowPlaintextAuth = true })
			e.deliver(testAlice, "INBOX", testMessage(1, "x"))
			addr := e.plain
			if mode == "tls" {
				addr = e.implicit
			}
			host, port, _ := net.SplitHostPort(addr)
			for i := 0; i < b.N; i++ {
				heap0, stack0 := memInUse()
				g0 := runtime.NumGoroutine()
				cmd := exec.Command(py, "testdata/idle_clients.py", host, port, mode, strconv.Itoa(n), testAlice, testPass)
				stdin, _ := cmd.StdinPipe()
				stdout, _ := cmd.StdoutPipe()
				cmd.Stderr = os.Stderr
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				line, err := bufio.NewReader(stdout).ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "ready") {
					b.Fatalf("clients: %q %v", line, err)
				}
				heap1, stack1 := memInUse()
				g1 := runtime.NumGoroutine()
				stdin.Close()
				cmd.Wait()
				perConn := func(v int64) float64 { return float64(v) / float64(n) / 1024 }
				b.ReportMetric(perConn(heap1+stack1-heap0-stack0), "KiB/conn")
				b.ReportMetric(perConn(heap1-heap0), "heap-KiB/conn")
				b.ReportMetric(perConn(stack1-stack0), "stack-KiB/conn")
				b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/conn")
			}
		})
	}
}

// cpuTimer reports the process's CPU time per op (server and client:
// they share the process), a figure less disturbed than wall time by
// other work on a shared machine.
//
// These benchmarks run under Go's default collector, not posthorn serve's
// tuning (internal/gctune): with the tuner, and the test's logins costing
// no argon2id buffer (each real login triggers a collection), the idle
// connections' heap is left spread over more spans and BenchmarkIdleMemory
// would read 25.5 KiB per connection instead of 20.5, depending on which
// benchmarks ran before it. make bench-peers measures the real server,
// tuner and all.
type cpuTimer struct{ start time.Duration }

func startCPU() cpuTimer { return cpuTimer{cpuTime()} }

func (c cpuTimer) report(b *testing.B) {
	b.ReportMetric(float64((cpuTime()-c.start).Milliseconds())/float64(b.N), "cpu-ms/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// memInUse is heap and stack memory in use after a GC.
func memInUse() (heap, stack int64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse), int64(ms.StackInuse)
}

// BenchmarkSearchSubject10kCold is the first SUBJECT search of a session:
// the envelope cache is emptied before each one.
func BenchmarkSearchSubject10kCold(b *testing.B) {
	f := fixture(b, 10000, 2000)
	c := f.client(b)
	t := f.e.srv.hub.lookup(testAlice, "INBOX")
	b.ResetTimer()
	cpu := startCPU()
	defer cpu.report(b)
	for i := 0; i < b.N; i++ {
		t.envMu.Lock()
		t.envs = nil
		t.envMu.Unlock()
		res, err := c.UIDSearch(&imapv2.SearchCriteria{Header: []imapv2.SearchCriteriaHeaderField{{Key: "Subject", Value: "needle"}}}, nil).Wait()
		if err != nil || len(res.AllUIDs()) != 10 {
			b.Fatal(err, res)
		}
	}
}
