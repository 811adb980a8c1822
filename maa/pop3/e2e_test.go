package pop3_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/store"
)

// testMessage is message i of a test maildrop: CRLF, with a line that
// starts with a dot, and a marker to count deliveries by.
func testMessage(i int) string {
	return fmt.Sprintf("From: bob@example.test\r\nTo: %s\r\nSubject: test %d\r\nMessage-ID: <m%d@example.test>\r\n\r\n"+
		"Hello %d\r\n.a line with a leading dot\r\nX-Marker: posthorn-%d\r\n", harness.User, i, i, i, i)
}

// fill delivers n test messages to alice's INBOX.
func fill(t testing.TB, env *harness.Env, n int) {
	t.Helper()
	for i := range n {
		_, err := env.Server.Store.Deliver(context.Background(), []byte(testMessage(i)),
			[]store.Delivery{{Account: harness.User, Mailbox: "INBOX"}})
		if err != nil {
			t.Fatalf("deliver %d: %v", i, err)
		}
	}
}

func inboxCount(t testing.TB, env *harness.Env) int {
	t.Helper()
	msgs, err := env.Server.Store.Messages(harness.User, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return len(msgs)
}

// popConn is a small POP3 client over net/textproto.
type popConn struct {
	t testing.TB
	*textproto.Conn
	raw net.Conn
}

func popDial(t testing.TB, addr string) *popConn {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	c := &popConn{t: t, Conn: textproto.NewConn(raw), raw: raw}
	t.Cleanup(func() { c.Close() })
	c.expect("+OK")
	return c
}

func (c *popConn) expect(prefix string) string {
	c.t.Helper()
	line, err := c.ReadLine()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if !strings.HasPrefix(line, prefix) {
		c.t.Fatalf("got %q, want %q...", line, prefix)
	}
	return line
}

func (c *popConn) cmd(prefix, format string, args ...any) string {
	c.t.Helper()
	if err := c.PrintfLine(format, args...); err != nil {
		c.t.Fatal(err)
	}
	return c.expect(prefix)
}

func (c *popConn) stls(env *harness.Env) {
	c.t.Helper()
	c.cmd("+OK", "STLS")
	tc := tls.Client(c.raw, env.ClientTLS())
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	c.Conn = textproto.NewConn(tc)
}

func popLogin(t testing.TB, env *harness.Env) *popConn {
	t.Helper()
	c := popDial(t, env.Addr("pop3"))
	c.stls(env)
	c.cmd("+OK", "USER %s", harness.User)
	c.cmd("+OK", "PASS %s", harness.Password)
	return c
}

func (c *popConn) multi(prefix, format string, args ...any) []string {
	c.t.Helper()
	c.cmd(prefix, format, args...)
	lines, err := c.ReadDotLines()
	if err != nil {
		c.t.Fatal(err)
	}
	return lines
}

// TestE2EFetchmail: fetchmail retrieves every message over POP3 with
// STLS and deletes them; INBOX is then empty in the store and over IMAP.
func TestE2EFetchmail(t *testing.T) {
	fetchmail, err := exec.LookPath("fetchmail")
	if err != nil {
		t.Skip("fetchmail is not installed")
	}
	env := harness.Start(t, harness.Options{})
	const n = 25
	fill(t, env, n)
	dir := t.TempDir()
	out := filepath.Join(dir, "mbox")
	_, port, _ := net.SplitHostPort(env.Addr("pop3"))
	rc := fmt.Sprintf("set no syslog\npoll 127.0.0.1 service %s protocol POP3 auth password\n"+
		"  user %q there with password %q is \"root\" here\n"+
		"  sslproto 'tls1.2+' no sslcertck fetchall nokeep\n  mda \"cat >> %s\"\n",
		port, harness.User, harness.Password, out)
	rcPath := filepath.Join(dir, "fetchmailrc")
	if err := os.WriteFile(rcPath, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, fetchmail, "-f", rcPath, "--nodetach", "-v")
	cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
	logs, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fetchmail: %v\n%s", err, logs)
	}
	if !bytes.Contains(logs, []byte("STLS")) {
		t.Errorf("fetchmail did not use STLS:\n%s", logs)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("%v; fetchmail said:\n%s", err, logs)
	}
	defer func() {
		if t.Failed() {
			t.Logf("fetchmail said:\n%s", logs)
		}
	}()
	// fetchmail hands the MDA LF line endings.
	got = bytes.ReplaceAll(got, []byte("\r\n"), []byte("\n"))
	for i := range n {
		if c := bytes.Count(got, []byte(fmt.Sprintf("X-Marker: posthorn-%d\n", i))); c != 1 {
			t.Errorf("message %d delivered %d times", i, c)
		}
	}
	if bytes.Count(got, []byte("\n.a line with a leading dot\n")) != n {
		t.Errorf("dot-stuffing not undone correctly")
	}
	if c := inboxCount(t, env); c != 0 {
		t.Errorf("INBOX has %d messages after fetchmail, want 0", c)
	}
	imapInboxEmpty(t, env)
}

