package outbound_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/mta/outbound"
	"github.com/posthorn/posthorn/resolver"
	"github.com/posthorn/posthorn/store"
)

// received is one message a fake MX took.
type received struct {
	From  string
	Rcpts []string
	Data  string
	TLS   bool
	Helo  string
}

// fakeMX is a go-smtp server standing in for a remote MX.
type fakeMX struct {
	Addr string
	mu   sync.Mutex
	// reply gives a recipient's RCPT error (nil: accept); called under mu.
	reply func(rcpt string, n int) error
	tries map[string]int
	got   []received
	ch    chan received
	// beforeData, if set, runs before a message is taken (tests).
	beforeData  func()
	tlsSessions int // sessions after STARTTLS: one per connection
}

func selfSigned(t testing.TB, name string) *tls.Config {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func startFakeMX(t testing.TB, reply func(rcpt string, n int) error) *fakeMX {
	return startFakeMXTLS(t, reply, selfSigned(t, "mx.remote.test"))
}

// startFakeMXTLS starts a fake MX that offers STARTTLS with conf.
func startFakeMXTLS(t testing.TB, reply func(rcpt string, n int) error, conf *tls.Config) *fakeMX {
	f := &fakeMX{reply: reply, tries: map[string]int{}, ch: make(chan received, 100)}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		if isTLS {
			f.mu.Lock()
			f.tlsSessions++
			f.mu.Unlock()
		}
		return &fakeSession{f: f, r: received{TLS: isTLS, Helo: c.Hostname()}}, nil
	}))
	srv.Domain = "mx.remote.test"
	srv.TLSConfig = conf
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = log4test{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.Addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

type log4test struct{}

func (log4test) Printf(string, ...any) {}
func (log4test) Println(...any)        {}

func (f *fakeMX) port() int { return f.Addr2().Port }

func (f *fakeMX) Addr2() *net.TCPAddr {
	a, _ := net.ResolveTCPAddr("tcp", f.Addr)
	return a
}

func (f *fakeMX) wait(t testing.TB) received {
	t.Helper()
	select {
	case r := <-f.ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no message reached the fake MX")
		return received{}
	}
}

type fakeSession struct {
	f *fakeMX
	r received
}

func (s *fakeSession) Reset()        { s.r.Rcpts, s.r.From = nil, "" }
func (s *fakeSession) Logout() error { return nil }
func (s *fakeSession) Mail(from string, _ *smtp.MailOptions) error {
	s.r.From = from
	return nil
}

func (s *fakeSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.tries[to]++
	if s.f.reply != nil {
		if err := s.f.reply(to, s.f.tries[to]); err != nil {
			return err
		}
	}
	s.r.Rcpts = append(s.r.Rcpts, to)
	return nil
}

func (s *fakeSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.r.Data = string(b)
	s.f.mu.Lock()
	hook := s.f.beforeData
	s.f.mu.Unlock()
	if hook != nil {
		hook()
	}
	s.f.mu.Lock()
	s.f.got = append(s.f.got, s.r)
	s.f.mu.Unlock()
	s.f.ch <- s.r
	return nil
}

// fakeMDA treats local.test as ours and records what it delivers.
type fakeMDA struct {
	mu       sync.Mutex
	got      []string
	ch       chan string
	failures int // fail this many deliveries first
	// mailboxes are recipients of ours that take mail from any sender
	// (not only DSNs): each is full (store.ErrOverQuota) for as many
	// deliveries as its count, then takes the message, whose envelope
	// goes to stored.
	mailboxes map[string]int
	stored    chan mda.Envelope
	// hook, if set, runs first in each Deliver; its error is returned.
	hook func(ctx context.Context) error
}

func newFakeMDA() *fakeMDA {
	return &fakeMDA{ch: make(chan string, 100), stored: make(chan mda.Envelope, 100)}
}

func (m *fakeMDA) Resolve(addr string) (mda.Route, error) {
	if strings.HasSuffix(strings.ToLower(addr), "@local.test") {
		return mda.Route{Accounts: []string{strings.ToLower(addr)}}, nil
	}
	return mda.Route{}, mda.ErrNotOurDomain
}

func (m *fakeMDA) Deliver(ctx context.Context, env mda.Envelope, body []byte) (mda.Result, error) {
	m.mu.Lock()
	hook := m.hook
	m.mu.Unlock()
	if hook != nil {
		if err := hook(ctx); err != nil {
			return mda.Result{}, err
		}
	}
	m.mu.Lock()
	full, ours := m.mailboxes[env.Recipients[0]]
	if ours && full > 0 {
		m.mailboxes[env.Recipients[0]]--
	}
	m.mu.Unlock()
	switch {
	case ours && full > 0:
		return mda.Result{}, fmt.Errorf("account %s: %w", env.Recipients[0], store.ErrOverQuota)
	case ours:
		m.stored <- env
		return mda.Result{}, nil
	}
	if env.From != "" {
		return mda.Result{}, errors.New("DSN with a non-null sender")
	}
	m.mu.Lock()
	if m.failures > 0 {
		m.failures--
		m.mu.Unlock()
		return mda.Result{}, errors.New("local delivery failed")
	}
	m.got = append(m.got, string(body))
	m.mu.Unlock()
	m.ch <- string(body)
	return mda.Result{}, nil
}

func (m *fakeMDA) wait(t testing.TB) string {
	t.Helper()
	select {
	case b := <-m.ch:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no DSN delivered")
		return ""
	}
}

func (m *fakeMDA) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.got)
}

