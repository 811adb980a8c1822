package main

import (
	"fmt"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/store"
)

// sendPlain delivers one message on port 25 without TLS, as swaks does
// by default.
func sendPlain(addr, to, subject string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example.org"); err != nil {
		return err
	}
	if err := c.Mail("sender@example.org"); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: sender@example.org\r\nTo: %s\r\nSubject: %s\r\n\r\nbody of %s\r\n", to, subject, subject)
	if err := w.Close(); err != nil { // the 250: durable from here on
		return err
	}
	return c.Quit()
}

// A backup taken while mail arrives restores to a store holding every
// message acknowledged before the backup started.
func TestBackupUnderLoadRestores(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	smtpAddr := env.Addr("smtp")

	var mu sync.Mutex
	acked := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				subject := fmt.Sprintf("load-%d-%d", w, i)
				if err := sendPlain(smtpAddr, harness.User, subject); err != nil {
					t.Errorf("send %s: %v", subject, err)
					return
				}
				mu.Lock()
				acked[subject] = true
				mu.Unlock()
			}
		}(w)
	}
	// Let some mail arrive, then take the backup with senders still going.
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 40 || t.Failed() {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	before := make([]string, 0, len(acked))
	for s := range acked {
		before = append(before, s)
	}
	mu.Unlock()
	backup := filepath.Join(t.TempDir(), "posthorn-backup.db")
	mustRun(t, "", "--config", env.Config.Path, "backup", backup)
	close(stop)
	wg.Wait()

	// Restore into a fresh, stopped installation.
	cfgPath := initDir(t)
	mustRun(t, "", "--config", cfgPath, "restore", backup, "--force")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(cfg.DataPath("posthorn.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	msgs, err := st.Messages(harness.User, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	for _, m := range msgs {
		info, err := st.BlobInfo(m.BlobID)
		if err != nil {
			t.Fatal(err)
		}
		present[info.Envelope.Subject] = true
	}
	for _, s := range before {
		if !present[s] {
			t.Errorf("message %s was acknowledged before the backup began but is not in the restored store", s)
		}
	}
	t.Logf("%d acknowledged before the backup, %d in the restored store", len(before), len(msgs))
}

// TestRestoreCreatesDataDir: restoring on a new machine, whose data_dir
// does not exist yet, makes it (as serve would) and restores into it.
func TestRestoreCreatesDataDir(t *testing.T) {
	from := initDir(t)
	mustRun(t, "", "--config", from, "domain", "add", "restored.example")
	backup := filepath.Join(t.TempDir(), "b.db")
	mustRun(t, "", "--config", from, "backup", backup)

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "posthorn.toml")
	if err := os.WriteFile(cfgPath, []byte("hostname = \"mail.example.org\"\ndata_dir = \"new/data\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "", "--config", cfgPath, "restore", backup)
	if fi, err := os.Stat(filepath.Join(dir, "new", "data")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data_dir after restore: %v, %v", fi, err)
	}
	if out := mustRun(t, "", "--config", cfgPath, "domain", "list"); !strings.Contains(out, "restored.example") {
		t.Errorf("domain list of the restored store: %q", out)
	}
}
