// Package harness starts the whole Posthorn server, wired exactly as
// `posthorn serve` wires it, on 127.0.0.1 ports chosen by the kernel, in a
// temporary directory with a generated self-signed certificate and a DNS
// server on loopback. End-to-end tests drive it with real clients.
package harness

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/posthorn/posthorn/auth"
	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/server"
)

// Env is one running server.
type Env struct {
	T      testing.TB
	Dir    string
	Config *config.Config
	Server *server.Server
	DNS    *DNS
}

// Options change the configuration before the server starts.
type Options struct {
	// Configure edits the configuration (all listeners are on
	// 127.0.0.1:0 already; DNS points at the loopback DNS server).
	Configure func(*config.Config)
	// Dir reuses a directory (for restarts); "" makes a temporary one.
	Dir string
	// DNS reuses a DNS server (several instances in one test).
	DNS *DNS
	// Log, if set, takes the server's log (warnings and errors) in place
	// of standard error; it must be safe for concurrent writes.
	Log io.Writer
}

// Domain and the demo account every Env starts with.
const (
	Domain   = "example.test"
	User     = "alice@example.test"
	Password = "correct horse battery staple"
)

// Start starts a server and stops it when the test ends. It creates the
// domain Domain and the account User with Password.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	dns := opts.DNS
	if dns == nil {
		dns = StartDNS(t)
	}
	cfg := config.Default()
	cfg.Path = filepath.Join(dir, "posthorn.toml")
	cfg.Hostname = "mail.example.test"
	cfg.DataDir = "data"
	cfg.Listen = config.Listen{
		SMTP: "127.0.0.1:0", Submission: "127.0.0.1:0", Submissions: "127.0.0.1:0",
		IMAP: "127.0.0.1:0", IMAPS: "127.0.0.1:0", POP3: "127.0.0.1:0", POP3S: "127.0.0.1:0",
		HTTP: "127.0.0.1:0", HTTPS: "127.0.0.1:0", Metrics: "127.0.0.1:0",
	}
	cfg.Outbound.DNSServer = dns.Addr
	cfg.Outbound.RetryInitial = config.Duration{Duration: time.Second}
	cfg.Outbound.RetryMax = config.Duration{Duration: 2 * time.Second}
	if opts.Configure != nil {
		opts.Configure(&cfg)
	}
	if err := os.MkdirAll(cfg.DataPath(""), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteConfig(&cfg); err != nil {
		t.Fatal(err)
	}
	level := slog.LevelWarn
	if os.Getenv("POSTHORN_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	var logTo io.Writer = os.Stderr
	if opts.Log != nil {
		logTo = opts.Log
	}
	logger := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: level}))
	srv, err := server.New(&cfg, logger)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if err := srv.Start(context.Background()); err != nil {
		srv.Shutdown(context.Background())
		t.Fatalf("server.Start: %v", err)
	}
	e := &Env{T: t, Dir: dir, Config: &cfg, Server: srv, DNS: dns}
	t.Cleanup(func() { e.Stop() })
	if ok, _ := srv.Store.HasDomain(Domain); !ok {
		e.AddDomain(Domain)
		e.AddUser(User, Password)
	}
	return e
}

// WriteConfig writes cfg as TOML to cfg.Path, so that the CLI and
// subprocesses can load the same configuration.
func WriteConfig(cfg *config.Config) error {
	b, err := toml.Marshal(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(cfg.Path, b, 0o600)
}

// Stop shuts the server down (idempotent).
func (e *Env) Stop() {
	if e.Server == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Server.Shutdown(ctx); err != nil {
		e.T.Logf("shutdown: %v", err)
	}
	e.Server = nil
}

// Addr returns "127.0.0.1:port" of a listener ("smtp", "imap", ...).
func (e *Env) Addr(name string) string {
	e.T.Helper()
	a := e.Server.Addr(name)
	if a == nil {
		e.T.Fatalf("listener %q is not running", name)
	}
	return a.String()
}

// AddDomain adds a domain to the store.
func (e *Env) AddDomain(name string) {
	e.T.Helper()
	if err := e.Server.Store.AddDomain(name); err != nil {
		e.T.Fatalf("add domain %s: %v", name, err)
	}
}

// AddUser creates an account with a password.
func (e *Env) AddUser(address, password string) {
	e.T.Helper()
	// Cheap argon2id parameters keep logins fast in tests; serve and the
	// CLI use auth.DefaultParams.
	h, err := auth.HashPasswordParams(password, auth.TestParams)
	if err != nil {
		e.T.Fatal(err)
	}
	if err := e.Server.Store.AddAccount(address, h); err != nil {
		e.T.Fatalf("add account %s: %v", address, err)
	}
}

// ClientTLS is a client TLS configuration that accepts the server's
// self-signed certificate.
func (e *Env) ClientTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, ServerName: e.Config.Hostname}
}
