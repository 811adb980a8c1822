package crash

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// inNamespace is set in the environment of the test process that
// TestDiskFull starts in a user and mount namespace of its own.
const inNamespace = "POSTHORN_TEST_IN_NAMESPACE"

// TestDiskFull runs `posthorn serve` with its data directory on a small
// file system and fills it, and checks what a mail server on a full disk
// must do:
//   - below the reserve (twice max_message_bytes free), answer SMTP with
//     452 4.3.1 and IMAP APPEND with NO [OVERQUOTA], never an internal
//     error, while deleting mail (STORE \Deleted, EXPUNGE) still works;
//   - with the disk full to the last byte, the same;
//   - take mail again as soon as there is room, without a restart (before
//     the store owed a checkpoint rather than failing for good, a
//     checkpoint that met the full disk left every later write failing
//     until a restart);
//   - lose nothing acknowledged.
//
// The file system is a tmpfs, mounted in a mount namespace of a user
// namespace (`unshare --user --map-root-user --mount`), so the test needs
// no privilege and leaves no mount behind: it runs itself again in one.
func TestDiskFull(t *testing.T) {
	if os.Getenv(inNamespace) == "" {
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("unshare (util-linux) not installed")
		}
		if out, err := exec.Command(unshare, "--user", "--map-root-user", "--mount", "true").CombinedOutput(); err != nil {
			t.Skipf("no user namespaces here: %v %s", err, out)
		}
		posthornBinary(t) // built outside, where the build cache is writable
		cmd := exec.Command(unshare, "--user", "--map-root-user", "--mount",
			os.Args[0], "-test.run", "^TestDiskFull$", "-test.v", "-test.count", "1")
		cmd.Env = append(os.Environ(), inNamespace+"=1", "POSTHORN_TEST_BINARY="+buildPath)
		out, err := cmd.CombinedOutput()
		t.Logf("in a namespace:\n%s", out)
		if err != nil || !strings.Contains(string(out), "--- PASS: TestDiskFull") {
			t.Fatalf("TestDiskFull in a namespace: %v", err)
		}
		return
	}
	if bin := os.Getenv("POSTHORN_TEST_BINARY"); bin != "" {
		buildOnce.Do(func() { buildPath = bin })
	}

	dir := t.TempDir()
	cfg := writeConfig(t, dir, "127.0.0.1:9", 9) // no outbound mail here
	// 1 MiB messages at most: mail is refused with less than 2 MiB free.
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, append([]byte("max_message_bytes = 1048576\n"), b...), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	// 40 MiB: the log takes 16 MiB of zeros at its first record.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=40m,mode=0700", "tmpfs", data).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", data).Run() })
	p := newProc(t, cfg)
	p.cli("", "domain", "add", "example.test")
	for _, u := range localUsers {
		p.cli(password+"\n", "user", "add", "--password-stdin", u)
	}
	p.start()

	var acked []string
	n := 0
	send := func(size int) error {
		n++
		id := fmt.Sprintf("diskfull-%d", n)
		msg := fmt.Sprintf("From: <sender@remote.test>\r\nTo: <%s>\r\nSubject: %s\r\nX-Crash-ID: %s\r\n\r\n%s\r\n",
			localUsers[0], id, id, strings.Repeat("A line of a message on a full disk.\r\n", size/37+1))
		err := sendPlain(p.addr("smtp"), localUsers[0], msg)
		if err == nil {
			acked = append(acked, id)
		}
		return err
	}
	for range 3 {
		if err := send(2000); err != nil {
			t.Fatalf("send with room on the disk: %v", err)
		}
	}

	// Fill the file system but for 1 MiB: below the reserve of 2 MiB.
	filler := filepath.Join(data, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 256<<10)
	written := int64(0)
	for {
		n, err := f.Write(chunk)
		written += int64(n)
		if err != nil {
			break
		}
	}
	if err := f.Truncate(written - 1<<20); err != nil {
		t.Fatal(err)
	}

	// Below the reserve, every message gets 452 4.3.1.
	full := 0
	var lastRefusal error
	for i := 0; i < 2000 && full < 3; i++ {
		err := send(2000)
		switch {
		case err == nil:
		case isNoSpace(err):
			full++
			lastRefusal = err
		default:
			t.Fatalf("send to a full disk: %v (want 452 4.3.1)", err)
		}
	}
	if full < 3 {
		t.Fatal("2,000 messages fit on a full disk")
	}
	// The first refusal may come at the end of DATA, when the message
	// itself crossed the reserve; once below it, at MAIL FROM.
	if !strings.HasPrefix(lastRefusal.Error(), "MAIL FROM: ") {
		t.Errorf("refused below the reserve after MAIL FROM (%v): the free space is known before the message comes", lastRefusal)
	}
	login := func() *imapclient.Client {
		c, err := imapclient.DialStartTLS(p.addr("imap"), &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(localUsers[0], password).Wait(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	imapAppend := func(size int) error {
		c := login()
		defer c.Close()
		body := "Subject: appended\r\n\r\n" + strings.Repeat("x", size) + "\r\n"
		cmd := c.Append("INBOX", int64(len(body)), nil)
		cmd.Write([]byte(body))
		cmd.Close()
		_, err := cmd.Wait()
		return err
	}
	var ie *imap.Error
	if err := imapAppend(200 << 10); !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != imap.ResponseCodeOverQuota {
		t.Fatalf("APPEND to a full disk: %v (want NO [OVERQUOTA])", err)
	}
	// Deleting mail, to make room, works on the full disk.
	c := login()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatalf("STORE \\Deleted on a full disk: %v", err)
	}
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatalf("EXPUNGE on a full disk: %v", err)
	}
	c.Close()
	acked = acked[1:] // diskfull-1, UID 1, is gone

	// Now full to the last byte, and a second of quiet, in which the
	// store checkpoints (it looks every second).
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	time.Sleep(2500 * time.Millisecond)
	if err := send(100 << 10); !isNoSpace(err) {
		t.Fatalf("send to a full disk after a checkpoint: %v (want 452 4.3.1)", err)
	}

	// Room again: mail goes in, with no restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := send(100 << 10); err != nil {
			t.Fatalf("send once there is room again: %v\n%s", err, p.logTail())
		}
	}
	if err := imapAppend(200 << 10); err != nil {
		t.Fatalf("APPEND once there is room again: %v", err)
	}

	p.stop()
	counts := mailboxCounts(t, p.dataDir)[localUsers[0]]
	for _, id := range acked {
		if counts[id] == 0 {
			t.Errorf("%s got 250 and is not stored", id)
		}
	}
	t.Logf("%d messages acknowledged, %d refused with 452 4.3.1; all stored", len(acked), n-len(acked))
}

// isNoSpace reports whether err is the SMTP reply for a full disk.
func isNoSpace(err error) bool {
	var te *textproto.Error
	return errors.As(err, &te) && te.Code == 452 && strings.HasPrefix(te.Msg, "4.3.1 ")
}

// sendPlain sends msg to rcpt over port 25, with STARTTLS (the server's
// certificate is self-signed). An error says at which command it came.
func sendPlain(addr, rcpt, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true}); err != nil {
		return err
	}
	if err := c.Mail("sender@remote.test"); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	if err := c.Rcpt(rcpt); err != nil {
		return fmt.Errorf("RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return c.Quit()
}
