package outbound_test

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// authSession is a fake relay's session that wants AUTH PLAIN first.
type authSession struct {
	fakeSession
	user string
}

func (s *authSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *authSession) Auth(string) (sasl.Server, error) {
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

func TestSmarthostWithAuthOverTLS(t *testing.T) {
	f := &fakeMX{tries: map[string]int{}, ch: make(chan received, 10)}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &authSession{fakeSession: fakeSession{f: f, r: received{TLS: isTLS, Helo: c.Hostname()}}}, nil
	}))
	srv.Domain = "relay.test"
	srv.TLSConfig = selfSigned(t, "relay.test")
	srv.ErrorLog = log4test{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	e := newQueueEnv(t, 1) // MX port 1 must not be used
	e.Q.Smarthost = ln.Addr().String()
	e.Q.SmarthostUser, e.Q.SmarthostPassword = "relayuser", "relaypass"
	e.run(t)
	// No DNS records at all: a smarthost needs none.
	e.enqueue(t, "alice@local.test", "alice@local.test", "x@one.test", "y@two.test")
	got := []received{f.wait(t), f.wait(t)}
	for _, r := range got {
		if !r.TLS {
			t.Error("relayed without TLS")
		}
	}
	e.waitEmpty(t)
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
