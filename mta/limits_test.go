package mta

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
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/posthorn/posthorn/internal/smtptest"
	"github.com/posthorn/posthorn/store"
)

func TestSizeLimits(t *testing.T) {
	_, st, addr := startTestServer(t, func(s *Server) { s.MaxMessageBytes = 2000 })
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<bob@remote.example> SIZE=5000", "552 5.3.4")
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	d.Cmd("DATA", "354")
	d.Send("Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 98)+"\r\n", 30) + ".\r\n")
	d.Expect("552 5.3.4")
	// The session goes on in step.
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	d.Cmd("DATA", "354")
	d.Send("Subject: small\r\n\r\nok\r\n.\r\n")
	d.Expect("250")
	if st.count() != 1 {
		t.Errorf("stored %d, want 1", st.count())
	}
}

func TestRecipientLimits(t *testing.T) {
	_, _, addr := startTestServer(t, func(s *Server) { s.MaxRecipients = 2; s.MaxBadRecipients = 3 })
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	d.Cmd("RCPT TO:<alice+a@example.test>", "250")
	d.Cmd("RCPT TO:<alice+b@example.test>", "452 4.5.3")

	d = Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<nobody@example.test>", "550 5.1.1")
	d.Cmd("RCPT TO:<bob@elsewhere.test>", "550 5.7.1")
	d.Cmd("RCPT TO:<nobody2@example.test>", "421 4.7.0")
	if !d.Closed() {
		t.Error("session not cut after too many unknown recipients")
	}
}

func TestCommandChecks(t *testing.T) {
	_, _, addr := startTestServer(t, func(s *Server) { s.MaxLineBytes = 600 })
	d := Dial(t, addr)
	d.Cmd("MAIL FROM:<bob@remote.example>", "503 5.5.1") // before EHLO
	d.Cmd("EHLO bad/name", "501 5.5.2")
	d.Cmd("HELO [999.1.1.1]", "501")
	d.Cmd("EHLO [192.0.2.1]", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "503 5.5.1") // before MAIL
	d.Cmd("DATA", "503 5.5.1")
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("DATA", "503 5.5.1") // no recipient
	// No control character in an address (RFC 5321 section 4.1.2): a
	// bare CR went into the stored Return-Path.
	d.Cmd("RCPT TO:<alice@example.test\rX-Spam-Flag:NO>", "501 5.5.2")
	d.Cmd("RCPT TO:<ali\x00ce@example.test>", "501 5.5.2")
	d.Cmd("RSET", "250")
	d.Cmd("MAIL FROM:<bob@remote.example\rX-Spam-Flag:NO>", "501 5.5.2")
	d.Cmd("MAIL FROM:<bob\x00@remote.example>", "501 5.5.2")
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<alice@example.test> "+strings.Repeat("X", 700), "500")
	if !d.Closed() {
		t.Error("connection open after an over-long line")
	}
}

func TestQuotaAndAliases(t *testing.T) {
	_, st, addr := startTestServer(t, nil)
	st.accounts["full@example.test"] = store.Account{Address: "full@example.test", QuotaBytes: 100000, UsedBytes: 100000}
	st.accounts["bob@example.test"] = store.Account{Address: "bob@example.test", QuotaBytes: 10000, UsedBytes: 5000}
	st.aliases["team@example.test"] = []string{"alice@example.test", "bob@example.test"}
	st.aliases["loop1@example.test"] = []string{"loop2@example.test"}
	st.aliases["loop2@example.test"] = []string{"loop1@example.test"}
	st.aliases["fwd@example.test"] = []string{"someone@remote.example"}
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<x@remote.example>", "250")
	d.Cmd("RCPT TO:<full@example.test>", "452 4.2.2")
	d.Cmd("RCPT TO:<loop1@example.test>", "550 5.4.6")
	d.Cmd("RCPT TO:<fwd@example.test>", "451 4.4.3") // no queue wired
	d.Cmd("RSET", "250")
	d.Cmd("MAIL FROM:<x@remote.example> SIZE=6000", "250")
	d.Cmd("RCPT TO:<bob@example.test>", "452 4.2.2") // SIZE over what is left
	d.Cmd("RSET", "250")
	// Larger than the whole quota: no clean-up would make room, and a
	// temporary reply would have the sender retry for days.
	d.Cmd("MAIL FROM:<x@remote.example> SIZE=20000", "250")
	d.Cmd("RCPT TO:<bob@example.test>", "552 5.2.3")
	d.Cmd("RSET", "250")
	d.Cmd("MAIL FROM:<x@remote.example>", "250")
	d.Cmd("RCPT TO:<team@example.test>", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	d.Cmd("DATA", "354")
	d.Send("Subject: team\r\n\r\nhello\r\n.\r\n")
	d.Expect("250")
	if st.count() != 1 || len(st.delivered[0]) != 2 {
		t.Fatalf("want one body for two accounts, got %v", st.delivered)
	}
}

func TestConnectionCaps(t *testing.T) {
	_, _, addr := startTestServer(t, func(s *Server) { s.MaxConnectionsPerIP = 2 })
	Dial(t, addr)
	d2 := Dial(t, addr)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d3 := smtptest.New(t, c)
	if got := d3.Reply(); !strings.HasPrefix(got, "421 4.7.0") {
		t.Errorf("third connection got %q, want 421 4.7.0", got)
	}
	d2.Cmd("QUIT", "221")
	d2.Closed()
	// The slot is free again once a connection ends.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		l := (smtptest.New(t, c)).Reply()
		c.Close()
		if strings.HasPrefix(l, "220") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not released: %q", l)
		}
	}
}

