package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIImportMboxFormat: --format mboxo reaches the reading in the CLI
// (">>From " stays as written, ">From " loses its '>'), a Dovecot mbox's
// pseudo-message is not imported, and an unknown format is refused before
// anything is read.
func TestCLIImportMboxFormat(t *testing.T) {
	cfg := initDir(t)
	mustRun(t, "pw\n", "--config", cfg, "user", "add", "bob@example.org", "--password-stdin")
	dir := t.TempDir()
	mbox := filepath.Join(dir, "in.mbox")
	os.WriteFile(mbox, []byte("From MAILER_DAEMON Mon Jan  1 00:00:00 2024\nSubject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"+
		"X-IMAP: 1704067200 0000000002\n\nThis text is part of the internal format of your mail folder.\n\n"+
		"From a@b.org Mon Jan  1 00:00:00 2024\nFrom: a@b.org\nSubject: one\nStatus: RO\nX-UID: 1\n\n>From quoted once\n>>From the body's own\n\n"+
		"From a@b.org Mon Jan  1 00:00:00 2024\nFrom: a@b.org\nSubject: two\nContent-Length: 20\n\nlook:\n\nFrom here on\n"), 0o600)
	mustFail(t, "unknown mbox format", "--config", cfg, "import", "mbox", mbox, "--user", "bob@example.org", "--format", "mmdf")
	if out := mustRun(t, "", "--config", cfg, "import", "mbox", mbox, "--user", "bob@example.org", "--format", "mboxo"); !strings.Contains(out, "imported 2 message(s), skipped 0") {
		t.Errorf("import: %s", out)
	}
	exp := filepath.Join(dir, "export")
	mustRun(t, "", "--config", cfg, "export", "maildir", exp, "--user", "bob@example.org")
	files, _ := filepath.Glob(filepath.Join(exp, "cur", "*"))
	if len(files) != 2 {
		t.Fatalf("exported INBOX has %d messages, want 2", len(files))
	}
	var bodies string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		bodies += string(b)
	}
	for _, want := range []string{"\r\n\r\nFrom quoted once\r\n>>From the body's own\r\n", "\r\n\r\nlook:\r\n\r\nFrom here on\r\n"} {
		if !strings.Contains(bodies, want) {
			t.Errorf("exported messages lack %q:\n%q", want, bodies)
		}
	}
	if strings.Contains(bodies, "X-UID") || strings.Contains(bodies, "Content-Length") {
		t.Errorf("the mbox's fields were kept:\n%q", bodies)
	}
}
