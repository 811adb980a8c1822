package msa_test

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/internal/storetest"
)

// lockedBuffer is a log destination the server's goroutines share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestE2EDiskReserve: with less free space than the reserve (twice
// max_message_bytes; here more than any disk has), submission and port 25
// both answer MAIL FROM with 452 4.3.1, before the message is sent, and
// nothing is stored or queued. The log says so once a minute, not at each
// refusal (76,000 ERROR lines a minute on a full disk).
func TestE2EDiskReserve(t *testing.T) {
	var logs lockedBuffer
	env := harness.Start(t, harness.Options{Log: &logs, Configure: func(c *config.Config) {
		c.MaxMessageBytes = 1 << 50
	}})
	want := func(via string, err error) {
		t.Helper()
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 452 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) {
			t.Fatalf("%s MAIL FROM with the disk below the reserve: %v, want 452 4.3.1", via, err)
		}
		if !strings.Contains(se.Message, "Insufficient system storage") {
			t.Errorf("%s: %q", via, se.Message)
		}
	}
	c, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatal(err)
	}
	want("submission", c.Mail(harness.User, nil))

	c25, err := smtp.DialStartTLS(env.Addr("smtp"), env.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer c25.Close()
	want("port 25", c25.Mail("someone@remote.test", &smtp.MailOptions{Size: 1000}))
	for range 5 {
		want("port 25, again", c25.Mail("someone@remote.test", &smtp.MailOptions{Size: 1000}))
		want("submission, again", c.Mail(harness.User, nil))
	}
	if n := strings.Count(logs.String(), "no space left for the store"); n > 1 {
		t.Errorf("%d log lines for 12 refusals within a minute, want at most one", n)
	}

	if msgs := storetest.Bodies(t, env.Server.Store, harness.User, "INBOX"); len(msgs) != 0 {
		t.Errorf("%d messages stored", len(msgs))
	}
	if es, _ := env.Server.Store.QueueEntries(); len(es) != 0 {
		t.Errorf("%d messages queued", len(es))
	}
}
