package server_test

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/metrics"
)

// Connections to the submission ports (587 and 465) show in
// posthorn_connections_open while they are open, and leave it when
// they close, as those to ports 25, IMAP and POP3 do.
func TestSubmissionConnectionsCounted(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	reg := env.Server.Metrics
	open := func() int64 { return reg.Value(metrics.Connections, "protocol", "submission") }
	waitFor := func(want int64) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); open() != want; {
			if time.Now().After(deadline) {
				t.Fatalf("connections_open{protocol=submission} = %d, want %d", open(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	plain, err := net.Dial("tcp", env.Addr("submission"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	if _, err := plain.Read(buf); err != nil { // the greeting: accepted
		t.Fatal(err)
	}
	implicit, err := tls.Dial("tcp", env.Addr("submissions"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := implicit.Read(buf); err != nil {
		t.Fatal(err)
	}
	waitFor(2)
	plain.Close()
	implicit.Close()
	waitFor(0)
}
