package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/internal/smtptest"
	"github.com/posthorn/posthorn/server"
)

// TestMain lets a test run this binary as posthorn itself: with
// POSTHORN_TEST_ARGS set (arguments separated by newlines) it is main.
func TestMain(m *testing.M) {
	if args := os.Getenv("POSTHORN_TEST_ARGS"); args != "" {
		os.Args = append([]string{"posthorn"}, strings.Split(args, "\n")...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveProc is `posthorn serve` in a process of its own.
type serveProc struct {
	cmd    *exec.Cmd
	addrs  map[string]string
	exited chan struct{}
	mu     sync.Mutex
	log    bytes.Buffer
}

func (p *serveProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Write(b)
}

func (p *serveProc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// startServe starts serve on cfgPath and waits for its listeners.
func startServe(t *testing.T, cfgPath, dataDir string) *serveProc {
	return startServeAs(t, os.Args[0], cfgPath, dataDir, nil)
}

// startServeAs starts serve from the test binary bin, with the
// credentials cred if not nil.
func startServeAs(t *testing.T, bin, cfgPath, dataDir string, cred *syscall.Credential) *serveProc {
	t.Helper()
	addrsFile := filepath.Join(dataDir, server.AddrsFile)
	os.Remove(addrsFile)
	p := &serveProc{exited: make(chan struct{})}
	p.cmd = exec.Command(bin)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	p.cmd.Env = append(os.Environ(), "POSTHORN_TEST_ARGS=serve\n--config\n"+cfgPath)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(addrsFile); err == nil && json.Unmarshal(b, &p.addrs) == nil {
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("serve exited during start-up\n%s", p.logText())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not bind its listeners\n%s", p.logText())
		}
	}
}

// wait waits for the process to end and returns its state.
func (p *serveProc) wait(t *testing.T, within time.Duration, after string) *os.ProcessState {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState
	case <-time.After(within):
		t.Fatalf("serve still runs %v after %s\n%s", within, after, p.logText())
		return nil
	}
}

// serveConfig writes a configuration with every listener on a kernel-chosen
// loopback port, and a domain and user in its store.
func serveConfig(t *testing.T) (cfgPath, dataDir string) {
	return serveConfigIn(t, t.TempDir())
}

func serveConfigIn(t *testing.T, dir string) (cfgPath, dataDir string) {
	cfg := config.Default()
	cfg.Path = filepath.Join(dir, "posthorn.toml")
	cfg.Hostname = "mail.example.test"
	cfg.Listen = config.Listen{SMTP: "127.0.0.1:0", Submission: "127.0.0.1:0", IMAP: "127.0.0.1:0", POP3: "127.0.0.1:0"}
	cfg.Outbound.DNSServer = harness.StartDNS(t).Addr
	if err := harness.WriteConfig(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.DataPath(""), 0o700); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "", "--config", cfg.Path, "domain", "add", harness.Domain)
	mustRun(t, "pw\n", "--config", cfg.Path, "user", "add", harness.User, "--password-stdin")
	return cfg.Path, cfg.DataPath("")
}

// TestServeSignals: SIGHUP (the terminal of a server run by hand was
// closed) stops serve as SIGTERM does, cleanly; a second signal during
// the drain ends the process at once, and the store then opens again
// with everything it had.
func TestServeSignals(t *testing.T) {
	cfgPath, dataDir := serveConfig(t)

	p := startServe(t, cfgPath, dataDir)
	p.cmd.Process.Signal(syscall.SIGHUP)
	if st := p.wait(t, 20*time.Second, "SIGHUP"); !st.Success() {
		t.Fatalf("serve ended with %v after SIGHUP\n%s", st, p.logText())
	}
	if _, err := os.Stat(filepath.Join(dataDir, "control.sock")); !os.IsNotExist(err) {
		t.Errorf("control socket left after SIGHUP: %v", err)
	}

	p = startServe(t, cfgPath, dataDir)
	c := smtptest.Dial(t, p.addrs["smtp"])
	c.Cmd("EHLO client.example", "250")
	c.Cmd("MAIL FROM:<bob@remote.example>", "250")
	c.Cmd("RCPT TO:<"+harness.User+">", "250")
	c.Cmd("DATA", "354")
	c.Send("Subject: never ends\r\n\r\nhalf a message\r\n")
	p.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.logText(), "shutting down") {
		if time.Now().After(deadline) {
			t.Fatalf("no shutdown after SIGTERM\n%s", p.logText())
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-p.exited:
		t.Fatalf("serve ended before the open transaction did\n%s", p.logText())
	case <-time.After(200 * time.Millisecond):
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	st := p.wait(t, 5*time.Second, "a second SIGTERM")
	if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("after a second SIGTERM serve ended with %v, want killed by it", st)
	}
	if out := mustRun(t, "", "--config", cfgPath, "user", "list"); !strings.Contains(out, harness.User) {
		t.Errorf("user list after a forced stop: %q", out)
	}
}
