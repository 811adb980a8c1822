package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/posthorn/posthorn/auth"
	"github.com/posthorn/posthorn/dkim"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/store"
)

// run runs the CLI in-process and returns its output and error.
func run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	app := newApp(strings.NewReader(stdin), &out, &errw)
	err := app.Run(permuteArgs(app, append([]string{"posthorn"}, args...)))
	return out.String() + errw.String(), err
}

func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := run(t, stdin, args...)
	if err != nil {
		t.Fatalf("posthorn %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func mustFail(t *testing.T, want string, args ...string) {
	t.Helper()
	out, err := run(t, "a password\n", args...)
	if err == nil {
		t.Fatalf("posthorn %s succeeded, want an error containing %q\n%s", strings.Join(args, " "), want, out)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("posthorn %s: error %q does not contain %q", strings.Join(args, " "), err, want)
	}
	if strings.Count(strings.TrimSpace(err.Error()), "\n") > 0 {
		t.Errorf("error is not one line: %q", err)
	}
}

func initDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out := mustRun(t, "", "init", "--domain", "example.org", "--hostname", "mail.example.org", "--dir", dir)
	if !strings.Contains(out, " user add postmaster@example.org --config ") {
		t.Errorf("init does not print the next steps:\n%s", out)
	}
	return filepath.Join(dir, "posthorn.toml")
}

