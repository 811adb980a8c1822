// Command posthorn is the whole mail server: `posthorn serve` runs it, the
// other commands administer it. While serve runs, administration commands
// go through its control socket; otherwise they open the store directly.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/urfave/cli/v2"
)

func main() {
	app := newApp(os.Stdin, os.Stdout, os.Stderr)
	if err := app.Run(permuteArgs(app, os.Args)); err != nil {
		fmt.Fprintf(os.Stderr, "posthorn: %v\n", err)
		var ec cli.ExitCoder
		if errors.As(err, &ec) && ec.ExitCode() != 0 {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

var configFlag = &cli.StringFlag{
	Name:    "config",
	Aliases: []string{"c"},
	Usage:   "configuration `FILE` (else $POSTHORN_CONFIG, ./posthorn.toml, /etc/posthorn/posthorn.toml)",
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:      "posthorn",
		Usage:     "a self-hosted mail server in one binary",
		Reader:    stdin,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags:     []cli.Flag{configFlag},
		ExitErrHandler: func(*cli.Context, error) {
			// main prints errors once, in one line.
		},
		Commands: []*cli.Command{
			initCommand(),
			demoCommand(),
			serveCommand(),
			configCommand(),
			domainCommand(),
			userCommand(),
			aliasCommand(),
			queueCommand(),
			dkimCommand(),
			dnsCommand(),
			doctorCommand(),
			importCommand(),
			exportCommand(),
			backupCommand(),
			restoreCommand(),
			storeCommand(),
		},
		Action: unknownCommand(""),
	}
	for _, c := range app.Commands {
		if len(c.Subcommands) > 0 && c.Action == nil {
			// `posthorn user lst --config F` is an unknown subcommand, not
			// an unknown flag of `user`.
			c.Flags = append(c.Flags, configFlag)
			c.Action = unknownCommand(c.Name + " ")
		}
	}
	return app
}

// unknownCommand answers a command line whose command (after prefix, the
// command it is a subcommand of) does not exist with one line naming it,
// and one without a command with the help.
func unknownCommand(prefix string) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() == 0 {
			return cli.ShowSubcommandHelp(c)
		}
		return fmt.Errorf("no command %q (see posthorn %s--help)", prefix+c.Args().First(), prefix)
	}
}

// newLogger returns the process logger at level ("debug", "info"...).
func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
