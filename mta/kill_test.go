package mta_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/posthorn/posthorn/auth"
	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/internal/storetest"
	"github.com/posthorn/posthorn/server"
	"github.com/posthorn/posthorn/store"
)

const childEnv = "POSTHORN_MTA_KILL_CHILD_DIR"

// TestKillChild is the server process of TestE2ESIGKILL: run by itself it
// does nothing; re-executed with childEnv set it serves port 25 from the
// given directory, wired by server.New exactly as `posthorn serve`, prints
// its address and runs until it is killed.
func TestKillChild(t *testing.T) {
	dir := os.Getenv(childEnv)
	if dir == "" {
		t.Skip("helper process for TestE2ESIGKILL")
	}
	cfg := config.Default()
	cfg.Path = filepath.Join(dir, "posthorn.toml")
	cfg.Hostname = "mail.example.test"
	cfg.Listen = config.Listen{SMTP: "127.0.0.1:0"}
	cfg.Outbound.DNSServer = os.Getenv(childEnv + "_DNS")
	if err := os.MkdirAll(cfg.DataPath(""), 0o700); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(&cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ok, _ := srv.Store.HasDomain(harness.Domain); !ok {
		h, _ := auth.HashPassword(harness.Password)
		if err := srv.Store.AddDomain(harness.Domain); err != nil {
			t.Fatal(err)
		}
		if err := srv.Store.AddAccount(harness.User, h); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Printf("SMTP_ADDR=%s\n", srv.Addr("smtp"))
	select {}
}

// TestE2ESIGKILL: messages are sent on many connections at once, the
// server is killed with SIGKILL right after the 20th 250, and every
// message that got a 250 is in the store afterwards, whole.
func TestE2ESIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	dir := t.TempDir()
	dns := harness.StartDNS(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir, childEnv+"_DNS="+dns.Addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	addr := ""
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "SMTP_ADDR="); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatal("child did not start")
	}
	go func() {
		for sc.Scan() {
		}
	}()

	const killAfter = 20
	var (
		mu     sync.Mutex
		acked  []string
		killed bool
		wg     sync.WaitGroup
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				msg := strings.Replace(testMessage, "e2e-1@", fmt.Sprintf("kill-%d-%d@", w, i), 1)
				err := send(addr, "bob@remote.example", []string{harness.User}, msg, nil)
				mu.Lock()
				if err == nil && !killed {
					acked = append(acked, msg)
					if len(acked) == killAfter {
						cmd.Process.Signal(syscall.SIGKILL)
						killed = true
					}
				}
				stop := killed
				mu.Unlock()
				if stop {
					return
				}
			}
		}()
	}
	wg.Wait()
	cmd.Wait()

	st, err := store.Open(filepath.Join(dir, "data", "posthorn.db"), store.Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer st.Close()
	stored := storetest.Bodies(t, st, harness.User, "INBOX")
	for _, msg := range acked {
		found := false
		for _, s := range stored {
			found = found || strings.HasSuffix(string(s), msg)
		}
		if !found {
			t.Errorf("message acknowledged with 250 is lost after SIGKILL:\n%s", msg)
		}
	}
	for _, s := range stored {
		if !strings.Contains(string(s), "\r\nBob\r\n") || !strings.HasPrefix(string(s), "Return-Path:") {
			t.Errorf("partial message stored: %q", s)
		}
	}
	t.Logf("%d acknowledged, %d stored after SIGKILL", len(acked), len(stored))
}
