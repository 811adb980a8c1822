package outbound_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/store"
)

// enqueueLocal queues what mda.Agent.Deliver queues for a full mailbox:
// the message accepted on port 25 from a remote sender, no AuthUser.
func (e *queueEnv) enqueueLocal(t testing.TB, rcpt string) {
	t.Helper()
	qe := store.QueueEntry{From: "x@remote.test", Junk: true, Recipients: []store.QueueRecipient{{Address: rcpt}}}
	body := "From: <x@remote.test>\r\nTo: <" + rcpt + ">\r\nSubject: full\r\nMessage-ID: <m2@remote.test>\r\n\r\nHello\r\n"
	if _, err := e.Q.Enqueue(context.Background(), qe, []byte(body)); err != nil {
		t.Fatal(err)
	}
}

// TestLocalRecipientWaitsForRoom: a queued copy for a full mailbox of ours
// is delivered through the MDA (never over SMTP) once there is room, still
// to Junk; meanwhile its sender, although remote and unauthenticated, gets
// one delay DSN naming the recipient with 4.2.2 (RFC 5321 section 6.1:
// after our 250 the delivery is ours to report).
func TestLocalRecipientWaitsForRoom(t *testing.T) {
	f := startFakeMX(t, nil) // the sender's MX, which takes the DSN
	e := newQueueEnv(t, f.port())
	e.mx(t, "remote.test")
	e.Q.DelayNotice = time.Nanosecond
	e.MDA.mailboxes = map[string]int{"carol+x@local.test": 2}
	e.run(t)
	e.enqueueLocal(t, "carol+x@local.test")

	dsn := f.wait(t)
	if dsn.From != "" || strings.Join(dsn.Rcpts, ",") != "x@remote.test" {
		t.Errorf("DSN from %q to %v, want <> to x@remote.test", dsn.From, dsn.Rcpts)
	}
	for _, want := range []string{"Final-Recipient: rfc822; carol+x@local.test", "Action: delayed",
		"Status: 4.2.2", "Diagnostic-Code: X-Posthorn; mailbox full", "Message-ID: <m2@remote.test>"} {
		if !strings.Contains(dsn.Data, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn.Data)
		}
	}
	select {
	case env := <-e.MDA.stored:
		if env.From != "x@remote.test" || strings.Join(env.Recipients, ",") != "carol+x@local.test" || !env.Junk {
			t.Errorf("delivered with envelope %+v", env)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not delivered once the mailbox had room")
	}
	e.waitEmpty(t)
	f.mu.Lock()
	n := len(f.got)
	f.mu.Unlock()
	if n != 1 {
		t.Errorf("%d transactions at the MX, want only the delay DSN", n)
	}
	// The MDA counts its own deliveries (to=local); the DSN is the one
	// remote delivery.
	m := e.Q.Metrics
	if m.Value(metrics.Delivered, "to", "remote") != 1 || m.Value(metrics.Deferred) != 2 {
		t.Errorf("metrics delivered{to=remote}=%d deferred=%d, want 1 and 2",
			m.Value(metrics.Delivered, "to", "remote"), m.Value(metrics.Deferred))
	}
}

// TestLocalRecipientGivenUp: a mailbox still full after GiveUpAfter is
// failed (5.4.7, with the last error) and the sender gets the bounce.
func TestLocalRecipientGivenUp(t *testing.T) {
	f := startFakeMX(t, nil)
	e := newQueueEnv(t, f.port())
	e.mx(t, "remote.test")
	e.Q.GiveUpAfter = time.Nanosecond
	e.MDA.mailboxes = map[string]int{"carol@local.test": 1000}
	e.run(t)
	e.enqueueLocal(t, "carol@local.test")

	dsn := f.wait(t)
	for _, want := range []string{"Final-Recipient: rfc822; carol@local.test", "Action: failed",
		"Status: 5.4.7", "last error: mailbox full"} {
		if !strings.Contains(dsn.Data, want) {
			t.Errorf("DSN lacks %q:\n%s", want, dsn.Data)
		}
	}
	e.waitEmpty(t)
}