func TestDataTimeout(t *testing.T) {
	_, st, addr := startTestServer(t, func(s *Server) {
		s.DataTimeout = 300 * time.Millisecond
		s.CommandTimeout = 300 * time.Millisecond
	})
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	d.Cmd("DATA", "354")
	d.Send("Subject: slow\r\n\r\nand then nothing")
	start := time.Now()
	if got := d.Reply(); !strings.HasPrefix(got, "421 4.4.2") {
		t.Errorf("got %q, want 421 4.4.2", got)
	}
	if !d.Closed() || time.Since(start) > 5*time.Second {
		t.Errorf("not closed in time")
	}
	if st.count() != 0 {
		t.Errorf("stored %d", st.count())
	}
}

// TestSTARTTLSInjection: commands pipelined after STARTTLS in the clear
// must not run inside the TLS session (CVE-2011-0411).
func TestSTARTTLSInjection(t *testing.T) {
	_, _, addr := startTestServer(t, func(s *Server) { s.TLS = selfSigned(t) })
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Send("STARTTLS\r\nNOOP\r\n")
	d.Expect("220")
	tc := tls.Client(d.Conn, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	td := smtptest.New(t, tc)
	td.Send("EHLO client.example\r\n")
	first, _ := td.R.ReadString('\n')
	if !strings.HasPrefix(first, "250-Hello client.example") {
		t.Errorf("first reply inside TLS %q: the injected NOOP ran", first)
	}
}

func selfSigned(t *testing.T) *tls.Config {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.example.test"},
		DNSNames: []string{"mail.example.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func TestShutdownClosesIdleSessions(t *testing.T) {
	s, _, addr := startTestServer(t, nil)
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// RFC 5321 section 3.8: the idle client is told before the close.
	if got := d.Reply(); !strings.HasPrefix(got, "421 4.3.2") {
		t.Errorf("idle session at shutdown got %q, want 421 4.3.2", got)
	}
	if time.Since(start) > 2*time.Second || !d.Closed() {
		t.Errorf("idle session held the shutdown or stayed open")
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Errorf("still accepting after shutdown")
	}
}

// syncBuffer is a log destination shared by the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestInternalErrorAndMailLog: an internal error is a temporary 451 4.3.0
// whose id is in the log, never the error text; every accepted or refused
// message has one log line with its envelope and verdicts, never its body.
func TestInternalErrorAndMailLog(t *testing.T) {
	var logs syncBuffer
	_, st, addr := startTestServer(t, func(s *Server) {
		s.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	st.failDeliver = errors.New("disk on fire at /var/secret")
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	d.Cmd("DATA", "354")
	d.Send("Subject: secret body\r\n\r\nBODYTEXT\r\n.\r\n")
	got := d.Expect("451 4.3.0")
	if strings.Contains(got, "fire") {
		t.Errorf("internal error text sent to the client: %q", got)
	}
	id := got[strings.LastIndex(got, "id ")+3 : len(got)-1]
	if !strings.Contains(logs.String(), "error_id="+id) || !strings.Contains(logs.String(), "disk on fire") {
		t.Errorf("error id %q not logged with the error:\n%s", id, logs.String())
	}

	st.mu.Lock()
	st.failDeliver = nil
	st.mu.Unlock()
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	d.Cmd("DATA", "354")
	d.Send("Subject: secret body\r\n\r\nBODYTEXT\r\n.\r\n")
	d.Expect("250")
	var accepted string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `msg="message accepted"`) {
			accepted = l
		}
	}
	for _, w := range []string{"remote=127.0.0.1", "from=bob@remote.example", "rcpts=[alice@example.test]", "size=", "spf=none", "dkim=none", "dmarc=none", " id="} {
		if !strings.Contains(accepted, w) {
			t.Errorf("mail log line lacks %q: %s", w, accepted)
		}
	}
	if strings.Contains(logs.String(), "BODYTEXT") {
		t.Errorf("message body in the log")
	}
}

func TestSequenceConnRewrite(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"502 5.5.1 Missing RCPT TO command.\r\n", "503 5.5.1 Missing RCPT TO command.\r\n"},
		{"250 OK\r\n502 5.5.1 Please introduce yourself first.\r\n", "250 OK\r\n503 5.5.1 Please introduce yourself first.\r\n"},
		{"502 5.5.1 EXPN command not implemented\r\n", "502 5.5.1 EXPN command not implemented\r\n"},
		{"220 2.0.0 Ready to start TLS\r\n", "220 2.0.0 Ready to start TLS\r\n"},
	} {
		c := newSequenceConn(nil)
		p := []byte(tc.in)
		c.rewrite(p)
		if string(p) != tc.want {
			t.Errorf("rewrite(%q) = %q, want %q", tc.in, p, tc.want)
		}
	}
	// After STARTTLS nothing is touched: the bytes are TLS records.
	c := newSequenceConn(nil)
	c.rewrite([]byte("220 2.0.0 Ready to start TLS\r\n"))
	if !c.tls {
		t.Fatal("STARTTLS reply not noticed")
	}
}

