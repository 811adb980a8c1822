package main

import (
	"context"
	"fmt"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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

// TestRestoreRefusesNonBackup: restore from a missing, empty, truncated
// or foreign file is one line and a non-zero exit, and neither the store
// nor the named file changes (the check used to open the file as a
// store, creating a missing one and making an empty one a new, empty
// store, which then replaced everything).
func TestRestoreRefusesNonBackup(t *testing.T) {
	cfg := initDir(t)
	mustRun(t, "", "--config", cfg, "domain", "add", "kept.example")
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	mustRun(t, "", "--config", cfg, "backup", good)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.db")
	cut := filepath.Join(dir, "cut.db")
	text := filepath.Join(dir, "text.db")
	os.WriteFile(empty, nil, 0o600)
	// Cut after the meta and freelist pages, before the buckets' (a
	// backup is compacted: past its last page the file is only room).
	if len(data) <= 3*4096 {
		t.Fatalf("backup of %d bytes", len(data))
	}
	os.WriteFile(cut, data[:3*4096], 0o600)
	os.WriteFile(text, []byte("hello\n"), 0o600)
	missing := filepath.Join(dir, "missing.db")
	for _, src := range []string{missing, empty, cut, text} {
		mustFail(t, "is not a usable backup", "--config", cfg, "restore", src, "--force")
		if out := mustRun(t, "", "--config", cfg, "domain", "list"); !strings.Contains(out, "kept.example") {
			t.Fatalf("after a refused restore from %s, domain list = %q", filepath.Base(src), out)
		}
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("restore created the missing backup file")
	}
	if fi, _ := os.Stat(empty); fi.Size() != 0 {
		t.Errorf("restore wrote %d bytes into the empty file", fi.Size())
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, "*-wal")); len(matches) > 0 {
		t.Errorf("restore left logs beside the backups: %v", matches)
	}
	mustRun(t, "", "--config", cfg, "restore", good, "--force")
}

// TestBackupRefusesStoreFile: a backup onto the data file (or its log)
// is refused, with the server running and stopped: renamed over the live
// file, it left the server writing to a file no longer there, and every
// message acknowledged since was lost at the next start.
func TestBackupRefusesStoreFile(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	db := env.Config.DataPath("posthorn.db")
	for _, dst := range []string{db, db + "-wal", db + ".compact"} {
		mustFail(t, "one of the store's own files", "--config", env.Config.Path, "backup", dst, "--force")
	}
	// A name of the user's own beside them is fine.
	mustRun(t, "", "--config", env.Config.Path, "backup", db+".bak")
	// Through a symbolic link to data_dir, and by a hard link's name.
	link := filepath.Join(t.TempDir(), "data")
	if err := os.Symlink(filepath.Dir(db), link); err != nil {
		t.Fatal(err)
	}
	mustFail(t, "one of the store's own files", "--config", env.Config.Path, "backup", filepath.Join(link, "posthorn.db"), "--force")
	hard := filepath.Join(filepath.Dir(db), "hard.db")
	if err := os.Link(db, hard); err == nil {
		mustFail(t, "one of the store's own files", "--config", env.Config.Path, "backup", hard, "--force")
		os.Remove(hard)
	}
	if err := sendPlain(env.Addr("smtp"), harness.User, "after"); err != nil {
		t.Fatal(err)
	}
	if ms, err := env.Server.Store.Messages(harness.User, "INBOX"); err != nil || len(ms) != 1 {
		t.Fatalf("INBOX: %d messages, %v", len(ms), err)
	}
	// Stopped: the same check, through the store opened directly.
	cfg := initDir(t)
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, "", "--config", cfg, "domain", "list") // makes the store
	mustFail(t, "one of the store's own files", "--config", cfg, "backup", c.DataPath("posthorn.db"), "--force")
}

