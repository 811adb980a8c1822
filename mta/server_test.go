package mta

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/smtptest"
	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/store"
)

// memStore is the part of store.Store the MTA and MDA use, in memory, so
// the protocol tests here run without bbolt. The end-to-end tests in
// e2e_test.go run the same dialogs against the real server.
type memStore struct {
	store.Store // nil: any other method panics
	mu          sync.Mutex
	domains     map[string]bool
	accounts    map[string]store.Account
	aliases     map[string][]string
	delivered   [][]store.Delivery
	bodies      [][]byte
	failDeliver error // returned by Deliver when set
}

func newMemStore() *memStore {
	return &memStore{
		domains:  map[string]bool{"example.test": true},
		accounts: map[string]store.Account{"alice@example.test": {Address: "alice@example.test"}},
		aliases:  map[string][]string{},
	}
}

// CheckRoom: the disk always has room here.
func (m *memStore) CheckRoom(int64) error { return nil }

func (m *memStore) HasDomain(d string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.domains[d], nil
}

func (m *memStore) Account(a string) (store.Account, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	acct, ok := m.accounts[a]
	if !ok {
		return store.Account{}, store.ErrNoSuchAccount
	}
	return acct, nil
}

func (m *memStore) Alias(a string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.aliases[a]
	if !ok {
		return nil, store.ErrNotFound
	}
	return t, nil
}

func (m *memStore) Deliver(_ context.Context, body []byte, to []store.Delivery) ([]store.Delivered, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failDeliver != nil {
		return nil, m.failDeliver
	}
	m.delivered = append(m.delivered, to)
	m.bodies = append(m.bodies, append([]byte(nil), body...))
	out := make([]store.Delivered, len(to))
	for i, d := range to {
		out[i] = store.Delivered{Account: d.Account, Mailbox: d.Mailbox, UID: uint32(len(m.bodies))}
	}
	return out, nil
}

func (m *memStore) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.bodies)
}

func testLogger() *slog.Logger {
	if os.Getenv("POSTHORN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startTestServer runs a Server on 127.0.0.1:0 over a memStore.
func startTestServer(t testing.TB, edit func(*Server)) (*Server, *memStore, string) {
	t.Helper()
	st := newMemStore()
	s := &Server{
		Hostname: "mail.example.test",
		MDA:      &mda.Agent{Store: st, Logger: testLogger()},
		Resolver: startZoneDNS(t).resolver(),
		Logger:   testLogger(),
	}
	if edit != nil {
		edit(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, st, ln.Addr().String()
}

// Dialog is a raw SMTP client (internal/smtptest).
type Dialog = smtptest.Conn

func Dial(t *testing.T, addr string) *Dialog { return smtptest.Dial(t, addr) }

func TestGreetingAndEHLO(t *testing.T) {
	reg := metrics.New()
	_, _, addr := startTestServer(t, func(s *Server) { s.Metrics = reg })
	d := Dial(t, addr)
	if n := reg.Value(metrics.Connections, "protocol", "smtp"); n != 1 {
		t.Errorf("open connections %d, want 1", n)
	}
	d.Send("EHLO client.example\r\n")
	var caps []string
	for {
		l, _ := d.R.ReadString('\n')
		caps = append(caps, strings.TrimSpace(l[4:]))
		if l[3] == ' ' {
			break
		}
	}
	for _, want := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING", "SMTPUTF8", "SIZE 52428800"} {
		found := false
		for _, c := range caps {
			found = found || c == want
		}
		if !found {
			t.Errorf("EHLO lacks %s: %v", want, caps)
		}
	}
	d.Cmd("VRFY alice", "252")
	d.Cmd("EXPN staff", "502")
	d.Cmd("XYZW bar", "500")
	d.Cmd("QUIT", "221")
	if !d.Closed() {
		t.Fatal("open after QUIT")
	}
	if n := reg.Value(metrics.Connections, "protocol", "smtp"); n != 0 {
		t.Errorf("open connections %d after QUIT, want 0", n)
	}
}

func TestDeliverOnce(t *testing.T) {
	_, st, addr := startTestServer(t, nil)
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	d.Cmd("RCPT TO:<alice+lists@example.test>", "250")
	d.Cmd("DATA", "354")
	d.Send("Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\n")
	d.Expect("250")
	if st.count() != 1 || len(st.delivered[0]) != 1 {
		t.Fatalf("deliveries %v", st.delivered)
	}
	body := string(st.bodies[0])
	if !strings.HasSuffix(body, "Subject: hi\r\n\r\n.dot\r\nbody\r\n") ||
		!strings.HasPrefix(body, "Authentication-Results: mail.example.test;") || !strings.Contains(body, "\r\nReceived: from client.example ([127.0.0.1])") {
		t.Errorf("stored %q", body)
	}
	if p := string(st.delivered[0][0].Prefix); p != "Return-Path: <bob@remote.example>\r\nDelivered-To: alice@example.test\r\n" {
		t.Errorf("prefix %q", p)
	}
}

// TestDialogs replays the scripted sessions in testdata/dialogs.
func TestDialogs(t *testing.T) {
	files, _ := filepath.Glob("testdata/dialogs/*.dlg")
	if len(files) == 0 {
		t.Fatal("no dialogs")
	}
	_, _, addr := startTestServer(t, nil)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			d := smtptest.New(t, c)
			for n, line := range strings.Split(string(data), "\n") {
				switch {
				case strings.HasPrefix(line, "C:"):
					d.Send(strings.TrimPrefix(strings.TrimPrefix(line, "C:"), " ") + "\r\n")
				case strings.HasPrefix(line, "S:"):
					want := strings.TrimSpace(line[2:])
					if got := d.Reply(); !strings.HasPrefix(got, want) {
						t.Fatalf("%s:%d: got %q, want %q", f, n+1, got, want)
					}
				}
			}
		})
	}
}

// TestTooManyHops: a message with MaxHops Received fields is refused as a
// routing loop (RFC 5321 section 6.3), one with fewer is taken.
func TestTooManyHops(t *testing.T) {
	_, st, addr := startTestServer(t, nil)
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	for _, c := range []struct {
		hops int
		want string
	}{{MaxHops, "554 5.4.6"}, {MaxHops - 2, "250"}} {
		var b strings.Builder
		for i := 0; i < c.hops; i++ {
			if i%2 == 0 {
				b.WriteString("Received: from a.example by b.example;\r\n\tFri, 27 Nov 2026 10:00:00 +0000\r\n")
			} else {
				b.WriteString("RECEIVED : from c.example by d.example; Fri, 27 Nov 2026 10:00:00 +0000\r\n")
			}
		}
		b.WriteString("Subject: loop\r\n\r\nReceived: in the body does not count\r\n.\r\n")
		d.Cmd("MAIL FROM:<bob@remote.example>", "250")
		d.Cmd("RCPT TO:<alice@example.test>", "250")
		d.Cmd("DATA", "354")
		d.Send(b.String())
		d.Expect(c.want)
	}
	if n := st.count(); n != 1 {
		t.Fatalf("%d deliveries, want 1", n)
	}
}