// TestDataLineLimit: the line limit is for commands. Inside DATA, lines
// of any length go through, bounded only by the message size, as Postfix
// takes them; the session goes on with one reply. After a message the
// limit is back on for the commands that follow, counting the part of a
// command pipelined after the final dot.
func TestDataLineLimit(t *testing.T) {
	_, st, addr := startTestServer(t, func(s *Server) { s.MaxLineBytes = 600 })
	line := func(n int) string { return strings.Repeat("x", n-2) + "\r\n" }
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	d.Cmd("DATA", "354")
	long := line(600) + line(5000) + line(200_000)
	d.Send("Subject: long lines\r\n\r\n" + long + ".\r\n")
	d.Expect("250")
	if st.count() != 1 || !strings.HasSuffix(string(st.bodies[0]), long) {
		t.Fatalf("stored %d messages; the long lines not kept as sent", st.count())
	}
	d.Cmd("MAIL FROM:<bob@remote.example>", "250") // one reply: the session goes on
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	d.Cmd("DATA", "354")
	// The next command is pipelined after the dot, its start in the
	// same write: the part already buffered counts towards its length.
	d.Send("Subject: short\r\n\r\n" + line(600) + ".\r\nMAIL FROM:<bob@remote.example> " + strings.Repeat("Y", 300))
	d.Expect("250")
	if st.count() != 2 {
		t.Fatalf("stored %d, want 2", st.count())
	}
	d.Send(strings.Repeat("Y", 300) + "\r\n")
	d.Expect("500")
	if rest := closedAfter500(d); rest != "" {
		t.Errorf("after an over-long command that followed DATA: %q", rest)
	}
}

// closedAfter500 reads until the server closes the connection and returns
// any reply line that is not a 500; "" when there is none.
func closedAfter500(d *Dialog) string {
	d.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		l, err := d.R.ReadString('\n')
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return "connection still open"
			}
			return ""
		}
		if !strings.HasPrefix(l, "500") {
			return l
		}
	}
}

