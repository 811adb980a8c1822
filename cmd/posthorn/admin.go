package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/posthorn/posthorn/admin"
	"github.com/posthorn/posthorn/auth"
	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/control"
	"github.com/posthorn/posthorn/store"
)

// runAdmin sends req to the running server through the control socket, or
// runs it here on the store when no server runs.
func runAdmin(c *cli.Context, req admin.Request) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	sock := cfg.DataPath(control.SocketName)
	resp, err := control.Call(sock, req)
	switch {
	case err == nil:
		io.WriteString(c.App.Writer, resp.Output)
		if resp.Error != "" {
			return errors.New(resp.Error)
		}
		return nil
	case !errors.Is(err, control.ErrNoServer):
		return err
	}
	st, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	env := &admin.Env{Store: st, Config: cfg, Logger: newLogger(c.App.ErrWriter, "warn")}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		env.Terminal = os.Stderr
	}
	return admin.Execute(c.Context, env, req, c.App.Writer)
}

// openStore opens the store of a stopped server.
func openStore(cfg *config.Config) (store.Store, error) {
	dir := cfg.DataPath("")
	if _, err := os.Stat(dir); err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("data_dir %s does not exist (run `posthorn init` first)", dir)
		}
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	st, err := store.Open(cfg.DataPath("posthorn.db"), store.Options{
		MaxHeaderFields: cfg.Limits.MaxHeaderFields,
		MaxMIMEDepth:    cfg.Limits.MaxMIMEDepth,
	})
	if errors.Is(err, store.ErrLocked) {
		sock := cfg.DataPath(control.SocketName)
		if _, cerr := control.Call(sock, admin.Request{Command: "domain list"}); cerr == nil {
			return nil, fmt.Errorf("a server is already running on %s (its control socket %s answers): stop it first", dir, sock)
		}
		// A stopping server closes its socket first and lets go of the
		// store last (up to 30 s later), as does one still starting.
		return nil, fmt.Errorf("%s is in use by another process, but no server answers on its control socket %s (a server that is stopping or starting: try again in a moment)", cfg.DataPath("posthorn.db"), sock)
	}
	return st, err
}

var passwordStdinFlag = &cli.BoolFlag{Name: "password-stdin", Usage: "read the password from the first line of standard input"}

// readPassword reads a new password from stdin or from the terminal
// without echo, and returns its hash.
func readPassword(c *cli.Context) (string, error) {
	var pw string
	if c.Bool("password-stdin") {
		line, err := bufio.NewReader(c.App.Reader).ReadString('\n')
		if err != nil && err != io.EOF {
			return "", err
		}
		pw = strings.TrimRight(line, "\r\n")
	} else {
		fd := int(os.Stdin.Fd())
		if !term.IsTerminal(fd) {
			return "", errors.New("standard input is not a terminal: use --password-stdin")
		}
		fmt.Fprint(c.App.ErrWriter, "Password: ")
		a, err := term.ReadPassword(fd)
		fmt.Fprintln(c.App.ErrWriter)
		if err != nil {
			return "", err
		}
		fmt.Fprint(c.App.ErrWriter, "Again: ")
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(c.App.ErrWriter)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", errors.New("the passwords differ")
		}
		pw = string(a)
	}
	if pw == "" {
		return "", errors.New("the password is empty")
	}
	return auth.HashPassword(pw)
}

// adminAction is the Action of a command that maps to admin.Request.
func adminAction(command string) cli.ActionFunc {
	return func(c *cli.Context) error {
		return runAdmin(c, admin.Request{Command: command, Args: c.Args().Slice()})
	}
}

func sub(name, usage, args string, action cli.ActionFunc, flags ...cli.Flag) *cli.Command {
	return &cli.Command{Name: name, Usage: usage, ArgsUsage: args, Action: action, Flags: append(flags, configFlag)}
}

func domainCommand() *cli.Command {
	return &cli.Command{
		Name:  "domain",
		Usage: "manage the domains we receive mail for",
		Subcommands: []*cli.Command{
			sub("add", "serve a domain (and create its DKIM keys)", "NAME", adminAction("domain add")),
			sub("list", "list the domains", "", adminAction("domain list")),
			sub("del", "stop serving a domain (it must have no users or aliases)", "NAME", adminAction("domain del")),
		},
	}
}

func userCommand() *cli.Command {
	withPassword := func(command string) cli.ActionFunc {
		return func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("usage: posthorn %s ADDRESS [--password-stdin]", command)
			}
			if _, err := admin.Address(c.Args().First()); err != nil {
				return err
			}
			hash, err := readPassword(c)
			if err != nil {
				return err
			}
			return runAdmin(c, admin.Request{Command: command, Args: c.Args().Slice(), Hash: hash})
		}
	}
	return &cli.Command{
		Name:  "user",
		Usage: "manage accounts",
		Subcommands: []*cli.Command{
			sub("add", "create an account with its default mailboxes", "ADDRESS", withPassword("user add"), passwordStdinFlag),
			sub("passwd", "set an account's password", "ADDRESS", withPassword("user passwd"), passwordStdinFlag),
			sub("del", "delete an account and all its mail", "ADDRESS", adminAction("user del")),
			sub("list", "list the accounts", "", adminAction("user list")),
			sub("quota", "set an account's quota (e.g. 2G; 0 or none: no quota)", "ADDRESS SIZE", adminAction("user quota")),
			sub("disable", "refuse an account's logins and new mail, keeping its mail; end its IMAP sessions", "ADDRESS", adminAction("user disable")),
			sub("enable", "undo user disable", "ADDRESS", adminAction("user enable")),
		},
	}
}

func aliasCommand() *cli.Command {
	return &cli.Command{
		Name:  "alias",
		Usage: "manage aliases (ADDRESS or @domain for a catch-all)",
		Subcommands: []*cli.Command{
			sub("add", "forward an address to one or more targets", "ADDRESS TARGET...", adminAction("alias add")),
			sub("del", "delete an alias", "ADDRESS", adminAction("alias del")),
			sub("list", "list aliases", "[ADDRESS]", adminAction("alias list")),
		},
	}
}

func queueCommand() *cli.Command {
	return &cli.Command{
		Name:  "queue",
		Usage: "inspect and manage the outbound queue",
		Subcommands: []*cli.Command{
			sub("list", "list queued messages", "", adminAction("queue list")),
			sub("retry", "retry one entry, or all, now", "[ID]", adminAction("queue retry")),
			sub("drop", "drop an entry without a bounce", "ID", adminAction("queue drop")),
		},
	}
}

var forceFlag = &cli.BoolFlag{Name: "force", Usage: "overwrite what exists"}
