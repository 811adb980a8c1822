package pop3

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/posthorn/posthorn/auth"
	"github.com/posthorn/posthorn/store"
)

// fakeStore is an in-memory store with only what POP3 uses: one INBOX per
// account. Other methods panic (the embedded nil interface).
type fakeStore struct {
	store.Store

	mu          sync.Mutex
	inbox       map[string][]store.Message // account -> messages
	bodies      map[uint64][]byte          // blob id -> body
	nextUID     uint32
	uidValidity uint32
	subs        map[chan store.Event]string
	expungeErr  error
	mailboxErr  error // Mailbox fails (a resync)
	expunges    int   // calls to Expunge
	panicOn     string
}

func newFakeStore() *fakeStore {
	return &fakeStore{
		inbox:       map[string][]store.Message{},
		bodies:      map[uint64][]byte{},
		nextUID:     1,
		uidValidity: 1234,
		subs:        map[chan store.Event]string{},
	}
}

// add appends a message to an account's INBOX and returns its UID.
func (f *fakeStore) add(account string, body string) uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	uid := f.nextUID
	f.nextUID++
	id := uint64(uid) + 1000
	f.bodies[id] = []byte(body)
	f.inbox[account] = append(f.inbox[account], store.Message{UID: uid, Size: int64(len(body)), BlobID: id})
	return uid
}

func (f *fakeStore) Mailbox(account, name string) (store.Mailbox, error) {
	if account == f.panicOn {
		panic("fake store: panic on request")
	}
	if name != "INBOX" {
		return store.Mailbox{}, store.ErrNoSuchMailbox
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mailboxErr != nil {
		return store.Mailbox{}, f.mailboxErr
	}
	return store.Mailbox{Name: name, UIDValidity: f.uidValidity}, nil
}

func (f *fakeStore) Messages(account, mailbox string) ([]store.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.inbox[account]), nil
}

func (f *fakeStore) OpenMessage(m store.Message) (store.Blob, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.bodies[m.BlobID]
	if !ok {
		return nil, store.ErrNotFound
	}
	return &fakeBlob{bytes.NewReader(append(slices.Clone(m.Prefix), b...))}, nil
}

type fakeBlob struct{ *bytes.Reader }

func (b *fakeBlob) Close() error { return nil }

func (f *fakeStore) Expunge(account, mailbox string, uids []uint32) ([]uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expunges++
	if f.expungeErr != nil {
		return nil, f.expungeErr
	}
	var removed []uint32
	f.inbox[account] = slices.DeleteFunc(f.inbox[account], func(m store.Message) bool {
		if slices.Contains(uids, m.UID) {
			removed = append(removed, m.UID)
			return true
		}
		return false
	})
	f.publish(store.Event{Kind: store.EventExpunge, Account: account, Mailbox: mailbox, UIDs: removed})
	return removed, nil
}

func (f *fakeStore) StoreFlags(account, mailbox string, uids []uint32, op store.FlagOp, flags []string) ([]store.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	msgs := f.inbox[account]
	for i := range msgs {
		if slices.Contains(uids, msgs[i].UID) {
			msgs[i].Flags = append(slices.Clone(msgs[i].Flags), flags...)
		}
	}
	return nil, nil
}

func (f *fakeStore) Subscribe(account string) (<-chan store.Event, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan store.Event, 4)
	f.subs[ch] = account
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.subs[ch]; ok {
			delete(f.subs, ch)
			close(ch)
		}
	}
}

// dropSubscribers closes every subscription, as the store does with a
// subscriber that fell behind: the next sync resyncs.
func (f *fakeStore) dropSubscribers() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		delete(f.subs, ch)
		close(ch)
	}
}

// publish sends ev to subscribers; a full channel is closed, as the real
// store does with a subscriber that fell behind. f.mu is held.
func (f *fakeStore) publish(ev store.Event) {
	for ch, acct := range f.subs {
		if acct != "" && acct != ev.Account {
			continue
		}
		select {
		case ch <- ev:
		default:
			delete(f.subs, ch)
			close(ch)
		}
	}
}

// fakeAuth accepts the passwords in users; "throttled@example.test" is
// always throttled.
type fakeAuth struct {
	users map[string]string
}

func (a *fakeAuth) Authenticate(ctx context.Context, remote net.Addr, username, password string) (string, error) {
	if username == "throttled@example.test" {
		return "", auth.ErrThrottled
	}
	if username == "broken@example.test" {
		return "", errors.New("disk on fire")
	}
	if p, ok := a.users[username]; !ok || p != password {
		return "", auth.ErrInvalidCredentials
	}
	return username, nil
}

func (a *fakeAuth) PlainServer(remote net.Addr, done func(string)) sasl.Server {
	p := &fakePlain{}
	p.inner = sasl.NewPlainServer(func(identity, username, password string) error {
		p.checked = true
		acct, err := a.Authenticate(context.Background(), remote, username, password)
		if err == nil {
			done(acct)
		}
		return err
	})
	return p
}

// fakePlain turns go-sasl's syntax errors into auth.ErrMalformed, as the
// real auth package reports them.
type fakePlain struct {
	inner   sasl.Server
	checked bool
}

func (p *fakePlain) Next(resp []byte) ([]byte, bool, error) {
	ch, done, err := p.inner.Next(resp)
	if err != nil && !p.checked {
		err = auth.ErrMalformed
	}
	return ch, done, err
}

// fakeLogin is the LOGIN mechanism: "Username:", "Password:".
type fakeLogin struct {
	a        *fakeAuth
	done     func(string)
	step     int
	username string
}

func (a *fakeAuth) LoginServer(remote net.Addr, done func(string)) sasl.Server {
	return &fakeLogin{a: a, done: done}
}

func (l *fakeLogin) Next(resp []byte) ([]byte, bool, error) {
	if l.step == 0 && resp == nil {
		l.step = 1
		return []byte("Username:"), false, nil
	}
	if l.step <= 1 {
		l.username, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	}
	acct, err := l.a.Authenticate(context.Background(), nil, l.username, string(resp))
	if err != nil {
		return nil, true, err
	}
	l.done(acct)
	return nil, true, nil
}

const (
	alice    = "alice@example.test"
	alicePwd = "secret pass"
)

// testCert makes a self-signed certificate for the server side.
func testCert(t testing.TB) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mail.example.test"},
		DNSNames:     []string{"mail.example.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// newTestServer returns a Server over a fake store with alice and
// TLS, not yet serving.
func newTestServer(t testing.TB) (*Server, *fakeStore) {
	st := newFakeStore()
	return &Server{
		Hostname:  "mail.example.test",
		Store:     st,
		Auth:      &fakeAuth{users: map[string]string{alice: alicePwd, "bob@example.test": "bobpw"}},
		TLSConfig: testCert(t),
	}, st
}

// serve starts srv on a loopback listener and returns its address.
func serve(t testing.TB, srv *Server, implicitTLS bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if implicitTLS {
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return ln.Addr().String()
}
