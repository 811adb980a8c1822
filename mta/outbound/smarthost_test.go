package outbound_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/store"
)

// authSession is a fake relay's session that wants AUTH PLAIN first.
type authSession struct {
	fakeSession
	user  string
	auths *atomic.Int32
}

func (s *authSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *authSession) Auth(string) (sasl.Server, error) {
	s.auths.Add(1)
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "relayuser" || pass != "relaypass" {
			return errors.New("bad credentials")
		}
		s.user = user
		return nil
	}), nil
}

func (s *authSession) Mail(from string, o *smtp.MailOptions) error {
	if s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "auth first"}
	}
	return s.fakeSession.Mail(from, o)
}

// relay is a fake smarthost that wants AUTH PLAIN; auths counts the
// AUTH commands it got.
type relay struct {
	*fakeMX
	port  int
	auths atomic.Int32
}

func startRelay(t *testing.T, conf *tls.Config) *relay {
	r := &relay{fakeMX: &fakeMX{tries: map[string]int{}, ch: make(chan received, 10)}}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &authSession{fakeSession: fakeSession{f: r.fakeMX, r: received{TLS: isTLS, Helo: c.Hostname()}}, auths: &r.auths}, nil
	}))
	srv.Domain = "relay.test"
	srv.TLSConfig = conf
	srv.ErrorLog = log4test{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.port = ln.Addr().(*net.TCPAddr).Port
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

// smarthostEnv is a queue that sends everything to relay.test:port.
func smarthostEnv(t *testing.T, port int, user string) *queueEnv {
	e := newQueueEnv(t, 1) // MX port 1 must not be used
	e.DNS.Add(t, "relay.test. 300 IN A 127.0.0.1")
	e.Q.Smarthost = "relay.test:" + strconv.Itoa(port)
	e.Q.SmarthostUser, e.Q.SmarthostPassword = user, "relaypass"
	e.Q.RetryInitial, e.Q.RetryMax = time.Hour, time.Hour
	return e
}

func TestSmarthostWithAuthOverTLS(t *testing.T) {
	ca := harness.NewCA(t)
	r := startRelay(t, issued(ca, "relay.test"))
	e := smarthostEnv(t, r.port, "relayuser")
	e.Q.TLS = &tls.Config{RootCAs: ca.Pool}
	e.run(t)
	// No DNS records for the recipients' domains: a smarthost needs none.
	e.enqueue(t, "alice@local.test", "alice@local.test", "x@one.test", "y@two.test")
	got := []received{r.wait(t), r.wait(t)}
	for _, m := range got {
		if !m.TLS {
			t.Error("relayed without TLS")
		}
	}
	e.waitEmpty(t)
}

// TestSmarthostAuthNeedsVerifiedCertificate: the AUTH password goes only
// over TLS with a certificate that verifies; otherwise the mail waits
// with an error that says why. Without credentials, TLS stays
// opportunistic.
func TestSmarthostAuthNeedsVerifiedCertificate(t *testing.T) {
	r := startRelay(t, selfSigned(t, "mx.remote.test"))
	e := smarthostEnv(t, r.port, "relayuser")
	e.run(t)
	qe := e.enqueue(t, "alice@local.test", "alice@local.test", "x@one.test")
	got := e.waitEntry(t, qe.ID, func(g store.QueueEntry) bool { return g.Attempts > 0 })
	if le := got.Recipients[0].LastError; got.Recipients[0].Done || !strings.Contains(le, "AUTH password") || !strings.Contains(le, "certificate") {
		t.Fatalf("recipient %+v, want deferred for the certificate", got.Recipients[0])
	}
	if n := r.auths.Load(); n != 0 {
		t.Fatalf("%d AUTH commands over an unverified certificate", n)
	}

	open := startFakeMX(t, nil) // the same self-signed certificate, no AUTH
	e2 := smarthostEnv(t, open.port(), "")
	e2.run(t)
	e2.enqueue(t, "alice@local.test", "alice@local.test", "x@one.test")
	if m := open.wait(t); !m.TLS {
		t.Error("relayed without TLS")
	}
	e2.waitEmpty(t)
}

// TestCrashAfterRemoteAcceptDuplicatesNotLoses stops the queue while the
// remote server is answering DATA: the entry must still be there, and a
// new queue delivers it again (a duplicate, never a loss).
func TestCrashAfterRemoteAcceptDuplicatesNotLoses(t *testing.T) {
	release := make(chan struct{})
	inData := make(chan struct{}, 10)
	f := startFakeMX(t, nil)
	e := newQueueEnv(t, f.port())
	e.mx(t, "remote.test")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	f.mu.Lock()
	f.beforeData = func() { inData <- struct{}{}; <-release }
	f.mu.Unlock()
	go func() { e.Q.Run(ctx); close(done) }()
	qe := e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
	<-inData
	cancel() // the "crash": the attempt's outcome will not be recorded
	close(release)
	f.wait(t)
	<-done
	left, err := e.St.QueueEntry(qe.ID)
	if err != nil {
		t.Fatalf("entry gone after an unrecorded attempt: %v", err)
	}
	if left.Recipients[0].Done {
		t.Fatal("recipient marked done without our commit")
	}
	f.mu.Lock()
	f.beforeData = nil
	f.mu.Unlock()
	e.run(t)
	f.wait(t)
	e.waitEmpty(t)
}