// queueEnv is a queue on a real store with a loopback DNS server.
type queueEnv struct {
	Q   *outbound.Queue
	DNS *harness.DNS
	MDA *fakeMDA
	St  store.Store
}

func newQueueEnv(t testing.TB, mxPort int) *queueEnv {
	st, err := store.Open(t.TempDir()+"/q.db", store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dns := harness.StartDNS(t)
	level := slog.LevelWarn + 10
	if os.Getenv("POSTHORN_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	m := newFakeMDA()
	q := &outbound.Queue{
		Store: st, Resolver: resolver.New(dns.Addr), Hostname: "mail.local.test", MXPort: mxPort,
		RetryInitial: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		GiveUpAfter: time.Hour, DelayNotice: -1, Workers: 2,
		TLS:     &tls.Config{InsecureSkipVerify: true},
		MDA:     m,
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
		Metrics: metrics.New(),
	}
	return &queueEnv{Q: q, DNS: dns, MDA: m, St: st}
}

// run starts the workers until the test ends.
func (e *queueEnv) run(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Q.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// waitEmpty waits until the queue has no entries.
func (e *queueEnv) waitEmpty(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		es, err := e.St.QueueEntries()
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	es, _ := e.St.QueueEntries()
	t.Fatalf("queue not empty: %+v", es)
}

func (e *queueEnv) enqueue(t testing.TB, from, authUser string, rcpts ...string) store.QueueEntry {
	t.Helper()
	qe := store.QueueEntry{From: from, AuthUser: authUser}
	for _, r := range rcpts {
		qe.Recipients = append(qe.Recipients, store.QueueRecipient{Address: r})
	}
	body := "From: <" + from + ">\r\nTo: <" + rcpts[0] + ">\r\nSubject: test\r\nMessage-ID: <m1@local.test>\r\n\r\nHello\r\n.leading dot\r\n"
	out, err := e.Q.Enqueue(context.Background(), qe, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rawMX is a scripted SMTP server for what go-smtp's server will not do:
// an EHLO reply with a chosen list of extensions, a recipient limit per
// transaction (452), a body it stops reading. It records every command.
type rawMX struct {
	port     int
	ext      []string // EHLO keywords
	maxRcpts int      // 452 4.5.3 after this many RCPTs per transaction; 0: none
	// stallData: after 354, read nothing more until the test ends.
	stallData bool
	// noEHLO: EHLO is refused as an unknown command (a pre-ESMTP
	// server); HELO is taken.
	noEHLO bool
	stop   chan struct{}

	mu   sync.Mutex
	cmds []string
	ch   chan received
}

func startRawMX(t testing.TB, ext ...string) *rawMX {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &rawMX{port: ln.Addr().(*net.TCPAddr).Port, ext: ext, stop: make(chan struct{}), ch: make(chan received, 100)}
	t.Cleanup(func() { close(m.stop); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go m.serve(c)
		}
	}()
	return m
}

func (m *rawMX) commands() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.cmds...)
}

func (m *rawMX) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	reply := func(s string) { c.Write([]byte(s + "\r\n")) }
	reply("220 raw.test ESMTP")
	var r received
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		m.mu.Lock()
		m.cmds = append(m.cmds, line)
		m.mu.Unlock()
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO":
			if m.noEHLO {
				reply("502 5.5.2 Error: command not recognized")
				continue
			}
			lines := append([]string{"raw.test"}, m.ext...)
			for i, l := range lines {
				sep := "-"
				if i == len(lines)-1 {
					sep = " "
				}
				reply("250" + sep + l)
			}
		case "MAIL":
			r = received{From: line}
			reply("250 2.1.0 ok")
		case "RCPT":
			if m.maxRcpts > 0 && len(r.Rcpts) >= m.maxRcpts {
				reply("452 4.5.3 Too many recipients")
				continue
			}
			r.Rcpts = append(r.Rcpts, strings.TrimSuffix(strings.TrimPrefix(line[len("RCPT TO:"):], "<"), ">"))
			reply("250 2.1.5 ok")
		case "DATA":
			reply("354 go ahead")
			if m.stallData {
				<-m.stop
				return
			}
			var data strings.Builder
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(l)
			}
			r.Data = data.String()
			m.ch <- r
			r = received{}
			reply("250 2.0.0 queued")
		case "RSET":
			r = received{}
			reply("250 2.0.0 ok")
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			reply("250 ok")
		}
	}
}