// TestLineLimiterLayout: the reflection into go-smtp finds its line
// limiter (if an upgrade moves it, this fails instead of the limit being
// checked twice).
func TestLineLimiterLayout(t *testing.T) {
	found := make(chan bool, 1)
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		limit, cur, ok := lineLimiter(c)
		found <- ok && *limit == 777 && *cur >= 0
		return nil, errors.New("probe only")
	}))
	srv.MaxLineLength = 777
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	d := Dial(t, ln.Addr().String())
	d.Send("EHLO client.example\r\n")
	select {
	case ok := <-found:
		if !ok {
			t.Fatal("lineLimiter did not find go-smtp's LineLimit of 777")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no session")
	}
}

// TestDataBudget: the bodies being received at once share
// MaxDataInFlight. A transfer that finds no room left is read to its end
// without being kept and gets 452 4.3.1; the others go on, the budget
// comes back when a transfer ends, and a later message fits again. The
// same holds for BDAT.
func TestDataBudget(t *testing.T) {
	s, st, addr := startTestServer(t, func(s *Server) { s.MaxMessageBytes = 4 << 20; s.MaxDataInFlight = 1 << 20 })
	body := func(kib int) string { return strings.Repeat(strings.Repeat("y", 1022)+"\r\n", kib) }
	begin := func() *Dialog {
		d := Dial(t, addr)
		d.Cmd("EHLO client.example", "250")
		d.Cmd("MAIL FROM:<bob@remote.example>", "250")
		d.Cmd("RCPT TO:<alice@example.test>", "250")
		d.Cmd("DATA", "354")
		return d
	}
	a := begin()
	a.Send("Subject: a\r\n\r\n" + body(700))
	// Wait until the server has taken a's 700 KiB: it then holds them.
	for deadline := time.Now().Add(10 * time.Second); s.budget.Used() < 700<<10; {
		if time.Now().After(deadline) {
			t.Fatalf("the server holds %d bytes of a's body, want 700 KiB", s.budget.Used())
		}
		time.Sleep(time.Millisecond)
	}
	b := begin()
	b.Send("Subject: b\r\n\r\n" + body(600) + ".\r\n")
	b.Expect("452 4.3.1")
	a.Send(".\r\n")
	a.Expect("250")
	b.Cmd("MAIL FROM:<bob@remote.example>", "250") // b is still in step
	if used := s.budget.Used(); used != 0 {
		t.Fatalf("%d bytes of budget still held after both transfers", used)
	}
	c := begin()
	c.Send("Subject: c\r\n\r\n" + body(600) + ".\r\n")
	c.Expect("250")

	// The buffer a client's SIZE= makes us allocate counts from the
	// start: a whole MiB here, more than the budget, so even a small body
	// is refused.
	x := Dial(t, addr)
	x.Cmd("EHLO client.example", "250")
	x.Cmd("MAIL FROM:<bob@remote.example> SIZE=3000000", "250")
	x.Cmd("RCPT TO:<alice@example.test>", "250")
	x.Cmd("DATA", "354")
	x.Send("Subject: x\r\n\r\nsmall\r\n.\r\n")
	x.Expect("452 4.3.1")

	// BDAT: over the budget, then within it.
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	big := "Subject: d\r\n\r\n" + body(1100)
	d.Send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(big), big))
	d.Expect("452 4.3.1")
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	small := "Subject: e\r\n\r\n" + body(100)
	d.Send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(small), small))
	d.Expect("250")
	if n := st.count(); n != 3 {
		t.Fatalf("stored %d messages, want 3 (a, c and e)", n)
	}
	if used := s.budget.Used(); used != 0 {
		t.Fatalf("%d bytes of budget still held", used)
	}
}

