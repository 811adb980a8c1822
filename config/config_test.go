package config

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
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

[limits]
max_recipients = 5
`
	c, err := Parse(filepath.Join("etc", "posthorn", "posthorn.toml"), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if !c.AllowPlaintextAuth || c.MaxMessageBytes != 1<<20 || c.Listen.SMTP != "127.0.0.1:2525" ||
		c.Listen.IMAPS != "" || c.Listen.IMAP != ":143" || c.Outbound.RetryInitial.Duration != 30*time.Second ||
		c.Outbound.RetryMax.Duration != time.Hour || c.Limits.MaxRecipients != 5 || c.Limits.MaxLineBytes != 4096 {
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
		{"\n\nlog_level = \"loud\"\n", "3: log_level"},
		{"[listen]\nimap = \"nowhere\"\n", "2: listen.imap: \"nowhere\" is not host:port"},
		{"[listen]\npop3 = \":99999\"\n", "2: listen.pop3: \":99999\" has no valid port"},
		{"[outbound]\ndns_server = \"1.2.3.4\"\n", "2: outbound.dns_server"},
		{"[outbound]\nretry_initial = \"soon\"\n", "2: outbound.retry_initial"},
		{"[outbound]\nretry_initial = \"-5m\"\n", "2: outbound.retry_initial"},
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
		{"hostname = \"a\"\nhostname = \"b\"\n", "2: "},         // duplicate key
		{"hostname = \"unterminated\n", "1: "},                  // syntax
		{"[listen]\nsmtp = 25\n", "2: listen.smtp"},             // wrong type
		{"max_message_bytes = 1e400\n", "1: max_message_bytes"}, // out of range
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
