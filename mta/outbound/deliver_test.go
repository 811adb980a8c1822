package outbound_test

import (
	"bufio"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/store"
)

func rcptError(code int, ec smtp.EnhancedCode, msg string) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg}
}

// mx points domain's MX at mx.<domain>, which is 127.0.0.1.
func (e *queueEnv) mx(t testing.TB, domain string) {
	e.DNS.Add(t, domain+". 300 IN MX 10 mx."+domain+".", "mx."+domain+". 300 IN A 127.0.0.1")
}

func TestDeliverPerRecipientResults(t *testing.T) {
	f := startFakeMX(t, func(rcpt string, n int) error {
		switch {
		case strings.HasPrefix(rcpt, "nobody@"):
			return rcptError(550, smtp.EnhancedCode{5, 1, 1}, "no such user")
		case strings.HasPrefix(rcpt, "later@") && n == 1:
			return rcptError(451, smtp.EnhancedCode{4, 3, 0}, "try later")
		}
		return nil
	})
	e := newQueueEnv(t, f.port())
	e.mx(t, "remote.test")
	e.run(t)
	e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test", "nobody@remote.test", "later@remote.test")

	first := f.wait(t)
	if !first.TLS {
		t.Error("delivered without STARTTLS although it was offered")
	}
	if first.Helo != "mail.local.test" {
		t.Errorf("EHLO %q, want mail.local.test", first.Helo)
	}
	if first.From != "alice@local.test" || strings.Join(first.Rcpts, ",") != "bob@remote.test" {
		t.Errorf("first transaction: from %q rcpts %v", first.From, first.Rcpts)
	}
	if !strings.Contains(first.Data, "\r\n.leading dot\r\n") {
		t.Errorf("body altered: %q", first.Data)
	}
	dsn := e.MDA.wait(t)
	for _, want := range []string{
		"Content-Type: multipart/report; report-type=delivery-status",
		"Final-Recipient: rfc822; nobody@remote.test", "Action: failed", "Status: 5.1.1",
		"Diagnostic-Code: smtp; 550 5.1.1 no such user", "Reporting-MTA: dns; mail.local.test",
		"Content-Type: text/rfc822-headers", "Message-ID: <m1@local.test>", "To: <alice@local.test>",
	} {
		if !strings.Contains(dsn, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn)
		}
	}
	if strings.Contains(dsn, "rfc822; later@") || strings.Contains(dsn, "rfc822; bob@") {
		t.Errorf("DSN names a recipient that did not fail:\n%s", dsn)
	}
	second := f.wait(t) // the retry of the deferred recipient
	if strings.Join(second.Rcpts, ",") != "later@remote.test" {
		t.Errorf("retry went to %v, want only later@remote.test", second.Rcpts)
	}
	e.waitEmpty(t)
	if n := e.MDA.count(); n != 1 {
		t.Errorf("%d DSNs, want exactly 1", n)
	}
	m := e.Q.Metrics
	if m.Value(metrics.Delivered, "to", "remote") != 2 || m.Value(metrics.Bounced) != 1 || m.Value(metrics.Deferred) != 1 {
		t.Errorf("metrics delivered=%d bounced=%d deferred=%d", m.Value(metrics.Delivered, "to", "remote"),
			m.Value(metrics.Bounced), m.Value(metrics.Deferred))
	}
}

func TestNullMXBounces(t *testing.T) {
	e := newQueueEnv(t, 1)
	e.DNS.Add(t, "nomail.test. 300 IN MX 0 .")
	e.run(t)
	e.enqueue(t, "alice@local.test", "alice@local.test", "x@nomail.test")
	dsn := e.MDA.wait(t)
	if !strings.Contains(dsn, "Status: 5.1.10") {
		t.Fatalf("null MX DSN:\n%s", dsn)
	}
	e.waitEmpty(t)
}

