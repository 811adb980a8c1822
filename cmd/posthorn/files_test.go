package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

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