func TestCLIStopped(t *testing.T) {
	cfg := initDir(t)
	if out := mustRun(t, "", "config", "check", "--config", cfg); !strings.Contains(out, "ok") {
		t.Errorf("config check: %s", out)
	}
	mustRun(t, "", "--config", cfg, "domain", "add", "Other.ORG")
	if out := mustRun(t, "", "--config", cfg, "domain", "list"); out != "example.org\nother.org\n" {
		t.Errorf("domain list = %q", out)
	}
	mustRun(t, "s3cret pass\n", "--config", cfg, "user", "add", "bob@example.org", "--password-stdin")
	if out := mustRun(t, "", "--config", cfg, "user", "list"); !strings.Contains(out, "bob@example.org") {
		t.Errorf("user list = %q", out)
	}
	if out := mustRun(t, "", "--config", cfg, "user", "quota", "bob@example.org", "2M"); out != "quota of bob@example.org set to 2.0M (0B used)\n" {
		t.Errorf("user quota = %q", out)
	}
	if out := mustRun(t, "", "--config", cfg, "user", "list"); !strings.Contains(out, "bob@example.org  0B    2.0M") {
		t.Errorf("user list after user quota = %q", out)
	}
	for _, bad := range []string{"1.5G", "1e9", "lots", "9999999T"} {
		mustFail(t, "is not a size", "--config", cfg, "user", "quota", "bob@example.org", bad)
	}
	mustFail(t, "no user nobody@example.org", "--config", cfg, "user", "quota", "nobody@example.org", "1G")
	if out := mustRun(t, "", "--config", cfg, "user", "quota", "bob@example.org", "none"); out != "bob@example.org has no quota (0B used)\n" {
		t.Errorf("user quota none = %q", out)
	}
	mustRun(t, "", "--config", cfg, "alias", "add", "info@example.org", "bob@example.org", "someone@elsewhere.net")
	if out := mustRun(t, "", "--config", cfg, "alias", "list"); !strings.Contains(out, "info@example.org -> bob@example.org, someone@elsewhere.net") {
		t.Errorf("alias list = %q", out)
	}
	if out := mustRun(t, "", "--config", cfg, "alias", "list", "Info@Example.org"); out != "info@example.org -> bob@example.org, someone@elsewhere.net\n" {
		t.Errorf("alias list info@example.org = %q", out)
	}
	mustFail(t, "no alias nfo@example.org", "--config", cfg, "alias", "list", "nfo@example.org")
	mustFail(t, "not a valid address", "--config", cfg, "alias", "list", "extra")
	mustRun(t, "", "--config", cfg, "alias", "del", "info@example.org")
	// Mistyped commands are named in one line, flags or not.
	mustFail(t, `no command "usr"`, "usr", "list")
	mustFail(t, `no command "user lst"`, "user", "lst", "--config", cfg)
	mustFail(t, `no command "domain rm"`, "--config", cfg, "domain", "rm", "x.org")
	mustFail(t, "usage: posthorn export maildir DIR --user ADDRESS", "--config", cfg, "export", "maildir")
	mustFail(t, "usage: posthorn import mbox PATH --user ADDRESS", "--config", cfg, "import", "mbox", cfg)
	if out := mustRun(t, "", "--config", cfg, "queue", "list"); !strings.Contains(out, "empty") {
		t.Errorf("queue list = %q", out)
	}

	// Bad input: one line naming the problem, non-zero exit, store unchanged.
	mustFail(t, "not served here", "--config", cfg, "user", "add", "x@nowhere.org", "--password-stdin")
	mustFail(t, "not a valid address", "--config", cfg, "user", "add", "not an address", "--password-stdin")
	// Delivery never routes on '%' or '!' (RFC 5321 appendix C): such an
	// account would never get mail.
	mustFail(t, "not a valid address", "--config", cfg, "user", "add", "a%b@example.org", "--password-stdin")
	mustFail(t, "not a valid address", "--config", cfg, "user", "add", "a!b@example.org", "--password-stdin")
	mustFail(t, "not a valid address", "--config", cfg, "alias", "add", "a%b@example.org", "bob@example.org")
	mustFail(t, "not a valid domain", "--config", cfg, "domain", "add", "bad_domain!")
	mustFail(t, "not a valid domain", "--config", cfg, "domain", "add", "127.0.0.1")
	mustFail(t, "not a valid domain", "--config", cfg, "domain", "add", "xn--zz.test")
	mustFail(t, "already exists", "--config", cfg, "user", "add", "bob@example.org", "--password-stdin")
	if _, err := run(t, "\n", "--config", cfg, "user", "add", "carol@example.org", "--password-stdin"); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty password: %v", err)
	}
	mustFail(t, "no user", "--config", cfg, "user", "del", "nobody@example.org")
	mustFail(t, "usage: posthorn user list (it takes no arguments)", "--config", cfg, "user", "list", "extra")
	mustFail(t, "usage: posthorn queue list (it takes no arguments)", "--config", cfg, "queue", "list", "extra")
	// Stopped, nothing retries now: the entries are due when serve starts.
	if out := mustRun(t, "", "--config", cfg, "queue", "retry"); out != "every queue entry will be retried as soon as the server runs\n" {
		t.Errorf("queue retry of a stopped server: %q", out)
	}
	mustFail(t, "set up already", "init", "--domain", "example.org", "--hostname", "mail.example.org", "--dir", filepath.Dir(cfg))
	// --force writes the configuration anew and keeps the store, whose
	// domain and accounts stay; it prints the records as the first run did.
	out := mustRun(t, "", "init", "--domain", "example.org", "--hostname", "mail.example.org", "--dir", filepath.Dir(cfg), "--force")
	if !strings.Contains(out, "served already") || !strings.Contains(out, "_dmarc.example.org.") {
		t.Errorf("init --force over a set-up directory:\n%s", out)
	}
	if out := mustRun(t, "", "--config", cfg, "user", "list"); !strings.Contains(out, "bob@example.org") {
		t.Errorf("init --force lost the accounts: %q", out)
	}
	// A bad name is refused before anything is written, so that the
	// corrected command finds nothing "set up already".
	fresh := filepath.Join(t.TempDir(), "fresh")
	mustFail(t, "domain", "init", "--domain", "bad domain", "--hostname", "mail.example.org", "--dir", fresh)
	mustFail(t, "hostname", "init", "--domain", "example.org", "--hostname", "bad host", "--dir", fresh)
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("init with a bad name left %s behind: %v", fresh, err)
	}
	// So is a data directory that cannot be made: fixed, init runs.
	blocked := t.TempDir()
	if err := os.WriteFile(filepath.Join(blocked, "data"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mustFail(t, "data", "init", "--domain", "example.org", "--hostname", "mail.example.org", "--dir", blocked)
	if _, err := os.Stat(filepath.Join(blocked, "posthorn.toml")); !os.IsNotExist(err) {
		t.Errorf("init that could not make data/ left posthorn.toml behind: %v", err)
	}
	os.Remove(filepath.Join(blocked, "data"))
	mustRun(t, "", "init", "--domain", "example.org", "--hostname", "mail.example.org", "--dir", blocked)
	mustRun(t, "", "init", "--domain", "example.org", "--hostname", "mail.example.org", "--dir", fresh)
	if out := mustRun(t, "", "--config", cfg, "user", "list"); strings.Contains(out, "carol") || strings.Contains(out, "nowhere") || strings.Count(out, "@") != 1 {
		t.Errorf("store changed by failed commands: %q", out)
	}
	if out := mustRun(t, "", "--config", cfg, "domain", "list"); out != "example.org\nother.org\n" {
		t.Errorf("domains changed by failed commands: %q", out)
	}
	mustFail(t, "is used by bob@example.org", "--config", cfg, "domain", "del", "example.org")
	// A domain an alias leads to is in use too: once deleted, the alias
	// would forward its mail to whoever has the domain then.
	mustRun(t, "", "--config", cfg, "domain", "add", "gone.org")
	mustRun(t, "pw\n", "--config", cfg, "user", "add", "u@gone.org", "--password-stdin")
	mustRun(t, "", "--config", cfg, "alias", "add", "fwd@example.org", "u@gone.org")
	if out := mustRun(t, "", "--config", cfg, "user", "del", "u@gone.org"); !strings.Contains(out, "note: aliases still lead to u@gone.org (it is left out of them): fwd@example.org") {
		t.Errorf("user del of an alias target: %q", out)
	}
	mustFail(t, "is used by alias fwd@example.org -> u@gone.org", "--config", cfg, "domain", "del", "gone.org")
	mustRun(t, "", "--config", cfg, "alias", "del", "fwd@example.org")
	mustRun(t, "", "--config", cfg, "domain", "del", "gone.org")
	// Another host's local part is its own: an alias may forward there.
	mustRun(t, "", "--config", cfg, "alias", "add", "pct@example.org", "john%x@elsewhere.net")
	mustRun(t, "", "--config", cfg, "alias", "del", "pct@example.org")
	// A domain in U-labels is kept in A-labels, as delivery reads it.
	if out := mustRun(t, "", "--config", cfg, "domain", "add", "Bücher.org"); !strings.Contains(out, "domain xn--bcher-kva.org added") {
		t.Errorf("domain add Bücher.org: %q", out)
	}
	mustRun(t, "", "--config", cfg, "domain", "del", "bücher.org")

	// Aliases the delivery agent could not follow are refused when made,
	// not when mail comes: loops, targets of ours that lead nowhere, an
	// alias shadowed by an account, an account shadowed by an alias.
	mustFail(t, "no such account or alias here", "--config", cfg, "alias", "add", "b@other.org", "nobody@other.org")
	mustRun(t, "", "--config", cfg, "alias", "add", "b@other.org", "bob@example.org")
	mustRun(t, "", "--config", cfg, "alias", "add", "a@other.org", "b@other.org", "bob@example.org")
	mustFail(t, "would make a loop", "--config", cfg, "alias", "add", "b@other.org", "a@other.org")
	// A catch-all to an address that is nothing here: it would lead back
	// to itself, but what the admin must fix is the missing target.
	mustFail(t, "no such account or alias here", "--config", cfg, "alias", "add", "@other.org", "x@other.org")
	// postmaster@<hostname> is postmaster@example.org: delivery forwarded
	// one message to itself without end through such an alias.
	mustFail(t, "would make a loop", "--config", cfg, "alias", "add", "postmaster@example.org", "postmaster@mail.example.org")
	mustFail(t, "is an account", "--config", cfg, "alias", "add", "bob@example.org", "someone@elsewhere.net")
	mustFail(t, "is an alias", "--config", cfg, "user", "add", "b@other.org", "--password-stdin")
	if out := mustRun(t, "", "--config", cfg, "alias", "add", "a@other.org", "bob@example.org"); !strings.Contains(out, "replaces -> b@other.org, bob@example.org") {
		t.Errorf("alias add over an alias does not say what it replaces: %q", out)
	}
	mustRun(t, "", "--config", cfg, "alias", "del", "A@Other.ORG")
	if out := mustRun(t, "", "--config", cfg, "alias", "list"); out != "b@other.org -> bob@example.org\n" {
		t.Errorf("aliases after refused commands: %q", out)
	}
}

func TestCLIBadDataDir(t *testing.T) {
	cfg := initDir(t)
	db := filepath.Join(filepath.Dir(cfg), "data", "posthorn.db")
	if err := os.WriteFile(db, bytes.Repeat([]byte("not a bbolt file "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	mustFail(t, "posthorn.db", "--config", cfg, "domain", "list")

	// data_dir that is not a directory.
	dir := t.TempDir()
	bad := filepath.Join(dir, "posthorn.toml")
	os.WriteFile(filepath.Join(dir, "data"), []byte("a file"), 0o600)
	os.WriteFile(bad, []byte("hostname = \"mail.example.org\"\ndata_dir = \"data\"\n"), 0o600)
	mustFail(t, "data", "--config", bad, "domain", "list")

	// Config errors name the key and the line.
	os.WriteFile(bad, []byte("hostname = \"mail.example.org\"\n\n[listen]\nsmtpp = \":25\"\n"), 0o600)
	mustFail(t, "posthorn.toml:4: listen.smtpp: unknown key", "config", "check", "--config", bad)
	os.WriteFile(bad, []byte("max_message_bytes = \"big\"\n"), 0o600)
	mustFail(t, "posthorn.toml:1: max_message_bytes", "config", "check", "--config", bad)
}

// TestCLIConfigCheckAgreesWithServe: a configuration that serve refuses
// is refused by config check too, in one line naming the file, the line
// and the key; serve names them as well.
func TestCLIConfigCheckAgreesWithServe(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "posthorn.toml")
	// Every listener off, so that serve binds nothing should it start.
	off := "hostname = \"mail.example.org\"\n[listen]\nsmtp = \"\"\nsubmission = \"\"\nsubmissions = \"\"\nimaps = \"\"\npop3s = \"\"\n"
	cases := []struct{ text, want string }{
		{"hostname = \"mail.example.org\"\nLog_Level = \"info\"\n", path + ":2: Log_Level: unknown key"},
		{"hostname = \"mail.example.org\"\ndata_dir = \"data\"\nDATA_DIR = \"elsewhere\"\n", path + ":3: DATA_DIR: unknown key"},
		{"hostname = \"mail.example.org\"\n[LISTEN]\nsmtp = \"\"\n", path + ":2: LISTEN: unknown key"},
		{"hostname = \"mail.example.org\"\n[Listen]\nsmtp = \"\"\n", path + ":2: Listen: unknown key"},
		{off + "pop3 = \"127.0.0.1:51143\"\nimap = \"127.0.0.1:51143\"\n",
			path + `:8: listen.pop3: "127.0.0.1:51143" overlaps listen.imap = "127.0.0.1:51143"`},
		{off + "imap = \"\"\npop3 = \"\"\n[tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n",
			path + ":11: tls.cert_file: open " + filepath.Join(dir, "cert.pem") + ": no such file or directory"},
	}
	for _, c := range cases {
		if err := os.WriteFile(path, []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		mustFail(t, c.want, "config", "check", "--config", path)

		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var out bytes.Buffer
		app := newApp(strings.NewReader(""), &out, &out)
		err := app.RunContext(ctx, permuteArgs(app, []string{"posthorn", "serve", "--config", path}))
		cancel()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("serve with\n%s\ngot %v, want %s", c.text, err, c.want)
		}
	}
}

func TestCLIRunningServer(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	cfg := env.Config.Path
	sock := env.Config.DataPath("control.sock")
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatalf("control socket: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v, want 0600", fi.Mode().Perm())
	}
	// These go through the control socket: the store is held by serve.
	mustRun(t, "pw one two\n", "--config", cfg, "user", "add", "bob@example.test", "--password-stdin")
	a, err := env.Server.Store.Account("bob@example.test")
	if err != nil {
		t.Fatalf("user added through the socket is not in the store: %v", err)
	}
	if ok, _ := auth.CheckPassword(a.PasswordHash, "pw one two"); !ok {
		t.Error("password set through the socket does not verify")
	}
	if out := mustRun(t, "", "--config", cfg, "user", "list"); !strings.Contains(out, "bob@example.test") || !strings.Contains(out, harness.User) {
		t.Errorf("user list = %q", out)
	}
	mustFail(t, "not served here", "--config", cfg, "user", "add", "x@nowhere.org", "--password-stdin")

	backup := filepath.Join(t.TempDir(), "backup.db")
	mustRun(t, "", "--config", cfg, "backup", backup)
	if fi, err := os.Stat(backup); err != nil || fi.Size() == 0 {
		t.Fatalf("backup: %v", err)
	}
	mustFail(t, "stop it first", "--config", cfg, "restore", backup)

	// A second serve on the same data_dir is refused with one line.
	mustFail(t, "posthorn.db", "--config", cfg, "serve")
	// A command that opens the store itself (the demo does) says that a
	// server runs, not that none answers.
	if _, err := openStore(env.Config); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("openStore while serve runs: %v", err)
	}
}

func TestCLIDKIMDNSImportExport(t *testing.T) {
	cfg := initDir(t)
	show := mustRun(t, "", "--config", cfg, "dkim", "show", "example.org")
	if !strings.Contains(show, "._domainkey.example.org.") || !strings.Contains(show, "k=ed25519") || !strings.Contains(show, "k=rsa") {
		t.Fatalf("dkim show:\n%s", show)
	}
	mustRun(t, "", "--config", cfg, "dkim", "rotate", "example.org")
	after := mustRun(t, "", "--config", cfg, "dkim", "show", "example.org")
	if strings.Count(after, "new, not signing yet") != 2 || strings.Count(after, ", active") != 2 {
		t.Errorf("after rotate, want two new and two active keys:\n%s", after)
	}
	mustRun(t, "", "--config", cfg, "dkim", "activate", "example.org", "--force")
	after = mustRun(t, "", "--config", cfg, "dkim", "show", "example.org")
	if strings.Count(after, "retired") != 2 || strings.Count(after, ", active") != 2 || strings.Count(after, "; ed25519") != 2 {
		t.Errorf("after activate, want two retired and two active keys:\n%s", after)
	}
	mustFail(t, "not served here", "--config", cfg, "dkim", "show", "other.org")

	zoneText := mustRun(t, "", "--config", cfg, "dns", "example.org")
	for _, want := range []string{"IN\tMX\t10 mail.example.org.", "v=spf1 mx -all", "_dmarc.example.org.", "_mta-sts.example.org.",
		"_smtp._tls.example.org.", "_submissions._tcp.example.org.", "_imaps._tcp.example.org.", "_pop3s._tcp.example.org."} {
		if !strings.Contains(zoneText, want) {
			t.Errorf("dns output lacks %q", want)
		}
	}

	mustRun(t, "pw\n", "--config", cfg, "user", "add", "bob@example.org", "--password-stdin")
	dir := t.TempDir()
	mbox := filepath.Join(dir, "in.mbox")
	os.WriteFile(mbox, []byte("From a@b.org Mon Jan  1 00:00:00 2024\nFrom: a@b.org\nSubject: one\n\nbody one\n\n"+
		"From a@b.org Mon Jan  1 00:00:00 2024\nFrom: a@b.org\nSubject: two\n\n>From the start\n"), 0o600)
	if out := mustRun(t, "", "--config", cfg, "import", "mbox", mbox, "--user", "bob@example.org", "--mailbox", "Archive"); !strings.Contains(out, "imported 2 message(s)") {
		t.Errorf("import: %s", out)
	}
	mustFail(t, "no user", "--config", cfg, "import", "mbox", mbox, "--user", "nobody@example.org")
	// A file that is not an mbox: the error alone, no "imported 0" first.
	notMbox := filepath.Join(dir, "not.mbox")
	os.WriteFile(notMbox, []byte("just some text\n"), 0o600)
	if out, err := run(t, "", "--config", cfg, "import", "mbox", notMbox, "--user", "bob@example.org"); err == nil || strings.Contains(out, "imported 0") {
		t.Errorf("import of a file that is not an mbox: %v, %q", err, out)
	}
	exp := filepath.Join(dir, "export")
	if out := mustRun(t, "", "--config", cfg, "export", "maildir", exp, "--user", "bob@example.org"); !strings.Contains(out, "exported 2 message(s)") {
		t.Errorf("export: %s", out)
	}
	files, _ := filepath.Glob(filepath.Join(exp, ".Archive", "cur", "*"))
	if len(files) != 2 {
		t.Fatalf("exported Archive has %d messages, want 2", len(files))
	}
	var bodies string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		bodies += string(b)
	}
	if !strings.Contains(bodies, "\r\nFrom the start\r\n") {
		t.Errorf("mboxrd unescaping or CRLF lost:\n%q", bodies)
	}
}