func TestImplicitMXFallsBackToA(t *testing.T) {
	f := startFakeMX(t, nil)
	e := newQueueEnv(t, f.port())
	e.DNS.Add(t, "bare.test. 300 IN A 127.0.0.1")
	e.run(t)
	e.enqueue(t, "alice@local.test", "alice@local.test", "x@bare.test")
	if got := f.wait(t); got.Rcpts[0] != "x@bare.test" {
		t.Fatalf("got %v", got.Rcpts)
	}
	e.waitEmpty(t)
}

func TestNextMXOnConnectionFailure(t *testing.T) {
	f := startFakeMX(t, nil)
	e := newQueueEnv(t, f.port())
	// The preferred MX is 127.0.0.2, where nothing listens on that port.
	e.DNS.Add(t, "two.test. 300 IN MX 5 dead.two.test.", "dead.two.test. 300 IN A 127.0.0.2",
		"two.test. 300 IN MX 10 mx.two.test.", "mx.two.test. 300 IN A 127.0.0.1")
	e.run(t)
	e.enqueue(t, "alice@local.test", "alice@local.test", "x@two.test")
	f.wait(t)
	e.waitEmpty(t)
}

func TestGiveUpBouncesOnce(t *testing.T) {
	f := startFakeMX(t, func(string, int) error { return rcptError(451, smtp.EnhancedCode{4, 2, 1}, "busy") })
	e := newQueueEnv(t, f.port())
	e.Q.GiveUpAfter = 300 * time.Millisecond
	e.mx(t, "remote.test")
	e.run(t)
	e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
	dsn := e.MDA.wait(t)
	if !strings.Contains(dsn, "Action: failed") || !strings.Contains(dsn, "Status: 5.4.7") || !strings.Contains(dsn, "busy") {
		t.Fatalf("give-up DSN:\n%s", dsn)
	}
	e.waitEmpty(t)
	if n := e.MDA.count(); n != 1 {
		t.Fatalf("%d DSNs, want 1", n)
	}
}

// TestDelayNoticeZeroIsNever: delay_notice = 0 sends no delay DSN (as
// Postfix's delay_warning_time = 0), however long the message waits.
func TestDelayNoticeZeroIsNever(t *testing.T) {
	f := startFakeMX(t, func(_ string, n int) error {
		if n < 3 {
			return rcptError(451, smtp.EnhancedCode{4, 2, 1}, "busy")
		}
		return nil
	})
	e := newQueueEnv(t, f.port())
	e.Q.DelayNotice, e.Q.GiveUpAfter = 0, 24*time.Hour
	e.mx(t, "remote.test")
	e.run(t)
	e.enqueueAt(t, time.Now().Add(-5*time.Hour), "bob@remote.test")
	f.wait(t)
	e.waitEmpty(t)
	if n := e.MDA.count(); n != 0 {
		t.Fatalf("%d delay DSNs with DelayNotice 0", n)
	}
}

// TestGiveUpDSNWording: the give-up DSN says how long in words, does
// not call a temporary error permanent, and gives the remote's last reply
// as the Diagnostic-Code.
func TestGiveUpDSNWording(t *testing.T) {
	f := startFakeMX(t, func(string, int) error { return rcptError(451, smtp.EnhancedCode{4, 2, 1}, "busy") })
	e := newQueueEnv(t, f.port())
	e.Q.GiveUpAfter = 120 * time.Hour
	e.mx(t, "remote.test")
	e.run(t)
	e.enqueueAt(t, time.Now().Add(-121*time.Hour), "bob@remote.test")
	dsn := e.MDA.wait(t)
	if !strings.Contains(dsn, "gave up after 5 days; last error: smtp; 451 4.2.1 busy") || strings.Contains(dsn, "permanent") {
		t.Fatalf("give-up DSN:\n%s", dsn)
	}
	// The status part carries the remote's own reply, typed smtp, and
	// says that time ran out with its Status.
	if !strings.Contains(dsn, "Status: 5.4.7\r\nRemote-MTA: dns; mx.remote.test\r\nDiagnostic-Code: smtp; 451 4.2.1 busy\r\n") {
		t.Fatalf("give-up DSN status part:\n%s", dsn)
	}
	e.waitEmpty(t)
}

