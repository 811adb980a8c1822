package msa_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/internal/storetest"
)

// TestE2EDiskReserve: with less free space than the reserve (twice
// max_message_bytes; here more than any disk has), submission and port 25
// both answer MAIL FROM with 452 4.3.1, before the message is sent, and
// nothing is stored or queued.
func TestE2EDiskReserve(t *testing.T) {
	env := harness.Start(t, harness.Options{Configure: func(c *config.Config) {
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

	if msgs := storetest.Bodies(t, env.Server.Store, harness.User, "INBOX"); len(msgs) != 0 {
		t.Errorf("%d messages stored", len(msgs))
	}
	if es, _ := env.Server.Store.QueueEntries(); len(es) != 0 {
		t.Errorf("%d messages queued", len(es))
	}
}
