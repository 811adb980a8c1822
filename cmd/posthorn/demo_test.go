package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/posthorn/posthorn/config"
)

// syncBuffer is a bytes.Buffer that the demo writes while the test reads.
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

// startDemo runs `posthorn demo --dir dir` in-process until the test's
// stop, and returns its banner once printed.
func startDemo(t *testing.T, dir string) (banner string, stop func()) {
	t.Helper()
	var out, logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	app := newApp(strings.NewReader(""), &out, &logs)
	done := make(chan error, 1)
	go func() { done <- app.RunContext(ctx, []string{"posthorn", "demo", "--dir", dir}) }()
	stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
	}
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(out.String(), "Administer it"); {
		select {
		case err := <-done:
			t.Fatalf("demo ended: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no banner:\n%s\n%s", out.String(), logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return out.String(), stop
}

func field(t *testing.T, banner, pattern string) string {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("%q not in the banner:\n%s", pattern, banner)
	}
	return m[1]
}

// TestDemo: `posthorn demo` (what `make run` starts) sets up the demo
// domain and user with no config to write, and its banner tells how to
// reach it: mail sent to the port 25 it names reaches the user's INBOX
// over the IMAPS port it names, with the password it prints; the admin
// command it prints works; at the next start the mail is still there and
// the password is new. The ports are the kernel's here (demoListen is
// changed), the real demo's are fixed and unprivileged.
func TestDemo(t *testing.T) {
	saved := demoListen
	t.Cleanup(func() { demoListen = saved })
	demoListen = config.Listen{
		SMTP: "127.0.0.1:0", Submission: "127.0.0.1:0", Submissions: "127.0.0.1:0",
		IMAP: "127.0.0.1:0", IMAPS: "127.0.0.1:0", POP3: "127.0.0.1:0", POP3S: "127.0.0.1:0",
		HTTP: "127.0.0.1:0",
	}
	dir := t.TempDir()
	banner, stop := startDemo(t, dir)
	password := field(t, banner, `(?m)^  password +(\S+)`)
	smtpPort := field(t, banner, `swaks --server 127.0.0.1:(\d+) --to`)
	imapsPort := field(t, banner, `IMAP 127.0.0.1 port (\d+) SSL/TLS`)
	if smtpPort == "0" || imapsPort == "0" {
		t.Fatalf("the banner names port 0:\n%s", banner)
	}
	if err := sendPlain("127.0.0.1:"+smtpPort, demoUser, "hello demo"); err != nil {
		t.Fatalf("port 25 of the banner: %v", err)
	}
	subjects := func(pass string) ([]string, error) {
		c, err := imapclient.DialTLS("127.0.0.1:"+imapsPort, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		if err := c.Login(demoUser, pass).Wait(); err != nil {
			return nil, err
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			return nil, err
		}
		msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect()
		if err != nil {
			return nil, err
		}
		var out []string
		for _, m := range msgs {
			out = append(out, m.Envelope.Subject)
		}
		return out, nil
	}
	if got, err := subjects(password); err != nil || fmt.Sprint(got) != "[hello demo]" {
		t.Fatalf("INBOX over the banner's IMAPS port: %v, %v", got, err)
	}
	admin := field(t, banner, `(?m)^  \S+ --config (\S+) user list$`)
	if out := mustRun(t, "", "--config", admin, "user", "list"); !strings.Contains(out, demoUser) {
		t.Errorf("the banner's admin command: %q", out)
	}
	stop()

	banner, stop = startDemo(t, dir)
	defer stop()
	again := field(t, banner, `(?m)^  password +(\S+)`)
	imapsPort = field(t, banner, `IMAP 127.0.0.1 port (\d+) SSL/TLS`)
	if again == password {
		t.Error("the same password at the second start")
	}
	if _, err := subjects(password); err == nil {
		t.Error("the first start's password still works")
	}
	if got, err := subjects(again); err != nil || fmt.Sprint(got) != "[hello demo]" {
		t.Fatalf("INBOX after a restart: %v, %v", got, err)
	}
}