// TestNestedMail: a MAIL inside a transaction is refused 503 5.5.1, as
// Postfix does, and the transaction goes on with its sender and the
// recipients already accepted. go-smtp lets it through: taken as a new
// transaction, it dropped those recipients, and the DATA that followed
// was acknowledged 250 and delivered to nobody. After RSET, and after a
// transaction ends, MAIL starts a new one.
func TestNestedMail(t *testing.T) {
	_, st, addr := startTestServer(t, nil)
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<first@remote.example>", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	d.Cmd("MAIL FROM:<second@remote.example>", "503 5.5.1")
	d.Cmd("DATA", "354")
	d.Send("Subject: nested\r\n\r\nbody\r\n.\r\n")
	d.Expect("250")
	st.mu.Lock()
	n, delivered := len(st.bodies), st.delivered
	st.mu.Unlock()
	if n != 1 || len(delivered[0]) != 1 || delivered[0][0].Account != "alice@example.test" {
		t.Fatalf("after a refused nested MAIL: %d messages, to %v", n, delivered)
	}
	d.Cmd("MAIL FROM:<third@remote.example>", "250")
	d.Cmd("RSET", "250")
	d.Cmd("MAIL FROM:<fourth@remote.example>", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	d.Send("BDAT 23 LAST\r\nSubject: bdat\r\n\r\nbody\r\n")
	d.Expect("250")
	d.Cmd("MAIL FROM:<fifth@remote.example>", "250")
}

// TestAddressCharset: a non-ASCII address needs SMTPUTF8 on its MAIL
// (553 5.6.7, RFC 6531 section 3.4), and bytes that are not UTF-8 are
// refused whatever was declared, in EHLO too. They were taken and written
// raw into Return-Path and Received.
func TestAddressCharset(t *testing.T) {
	_, _, addr := startTestServer(t, nil)
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<jörg@remote.example>", "553 5.6.7")
	d.Cmd("MAIL FROM:<j\xffrg@remote.example> SMTPUTF8", "501 5.5.2")
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<jörg@example.test>", "553 5.6.7")
	d.Cmd("RSET", "250")
	d.Cmd("MAIL FROM:<jörg@remote.example> SMTPUTF8", "250")
	d.Cmd("RCPT TO:<j\xffrg@example.test>", "501 5.5.2")
	d.Cmd("RCPT TO:<alice@example.test>", "250")

	d = Dial(t, addr)
	d.Cmd("EHLO client\xff.example", "501 5.5.2")
}

// TestBDATResetRace: a BDAT transfer ended by RSET, then a new one on the
// same connection, pipelined. go-smtp runs Data in a goroutine that, once
// the first transfer is cut, sends its result on whichever channel is the
// connection's by then: the second transfer could take the first's error
// (451) while its own body was still being delivered, to the recipients
// RSET had cleared. Each second transfer must get 250 and be stored once,
// for its recipient.
func TestBDATResetRace(t *testing.T) {
	_, st, addr := startTestServer(t, nil)
	for i := range 40 {
		d := Dial(t, addr)
		d.Cmd("EHLO client.example", "250")
		body := fmt.Sprintf("Subject: second %d\r\n\r\nbody\r\n", i)
		d.Send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.test>\r\nBDAT 23\r\nSubject: first\r\n\r\nabc\r\n" +
			"RSET\r\nMAIL FROM:<b@remote.example>\r\nRCPT TO:<alice@example.test>\r\n" +
			fmt.Sprintf("BDAT %d LAST\r\n%s", len(body), body))
		for _, want := range []string{"250", "250", "250", "250", "250", "250", "250"} {
			d.Expect(want)
		}
		d.Cmd("QUIT", "221")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.bodies) != 40 {
		t.Fatalf("%d messages stored, want 40", len(st.bodies))
	}
	for i, to := range st.delivered {
		if len(to) != 1 || to[0].Account != "alice@example.test" {
			t.Fatalf("message %d delivered to %v", i, to)
		}
	}
}

