package fuzz

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/auth"
	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/server"
)

// knownLibraryPanic recognises the one panic go-smtp v0.25.1 is known to
// raise and recover by itself: a client that closes the connection in the
// middle of a BDAT chunk makes Conn.Close set the session to nil before the
// BDAT goroutine calls c.Session().Data (conn.go:1059). go-smtp recovers
// it in that goroutine; the message was never accepted (no 250), so
// nothing is lost, and the server goes on serving (TestBDATAbortKeepsServing
// proves that). Any other panic fails the fuzz targets.
func knownLibraryPanic(text string) bool {
	return strings.Contains(text, "go-smtp@v0.25.1/conn.go:1059") &&
		strings.Contains(text, "handleBdat.func1")
}

// panicLog is a slog handler that remembers records mentioning a panic.
type panicLog struct {
	mu     sync.Mutex
	panics []string
}

func (p *panicLog) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicLog) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p *panicLog) WithGroup(string) slog.Handler            { return p }
func (p *panicLog) Handle(_ context.Context, r slog.Record) error {
	text := r.Message
	r.Attrs(func(a slog.Attr) bool {
		text += " " + a.Key + "=" + a.Value.String()
		return true
	})
	if strings.Contains(strings.ToLower(text), "panic") && !knownLibraryPanic(text) {
		p.mu.Lock()
		p.panics = append(p.panics, text)
		p.mu.Unlock()
	}
	if os.Getenv("POSTHORN_TEST_LOG") != "" {
		os.Stderr.WriteString(r.Level.String() + " " + text + "\n")
	}
	return nil
}

func (p *panicLog) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.panics
	p.panics = nil
	return out
}

// fuzzServer is a whole server for session fuzzing.
type fuzzServer struct {
	srv *server.Server
	log *panicLog
}

// startServer starts the server with plaintext authentication allowed
// (inputs need no TLS to reach the authenticated states), the harness
// domain and user, and no login delays.
func startServer(f testing.TB) *fuzzServer {
	f.Helper()
	dir := f.TempDir()
	dns := harness.StartDNS(f)
	cfg := config.Default()
	cfg.Path = filepath.Join(dir, "posthorn.toml")
	cfg.Hostname = "mail.example.test"
	cfg.AllowPlaintextAuth = true
	cfg.Listen = config.Listen{SMTP: "127.0.0.1:0", Submission: "127.0.0.1:0", IMAP: "127.0.0.1:0"}
	cfg.Outbound.DNSServer = dns.Addr
	cfg.Limits.MaxConnectionsPerIP = 1000
	cfg.Limits.CommandTimeout = config.Duration{Duration: 5 * time.Second}
	cfg.Limits.DataTimeout = config.Duration{Duration: 5 * time.Second}
	if err := os.MkdirAll(cfg.DataPath(""), 0o700); err != nil {
		f.Fatal(err)
	}
	pl := &panicLog{}
	srv, err := server.New(&cfg, slog.New(pl))
	if err != nil {
		f.Fatal(err)
	}
	l := srv.Auth.Limiter
	l.Free, l.RefuseAfter = 1<<30, 1<<30
	if err := srv.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	if err := srv.Store.AddDomain(harness.Domain); err != nil {
		f.Fatal(err)
	}
	h, err := auth.HashPassword(harness.Password)
	if err != nil {
		f.Fatal(err)
	}
	if err := srv.Store.AddAccount(harness.User, h); err != nil {
		f.Fatal(err)
	}
	return &fuzzServer{srv: srv, log: pl}
}

// session writes input on a new connection to listener, closes the write
// side, and reads until the server closes the connection. It fails if the
// server logged a panic or kept the connection open past the deadline.
func (fs *fuzzServer) session(t *testing.T, listener string, input []byte) {
	t.Helper()
	addr := fs.srv.Addr(listener)
	if addr == nil {
		t.Skipf("listener %s is not available in this build", listener)
	}
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", listener, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		c.Write(input)
		c.(*net.TCPConn).CloseWrite()
	}()
	if _, err := io.Copy(io.Discard, c); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%s: the server kept the connection open 20 s after the client's EOF", listener)
		}
	}
	if p := fs.log.take(); len(p) > 0 {
		t.Fatalf("%s: the server panicked: %s", listener, p[0])
	}
}
