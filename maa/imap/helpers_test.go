package imap

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
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/posthorn/posthorn/auth"
	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/store"
)

const (
	testAlice = "alice@example.test"
	testBob   = "bob@example.test"
	testPass  = "secret password"
)

// testAuth accepts testPass for every account in the store; "throttled@"
// addresses get auth.ErrThrottled.
type testAuth struct{ st store.Store }

func (a testAuth) Authenticate(_ context.Context, _ net.Addr, user, pass string) (string, error) {
	user = strings.ToLower(user)
	if strings.HasPrefix(user, "throttled@") {
		return "", auth.ErrThrottled
	}
	if _, err := a.st.Account(user); err != nil || pass != testPass {
		return "", auth.ErrInvalidCredentials
	}
	return user, nil
}

func (a testAuth) PlainServer(remote net.Addr, done func(string)) sasl.Server {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		acct, err := a.Authenticate(context.Background(), remote, user, pass)
		if err == nil {
			done(acct)
		}
		return err
	})
}

func (a testAuth) LoginServer(remote net.Addr, done func(string)) sasl.Server {
	return a.PlainServer(remote, done) // not exercised by these tests
}

// testEnv is one Server over a fresh store, on loopback listeners.
type testEnv struct {
	t        testing.TB
	st       store.Store
	srv      *Server
	plain    string // STARTTLS
	implicit string // implicit TLS
	tls      *tls.Config
}

func newTestEnv(t testing.TB, configure ...func(*Server)) *testEnv {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "posthorn.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"example.test"} {
		if err := st.AddDomain(d); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []string{testAlice, testBob} {
		if err := st.AddAccount(a, "x"); err != nil {
			t.Fatal(err)
		}
	}
	level := slog.LevelWarn
	if os.Getenv("POSTHORN_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	srv := &Server{
		Store:   st,
		Auth:    testAuth{st},
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
		Metrics: metrics.New(),
		TLS:     selfSigned(t),
	}
	for _, f := range configure {
		f(srv)
	}
	e := &testEnv{t: t, st: st, srv: srv, tls: &tls.Config{InsecureSkipVerify: true}}
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.plain, e.implicit = ln1.Addr().String(), ln2.Addr().String()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); srv.Serve(ln1) }()
	go func() { defer wg.Done(); srv.ServeTLS(ln2) }()
	t.Cleanup(func() {
		srv.Shutdown(context.Background())
		wg.Wait()
		st.Close()
	})
	return e
}

var (
	certOnce sync.Once
	certVal  *tls.Config
)

func selfSigned(t testing.TB) *tls.Config {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.example.test"},
			DNSNames: []string{"mail.example.test"}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(24 * time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		certVal = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	})
	return certVal
}

// login dials with implicit TLS and logs in.
func (e *testEnv) login(user string, opts ...*imapclient.Options) *imapclient.Client {
	e.t.Helper()
	o := &imapclient.Options{}
	if len(opts) > 0 {
		o = opts[0]
	}
	o.TLSConfig = e.tls
	c, err := imapclient.DialTLS(e.implicit, o)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	if err := c.Login(user, testPass).Wait(); err != nil {
		e.t.Fatalf("login %s: %v", user, err)
	}
	return c
}

// deliver puts a message into a mailbox through the store.
func (e *testEnv) deliver(account, mailbox, body string, flags ...string) uint32 {
	e.t.Helper()
	d, err := e.st.Append(context.Background(), account, mailbox, store.NewMessage{
		Body: normalizeCRLF([]byte(body)), Flags: flags})
	if err != nil {
		e.t.Fatal(err)
	}
	return d.UID
}

func testMessage(i int, subject string) string {
	return "From: Sender " + itoa(i) + " <sender" + itoa(i) + "@example.org>\r\n" +
		"To: Alice <alice@example.test>\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: Mon, 02 Jan 2006 15:04:05 -0700\r\n" +
		"Message-ID: <m" + itoa(i) + "@example.org>\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"Body of message " + itoa(i) + ".\r\nSecond line.\r\n"
}

func itoa(i int) string {
	return big.NewInt(int64(i)).String()
}

// imapCode extracts the response code of a command error.
func imapCode(err error) imapv2.ResponseCode {
	var ie *imapv2.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

func readAll(t testing.TB, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dialPlain opens a raw connection to the plaintext listener, closed at
// the end of the test, and reads the greeting.
func (e *testEnv) dialPlain() (net.Conn, *bufio.Reader, string) {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.plain)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	greeting, err := r.ReadString('\n')
	if err != nil {
		e.t.Fatalf("greeting: %v", err)
	}
	return conn, r, greeting
}