// TestBDATStallEndsSession: a BDAT chunk that stops coming ends the
// session at the timeout. go-smtp answered 554 (with the socket
// addresses in it) and read the rest of the chunk's octets as commands:
// a second message, from anyone, was accepted out of them.
func TestBDATStallEndsSession(t *testing.T) {
	_, st, addr := startTestServer(t, func(s *Server) { s.CommandTimeout = 300 * time.Millisecond })
	body1 := "From: a@remote.example\r\nSubject: part1\r\n\r\nhello\r\n"
	m2 := "From: ceo@bank.example\r\nSubject: smuggled\r\n\r\nsmuggled\r\n"
	rest := fmt.Sprintf("MAIL FROM:<ceo@bank.example>\r\nRCPT TO:<alice@example.test>\r\nBDAT %d LAST\r\n%s", len(m2), m2)
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<a@remote.example>", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	d.Send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(body1)+len(rest), body1))
	time.Sleep(600 * time.Millisecond) // the stall
	d.Send(rest)
	var replies []string
	for {
		l, err := d.R.ReadString('\n')
		if err != nil {
			break
		}
		replies = append(replies, l)
	}
	for _, l := range replies {
		if strings.HasPrefix(l, "250") || strings.Contains(l, "127.0.0.1") {
			t.Errorf("reply after the stall: %q", l)
		}
	}
	if len(replies) == 0 || !strings.HasPrefix(replies[len(replies)-1], "421 4.4.2") {
		t.Errorf("replies after the stall %q, want the session ended with 421 4.4.2", replies)
	}
	if n := st.count(); n != 0 {
		t.Errorf("stored %d messages, want none", n)
	}
}

// TestHalfLineAtTimeout: a command line whose CRLF never comes is not
// run when the timeout fires (go-smtp took the bytes it had as the whole
// line); the session ends with 421 4.4.2.
func TestHalfLineAtTimeout(t *testing.T) {
	_, _, addr := startTestServer(t, func(s *Server) { s.CommandTimeout = 300 * time.Millisecond })
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Send("MAIL FROM:<bob@remote.example>")
	got := d.Reply()
	if !strings.HasPrefix(got, "421 4.4.2") {
		t.Errorf("at the timeout with half a line: %q, want 421 4.4.2", got)
	}
	if !d.Closed() {
		t.Error("the session goes on after the timeout")
	}
}

// TestTimeoutUnderSTARTTLS: a timeout inside a STARTTLS session ends it
// with a 421 the client reads through TLS. The 421 that answers half a
// line in plaintext was written there in the clear too (the connection
// did not know TLS had begun: the read-ahead under the sequence check did
// not unwrap), which the client could only take for a broken TLS record.
func TestTimeoutUnderSTARTTLS(t *testing.T) {
	_, _, addr := startTestServer(t, func(s *Server) {
		s.TLS = selfSigned(t)
		s.CommandTimeout = 300 * time.Millisecond
	})
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	td := d.StartTLS(&tls.Config{InsecureSkipVerify: true})
	td.Cmd("EHLO client.example", "250")
	td.Send("NOOP") // no CRLF: a TLS record whose last octet is not LF
	var lines []string
	for {
		l, err := td.R.ReadString('\n')
		if err != nil {
			if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], "421 4.4.2") {
				t.Fatalf("read through TLS %q, then %v: want the session ended with 421 4.4.2", lines, err)
			}
			return
		}
		lines = append(lines, l)
	}
}