// imapInboxEmpty checks over IMAP, when this build serves IMAP, that
// INBOX is empty.
func imapInboxEmpty(t *testing.T, env *harness.Env) {
	if env.Server.Addr("imap") == nil {
		t.Log("IMAP is not available in this build; checked the store only")
		return
	}
	c := imapLogin(t, env, nil)
	defer c.Close()
	data, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatalf("imap select: %v", err)
	}
	if data.NumMessages != 0 {
		t.Errorf("IMAP INBOX has %d messages, want 0", data.NumMessages)
	}
}

// TestE2ECurl: curl LIST and RETR over pop3:// with STLS required and
// over pop3s://.
func TestE2ECurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	env := harness.Start(t, harness.Options{})
	fill(t, env, 3)
	run := func(url string, extra ...string) string {
		t.Helper()
		args := append([]string{"-sS", "-k", "--max-time", "20", "-u", harness.User + ":" + harness.Password}, extra...)
		out, err := exec.Command(curl, append(args, url)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", url, err, out)
		}
		return string(out)
	}
	m := testMessage(1)
	list := run("pop3://"+env.Addr("pop3")+"/", "--ssl-reqd")
	if want := fmt.Sprintf("2 %d\r\n", len(m)); !strings.Contains(list, want) {
		t.Errorf("curl LIST: %q lacks %q", list, want)
	}
	if got := run("pop3://"+env.Addr("pop3")+"/2", "--ssl-reqd"); got != m {
		t.Errorf("curl RETR 2 = %q, want %q", got, m)
	}
	if got := run("pop3s://" + env.Addr("pop3s") + "/3"); got != testMessage(2) {
		t.Errorf("curl pop3s RETR 3 = %q", got)
	}
	// A per-recipient prefix (as the MDA writes) is part of the size
	// LIST reports and of what RETR sends.
	prefix := "Delivered-To: " + harness.User + "\r\n"
	if _, err := env.Server.Store.Deliver(context.Background(), []byte(testMessage(3)),
		[]store.Delivery{{Account: harness.User, Mailbox: "INBOX", Prefix: []byte(prefix)}}); err != nil {
		t.Fatal(err)
	}
	want := prefix + testMessage(3)
	if got := run("pop3://"+env.Addr("pop3")+"/4", "--ssl-reqd"); got != want {
		t.Errorf("curl RETR 4 = %q, want %q", got, want)
	}
	list = run("pop3://"+env.Addr("pop3")+"/", "--ssl-reqd")
	if w := fmt.Sprintf("4 %d\r\n", len(want)); !strings.Contains(list, w) {
		t.Errorf("curl LIST: %q lacks %q", list, w)
	}
	if c := inboxCount(t, env); c != 4 {
		t.Errorf("INBOX has %d messages, want 4", c)
	}
}