// TestCLIStoreCompact: store compact on a stopped server reclaims the
// space of deleted mail and reports the bytes in use before and after
// (the files' sizes include what is grown ahead of use, and could show a
// compacted store as larger); what is kept is still there.
func TestCLIStoreCompact(t *testing.T) {
	cfg := initDir(t)
	mustRun(t, "pw\n", "--config", cfg, "user", "add", "keep@example.org", "--password-stdin")
	mustRun(t, "pw\n", "--config", cfg, "user", "add", "gone@example.org", "--password-stdin")
	var mbox strings.Builder
	for i := range 200 {
		fmt.Fprintf(&mbox, "From a@b.org Mon Jan  1 00:00:00 2024\nFrom: a@b.org\nSubject: %d\n\n%s\n\n", i, strings.Repeat("filler line\n", 500))
	}
	file := filepath.Join(t.TempDir(), "in.mbox")
	os.WriteFile(file, []byte(mbox.String()), 0o600)
	mustRun(t, "", "--config", cfg, "import", "mbox", file, "--user", "gone@example.org")
	mustRun(t, "", "--config", cfg, "import", "mbox", file, "--user", "keep@example.org", "--mailbox", "Archive")
	mustRun(t, "", "--config", cfg, "user", "del", "gone@example.org")
	// A backup leaves out the space deleted mail left free (probe 8: it
	// had every page of the file).
	bak := filepath.Join(t.TempDir(), "b.db")
	mustRun(t, "", "--config", cfg, "backup", bak)
	fi, err := os.Stat(bak)
	if err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, "", "--config", cfg, "store", "compact")
	var db string
	var before, after int64
	if _, err := fmt.Sscanf(out, "compacted %s %d -> %d bytes", &db, &before, &after); err != nil {
		t.Fatalf("store compact said %q: %v", out, err)
	}
	if after >= before || after < 200*500*12 {
		t.Errorf("compacted from %d to %d bytes in use, for 200 kept messages of 6 KB", before, after)
	}
	if fi.Size() > after+1<<20 {
		t.Errorf("backup of %d bytes, where the store compacts to %d", fi.Size(), after)
	}
	if out := mustRun(t, "", "--config", cfg, "user", "list"); !strings.Contains(out, "keep@example.org") || strings.Contains(out, "gone@") {
		t.Errorf("user list after compact: %q", out)
	}
}

// TestRestoreAndCompactKeepOwner: run by root on a store that belongs to
// the server's own user (as deploy/posthorn.service runs it), restore and
// store compact leave the new file that user's: a root-owned store, mode
// 0600, would keep the service from starting.
func TestRestoreAndCompactKeepOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root can give files away")
	}
	const uid, gid = 65534, 65534
	cfg := initDir(t)
	mustRun(t, "", "--config", cfg, "domain", "add", "owned.example")
	data := filepath.Join(filepath.Dir(cfg), "data")
	db := filepath.Join(data, "posthorn.db")
	for _, p := range []string{data, db} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	backup := filepath.Join(t.TempDir(), "b.db")
	mustRun(t, "", "--config", cfg, "backup", backup)
	owned := func(step string) {
		t.Helper()
		fi, err := os.Stat(db)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
			t.Errorf("after %s the store belongs to %d:%d, want %d:%d", step, st.Uid, st.Gid, uid, gid)
		}
	}
	mustRun(t, "", "--config", cfg, "restore", "--force", backup)
	owned("restore")
	mustRun(t, "", "--config", cfg, "store", "compact")
	owned("store compact")
	if out := mustRun(t, "", "--config", cfg, "domain", "list"); !strings.Contains(out, "owned.example") {
		t.Errorf("domain list: %q", out)
	}
}

// TestRestoreGivesNoUIDTwice: the UIDs the server gave out after a
// backup are not given out again by the store restored from it, under the
// same UIDVALIDITY: fetchmail (UIDL) and mbsync took the message that came
// after the restore for one they had, and never fetched it.
func TestRestoreGivesNoUIDTwice(t *testing.T) {
	cfgPath := initDir(t)
	mustRun(t, "pw one two\n", "--config", cfgPath, "user", "add", "u@example.org", "--password-stdin")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	appendN := func(n int) (last store.Delivered, mb store.Mailbox) {
		t.Helper()
		st, err := store.Open(cfg.DataPath("posthorn.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		for i := range n {
			if last, err = st.Append(context.Background(), "u@example.org", "INBOX", store.NewMessage{Body: []byte(fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i))}); err != nil {
				t.Fatal(err)
			}
		}
		if mb, err = st.Mailbox("u@example.org", "INBOX"); err != nil {
			t.Fatal(err)
		}
		return last, mb
	}
	appendN(2)
	backup := filepath.Join(t.TempDir(), "b.db")
	mustRun(t, "", "--config", cfgPath, "backup", backup)
	given, before := appendN(3) // UIDs 3 to 5, which clients now know
	out := mustRun(t, "", "--config", cfgPath, "restore", "--force", backup)
	if !strings.Contains(out, "next UID raised") {
		t.Errorf("restore does not say what it did to the UIDs: %q", out)
	}
	after, mb := appendN(1)
	if mb.UIDValidity != before.UIDValidity {
		t.Errorf("UIDVALIDITY changed from %d to %d: clients would sync everything again", before.UIDValidity, mb.UIDValidity)
	}
	if after.UID <= given.UID {
		t.Fatalf("the restored store gave UID %d again (the last given before the restore was %d)", after.UID, given.UID)
	}
	st, err := store.Open(cfg.DataPath("posthorn.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	msgs, err := st.Messages("u@example.org", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 || msgs[0].UID != 1 || msgs[1].UID != 2 {
		t.Errorf("restored INBOX: %+v, want the backup's UIDs 1 and 2 and the new message", msgs)
	}
	if _, err := os.Stat(cfg.DataPath("posthorn.db.restore")); err == nil {
		t.Error("restore left its temporary file")
	}
}