// TestShutdownUnderCommands: a shutdown while clients are in the middle
// of commands ends every session cleanly: no panic in a session (go-smtp's
// Close, called under a running MAIL, left it a nil session: a panic
// go-smtp recovered and logged, the client reset), and every client gets
// its replies whole, then 421 or the close.
func TestShutdownUnderCommands(t *testing.T) {
	var logs syncBuffer
	s, _, addr := startTestServer(t, func(s *Server) {
		s.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "EHLO client.example\r\n")
			buf := make([]byte, 4096)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := fmt.Fprintf(c, "MAIL FROM:<bob@remote.example>\r\nRSET\r\n"); err != nil {
					return
				}
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	close(stop)
	wg.Wait()
	if l := logs.String(); strings.Contains(l, "panic") {
		t.Errorf("a session panicked at shutdown:\n%s", l)
	}
}

// TestShutdownCutDataLogged: a message still coming when the shutdown's
// time runs out is cut, and the log says the shutdown cut it, not that
// the client ended it.
func TestShutdownCutDataLogged(t *testing.T) {
	var logs syncBuffer
	s, st, addr := startTestServer(t, func(s *Server) {
		s.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	d.Cmd("DATA", "354")
	d.Send("Subject: slow\r\n\r\nhalf of it\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); err == nil {
		t.Error("shutdown reports no error though a transfer was cut")
	}
	if !d.Closed() {
		t.Error("the transfer goes on after the shutdown")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "message rejected") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	l := logs.String()
	if !strings.Contains(l, "Service shutting down") || strings.Contains(l, "the client ended it") {
		t.Errorf("log of the cut transfer:\n%s", l)
	}
	if st.count() != 0 {
		t.Errorf("stored %d", st.count())
	}
}

// TestBDATLongLines: go-smtp counted the octets of a BDAT chunk that came
// in the read of the BDAT command line as a command line, and kept the
// count after the chunk: the next command (or the BDAT LAST) got "500
// Too long line" and the session ended. A chunk it refuses was dropped
// with the limit on: a long line in it ended the session too, where RFC
// 3030 section 2 has the chunk read and dropped. (See cmdReader.)
func TestBDATLongLines(t *testing.T) {
	_, st, addr := startTestServer(t, nil)
	msg := "Subject: long line via BDAT\r\n\r\n" + strings.Repeat("Y", 9000) + "\r\nend\r\n"
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<s@remote.example>", "250")
	d.Cmd("RCPT TO:<alice@example.test>", "250")
	d.Send("BDAT 100\r\n" + msg[:100])
	d.Expect("250")
	// The chunk starts inside the 9000-octet line, in the command's write.
	d.Send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)-100, msg[100:]))
	d.Expect("250")
	d.Cmd("MAIL FROM:<second@remote.example>", "250")
	d.Cmd("RSET", "250")
	if st.count() != 1 || !strings.HasSuffix(string(st.bodies[0]), msg) {
		t.Fatalf("stored %d messages, or not the one sent", st.count())
	}

	// Refused chunks with lines over the limit are dropped; the session
	// goes on.
	chunk := strings.Repeat("Z", 6000) + "\r\n"
	d.Cmd("MAIL FROM:<s@remote.example>", "250")
	d.Cmd("RCPT TO:<nobody@example.test>", "550")
	d.Send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk), chunk))
	d.Expect("503") // no recipient
	d.Cmd("NOOP", "250")
	d.Send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk), chunk)) // no MAIL
	d.Expect("503")
	d.Cmd("NOOP", "250")

	// Pipelined behind the EHLO, in go-smtp's buffer before the session
	// began: the same.
	d2 := Dial(t, addr)
	body := "Subject: pipelined\r\n\r\n" + strings.Repeat("W", 4000)
	d2.Send("EHLO client.example\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.test>\r\n" +
		fmt.Sprintf("BDAT %d\r\n%s", len(body), body))
	for range 4 {
		d2.Expect("250")
	}
	d2.Send("BDAT 2 LAST\r\n\r\n")
	d2.Expect("250")
	d2.Cmd("NOOP", "250")
	if st.count() != 2 || string(st.bodies[1][len(st.bodies[1])-len(body)-2:]) != body+"\r\n" {
		t.Errorf("stored %d messages, or the pipelined one not as sent", st.count())
	}
	// A command line over the limit still ends the session.
	d2.Send("NOOP " + strings.Repeat("x", 5000) + "\r\n")
	if got := d2.Reply(); !strings.HasPrefix(got, "500") {
		t.Errorf("over-long command: %q, want 500", got)
	}
}