// TestE2EPoplib runs Python's poplib with stls().
func TestE2EPoplib(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	env := harness.Start(t, harness.Options{})
	fill(t, env, 4)
	host, port, _ := net.SplitHostPort(env.Addr("pop3"))
	const script = `
import json, poplib, ssl, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=20)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
caps = p.capa()
p.stls(context=ctx)
p.user(sys.argv[3])
p.pass_(sys.argv[4])
count, size = p.stat()
out = {"caps": sorted(caps), "count": count, "size": size,
       "list": p.list()[1], "uidl": p.uidl()[1], "msgs": []}
for i in range(1, count + 1):
    out["msgs"].append(b"\r\n".join(p.retr(i)[1]).decode() + "\r\n")
out["top"] = b"\r\n".join(p.top(1, 0)[1]).decode()
p.dele(1)
p.quit()
print(json.dumps(out, default=lambda b: b.decode()))
`
	raw, err := exec.Command(python, "-c", script, host, port, harness.User, harness.Password).CombinedOutput()
	if err != nil {
		t.Fatalf("poplib: %v\n%s", err, raw)
	}
	var out struct {
		Caps  []string
		Count int
		Size  int
		List  []string
		UIDL  []string
		Msgs  []string
		Top   string
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	size := 0
	for i := range 4 {
		size += len(testMessage(i))
	}
	if out.Count != 4 || out.Size != size || len(out.List) != 4 || len(out.UIDL) != 4 {
		t.Errorf("poplib saw %+v", out)
	}
	for i, m := range out.Msgs {
		if m != testMessage(i) {
			t.Errorf("message %d = %q, want %q", i+1, m, testMessage(i))
		}
	}
	if !strings.HasPrefix(testMessage(0), out.Top) || !strings.Contains(out.Top, "Subject: test 0") {
		t.Errorf("TOP 1 0 = %q", out.Top)
	}
	if c := inboxCount(t, env); c != 3 {
		t.Errorf("INBOX has %d messages after DELE 1 and QUIT, want 3", c)
	}
}

// TestE2EUIDLStable: unique ids survive reconnects and a restart, and a
// new message never takes an old id.
func TestE2EUIDLStable(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	fill(t, env, 3)
	c := popLogin(t, env)
	first := c.multi("+OK", "UIDL")
	c.cmd("+OK", "DELE 3")
	c.cmd("+OK", "QUIT")
	fill(t, env, 1)
	c = popLogin(t, env)
	second := c.multi("+OK", "UIDL")
	c.cmd("+OK", "QUIT")
	id := func(l string) string { return strings.Fields(l)[1] }
	if len(first) != 3 || len(second) != 3 {
		t.Fatalf("UIDL %q then %q", first, second)
	}
	for i := range 2 {
		if id(first[i]) != id(second[i]) {
			t.Errorf("message %d: UIDL %q then %q", i+1, first[i], second[i])
		}
	}
	if id(second[2]) == id(first[2]) {
		t.Errorf("a new message reused the unique id %q", id(first[2]))
	}
	env.Stop()
	env = harness.Start(t, harness.Options{Dir: env.Dir})
	c = popLogin(t, env)
	if third := c.multi("+OK", "UIDL"); strings.Join(third, ",") != strings.Join(second, ",") {
		t.Errorf("UIDL after restart %q, before %q", third, second)
	}
}

// TestE2EInUseAndExpunged: a second session gets [IN-USE], also across
// pop3 and pop3s; a message expunged elsewhere gets a clean -ERR.
func TestE2EInUseAndExpunged(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	fill(t, env, 2)
	c := popLogin(t, env)
	c.cmd("+OK 2 ", "STAT")

	raw, err := tls.Dial("tcp", env.Addr("pop3s"), env.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	other := &popConn{t: t, Conn: textproto.NewConn(raw), raw: raw}
	defer other.Close()
	other.expect("+OK")
	other.cmd("+OK", "USER %s", harness.User)
	other.cmd("-ERR [IN-USE]", "PASS %s", harness.Password)

	expungeSecond(t, env)
	c.cmd("-ERR", "RETR 2")
	c.cmd("-ERR", "TOP 2 0")
	lines := c.multi("+OK", "RETR 1")
	if !strings.Contains(strings.Join(lines, "\n"), "X-Marker: posthorn-0") {
		t.Errorf("RETR 1 = %q", lines)
	}
	// The message expunged by the other session is not counted as left.
	c.cmd("+OK "+env.Config.Hostname+" POP3 server signing off (1 message left)", "QUIT")
	other.cmd("+OK", "USER %s", harness.User)
	other.cmd("+OK", "PASS %s", harness.Password) // released
}

// TestE2EPlaintextRefused: USER and AUTH before STLS are refused.
func TestE2EPlaintextRefused(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	c := popDial(t, env.Addr("pop3"))
	c.cmd("-ERR [AUTH] Plaintext authentication disallowed", "USER %s", harness.User)
	c.cmd("-ERR [AUTH] Plaintext authentication disallowed", "AUTH PLAIN")
	caps := c.multi("+OK", "CAPA")
	if !contains(caps, "STLS") || contains(caps, "USER") {
		t.Errorf("CAPA before STLS: %q", caps)
	}
	c.stls(env)
	c.cmd("+OK", "USER %s", harness.User)
	c.cmd("-ERR [AUTH] Authentication failed", "PASS wrong")
	c.cmd("+OK", "USER nobody@example.test")
	c.cmd("-ERR [AUTH] Authentication failed", "PASS wrong")
}

// expungeSecond expunges message 2 of INBOX over IMAP (STORE \Deleted,
// EXPUNGE), or through the store when this build has no IMAP.
func expungeSecond(t *testing.T, env *harness.Env) {
	t.Helper()
	if env.Server.Addr("imap") == nil {
		msgs, err := env.Server.Store.Messages(harness.User, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Server.Store.Expunge(harness.User, "INBOX", []uint32{msgs[1].UID}); err != nil {
			t.Fatal(err)
		}
		return
	}
	c := imapLogin(t, env, nil)
	defer c.Close()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
	if err := c.Store(imap.SeqSetNum(2), store, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
}

func imapLogin(t *testing.T, env *harness.Env, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialStartTLS(env.Addr("imap"), &imapclient.Options{TLSConfig: env.ClientTLS(), UnilateralDataHandler: h})
	if err != nil {
		t.Fatalf("imap dial: %v", err)
	}
	if err := c.Login(harness.User, harness.Password).Wait(); err != nil {
		t.Fatalf("imap login: %v", err)
	}
	return c
}

// TestE2EIMAPSeesPOP3Expunge: an IMAP session with INBOX selected is told
// of the messages POP3 removed at QUIT.
func TestE2EIMAPSeesPOP3Expunge(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	if env.Server.Addr("imap") == nil {
		t.Skip("IMAP is not available in this build")
	}
	fill(t, env, 3)
	var mu sync.Mutex
	var expunged []uint32
	ic := imapLogin(t, env, &imapclient.UnilateralDataHandler{Expunge: func(seq uint32) {
		mu.Lock()
		expunged = append(expunged, seq)
		mu.Unlock()
	}})
	defer ic.Close()
	if data, err := ic.Select("INBOX", nil).Wait(); err != nil || data.NumMessages != 3 {
		t.Fatalf("select: %v, %+v", err, data)
	}
	c := popLogin(t, env)
	c.cmd("+OK", "DELE 1")
	c.cmd("+OK", "DELE 3")
	c.cmd("+OK", "QUIT")
	if err := ic.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(expunged) != 2 {
		t.Errorf("IMAP saw expunges %v, want two", expunged)
	}
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// TestE2ELargeMessage: a message of several store chunks is streamed
// exactly, with dot-stuffing also where a line starts at a chunk
// boundary, and LIST gives its exact size.
func TestE2ELargeMessage(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	var b strings.Builder
	b.WriteString("From: bob@example.test\r\nSubject: large\r\n\r\n")
	for b.Len() < 3*store.ChunkSize+1000 {
		// Make a line start exactly at each chunk boundary.
		next := (b.Len()/store.ChunkSize + 1) * store.ChunkSize
		if gap := next - b.Len(); gap < 100 && gap >= 2 {
			b.WriteString(strings.Repeat("x", gap-2) + "\r\n")
			b.WriteString(".at a chunk boundary\r\n")
			continue
		}
		b.WriteString("..two dots, then text to fill the line up to a normal length\r\n")
		b.WriteString("a normal line of text that is not special in any way at all\r\n")
	}
	body := b.String()
	if _, err := env.Server.Store.Deliver(context.Background(), []byte(body),
		[]store.Delivery{{Account: harness.User, Mailbox: "INBOX"}}); err != nil {
		t.Fatal(err)
	}
	c := popLogin(t, env)
	c.cmd(fmt.Sprintf("+OK 1 %d", len(body)), "LIST 1")
	c.cmd(fmt.Sprintf("+OK %d octets", len(body)), "RETR 1")
	var got strings.Builder
	for {
		line, err := c.R.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == ".\r\n" {
			break
		}
		got.WriteString(strings.TrimPrefix(line, "."))
	}
	if got.String() != body {
		t.Errorf("RETR of %d octets returned %d octets, different", len(body), got.Len())
	}
	if n := strings.Count(body, "\r\n.at a chunk boundary\r\n"); n < 3 {
		t.Errorf("only %d lines at chunk boundaries", n)
	}
}

// TestE2EAccountEnded: deleting the account of a POP3 session (posthorn
// user del) ends that session at its next command with -ERR [SYS/PERM],
// rather than letting QUIT fail with a temporary error; disabling it
// (posthorn user disable) ends it too, as it ends the account's IMAP
// sessions, and the deletion the session had marked is not made.
func TestE2EAccountEnded(t *testing.T) {
	for _, c := range []struct {
		name  string
		end   func(store.Store) error
		reply string
		left  int // messages in INBOX afterwards; -1: no account
	}{
		{"deleted", func(st store.Store) error { return st.DeleteAccount(harness.User) }, "-ERR [SYS/PERM] Account no longer exists", -1},
		{"disabled", func(st store.Store) error { return st.SetDisabled(harness.User, true) }, "-ERR [SYS/PERM] Account disabled", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := harness.Start(t, harness.Options{})
			fill(t, env, 2)
			p := popLogin(t, env)
			p.cmd("+OK 2 ", "STAT")
			p.cmd("+OK", "DELE 1")
			if err := c.end(env.Server.Store); err != nil {
				t.Fatal(err)
			}
			p.cmd(c.reply, "NOOP")
			p.raw.SetReadDeadline(time.Now().Add(10 * time.Second))
			if line, err := p.ReadLine(); err == nil {
				t.Fatalf("the session goes on after its account was %s: %q", c.name, line)
			}
			if c.left < 0 {
				return
			}
			msgs, err := env.Server.Store.Messages(harness.User, "INBOX")
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != c.left {
				t.Errorf("INBOX holds %d messages after the session, want %d (DELE not applied)", len(msgs), c.left)
			}
		})
	}
}

// TestE2ERetrWhileExpunged: IMAP expunges the message a POP3 client is
// in the middle of downloading. The download completes, byte for byte,
// and the session's QUIT still applies its DELE; before, the body's
// chunks were freed under the reader and the server closed the session
// mid-message (probe 9), losing the DELE.
func TestE2ERetrWhileExpunged(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	fill(t, env, 1)
	// Message 2: 12 MB, far more than the socket buffers hold, so the
	// server is still reading chunks when the expunge commits.
	var big strings.Builder
	big.WriteString("From: bob@example.test\r\nSubject: big\r\n\r\n")
	for i := 0; big.Len() < 12<<20; i++ {
		fmt.Fprintf(&big, "line %07d of a large message, to be read while it is expunged\r\n", i)
	}
	if _, err := env.Server.Store.Deliver(context.Background(), []byte(big.String()),
		[]store.Delivery{{Account: harness.User, Mailbox: "INBOX"}}); err != nil {
		t.Fatal(err)
	}
	c := popLogin(t, env)
	defer c.Close()
	c.raw.(*net.TCPConn).SetReadBuffer(256 << 10)
	c.cmd("+OK", "DELE 1")
	c.cmd("+OK", "RETR 2")
	first, err := c.ReadLine()
	if err != nil || first != "From: bob@example.test" {
		t.Fatalf("first line %q, %v", first, err)
	}
	expungeSecond(t, env)
	rest, err := c.ReadDotLines()
	if err != nil {
		t.Fatalf("RETR cut short after %d more lines: %v", len(rest), err)
	}
	got := first + "\r\n" + strings.Join(rest, "\r\n") + "\r\n"
	if got != big.String() {
		t.Fatalf("RETR gave %d bytes, want the %d of the message", len(got), big.Len())
	}
	c.cmd("+OK", "QUIT")
	if n := inboxCount(t, env); n != 0 {
		t.Fatalf("%d messages left in INBOX, want 0: the DELE of message 1 was lost", n)
	}
}