func (m *rawMX) wait(t testing.TB) received {
	t.Helper()
	select {
	case r := <-m.ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no message reached the scripted MX")
		return received{}
	}
}

// enqueueBody queues body from alice@local.test (submitted by her) with
// the flags set by mod.
func (e *queueEnv) enqueueBody(t testing.TB, body string, mod func(*store.QueueEntry), rcpts ...string) store.QueueEntry {
	t.Helper()
	qe := store.QueueEntry{From: "alice@local.test", AuthUser: "alice@local.test"}
	for _, r := range rcpts {
		qe.Recipients = append(qe.Recipients, store.QueueRecipient{Address: r})
	}
	if mod != nil {
		mod(&qe)
	}
	out, err := e.Q.Enqueue(context.Background(), qe, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitEntry waits until the entry id satisfies ok and returns it.
func (e *queueEnv) waitEntry(t testing.TB, id string, ok func(store.QueueEntry) bool) store.QueueEntry {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last store.QueueEntry
	for time.Now().Before(deadline) {
		got, err := e.St.QueueEntry(id)
		if err != nil {
			t.Fatalf("entry %s: %v", id, err)
		}
		if ok(got) {
			return got
		}
		last = got
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("entry %s never got there: %+v", id, last)
	return last
}

// enqueueAt queues a plain message created at created.
func (e *queueEnv) enqueueAt(t testing.TB, created time.Time, rcpt string) store.QueueEntry {
	t.Helper()
	return e.enqueueBody(t, "Subject: old\r\nMessage-ID: <old@local.test>\r\n\r\nHello\r\n",
		func(qe *store.QueueEntry) { qe.Created = created }, rcpt)
}