// TestBadCommandLimit: go-smtp ended a session at its fourth bad command,
// with an extra "500 Too many errors" that a pipelining client took for
// the reply to its next command (a permanent one: the message bounced).
// From EHLO on, a session takes 19 and is ended with 421 after the 20th,
// as Postfix at its hard error limit.
func TestBadCommandLimit(t *testing.T) {
	_, _, addr := startTestServer(t, nil)
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	for range 5 {
		d.Cmd("FOOO", "500")
	}
	d.Send("MAIL FROM:<bob@remote.example>\r\nRSET\r\n")
	d.Expect("250")
	d.Expect("250")
	for range 14 {
		d.Cmd("FOOO", "500")
	}
	d.Cmd("FOOO", "500") // the 20th
	d.Send("NOOP\r\n")
	if got := d.Reply(); !strings.HasPrefix(got, "421") {
		t.Errorf("after the 20th bad command: %q, want 421", got)
	}
	if !d.Closed() {
		t.Error("session open after 20 bad commands")
	}

	// Bad commands in one write with the EHLO, or after a DATA body's
	// final dot, were run out of go-smtp's buffer, and counted by it.
	d2 := Dial(t, addr)
	d2.Send("EHLO client.example\r\n" + strings.Repeat("FOOO\r\n", 5) + "MAIL FROM:<bob@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
	d2.Expect("250")
	for range 5 {
		d2.Expect("500")
	}
	d2.Expect("250")
	d2.Expect("250")
	d2.Expect("354")
	d2.Send("Subject: x\r\n\r\nbody\r\n.\r\n" + strings.Repeat("\r\n", 5) + "MAIL FROM:<bob@remote.example>\r\n")
	d2.Expect("250")
	for range 5 {
		d2.Expect("50")
	}
	d2.Expect("250")
	d2.Cmd("QUIT", "221")
}

// TestStartTLSWithArguments: go-smtp started TLS at any line beginning
// with STARTTLS; with parameters (or run on), it is 501 (RFC 3207 section
// 4), and the plaintext session goes on; STARTTLS alone starts TLS.
func TestStartTLSWithArguments(t *testing.T) {
	_, _, addr := startTestServer(t, func(s *Server) { s.TLS = selfSigned(t) })
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("STARTTLS foo", "501")
	d.Cmd("STARTTLSX", "501")
	d.Cmd("NOOP", "250")
	d.Cmd("STARTTLS", "220")
}

// TestDataBudgetShare: one client (P7r of the probe: 50 connections from
// one address, each leaving 5.5 MB of a body it never ended) held the
// whole budget, and every other client's mail, on every port, got 452.
// A client now holds at most a quarter of it (or one message of the
// largest size), and other clients' mail goes through meanwhile.
func TestDataBudgetShare(t *testing.T) {
	s, st, addr := startTestServer(t, func(s *Server) { s.MaxMessageBytes = 128 << 10; s.MaxDataInFlight = 1 << 20 })
	body := func(kib int) string { return strings.Repeat(strings.Repeat("y", 1022)+"\r\n", kib) }
	begin := func(from string) *Dialog {
		t.Helper()
		dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := dl.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		d := smtptest.New(t, c)
		d.Expect("220")
		d.Cmd("EHLO client.example", "250")
		d.Cmd("MAIL FROM:<bob@remote.example>", "250")
		d.Cmd("RCPT TO:<alice@example.test>", "250")
		d.Cmd("DATA", "354")
		return d
	}
	var held []*Dialog
	for i := 0; i < 8; i++ {
		d := begin("127.0.0.2")
		d.Send("Subject: hold\r\n\r\n" + body(120))
		held = append(held, d)
	}
	for deadline := time.Now().Add(10 * time.Second); s.budget.Used() < 200<<10; {
		if time.Now().After(deadline) {
			t.Fatalf("the server holds %d bytes of the bodies", s.budget.Used())
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the rest is read (and not kept)
	if used := s.budget.Used(); used > 300<<10 {
		t.Errorf("one client holds %d bytes of a budget of 1 MiB, want at most a quarter", used)
	}
	other := begin("127.0.0.1")
	other.Send("Subject: other\r\n\r\n" + body(100) + ".\r\n")
	other.Expect("250")
	refused := 0
	for _, d := range held {
		d.Send(".\r\n")
		if r := d.Reply(); strings.HasPrefix(r, "452 4.3.1") {
			refused++
		} else if !strings.HasPrefix(r, "250") {
			t.Errorf("held transfer: %q", r)
		}
	}
	if refused == 0 || refused == len(held) {
		t.Errorf("%d of the %d held transfers refused, want some", refused, len(held))
	}
	if n := st.count(); n != 1+len(held)-refused {
		t.Errorf("%d messages stored, want %d", n, 1+len(held)-refused)
	}
	for _, d := range held {
		d.Cmd("QUIT", "221")
	}
	for deadline := time.Now().Add(5 * time.Second); s.budget.Used() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still held", s.budget.Used())
		}
		time.Sleep(time.Millisecond)
	}
}
