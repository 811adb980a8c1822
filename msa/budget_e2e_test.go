package msa_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/internal/storetest"
	"github.com/posthorn/posthorn/metrics"
)

// TestE2EDataBudgetShared: limits.max_data_in_flight bounds the message
// bodies being received at once over port 25, submission and IMAP APPEND
// together, as serve wires them. While a port 25 client holds most of the
// budget with a large DATA not yet ended, a submission gets 452 4.3.1 and
// an APPEND NO [UNAVAILABLE], both after their whole message was read, so
// that the sessions stay in step; once the first message ends, both go
// through. The budget shows as posthorn_data_in_flight_bytes.
func TestE2EDataBudgetShared(t *testing.T) {
	env := harness.Start(t, harness.Options{Configure: func(c *config.Config) {
		c.MaxMessageBytes = 2 << 20
		c.Limits.MaxDataInFlight = 3 << 20
	}})
	inFlight := func() int64 { return env.Server.Metrics.Value(metrics.DataInFlight) }
	lines := func(kib int) string { return strings.Repeat(strings.Repeat("z", 1022)+"\r\n", kib) }
	big := func(subject string, kib int) string {
		return testMessage(harness.User, harness.User, subject) + lines(kib)
	}

	// Port 25: a DATA of 1.9 MiB, not ended.
	conn, err := net.Dial("tcp", env.Addr("smtp"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	br := bufio.NewReader(conn)
	expect := func(prefix string) {
		t.Helper()
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("port 25: %v, want %s", err, prefix)
			}
			if len(line) > 3 && line[3] == '-' {
				continue
			}
			if !strings.HasPrefix(line, prefix) {
				t.Fatalf("port 25: %q, want %s", line, prefix)
			}
			return
		}
	}
	expect("220")
	for _, c := range []struct{ cmd, want string }{
		{"EHLO client.remote.test", "250"},
		{"MAIL FROM:<bob@remote.test>", "250"},
		{"RCPT TO:<" + harness.User + ">", "250"},
		{"DATA", "354"},
	} {
		fmt.Fprintf(conn, "%s\r\n", c.cmd)
		expect(c.want)
	}
	fmt.Fprintf(conn, "From: <bob@remote.test>\r\nTo: <%s>\r\nSubject: first\r\n\r\n%s", harness.User, lines(1900))
	for deadline := time.Now().Add(20 * time.Second); inFlight() < 1900<<10; {
		if time.Now().After(deadline) {
			t.Fatalf("posthorn_data_in_flight_bytes is %d, want the 1.9 MiB being received", inFlight())
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Submission: refused for now, and still in step.
	sub, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatal(err)
	}
	err = send(sub, harness.User, []string{harness.User}, big("submitted", 1500))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 452 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) {
		t.Fatalf("submission over the budget: %v, want 452 4.3.1", err)
	}

	// IMAP APPEND: refused for now.
	ic, err := imapclient.DialTLS(env.Addr("imaps"), &imapclient.Options{TLSConfig: env.ClientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Login(harness.User, harness.Password).Wait(); err != nil {
		t.Fatal(err)
	}
	appendSent := func(kib int) (*imapv2.AppendData, error) {
		msg := big("appended", kib)
		cmd := ic.Append("Sent", int64(len(msg)), nil)
		if _, err := cmd.Write([]byte(msg)); err != nil {
			return nil, err
		}
		if err := cmd.Close(); err != nil {
			return nil, err
		}
		return cmd.Wait()
	}
	_, err = appendSent(1500)
	var ie *imapv2.Error
	if !errors.As(err, &ie) || ie.Type != imapv2.StatusResponseTypeNo || ie.Code != imapv2.ResponseCodeUnavailable {
		t.Fatalf("APPEND over the budget: %v, want NO [UNAVAILABLE]", err)
	}

	// The first message ends: the budget comes back, and both go through.
	fmt.Fprintf(conn, ".\r\n")
	expect("250")
	if n := inFlight(); n != 0 {
		t.Fatalf("posthorn_data_in_flight_bytes is %d with no message being received", n)
	}
	if err := send(sub, harness.User, []string{harness.User}, big("submitted", 1500)); err != nil {
		t.Fatalf("submission within the budget: %v", err)
	}
	if d, err := appendSent(1500); err != nil || d.UID == 0 {
		t.Fatalf("APPEND within the budget: %v, %v", d, err)
	}
	if n := len(storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")); n != 2 {
		t.Errorf("%d messages in INBOX, want 2 (port 25, submission)", n)
	}
	if ms, err := env.Server.Store.Messages(harness.User, "Sent"); err != nil || len(ms) != 1 {
		t.Errorf("%d messages in Sent (%v), want 1", len(ms), err)
	}
	if n := inFlight(); n != 0 {
		t.Fatalf("posthorn_data_in_flight_bytes is %d at the end", n)
	}
}