// TestCLIDKIMActivateChecksDNS: dkim activate makes the rotated keys sign
// only once DNS shows their records (a signature whose key receivers
// cannot find fails); until then nothing changes.
func TestCLIDKIMActivateChecksDNS(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	cfg := env.Config.Path
	if _, err := dkim.Ensure(env.Server.Store, harness.Domain); err != nil {
		t.Fatal(err)
	}
	before, _ := env.Server.Store.DKIMKeys(harness.Domain)
	out := mustRun(t, "", "--config", cfg, "dkim", "rotate", harness.Domain)
	if !strings.Contains(out, "posthorn dkim activate "+harness.Domain) {
		t.Errorf("rotate does not say what comes next:\n%s", out)
	}
	mustFail(t, "rotation waiting", "--config", cfg, "dkim", "rotate", harness.Domain)
	mustFail(t, "not published yet", "--config", cfg, "dkim", "activate", harness.Domain)
	keys, _ := env.Server.Store.DKIMKeys(harness.Domain)
	signing := func() []string {
		var s []string
		for _, k := range keys {
			if k.Active {
				s = append(s, k.Selector)
			}
		}
		return s
	}
	if got := signing(); len(got) != 2 || got[0] != before[0].Selector || got[1] != before[1].Selector {
		t.Fatalf("signing with %v before activate, want the old %s, %s", got, before[0].Selector, before[1].Selector)
	}
	lines, err := dkim.ZoneLines(dkim.Pending(keys))
	if err != nil {
		t.Fatal(err)
	}
	env.DNS.Add(t, lines...)
	out = mustRun(t, "", "--config", cfg, "dkim", "activate", harness.Domain)
	if strings.Count(out, "signs "+harness.Domain+" mail from now on") != 2 {
		t.Errorf("activate: %s", out)
	}
	keys, _ = env.Server.Store.DKIMKeys(harness.Domain)
	for _, s := range signing() {
		if s == before[0].Selector || s == before[1].Selector {
			t.Errorf("still signing with the old key %s", s)
		}
	}
}

