package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/server"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the mail server",
		Flags: []cli.Flag{configFlag},
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			return serve(c.Context, cfg, c.App.ErrWriter, nil)
		},
	}
}

// serve runs the server until SIGTERM, SIGINT or SIGHUP, then lets
// in-flight work finish (up to 30 s) and exits. ready, if not nil, is called once every
// listener is bound.
func serve(ctx context.Context, cfg *config.Config, logw interface{ Write([]byte) (int, error) }, ready func(*server.Server)) error {
	logger := newLogger(logw, cfg.LogLevel)
	if err := os.MkdirAll(cfg.DataPath(""), 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	srv, err := server.New(cfg, logger)
	if err != nil {
		return err
	}
	// SIGHUP too: the terminal of a server run by hand was closed.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	if err := srv.Start(ctx); err != nil {
		srv.Shutdown(context.Background())
		return err
	}
	logger.Info("posthorn is running", "hostname", cfg.Hostname, "config", cfg.Path)
	if ready != nil {
		ready(srv)
	}
	<-ctx.Done()
	// A second signal takes its default action and ends the process at
	// once: everything acknowledged is durable already, and the next
	// start recovers from the store's log.
	stop()
	logger.Info("shutting down; a second signal stops at once")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

func loadConfig(c *cli.Context) (*config.Config, error) {
	path := config.FindPath(flagString(c, "config"))
	cfg, err := config.Load(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("no configuration at %s (run `posthorn init`, or pass --config)", path)
		}
		return nil, err
	}
	return cfg, nil
}

// flagString reads a flag given either before or after the subcommand.
func flagString(c *cli.Context, name string) string {
	for _, ctx := range c.Lineage() {
		if v := ctx.String(name); v != "" {
			return v
		}
	}
	return ""
}

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "check the configuration file",
		Subcommands: []*cli.Command{{
			Name:  "check",
			Usage: "load and validate the configuration; name the bad key and line",
			Flags: []cli.Flag{configFlag},
			Action: func(c *cli.Context) error {
				cfg, err := loadConfig(c)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "%s: ok (hostname %s, data_dir %s)\n", cfg.Path, cfg.Hostname, cfg.Abs(cfg.DataDir))
				return nil
			},
		}},
	}
}