func TestDelayNoticeOnce(t *testing.T) {
	f := startFakeMX(t, func(_ string, n int) error {
		if n < 6 {
			return rcptError(451, smtp.EnhancedCode{4, 2, 1}, "busy")
		}
		return nil
	})
	e := newQueueEnv(t, f.port())
	e.Q.DelayNotice = 100 * time.Millisecond
	e.mx(t, "remote.test")
	e.run(t)
	e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
	dsn := e.MDA.wait(t)
	if !strings.Contains(dsn, "Action: delayed") || !strings.Contains(dsn, "Status: 4.2.1") || !strings.Contains(dsn, "Will-Retry-Until:") {
		t.Fatalf("delay DSN:\n%s", dsn)
	}
	f.wait(t)
	e.waitEmpty(t)
	if n := e.MDA.count(); n != 1 {
		t.Fatalf("%d DSNs, want 1 delay notice", n)
	}
}

func TestNoBounceCases(t *testing.T) {
	f := startFakeMX(t, func(string, int) error { return rcptError(550, smtp.EnhancedCode{5, 1, 1}, "no") })
	e := newQueueEnv(t, f.port())
	e.mx(t, "remote.test")
	e.run(t)
	// A null sender, and a remote sender of mail not submitted by a user
	// (forwarded from port 25): neither gets a DSN.
	e.enqueue(t, "", "", "a@remote.test")
	e.enqueue(t, "someone@elsewhere.test", "", "b@remote.test")
	e.waitEmpty(t)
	if n := e.MDA.count(); n != 0 {
		t.Fatalf("%d DSNs delivered", n)
	}
	// A remote sender that did submit (AuthUser) gets one, through the queue.
	e.enqueue(t, "user@remote.test", "alice@local.test", "c@remote.test")
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		n := f.tries["user@remote.test"]
		f.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the DSN to a remote sender was not sent")
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.waitEmpty(t) // the DSN itself bounced (550) and made no DSN
}

func TestRetryAndDrop(t *testing.T) {
	e := newQueueEnv(t, 1) // port 1: connection refused
	e.mx(t, "remote.test")
	e.Q.RetryInitial, e.Q.RetryMax = time.Hour, time.Hour
	e.run(t)
	qe := e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
	waitAttempts := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			got, err := e.St.QueueEntry(qe.ID)
			if err == nil && got.Attempts >= n {
				if !got.NextAttempt.After(time.Now().Add(50 * time.Minute)) {
					t.Fatalf("next attempt %v, want an hour away", got.NextAttempt)
				}
				if got.LastError == "" || got.Recipients[0].LastError == "" {
					t.Fatalf("no last error recorded: %+v", got)
				}
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("attempt %d did not happen", n)
	}
	waitAttempts(1)
	if err := e.Q.Retry(qe.ID); err != nil {
		t.Fatal(err)
	}
	waitAttempts(2)
	if err := e.Q.Drop(qe.ID); err != nil {
		t.Fatal(err)
	}
	e.waitEmpty(t)
	if e.MDA.count() != 0 {
		t.Fatal("drop sent a DSN")
	}
	if err := e.Q.Drop(qe.ID); err == nil {
		t.Fatal("dropping a missing entry succeeded")
	}
}

// startInjector starts a server that offers STARTTLS and then sends a
// reply after its 220 in the same write; it reports every later command.
func startInjector(t *testing.T) (int, <-chan string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	saw := make(chan string, 100)
	go func() {
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go injectorConn(c, n, saw)
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, saw
}

// injectorConn answers STARTTLS with its 220 and an injected reply after
// it, and sends saw every line it reads, as "connection: line".
func injectorConn(c net.Conn, n int, saw chan<- string) {
	defer c.Close()
	br := bufio.NewReader(c)
	c.Write([]byte("220 evil.test ESMTP\r\n"))
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		saw <- strconv.Itoa(n) + ": " + cmd
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			c.Write([]byte("250-evil.test\r\n250 STARTTLS\r\n"))
		case cmd == "STARTTLS":
			c.Write([]byte("220 go ahead\r\n250 injected\r\n"))
		case cmd == "DATA":
			c.Write([]byte("354 go ahead\r\n"))
			for l, err := br.ReadString('\n'); err == nil && l != ".\r\n"; l, err = br.ReadString('\n') {
			}
			c.Write([]byte("250 ok\r\n"))
		default:
			c.Write([]byte("250 ok\r\n"))
		}
	}
}