// TestCLIUserDisable: user disable refuses the account's logins and new
// mail while the server runs, keeps its mail, and user enable undoes it.
func TestCLIUserDisable(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	cfg := env.Config.Path
	if err := sendPlain(env.Addr("smtp"), harness.User, "kept"); err != nil {
		t.Fatal(err)
	}
	login := func() error {
		c, err := imapclient.DialTLS(env.Addr("imaps"), &imapclient.Options{TLSConfig: env.ClientTLS()})
		if err != nil {
			return err
		}
		defer c.Close()
		return c.Login(harness.User, harness.Password).Wait()
	}
	if out := mustRun(t, "", "--config", cfg, "user", "disable", harness.User); !strings.Contains(out, "disabled") {
		t.Errorf("user disable: %q", out)
	}
	if out := mustRun(t, "", "--config", cfg, "user", "list"); !strings.Contains(out, "disabled") {
		t.Errorf("user list after disable: %q", out)
	}
	if err := login(); err == nil {
		t.Error("a disabled account logged in")
	}
	if err := sendPlain(env.Addr("smtp"), harness.User, "refused"); err == nil || !strings.Contains(err.Error(), "550") {
		t.Errorf("mail to a disabled account: %v", err)
	}
	mustFail(t, "no user", "--config", cfg, "user", "disable", "nobody@"+harness.Domain)
	mustRun(t, "", "--config", cfg, "user", "enable", harness.User)
	if err := login(); err != nil {
		t.Errorf("login after user enable: %v", err)
	}
	if msgs, err := env.Server.Store.Messages(harness.User, "INBOX"); err != nil || len(msgs) != 1 {
		t.Errorf("INBOX after disable and enable: %d messages, %v", len(msgs), err)
	}
}

