package imap_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/store"
)

func probeMessage(subject string) []byte {
	return []byte("From: Bob <bob@example.org>\r\nTo: alice@example.test\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + subject + "@example.org>\r\nDate: Mon, 02 Jan 2006 15:04:05 -0700\r\n\r\nprobe body\r\n")
}

func seed(t *testing.T, env *harness.Env, subjects ...string) {
	t.Helper()
	for _, s := range subjects {
		if _, err := env.Server.Store.Append(context.Background(), harness.User, "INBOX",
			store.NewMessage{Body: probeMessage(s)}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestE2EPythonImaplib runs Python's imaplib over STARTTLS and implicit TLS.
func TestE2EPythonImaplib(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	env := harness.Start(t, harness.Options{})
	seed(t, env, "imaplib-probe")
	for _, mode := range []string{"starttls", "ssl"} {
		t.Run(mode, func(t *testing.T) {
			name := "imap"
			if mode == "ssl" {
				name = "imaps"
			}
			host, port, _ := net.SplitHostPort(env.Addr(name))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, py, "testdata/imaplib_client.py", host, port, mode,
				harness.User, harness.Password).CombinedOutput()
			if err != nil {
				t.Fatalf("imaplib: %v\n%s", err, out)
			}
			var got map[string]any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			s := fmt.Sprint(got)
			if mode == "starttls" {
				if !strings.Contains(fmt.Sprint(got["caps_before_tls"]), "LOGINDISABLED") ||
					got["login_before_tls"] == "OK" {
					t.Errorf("plaintext login not refused: %v", s)
				}
			}
			for _, want := range []string{"login:OK", "APPENDUID", "search:1", "imaplib-probe", "probe body",
				"$Junk", "create:OK", "rename:OK", "Py/Renamed", "delete:OK", "select:[OK 1]"} {
				if !strings.Contains(s, want) {
					t.Errorf("missing %q in %s", want, s)
				}
			}
		})
	}
}

// TestE2EIdleWakesOnMDADelivery: a message delivered through the MDA (the
// SMTP path's last step) reaches an IDLE client within 100 ms.
func TestE2EIdleWakesOnMDADelivery(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	exists := make(chan uint32, 10)
	c, err := imapclient.DialTLS(env.Addr("imaps"), &imapclient.Options{TLSConfig: env.ClientTLS(),
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(harness.User, harness.Password).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := env.Server.MDA.Deliver(context.Background(), mda.Envelope{From: "bob@example.org",
		Recipients: []string{harness.User}}, probeMessage("idle")); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-exists:
		if n != 1 {
			t.Errorf("EXISTS %d", n)
		}
		// Woken by the delivery's event, not by a poll: well within a
		// poll interval, with room for a loaded machine (-race).
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("IDLE woke after %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("IDLE client not woken")
	}
	idle.Close()
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestE2EThunderbirdFlows: the commands Thunderbird sends for delete (MOVE
// to Trash), drafts and sent copies (APPEND), search, folders and junk.
func TestE2EThunderbirdFlows(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	seed(t, env, "alpha", "beta", "gamma")
	c, err := imapclient.DialStartTLS(env.Addr("imap"), &imapclient.Options{TLSConfig: env.ClientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(harness.User, harness.Password).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, mb := range []string{"Drafts", "Sent"} {
		body := probeMessage("copy-" + mb)
		cmd := c.Append(mb, int64(len(body)), &imapv2.AppendOptions{Flags: []imapv2.Flag{imapv2.FlagSeen}})
		cmd.Write(body)
		cmd.Close()
		if d, err := cmd.Wait(); err != nil || d.UID == 0 {
			t.Fatalf("APPEND %s: %v %+v", mb, err, d)
		}
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	hdrs := []string{"From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "Priority", "X-Priority",
		"References", "Newsgroups", "In-Reply-To", "Content-Type", "Reply-To"}
	msgs, err := c.Fetch(imapv2.UIDSet{{Start: 1, Stop: 0}}, &imapv2.FetchOptions{UID: true, RFC822Size: true, Flags: true,
		BodySection: []*imapv2.FetchItemBodySection{{Peek: true, Specifier: imapv2.PartSpecifierHeader, HeaderFields: hdrs}}}).Collect()
	if err != nil || len(msgs) != 3 {
		t.Fatalf("header sync: %v %d", err, len(msgs))
	}
	if s := string(msgs[1].BodySection[0].Bytes); !strings.Contains(s, "Subject: beta\r\n") || strings.Contains(s, "probe body") {
		t.Fatalf("header fields: %q", s)
	}
	res, err := c.UIDSearch(&imapv2.SearchCriteria{Header: []imapv2.SearchCriteriaHeaderField{{Key: "Subject", Value: "gamma"}}}, nil).Wait()
	if err != nil || len(res.AllUIDs()) != 1 || res.AllUIDs()[0] != 3 {
		t.Fatalf("SEARCH: %v %+v", err, res)
	}
	if _, err := c.Store(imapv2.UIDSetNum(2), &imapv2.StoreFlags{Op: imapv2.StoreFlagsAdd, Silent: true,
		Flags: []imapv2.Flag{imapv2.FlagJunk}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(imapv2.UIDSetNum(2), &imapv2.StoreFlags{Op: imapv2.StoreFlagsSet, Silent: true,
		Flags: []imapv2.Flag{imapv2.FlagNotJunk}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if md, err := c.Move(imapv2.UIDSetNum(1), "Trash").Wait(); err != nil || md.DestUIDs == nil {
		t.Fatalf("MOVE to Trash: %v", err)
	}
	if err := c.Create("Folder", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename("Folder", "Folder2", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Folder2").Wait(); err != nil {
		t.Fatal(err)
	}
	st := env.Server.Store
	inbox, _ := st.Messages(harness.User, "INBOX")
	trash, _ := st.Messages(harness.User, "Trash")
	if len(inbox) != 2 || len(trash) != 1 {
		t.Fatalf("INBOX %d, Trash %d", len(inbox), len(trash))
	}
	if f := inbox[0].Flags; len(f) != 1 || f[0] != "$NotJunk" {
		t.Fatalf("junk flags %v", f)
	}
	for _, mb := range []string{"Drafts", "Sent"} {
		if m, _ := st.Mailbox(harness.User, mb); m.Messages != 1 {
			t.Fatalf("%s has %d", mb, m.Messages)
		}
	}
	if _, err := st.Mailbox(harness.User, "Folder2"); err == nil {
		t.Fatal("Folder2 still exists")
	}
}

// TestE2EMbsync: mbsync (isync) mirrors alice's account to a Maildir; a
// second run finds nothing to do.
func TestE2EMbsync(t *testing.T) {
	bin, err := exec.LookPath("mbsync")
	if err != nil {
		t.Skip("mbsync (isync) not installed")
	}
	env := harness.Start(t, harness.Options{Configure: func(c *config.Config) {}})
	seed(t, env, "one", "two", "three")
	if _, err := env.Server.Store.Append(context.Background(), harness.User, "Archive",
		store.NewMessage{Body: probeMessage("archived"), Flags: []string{`\Seen`}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(env.Addr("imaps"))
	rc := fmt.Sprintf(`IMAPAccount alice
Host %s
Port %s
User %s
Pass "%s"
SSLType IMAPS
CertificateFile %s
AuthMechs LOGIN

IMAPStore remote
Account alice

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Near
SyncState *
`, host, port, harness.User, harness.Password, writeCert(t, env), dir, dir)
	rcPath := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(rcPath, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "-c", rcPath, "-a").CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
		return string(out)
	}
	first := run()
	files, _ := filepath.Glob(filepath.Join(dir, "INBOX", "cur", "*"))
	newFiles, _ := filepath.Glob(filepath.Join(dir, "INBOX", "new", "*"))
	if len(files)+len(newFiles) != 3 {
		t.Fatalf("INBOX maildir has %d+%d files\n%s", len(files), len(newFiles), first)
	}
	arch, _ := filepath.Glob(filepath.Join(dir, "Archive", "cur", "*"))
	if len(arch) != 1 {
		t.Fatalf("Archive maildir has %d files\n%s", len(arch), first)
	}
	maildirBefore := listTree(t, dir)
	storeBefore := storeState(t, env)
	second := run()
	if after := listTree(t, dir); after != maildirBefore {
		t.Errorf("second run changed the Maildir:\nbefore %s\nafter  %s\n%s", maildirBefore, after, second)
	}
	if after := storeState(t, env); after != storeBefore {
		t.Errorf("second run changed the server:\nbefore %s\nafter  %s", storeBefore, after)
	}
}

// listTree lists the message files (their names carry the flags) and
// mbsync's state files with sizes.
func listTree(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && !strings.HasSuffix(p, ".lock") && !strings.HasSuffix(p, "mbsyncrc") {
			fmt.Fprintf(&b, "%s:%d ", strings.TrimPrefix(p, dir), fi.Size())
		}
		return nil
	})
	return b.String()
}

func storeState(t *testing.T, env *harness.Env) string {
	boxes, err := env.Server.Store.Mailboxes(harness.User)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mb := range boxes {
		msgs, _ := env.Server.Store.Messages(harness.User, mb.Name)
		fmt.Fprintf(&b, "%s next=%d:", mb.Name, mb.UIDNext)
		for _, m := range msgs {
			fmt.Fprintf(&b, " %d%v", m.UID, m.Flags)
		}
		b.WriteString("; ")
	}
	return b.String()
}

var certMu sync.Mutex

// writeCert saves the server's certificate for mbsync to trust.
func writeCert(t *testing.T, env *harness.Env) string {
	certMu.Lock()
	defer certMu.Unlock()
	matches, _ := filepath.Glob(filepath.Join(env.Config.DataPath(""), "*.pem"))
	for _, m := range matches {
		b, _ := os.ReadFile(m)
		if strings.Contains(string(b), "CERTIFICATE") && !strings.Contains(string(b), "PRIVATE") {
			return m
		}
	}
	t.Skipf("no certificate file in %s (%v)", env.Config.DataPath(""), matches)
	return ""
}

// TestE2EAppendRefused: on the real server (a store in log mode), an
// APPEND to a missing mailbox gets NO [TRYCREATE] and one over quota NO
// [OVERQUOTA]; neither stores anything, and the next APPEND is stored.
func TestE2EAppendRefused(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c, err := imapclient.DialTLS(env.Addr("imaps"), &imapclient.Options{TLSConfig: env.ClientTLS()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(harness.User, harness.Password).Wait(); err != nil {
		t.Fatal(err)
	}
	appendTo := func(mb, subject string) (*imapv2.AppendData, error) {
		body := probeMessage(subject)
		cmd := c.Append(mb, int64(len(body)), nil)
		cmd.Write(body)
		cmd.Close()
		return cmd.Wait()
	}
	code := func(err error) imapv2.ResponseCode {
		var ie *imapv2.Error
		if errors.As(err, &ie) && ie.Type == imapv2.StatusResponseTypeNo {
			return ie.Code
		}
		return ""
	}
	if _, err := appendTo("NoSuchBox", "missing"); code(err) != imapv2.ResponseCodeTryCreate {
		t.Fatalf("APPEND to a missing mailbox: %v, want NO [TRYCREATE]", err)
	}
	st := env.Server.Store
	if err := st.SetQuota(harness.User, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := appendTo("INBOX", "over"); code(err) != imapv2.ResponseCodeOverQuota {
		t.Fatalf("APPEND over quota: %v, want NO [OVERQUOTA]", err)
	}
	if err := st.SetQuota(harness.User, 0); err != nil {
		t.Fatal(err)
	}
	d, err := appendTo("INBOX", "kept")
	if err != nil || d.UID == 0 {
		t.Fatalf("APPEND after the refusals: %v %+v", err, d)
	}
	if _, err := st.Mailbox(harness.User, "NoSuchBox"); err == nil {
		t.Fatal("the refused APPEND created its mailbox")
	}
	if msgs, _ := st.Messages(harness.User, "INBOX"); len(msgs) != 1 || msgs[0].UID != uint32(d.UID) {
		t.Fatalf("INBOX holds %d messages, want only the one appended after the refusals", len(msgs))
	}
}

// TestE2EMalformedSASL: AUTHENTICATE with a response the real SASL
// servers (package auth) find malformed gets BAD, as SMTP's 501 and
// POP3's -ERR, and the connection goes on. It got NO [SERVERBUG] and an
// ERROR line in the log, which any client could cause at will.
func TestE2EMalformedSASL(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	conn, err := tls.Dial("tcp", env.Addr("imaps"), env.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(conn)
	line := func() string {
		t.Helper()
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	line() // greeting
	tagged := func(tag string) string {
		t.Helper()
		for {
			if l := line(); strings.HasPrefix(l, tag+" ") {
				return l
			}
		}
	}
	tooLong := base64.StdEncoding.EncodeToString([]byte("\x00" + strings.Repeat("a", 1500) + "\x00x"))
	for i, ir := range []string{"AAAA", tooLong} {
		tag := fmt.Sprintf("a%d", i)
		fmt.Fprintf(conn, "%s AUTHENTICATE PLAIN %s\r\n", tag, ir)
		if l := tagged(tag); !strings.HasPrefix(l, tag+" BAD ") {
			t.Errorf("AUTHENTICATE PLAIN %.8s...: %q, want BAD", ir, l)
		}
	}
	fmt.Fprintf(conn, "n NOOP\r\n")
	if l := tagged("n"); !strings.HasPrefix(l, "n OK") {
		t.Errorf("NOOP after the refusals: %q", l)
	}
}