// TestSTARTTLSInjectionAborts: a server that pipelines a reply after its
// 220 to STARTTLS gets nothing more on that connection (the injected
// reply would be read as if it came over TLS). The host is then tried in
// clear text on a new connection, as after a failed handshake and as
// Postfix does (whoever can inject can strip STARTTLS too).
func TestSTARTTLSInjectionAborts(t *testing.T) {
	port, saw := startInjector(t)
	e := newQueueEnv(t, port)
	e.mx(t, "remote.test")
	e.Q.RetryInitial, e.Q.RetryMax = time.Hour, time.Hour
	e.run(t)
	e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
	e.waitEmpty(t)
	tls := map[string]bool{}
	mail := ""
	for len(saw) > 0 {
		line := <-saw
		conn, cmd, _ := strings.Cut(line, ": ")
		if tls[conn] {
			t.Errorf("connection %s: %q after STARTTLS and its injected reply", conn, cmd)
		}
		tls[conn] = cmd == "STARTTLS"
		if strings.HasPrefix(cmd, "MAIL") {
			mail = conn
		}
	}
	if mail == "" || mail == "1" {
		t.Errorf("message sent on connection %q, want a new one in clear text", mail)
	}
}

// TestUndeliveredDSNIsQueued: a DSN the sender's mailbox cannot take now
// waits in the queue on its own; the recipient that failed is not tried
// again.
func TestUndeliveredDSNIsQueued(t *testing.T) {
	f := startFakeMX(t, func(string, int) error { return rcptError(550, smtp.EnhancedCode{5, 1, 1}, "no") })
	e := newQueueEnv(t, f.port())
	e.MDA.failures = 1
	e.mx(t, "remote.test")
	e.run(t)
	e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
	dsn := e.MDA.wait(t)
	if !strings.Contains(dsn, "rfc822; bob@remote.test") {
		t.Fatalf("DSN:\n%s", dsn)
	}
	e.waitEmpty(t)
	f.mu.Lock()
	tries := f.tries["bob@remote.test"]
	f.mu.Unlock()
	if tries != 1 || e.MDA.count() != 1 {
		t.Fatalf("%d tries, %d DSNs; want 1 try and 1 DSN", tries, e.MDA.count())
	}
}

// TestUndeliverableDSNGivenUp: a DSN that never finds room is dropped
// after GiveUpAfter, making no DSN of its own, and the entry it reports
// on is not held for it: its failed recipient is tried once.
func TestUndeliverableDSNGivenUp(t *testing.T) {
	f := startFakeMX(t, func(string, int) error { return rcptError(550, smtp.EnhancedCode{5, 1, 1}, "no") })
	e := newQueueEnv(t, f.port())
	e.MDA.failures = 1 << 20
	e.Q.GiveUpAfter = 300 * time.Millisecond
	e.mx(t, "remote.test")
	e.run(t)
	e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
	e.waitEmpty(t)
	f.mu.Lock()
	tries := f.tries["bob@remote.test"]
	f.mu.Unlock()
	if tries != 1 || e.MDA.count() != 0 {
		t.Fatalf("%d tries, %d DSNs; want 1 try and none", tries, e.MDA.count())
	}
}

// TestConnectionReuse: messages to one host one after another share a
// connection, each in its own transaction.
func TestConnectionReuse(t *testing.T) {
	f := startFakeMX(t, nil)
	e := newQueueEnv(t, f.port())
	e.mx(t, "remote.test")
	e.run(t)
	for i := range 3 {
		e.enqueue(t, "alice@local.test", "alice@local.test", "bob"+strconv.Itoa(i)+"@remote.test")
		if got := f.wait(t); got.Rcpts[0] != "bob"+strconv.Itoa(i)+"@remote.test" || len(got.Rcpts) != 1 {
			t.Fatalf("message %d went to %v", i, got.Rcpts)
		}
		e.waitEmpty(t)
	}
	f.mu.Lock()
	n := f.tlsSessions
	f.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d TLS connections for 3 messages, want 1", n)
	}
}