// TestCLIStoreHeldWithoutSocket: a store held by a process whose control
// socket does not answer is what a server that is stopping (it closes
// the socket first and the store last) or starting looks like; the
// message said only "no server answers" (P7l of the probe).
func TestCLIStoreHeldWithoutSocket(t *testing.T) {
	cfgPath := initDir(t)
	st, err := store.Open(filepath.Join(filepath.Dir(cfgPath), "data", "posthorn.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mustFail(t, "a server that is stopping or starting: try again in a moment", "--config", cfgPath, "user", "list")
}

// TestCLIExportSubscriptionsAndKeywords: export maildir writes the
// subscriptions file (Dovecot listed no subscriptions without it), and
// names the keywords beyond a folder's 26 that it could not keep, with the
// folder and the number of messages, rather than dropping them silently.
func TestCLIExportSubscriptionsAndKeywords(t *testing.T) {
	cfg := initDir(t)
	mustRun(t, "pw\n", "--config", cfg, "user", "add", "bob@example.org", "--password-stdin")
	st, err := store.Open(filepath.Join(filepath.Dir(cfg), "data", "posthorn.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateMailbox("bob@example.org", "Work/Entwürfe", store.SpecialNone); err != nil {
		t.Fatal(err)
	}
	if err := st.SetSubscribed("bob@example.org", "Work/Entwürfe", true); err != nil {
		t.Fatal(err)
	}
	// 27 keywords (a0 b1 ... z25 a26); z25, the last in order, is on two
	// messages and kept, and of the 26 on one message, which tie, y24, the
	// last in order, is not.
	var kws []string
	for i := range 27 {
		kws = append(kws, string(rune('a'+i%26))+fmt.Sprint(i))
	}
	for _, flags := range [][]string{kws, {"z25"}} {
		if _, err := st.Append(context.Background(), "bob@example.org", "Work/Entwürfe", store.NewMessage{Body: []byte("Subject: x\r\n\r\nx\r\n"), Flags: flags}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	exp := filepath.Join(t.TempDir(), "export")
	out := mustRun(t, "", "--config", cfg, "export", "maildir", exp, "--user", "bob@example.org")
	if !strings.Contains(out, "exported 2 message(s)") || !strings.Contains(out, "warning: mailbox Work/Entwürfe: 1 keyword(s) not kept") ||
		!strings.Contains(out, "on 1 message(s): y24\n") {
		t.Errorf("export:\n%s", out)
	}
	subs, err := os.ReadFile(filepath.Join(exp, "subscriptions"))
	if want := "V\t2\n\nArchive\nDrafts\nINBOX\nJunk\nSent\nTrash\nWork\tEntw&APw-rfe\n"; err != nil || string(subs) != want {
		t.Errorf("subscriptions: %q, %v; want %q", subs, err, want)
	}
}
