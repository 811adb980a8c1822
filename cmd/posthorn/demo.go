package main

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/posthorn/posthorn/admin"
	"github.com/posthorn/posthorn/auth"
	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/server"
)

const (
	demoDomain = "example.test"
	demoUser   = "demo@example.test"
)

// demoListen are the unprivileged ports of the demo.
var demoListen = config.Listen{
	SMTP: "127.0.0.1:2525", Submission: "127.0.0.1:2587", Submissions: "127.0.0.1:2465",
	IMAP: "127.0.0.1:2143", IMAPS: "127.0.0.1:2993", POP3: "127.0.0.1:2110", POP3S: "127.0.0.1:2995",
	HTTP: "127.0.0.1:8025", Metrics: "127.0.0.1:9425",
}

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run a demo on unprivileged loopback ports: domain example.test, user demo@example.test",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Value: "demo", Usage: "where the demo keeps its files"},
		},
		Action: func(c *cli.Context) error {
			dir := c.String("dir")
			cfg := config.Default()
			cfg.Hostname = "mail." + demoDomain
			cfg.Listen = demoListen
			path := filepath.Join(dir, "posthorn.toml")
			if _, err := os.Stat(path); err == nil {
				loaded, err := config.Load(path)
				if err != nil {
					return err
				}
				cfg = *loaded
			} else {
				var err error
				if cfg, err = setup(dir, cfg, false); err != nil {
					return err
				}
				if err := offlineAdmin(c, cfg, admin.Request{Command: "domain add", Args: []string{demoDomain}}); err != nil {
					return err
				}
			}
			password := newPassword()
			hash, err := auth.HashPassword(password)
			if err != nil {
				return err
			}
			cmd := "user passwd"
			if !hasUser(cfg) {
				cmd = "user add"
			}
			if err := offlineAdmin(c, cfg, admin.Request{Command: cmd, Args: []string{demoUser}, Hash: hash}); err != nil {
				return err
			}
			return serve(c.Context, &cfg, c.App.ErrWriter, func(srv *server.Server) {
				printDemo(c, &cfg, srv, password)
			})
		},
	}
}

func hasUser(cfg config.Config) bool {
	st, err := openStore(&cfg)
	if err != nil {
		return false
	}
	defer st.Close()
	_, err = st.Account(demoUser)
	return err == nil
}

func newPassword() string {
	b := make([]byte, 10)
	rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

func port(addr string) string {
	_, p, _ := strings.Cut(addr, ":")
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		p = addr[i+1:]
	}
	return p
}

// selfCommand is how to run this binary again from the same directory:
// the path it was started by, or its name if it was found in $PATH.
func selfCommand() string {
	if strings.ContainsRune(os.Args[0], '/') {
		return os.Args[0]
	}
	return filepath.Base(os.Args[0])
}

func printDemo(c *cli.Context, cfg *config.Config, srv *server.Server, password string) {
	// The addresses bound, which are the configured ones unless those
	// leave the port to the kernel.
	at := func(name, configured string) string {
		if a := srv.Addr(name); a != nil {
			return a.String()
		}
		return configured
	}
	l := cfg.Listen
	smtp := at("smtp", l.SMTP)
	fmt.Fprintf(c.App.Writer, `
Posthorn demo is running (Ctrl-C stops it). Files: %[1]s

  domain   %[2]s
  user     %[3]s
  password %[4]s      (new at every start)

Send a message in from "the internet" (port 25 stands at %[5]s):
  swaks --server 127.0.0.1:%[6]s --to %[3]s --from someone@example.org

Send one as the user, with STARTTLS and AUTH (submission):
  swaks --server 127.0.0.1:%[7]s -tls --auth PLAIN --auth-user %[3]s --auth-password %[4]s \
        --from %[3]s --to %[3]s

Read it over IMAP and POP3 (the certificate is self-signed, hence -k):
  curl -k --ssl-reqd 'imap://127.0.0.1:%[8]s/INBOX;UID=1' -u '%[3]s:%[4]s'
  curl -k 'pop3s://127.0.0.1:%[9]s/1' -u '%[3]s:%[4]s'

Thunderbird: add an account for %[3]s with the password above, choose
"Configure manually": IMAP 127.0.0.1 port %[10]s SSL/TLS, SMTP 127.0.0.1 port %[11]s
SSL/TLS, authentication "Normal password"; accept the self-signed certificate.
Autoconfig: http://127.0.0.1:%[12]s/mail/config-v1.1.xml?emailaddress=%[3]s

Administer it from another terminal:
  %[14]s --config %[13]s user list
`, filepath.Dir(cfg.Path), demoDomain, demoUser, password, smtp, port(smtp), port(at("submission", l.Submission)),
		port(at("imap", l.IMAP)), port(at("pop3s", l.POP3S)), port(at("imaps", l.IMAPS)), port(at("submissions", l.Submissions)),
		port(at("http", l.HTTP)), cfg.Path, selfCommand())
}
