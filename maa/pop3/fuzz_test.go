package pop3

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// errorCounter is a slog handler that counts Error records: a session
// that panics or hits an internal error logs one.
type errorCounter struct{ n atomic.Int64 }

func (h *errorCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h *errorCounter) Handle(context.Context, slog.Record) error {
	h.n.Add(1)
	return nil
}
func (h *errorCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *errorCounter) WithGroup(string) slog.Handler      { return h }

// FuzzSession feeds arbitrary bytes as a client to a session over
// net.Pipe. A session must never panic, never log an internal error
// (the fake store does not fail) and always end. Seeds are in
// testdata/fuzz/FuzzSession.
func FuzzSession(f *testing.F) {
	tlsConfig := testCert(f)
	f.Fuzz(func(t *testing.T, input []byte) {
		st := newFakeStore()
		st.add(alice, msg1)
		st.add(alice, msg2)
		st.add(alice, msg3)
		errs := &errorCounter{}
		srv := &Server{
			Hostname:           "mail.example.test",
			Store:              st,
			Auth:               &fakeAuth{users: map[string]string{alice: alicePwd}},
			TLSConfig:          tlsConfig,
			AllowPlaintextAuth: true,
			MaxLineBytes:       minLineBytes,
			IdleTimeout:        2 * time.Second,
			Logger:             slog.New(errs),
		}
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() { srv.ServeConn(server); close(done) }()
		go io.Copy(io.Discard, client)
		client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		client.Write(input)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end")
		}
		if n := errs.n.Load(); n > 0 {
			t.Fatalf("%d error records for input %q", n, input)
		}
		// QUIT after DELE in TRANSACTION removes messages, nothing else.
		if msgs, _ := st.Messages(alice, "INBOX"); len(msgs) < 3 && !strings.Contains(strings.ToUpper(string(input)), "DELE") {
			t.Fatalf("messages removed without DELE: %q", input)
		}
	})
}
