package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/control"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/store"
)

// TestCLIFilesWhileServingAsAnotherUser: with serve running as a user of
// its own (as deploy/posthorn.service runs it), import, backup and export
// read and write files that only the CLI's user can reach. They used to
// be opened by the server, which got "permission denied" (or, with the
// unit's private /tmp, wrote a backup nobody could see).
func TestCLIFilesWhileServingAsAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root can run the server as another user")
	}
	const nobody = 65534
	base, err := os.MkdirTemp("", "posthorn-files")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath, dataDir := serveConfigIn(t, base)
	os.Chmod(cfgPath, 0o644)
	// The server's own files are its user's, as the unit's
	// StateDirectory makes them.
	filepath.WalkDir(dataDir, func(p string, _ fs.DirEntry, err error) error {
		if err == nil {
			err = os.Lchown(p, nobody, nobody)
		}
		return err
	})
	// The test binary, where that user can run it.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "posthorn.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	p := startServeAs(t, bin, cfgPath, dataDir, &syscall.Credential{Uid: nobody, Gid: nobody})
	if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid)); err != nil || !strings.Contains(string(status), fmt.Sprintf("\nUid:\t%d\t", nobody)) {
		t.Fatalf("serve does not run as %d: %v", nobody, err)
	}

	private := t.TempDir() // root's, mode 0700: the server cannot enter
	var mbox strings.Builder
	for i := range 3 {
		fmt.Fprintf(&mbox, "From a@b.example Mon Jan  1 00:00:00 2024\nFrom: a@b.example\nSubject: private %d\n\nbody\n\n", i)
	}
	in := filepath.Join(private, "in.mbox")
	if err := os.WriteFile(in, []byte(mbox.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, "", "--config", cfgPath, "import", "mbox", in, "--user", harness.User); !strings.Contains(out, "imported 3 message(s), skipped 0") {
		t.Errorf("import: %q", out)
	}
	// Run again (after a Ctrl-C, say), it stores nothing twice.
	if out := mustRun(t, "", "--config", cfgPath, "import", "mbox", in, "--user", harness.User); !strings.Contains(out, "imported 0 message(s), skipped 0, 3 already there") {
		t.Errorf("import again: %q", out)
	}

	backup := filepath.Join(private, "b.db")
	if out := mustRun(t, "", "--config", cfgPath, "backup", backup); !strings.Contains(out, "backup written to "+backup) {
		t.Errorf("backup: %q", out)
	}
	if err := store.Verify(backup); err != nil {
		t.Errorf("the backup is not a store: %v", err)
	}

	dir := filepath.Join(private, "export")
	if out := mustRun(t, "", "--config", cfgPath, "export", "maildir", dir, "--user", harness.User); !strings.Contains(out, "exported 3 message(s)") {
		t.Errorf("export: %q", out)
	}
	if files, err := os.ReadDir(filepath.Join(dir, "cur")); err != nil || len(files) != 3 {
		t.Errorf("export's INBOX/cur: %d files, %v", len(files), err)
	}
	// Refusals come back whole over the socket, and nothing hangs: the
	// server answers before reading what the CLI sends, or the CLI stops
	// reading what the server sends.
	mustFail(t, "not an mbox", "--config", cfgPath, "import", "mbox", bin, "--user", harness.User)
	mustFail(t, "no user", "--config", cfgPath, "import", "mbox", in, "--user", "nobody@"+harness.Domain)
	mustFail(t, "not empty", "--config", cfgPath, "export", "maildir", dir, "--user", harness.User)
	mustFail(t, "no user", "--config", cfgPath, "export", "maildir", filepath.Join(private, "other"), "--user", "nobody@"+harness.Domain)
	if out := mustRun(t, "", "--config", cfgPath, "user", "list"); !strings.Contains(out, harness.User) {
		t.Errorf("user list after the refusals: %q", out)
	}
	select {
	case <-p.exited:
		t.Fatalf("serve ended\n%s", p.logText())
	default:
	}
}

// TestBackupInterrupted: a backup interrupted by Ctrl-C (here, while the
// server behind the control socket sends nothing) removes its temporary
// file and exits 130, rather than leave a hidden half backup behind.
func TestBackupInterrupted(t *testing.T) {
	cfgPath := initDir(t)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A server that takes the request and never answers.
	ln, err := net.Listen("unix", cfg.DataPath(control.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	out := t.TempDir()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "POSTHORN_TEST_ARGS=--config\n"+cfgPath+"\nbackup\n"+filepath.Join(out, "b.db"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	temps := func() []string {
		m, _ := filepath.Glob(filepath.Join(out, ".posthorn-backup-*"))
		return m
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(temps()) == 0 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("no temporary backup file appeared; stderr: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(os.Interrupt)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Errorf("interrupted backup exited with %v, want status 130; stderr: %s", err, stderr.String())
	}
	if m := temps(); len(m) != 0 {
		t.Errorf("interrupted backup left %v", m)
	}
	if _, err := os.Stat(filepath.Join(out, "b.db")); err == nil {
		t.Error("interrupted backup wrote the backup file")
	}
	if !strings.Contains(stderr.String(), "no backup written") {
		t.Errorf("stderr = %q, want it to say no backup was written", stderr.String())
	}
}
