package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultsAreValid(t *testing.T) {
	c, err := Parse("posthorn.toml", []byte("hostname = \"mail.example.org\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	d.Hostname, d.Path = "mail.example.org", "posthorn.toml"
	if *c != d {
		t.Fatalf("parsed %+v\nwant    %+v", *c, d)
	}
	if c.Listen.SMTP != ":25" || c.Outbound.RetryInitial.Duration != 5*time.Minute ||
		c.Outbound.GiveUpAfter.Duration != 120*time.Hour || c.MaxMessageBytes != 50<<20 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestValuesAndPaths(t *testing.T) {
	text := `hostname = "mail.example.org"
data_dir = "state"
allow_plaintext_auth = true
max_message_bytes = 1048576

[listen]
smtp = "127.0.0.1:2525"
imaps = ""

[outbound]
retry_initial = "30s"
retry_max = "1h"
delay_notice = "0"

[limits]
max_recipients = 5
`
	c, err := Parse(filepath.Join("etc", "posthorn", "posthorn.toml"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if !c.AllowPlaintextAuth || c.MaxMessageBytes != 1<<20 || c.Listen.SMTP != "127.0.0.1:2525" ||
		c.Listen.IMAPS != "" || c.Listen.IMAP != ":143" || c.Outbound.RetryInitial.Duration != 30*time.Second ||
		c.Outbound.RetryMax.Duration != time.Hour || c.Outbound.DelayNotice.Duration != 0 ||
		c.Limits.MaxRecipients != 5 || c.Limits.MaxLineBytes != 4096 {
		t.Fatalf("parsed %+v", c)
	}
	if got, want := c.DataPath("posthorn.db"), filepath.Join("etc", "posthorn", "state", "posthorn.db"); got != want {
		t.Errorf("DataPath %q, want %q", got, want)
	}
}

// TestErrorsNameKeyAndLine: every kind of bad input is an error of the
// form "FILE:LINE: KEY: problem".
func TestErrorsNameKeyAndLine(t *testing.T) {
	cases := []struct {
		text string
		want string // prefix after "posthorn.toml:"
	}{
		{"hostname = \"m.example.org\"\n\n[listen]\nsmtpp = \":25\"\n", "4: listen.smtpp: unknown key"},
		{"hostnme = \"x\"\n", "1: hostnme: unknown key"},
		{"[lisen]\nsmtp = \":25\"\n", "1: lisen: unknown key"},
		{"hostname = \"m.example.org\"\nmax_message_bytes = \"big\"\n", "2: max_message_bytes"},
		{"max_message_bytes = 10\n", "1: max_message_bytes: 10 is too small"},
		{"hostname = \"bad host\"\n", "1: hostname: \"bad host\" is not a host name"},
		// The hostname is the MX target and the EHLO name: each of
		// these made `posthorn dns` print records that do not work.
		{"hostname = \"mail..example.org\"\n", "1: hostname: \"mail..example.org\" is not a host name: it has an empty label"},
		{"hostname = \"-mail.example.org\"\n", "1: hostname: \"-mail.example.org\" is not a host name: a label starts"},
		{"hostname = \"mail.example.org:25\"\n", "1: hostname: \"mail.example.org:25\" is not a host name: \":\" is not allowed"},
		{"hostname = \"mail.example.org..\"\n", "1: hostname: \"mail.example.org.\" is not a host name: it has an empty label"},
		{"hostname = \"192.0.2.1\"\n", "1: hostname: \"192.0.2.1\" is not a host name: it is an IP address"},
		{"hostname = \"mäil.example.org\"\n", "1: hostname: \"mäil.example.org\" is not a host name: write it in A-labels, \"xn--mil-"},
		{"hostname = \"" + strings.Repeat("a", 64) + ".example.org\"\n", "1: hostname: \"" + strings.Repeat("a", 64) + ".example.org\" is not a host name: a label is longer than 63"},
		{"\n\nlog_level = \"loud\"\n", "3: log_level"},
		{"[listen]\nimap = \"nowhere\"\n", "2: listen.imap: \"nowhere\" is not host:port"},
		{"[listen]\npop3 = \":99999\"\n", "2: listen.pop3: \":99999\" has no valid port"},
		{"[outbound]\ndns_server = \"1.2.3.4\"\n", "2: outbound.dns_server"},
		{"[outbound]\nretry_initial = \"soon\"\n", "2: outbound.retry_initial"},
		{"[outbound]\nretry_initial = \"-5m\"\n", "2: outbound.retry_initial"},
		{"[outbound]\n\nretry_max = 4\n", "3: outbound.retry_max: must be a duration in quotes"},
		{"[limits]\ndata_timeout = 1.5\n", "2: limits.data_timeout: must be a duration in quotes"},
		{"limits = { command_timeout = 60 }\n", "1: limits.command_timeout: must be a duration in quotes"},
		{"[outbound]\nretry_initial = \"1h\"\nretry_max = \"5m\"\n", "3: outbound.retry_max: must not be below"},
		{"[outbound]\nworkers = 0\n", "2: outbound.workers"},
		{"[outbound]\nmx_port = 70000\n", "2: outbound.mx_port"},
		{"[outbound]\nmta_sts_port = 0\n", "2: outbound.mta_sts_port"},
		{"[listen]\nhttps = \"443\"\n", "2: listen.https"},
		{"[outbound]\nca_file = \"no-such-ca.pem\"\n", "2: outbound.ca_file: open"},
		{"[outbound]\nca_file = \"config.go\"\n", "2: outbound.ca_file: no PEM certificate in"},
		{"[tls]\ncert_file = \"c.pem\"\n", "2: tls.cert_file: cert_file and key_file must be set together"},
		{"[tls]\nacme = true\n", "tls.acme_email: acme = true needs an e-mail address"},
		{"[limits]\nmax_connections = 0\n", "2: limits.max_connections: 0 is too small"},
		{"[limits]\nmax_line_bytes = 100\n", "2: limits.max_line_bytes"},
		{"[limits]\ndata_timeout = \"10ms\"\n", "2: limits.data_timeout: 10ms is too short"},
		{"[limits]\nimap_idle_timeout = \"0s\"\n", "2: limits.imap_idle_timeout"},
		{"[limits]\ndefault_quota_bytes = -1\n", "2: limits.default_quota_bytes"},
		{"max_message_bytes = 10485760\n[limits]\nmax_data_in_flight = 10485760\n", "3: limits.max_data_in_flight: 10485760 is too small"},
		{"[limits]\nmax_data_in_flight = -1\n", "2: limits.max_data_in_flight"},
		{"hostname = \"a\"\nhostname = \"b\"\n", "2: "}, // duplicate key
		{"hostname = \"unterminated\n", "1: "},          // syntax
		{"[listen]\nsmtp = 25\n", "2: listen.smtp"},     // wrong type
		// A wrong type is said in the file's terms, not Go's.
		{"max_message_bytes = \"50M\"\n", "1: max_message_bytes: must be a whole number, not a TOML string"},
		{"allow_plaintext_auth = \"yes\"\n", "1: allow_plaintext_auth: must be true or false, not a TOML string"},
		{"[outbound]\nworkers = 3.5\n", "2: outbound.workers: must be a whole number, not a TOML float"},
		{"[listen]\n\nimap = 143\n", "3: listen.imap: must be a string in quotes, not a TOML integer"},
		{"max_message_bytes = 1e400\n", "1: max_message_bytes"}, // out of range

		// Keys are case-sensitive: go-toml's case-insensitive matching
		// must not let a near-miss pass or override the real key.
		{"Log_Level = \"info\"\n", "1: Log_Level: unknown key"},
		{"data_dir = \"data\"\nDATA_DIR = \"elsewhere\"\n", `2: DATA_DIR: unknown key (keys are case-sensitive: did you mean "data_dir"?)`},
		{"[LISTEN]\nsmtp = \":25\"\n", "1: LISTEN: unknown key"},
		{"hostname = \"m.example.org\"\n[Listen]\nsmtp = \":25\"\n", "2: Listen: unknown key"},
		{"[listen]\nSMTP = \":25\"\n", "2: listen.SMTP: unknown key"},
		{"[tls]\nCert_File = \"c.pem\"\n", "2: tls.Cert_File: unknown key"},
		{"[outbound.Workers]\n", "1: outbound.Workers: unknown key"},
		{"Listen.smtp = \":25\"\n", "1: Listen: unknown key"},
		{"listen.Smtp = \":25\"\n", "1: listen.Smtp: unknown key"},
		{"\"Hostname\" = \"m.example.org\"\n", "1: Hostname: unknown key"},
		{"listen = { smtp = \":2525\", IMAP = \"\" }\n", "1: listen.IMAP: unknown key"},
		{"listen = {\n  smtp = \":2525\",\n  Imap = \"\",\n}\n", "3: listen.Imap: unknown key"},
		{"Path = \"elsewhere.toml\"\n", "1: Path: unknown key"},
		{"[outbound]\nretry_initial.Duration = 5\n", "2: outbound.retry_initial.Duration: unknown key"},
		{"hostname.x = 1\n", "1: hostname.x: unknown key"},
		{"[limits]\nmax_recipients = 5\n[Limits]\nmax_recipients = 6\n", "3: Limits: unknown key"},

		// Validation errors are on the line of the key however it is
		// written: dotted, in an inline table, quoted.
		{"hostname = \"m.example.org\"\nlisten.imap = \"nowhere\"\n", "2: listen.imap: \"nowhere\" is not host:port"},
		{"\nlisten = { pop3 = \":99999\" }\n", "2: listen.pop3: \":99999\" has no valid port"},
		{"[listen]\n\"imap\" = \"nowhere\"\n", "2: listen.imap"},

		// Two listeners on one address and port: serve cannot bind both.
		{"[listen]\npop3 = \"127.0.0.1:51143\"\nimap = \"127.0.0.1:51143\"\n", `2: listen.pop3: "127.0.0.1:51143" overlaps listen.imap = "127.0.0.1:51143"`},
		{"[listen]\nhttp = \":25\"\n", `2: listen.http: ":25" overlaps listen.smtp = ":25"`}, // smtp's default
		{"[listen]\nsmtp = \":2525\"\nsubmission = \"127.0.0.1:2525\"\n", `3: listen.submission: "127.0.0.1:2525" overlaps listen.smtp = ":2525"`},
		{"[listen]\nsmtp = \"127.0.0.1:2525\"\nmetrics = \":2525\"\n", "3: listen.metrics"},
		{"[listen]\nsmtp = \"0.0.0.0:2525\"\nimap = \"192.0.2.1:2525\"\n", "3: listen.imap"},
		{"[listen]\nsmtp = \"[::]:2525\"\nimap = \"127.0.0.1:2525\"\n", "3: listen.imap"},
		{"[listen]\nsmtp = \"[::]:2525\"\nimap = \"0.0.0.0:2525\"\n", "3: listen.imap"},
		{"[listen]\nsmtp = \"[::1]:2525\"\nimap = \"[0:0::1]:2525\"\n", "3: listen.imap"},
		{"[listen]\nsmtp = \"127.0.0.1:2525\"\nimap = \"[::ffff:127.0.0.1]:2525\"\n", "3: listen.imap"},
		{"[listen]\nsmtp = \"localhost:2525\"\nimap = \"LocalHost:2525\"\n", "3: listen.imap"},
		{"[listen]\nsmtp = \":2525\"\nimap = \":02525\"\n", "3: listen.imap"},

		// Certificate files that serve could not load.
		{"[tls]\ncert_file = \"no-such-cert.pem\"\nkey_file = \"no-such-key.pem\"\n", "2: tls.cert_file: open no-such-cert.pem: no such file or directory"},
		{"[tls]\ncert_file = \"testdata-missing/c.pem\"\nkey_file = \"config.go\"\n", "2: tls.cert_file: open"},
	}
	for _, c := range cases {
		_, err := Parse("posthorn.toml", []byte(c.text))
		if err == nil {
			t.Errorf("%q: accepted", c.text)
			continue
		}
		if !strings.HasPrefix(err.Error(), "posthorn.toml:") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got  %v\n want posthorn.toml:%s...", c.text, err, c.want)
		}
	}
}

// TestListenersThatDoNotConflict: addresses that can be bound together
// are accepted.
func TestListenersThatDoNotConflict(t *testing.T) {
	for _, text := range []string{
		// Every listener on a port the system picks (the test harness).
		"[listen]\nsmtp = \"127.0.0.1:0\"\nsubmission = \"127.0.0.1:0\"\nsubmissions = \"127.0.0.1:0\"\n" +
			"imap = \"127.0.0.1:0\"\nimaps = \"127.0.0.1:0\"\npop3 = \"127.0.0.1:0\"\npop3s = \"127.0.0.1:0\"\n" +
			"http = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\n",
		// Off listeners never conflict.
		"[listen]\nsmtp = \"\"\nsubmission = \"\"\nimap = \"\"\n",
		"[listen]\nsmtp = \"127.0.0.1:2525\"\nimap = \"127.0.0.2:2525\"\n",
		"[listen]\nsmtp = \"0.0.0.0:2525\"\nimap = \"[::1]:2525\"\n",
		"[listen]\nsmtp = \"mail.example.org:2525\"\nimap = \"127.0.0.1:2525\"\n",
		"[listen]\nsmtp = \":2525\"\nimap = \":2526\"\n",
		// The remote addresses are not listeners.
		"[outbound]\nsmarthost = \"127.0.0.1:25\"\ndns_server = \"127.0.0.1:25\"\n[listen]\nsmtp = \"127.0.0.1:25\"\n",
	} {
		if _, err := Parse("posthorn.toml", []byte(text)); err != nil {
			t.Errorf("%q: %v", text, err)
		}
	}
}

// TestKeyForms: the same keys written dotted, as inline tables and quoted
// are accepted and set the same values.
func TestKeyForms(t *testing.T) {
	text := `"hostname" = "mail.example.org"
listen.smtp = "127.0.0.1:2525"
limits = { max_recipients = 7, command_timeout = "1m" }

[outbound]
'retry_initial' = "30s"
`
	c, err := Parse("posthorn.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "mail.example.org" || c.Listen.SMTP != "127.0.0.1:2525" || c.Limits.MaxRecipients != 7 ||
		c.Limits.CommandTimeout.Duration != time.Minute || c.Outbound.RetryInitial.Duration != 30*time.Second {
		t.Fatalf("parsed %+v", c)
	}
}

// TestCheckKeysShapes: the key check follows the shapes a configuration
// struct may take, maps and arrays of tables included, so that a field
// of such a type added to Config is checked too.
func TestCheckKeysShapes(t *testing.T) {
	type inner struct {
		Name string   `toml:"name"`
		Wait Duration `toml:"wait"`
	}
	type Embedded struct {
		Shared string `toml:"shared"`
	}
	type doc struct {
		Embedded
		Top     string           `toml:"top"`
		ByName  map[string]inner `toml:"by_name"`
		Plain   map[string]int   `toml:"plain"`
		Many    []inner          `toml:"many"`
		Ptr     *inner           `toml:"ptr"`
		List    []string         `toml:"list"`
		Untaged string
		Skipped string `toml:"-"`
	}
	root := reflect.TypeFor[doc]()
	good := `top = "x"
shared = "y"
Untaged = "z"
list = ["a", "b"]
plain = { Any = 1, KEY = 2 }
by_name.First.name = "one"
many = [{ name = "a", wait = "1s" }]

[by_name.Second]
name = "two"
wait = "5m"

[[many]]
name = "b"

[ptr]
name = "p"
`
	lines, err := checkKeys("t.toml", []byte(good), root)
	if err != nil {
		t.Fatal(err)
	}
	if lines["by_name.Second.wait"] != 11 || lines["many.name"] != 7 || lines["ptr.name"] != 17 {
		t.Errorf("lines %v", lines)
	}
	for text, want := range map[string]string{
		"Top = 1\n":               "t.toml:1: Top: unknown key",
		"SHARED = 1\n":            "t.toml:1: SHARED: unknown key",
		"untaged = 1\n":           "t.toml:1: untaged: unknown key",
		"Skipped = 1\n":           "t.toml:1: Skipped: unknown key",
		"[by_name.a]\nName = 1\n": "t.toml:2: by_name.a.Name: unknown key",
		"[plain.a]\nx = 1\n":      "t.toml:2: plain.a.x: unknown key",
		"[[many]]\nname = \"a\"\n[[many]]\nWait = 1\n":  "t.toml:4: many.Wait: unknown key",
		"many = [{ name = \"a\" }, { nmae = \"b\" }]\n": "t.toml:1: many.nmae: unknown key",
		"[many.Name]\n":              "t.toml:1: many.Name: unknown key",
		"list = [{ a = 1 }]\n":       "t.toml:1: list.a: unknown key",
		"[ptr]\nNAME = 1\n":          "t.toml:2: ptr.NAME: unknown key",
		"[ptr.wait]\nDuration = 1\n": "t.toml:2: ptr.wait.Duration: unknown key",
	} {
		_, err := checkKeys("t.toml", []byte(text), root)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%q: got %v, want %s", text, err, want)
		}
	}
}

// TestCertFiles: tls.cert_file and tls.key_file are loaded as serve loads
// them; a file that is missing, unreadable or not a matching certificate
// and key is an error naming the key and its line.
func TestCertFiles(t *testing.T) {
	dir := t.TempDir()
	writePair(t, dir, "a")
	writePair(t, dir, "b")
	os.Mkdir(filepath.Join(dir, "adir"), 0o700)
	os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not pem\n"), 0o600)
	path := filepath.Join(dir, "posthorn.toml")
	pair := func(cert, key string) []byte {
		return []byte(fmt.Sprintf("hostname = \"mail.example.org\"\n[tls]\ncert_file = %q\nkey_file = %q\n", cert, key))
	}
	// Relative to the file, or absolute.
	for _, p := range [][2]string{{"a-cert.pem", "a-key.pem"}, {filepath.Join(dir, "b-cert.pem"), filepath.Join(dir, "b-key.pem")}} {
		c, err := Parse(path, pair(p[0], p[1]))
		if err != nil {
			t.Fatalf("%v: %v", p, err)
		}
		if c.TLS.CertFile != p[0] {
			t.Errorf("cert_file %q", c.TLS.CertFile)
		}
	}
	cases := []struct {
		cert, key string
		wantKey   string
		wantLine  int
		wantMsg   string
	}{
		{"missing.pem", "a-key.pem", "tls.cert_file", 3, "open " + filepath.Join(dir, "missing.pem") + ": no such file or directory"},
		{"a-cert.pem", "missing.pem", "tls.key_file", 4, "open " + filepath.Join(dir, "missing.pem") + ": no such file or directory"},
		{"adir", "a-key.pem", "tls.cert_file", 3, "is a directory"},
		{"junk.pem", "a-key.pem", "tls.cert_file", 3, "PEM"},
		{"a-cert.pem", "junk.pem", "tls.key_file", 4, "PEM"},
		{"a-cert.pem", "b-key.pem", "tls.key_file", 4, "does not match"},
	}
	if os.Geteuid() != 0 { // root reads any file
		os.WriteFile(filepath.Join(dir, "secret.pem"), []byte("x"), 0o000)
		cases = append(cases, struct {
			cert, key string
			wantKey   string
			wantLine  int
			wantMsg   string
		}{"a-cert.pem", "secret.pem", "tls.key_file", 4, "permission denied"})
	}
	for _, c := range cases {
		_, err := Parse(path, pair(c.cert, c.key))
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != c.wantKey || ce.Line != c.wantLine || !strings.Contains(ce.Msg, c.wantMsg) {
			t.Errorf("cert %s, key %s: got %v, want line %d, %s: ...%s...", c.cert, c.key, err, c.wantLine, c.wantKey, c.wantMsg)
		}
	}
}

// writePair writes a self-signed certificate and its key to
// dir/NAME-cert.pem and dir/NAME-key.pem.
func writePair(t *testing.T, dir, name string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name + ".example.org"},
		DNSNames:     []string{name + ".example.org"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	if err := os.WriteFile(filepath.Join(dir, name+"-cert.pem"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+"-key.pem"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !os.IsNotExist(err) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestEveryFieldDocumented: each field of the configuration structs has a
// doc comment or a line comment (the file is the reference of the keys).
func TestEveryFieldDocumented(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "config.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Config", "Listen", "TLS", "Outbound", "Limits"} {
		obj := f.Scope.Lookup(name)
		if obj == nil {
			t.Fatalf("no type %s", name)
		}
		st := obj.Decl.(*ast.TypeSpec).Type.(*ast.StructType)
		var prevDoc bool // a doc comment may cover a run of fields (CertFile and KeyFile)
		for _, field := range st.Fields.List {
			documented := field.Doc != nil || field.Comment != nil
			if !documented && !prevDoc {
				t.Errorf("%s.%s has no comment", name, field.Names[0].Name)
			}
			prevDoc = field.Doc != nil
		}
	}
}

// TestHostnameTrailingDot: a hostname written as in a zone file, with
// its trailing dot, is the same name; it loaded before hostname was
// checked as a host name, and still does, without the dot.
func TestHostnameTrailingDot(t *testing.T) {
	c, err := Parse("posthorn.toml", []byte("hostname = \"mail.example.org.\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "mail.example.org" {
		t.Fatalf("hostname %q, want mail.example.org", c.Hostname)
	}
}
