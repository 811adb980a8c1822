package main

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/template"

	"github.com/urfave/cli/v2"

	"github.com/posthorn/posthorn/admin"
	"github.com/posthorn/posthorn/certs"
	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/store"
)

//go:embed posthorn.toml.tmpl
var configTemplate string

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "write a commented configuration, the data directory, a certificate and DKIM keys",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "domain", Required: true, Usage: "the first mail `DOMAIN`"},
			&cli.StringFlag{Name: "hostname", Required: true, Usage: "this server's `NAME`, the MX of the domain"},
			&cli.StringFlag{Name: "dir", Value: ".", Usage: "where to write posthorn.toml and data/"},
			forceFlag,
		},
		Action: func(c *cli.Context) error {
			// Both names are checked before anything is written.
			domain, err := admin.Domain(c.String("domain"))
			if err != nil {
				return err
			}
			cfg := config.Default()
			cfg.Hostname = c.String("hostname")
			cfg.Listen.Metrics = "127.0.0.1:9425"
			// Thunderbird's autoconfig and the MTA-STS policy, which
			// the DNS records printed below point senders and clients
			// at, as in deploy/posthorn.toml.example.
			cfg.Listen.HTTP, cfg.Listen.HTTPS = ":80", ":443"
			cfg, err = setup(c.String("dir"), cfg, c.Bool("force"))
			if err != nil {
				return err
			}
			out := c.App.Writer
			err = offlineAdmin(c, cfg, admin.Request{Command: "domain add", Args: []string{domain}})
			if errors.Is(err, store.ErrExists) && c.Bool("force") {
				// --force writes the configuration anew over a store
				// that already serves the domain: keep it, its keys
				// and its mail.
				fmt.Fprintf(out, "domain %s is served already: kept with its DKIM keys\n", domain)
			} else if err != nil {
				return err
			}
			fmt.Fprintf(out, "\nWrote %s and %s.\n\nPublish these DNS records:\n\n", cfg.Path, cfg.Abs(cfg.DataDir))
			if err := offlineAdmin(c, cfg, admin.Request{Command: "dns", Args: []string{domain}}); err != nil {
				return err
			}
			fmt.Fprintf(out, `
Next steps:
  %[3]s user add postmaster@%[1]s --config %[2]s
  %[3]s serve --config %[2]s
  %[3]s doctor %[1]s --config %[2]s      # once the records are published
`, domain, cfg.Path, selfCommand())
			return nil
		},
	}
}

// setup writes dir/posthorn.toml from cfg and makes the data directory and
// certificate. It refuses to overwrite an existing set-up unless force.
func setup(dir string, cfg config.Config, force bool) (_ config.Config, err error) {
	cfg.Path = filepath.Join(dir, "posthorn.toml")
	if !force {
		for _, p := range []string{cfg.Path, cfg.DataPath("posthorn.db")} {
			if _, err := os.Stat(p); err == nil {
				return cfg, fmt.Errorf("%s exists: this directory is set up already (use --force to write it anew)", p)
			}
		}
	}
	var buf bytes.Buffer
	if err := template.Must(template.New("cfg").Parse(configTemplate)).Execute(&buf, cfg); err != nil {
		return cfg, err
	}
	// The file we write must load: check before writing.
	loaded, err := config.Parse(cfg.Path, buf.Bytes())
	if err != nil {
		return cfg, fmt.Errorf("generated configuration does not load: %w", err)
	}
	// Only now is anything written: a bad name leaves nothing behind.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return cfg, err
	}
	_, statErr := os.Stat(cfg.Path)
	if err := os.WriteFile(cfg.Path, buf.Bytes(), 0o640); err != nil {
		return cfg, err
	}
	if os.IsNotExist(statErr) {
		// A set-up that fails half-way (an unwritable data_dir) must
		// not leave a posthorn.toml that makes the next try say
		// "set up already".
		defer func() {
			if err != nil {
				os.Remove(cfg.Path)
			}
		}()
	}
	if err := os.MkdirAll(loaded.DataPath(""), 0o700); err != nil {
		return cfg, err
	}
	if _, err := certs.Load(loaded, newLogger(io.Discard, "error")); err != nil {
		return cfg, fmt.Errorf("certificate: %w", err)
	}
	return *loaded, nil
}

// offlineAdmin runs an admin command on the store directly (init, demo).
func offlineAdmin(c *cli.Context, cfg config.Config, req admin.Request) error {
	st, err := openStore(&cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	return admin.Execute(c.Context, &admin.Env{Store: st, Config: &cfg, Logger: newLogger(c.App.ErrWriter, "warn")}, req, c.App.Writer)
}