// TestTLSFailureFallsBackToPlaintext: opportunistic TLS (RFC 7435): a
// broken STARTTLS does not stop delivery to an MX.
func TestTLSFailureFallsBackToPlaintext(t *testing.T) {
	f := startFakeMXTLS(t, nil, &tls.Config{}) // no certificate: every handshake fails
	e := newQueueEnv(t, f.port())
	e.mx(t, "remote.test")
	e.run(t)
	e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
	if got := f.wait(t); got.TLS {
		t.Fatal("TLS claimed with a server that cannot do it")
	}
	e.waitEmpty(t)
}

// TestLastRetryAtEndOfLifetime: the retry after a temporary failure is
// not scheduled past GiveUpAfter, so the bounce comes when the delay
// notice's Will-Retry-Until said, not up to RetryMax later.
func TestLastRetryAtEndOfLifetime(t *testing.T) {
	f := startFakeMX(t, func(string, int) error { return rcptError(451, smtp.EnhancedCode{4, 2, 1}, "busy") })
	e := newQueueEnv(t, f.port())
	e.Q.GiveUpAfter = time.Hour
	e.Q.RetryInitial, e.Q.RetryMax = time.Hour, time.Hour
	e.mx(t, "remote.test")
	e.run(t)
	created := time.Now().Add(-59 * time.Minute)
	qe := e.enqueueAt(t, created, "bob@remote.test")
	got := e.waitEntry(t, qe.ID, func(qe store.QueueEntry) bool { return qe.Attempts == 1 })
	if end := created.Add(time.Hour); got.NextAttempt.After(end.Add(time.Second)) {
		t.Fatalf("next attempt at %v, after the end of the lifetime %v", got.NextAttempt, end)
	}
}

// TestNextMXWhenAllDeferred: a preferred MX that answers 451 to the end
// of the data (its spool is full) decided nothing; the next MX takes the
// message in the same attempt, as Postfix goes on to a backup MX.
func TestNextMXWhenAllDeferred(t *testing.T) {
	f := startFakeMX(t, nil)
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(f.port())))
	if err != nil {
		t.Skip("cannot listen on 127.0.0.2:", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				c.Write([]byte("220 full.two.test ESMTP\r\n"))
				inData := false
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					cmd := strings.ToUpper(strings.TrimSpace(line))
					switch {
					case inData && cmd == ".":
						inData = false
						c.Write([]byte("451 4.3.1 spool full\r\n"))
					case inData:
					case strings.HasPrefix(cmd, "EHLO"):
						c.Write([]byte("250 full.two.test\r\n"))
					case cmd == "DATA":
						inData = true
						c.Write([]byte("354 go\r\n"))
					case cmd == "QUIT":
						c.Write([]byte("221 bye\r\n"))
						return
					default:
						c.Write([]byte("250 ok\r\n"))
					}
				}
			}()
		}
	}()
	e := newQueueEnv(t, f.port())
	e.Q.RetryInitial, e.Q.RetryMax = time.Hour, time.Hour // no second attempt in time
	e.DNS.Add(t, "two.test. 300 IN MX 5 full.two.test.", "full.two.test. 300 IN A 127.0.0.2",
		"two.test. 300 IN MX 10 mx.two.test.", "mx.two.test. 300 IN A 127.0.0.1")
	e.run(t)
	e.enqueue(t, "alice@local.test", "alice@local.test", "x@two.test")
	select {
	case <-f.ch:
	case <-time.After(3 * time.Second):
		es, _ := e.St.QueueEntries()
		t.Fatalf("the backup MX did not get the message: %+v", es)
	}
	e.waitEmpty(t)
}
