package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/posthorn/posthorn/admin"
	"github.com/posthorn/posthorn/control"
	"github.com/posthorn/posthorn/store"
)

func dkimCommand() *cli.Command {
	return &cli.Command{
		Name:  "dkim",
		Usage: "show or rotate a domain's DKIM keys",
		Subcommands: []*cli.Command{
			sub("show", "print the DKIM DNS records of a domain", "DOMAIN", adminAction("dkim show")),
			sub("rotate", "make new keys with new selectors, to publish; the current ones sign until activate", "DOMAIN", adminAction("dkim rotate")),
			sub("activate", "sign with the keys rotate made, once DNS shows their records", "DOMAIN", func(c *cli.Context) error {
				return runAdmin(c, admin.Request{Command: "dkim activate", Args: c.Args().Slice(), Force: c.Bool("force")})
			}, &cli.BoolFlag{Name: "force", Usage: "activate without checking DNS"}),
		},
	}
}

func dnsCommand() *cli.Command {
	return sub("dns", "print the DNS records to publish, as zone-file lines", "[DOMAIN]", adminAction("dns"))
}

func doctorCommand() *cli.Command {
	return sub("doctor", "check the published DNS records, the certificate and the queue", "[DOMAIN]", adminAction("doctor"))
}

var (
	// userFlag is required, but checked by the commands themselves:
	// urfave/cli answers a missing required flag with the whole help.
	userFlag    = &cli.StringFlag{Name: "user", Usage: "the account `ADDRESS` (required)"}
	mailboxFlag = &cli.StringFlag{Name: "mailbox", Usage: "target `MAILBOX` (mbox only; default INBOX)"}
)

// requireStopped fails when a server runs on cfg's data_dir.
func requireStopped(c *cli.Context) (string, error) {
	cfg, err := loadConfig(c)
	if err != nil {
		return "", err
	}
	sock := cfg.DataPath(control.SocketName)
	if _, err := control.Call(sock, admin.Request{Command: "domain list"}); !errors.Is(err, control.ErrNoServer) {
		return "", errors.New("posthorn serve is running on this data_dir: stop it first")
	}
	return cfg.DataPath("posthorn.db"), nil
}

func restoreCommand() *cli.Command {
	return sub("restore", "replace the store of a stopped server with a backup", "FILE", func(c *cli.Context) error {
		if c.NArg() != 1 {
			return errors.New("usage: posthorn restore FILE")
		}
		db, err := requireStopped(c)
		if err != nil {
			return err
		}
		src := c.Args().First()
		// The backup must be a whole store before it replaces anything;
		// it is only read (a missing or empty file is not a backup).
		if err := store.Verify(src); err != nil {
			return fmt.Errorf("%s is not a usable backup: %w", src, err)
		}
		if same, _ := sameFile(src, db); same {
			return fmt.Errorf("%s is the store itself", src)
		}
		if _, err := os.Stat(db); err == nil && !c.Bool("force") {
			return fmt.Errorf("%s exists; use --force to replace it", db)
		}
		// On a new machine data_dir may not exist yet: make it as serve
		// would.
		if err := os.MkdirAll(filepath.Dir(db), 0o700); err != nil {
			return fmt.Errorf("data_dir: %w", err)
		}
		// A log left by a crash belongs to the file being replaced.
		if err := store.DiscardLog(db); err != nil {
			return err
		}
		if err := copyFile(src, db, owner(db), raiseUIDs); err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "restored %s from %s (every mailbox's next UID raised by %d: the UIDs given out since the backup are not given again)\n",
			db, src, store.RestoreUIDMargin)
		return nil
	}, forceFlag)
}

func storeCommand() *cli.Command {
	return &cli.Command{
		Name:  "store",
		Usage: "maintain the store",
		Subcommands: []*cli.Command{
			sub("compact", "rewrite the store of a stopped server to reclaim space", "", func(c *cli.Context) error {
				db, err := requireStopped(c)
				if err != nil {
					return err
				}
				before, err := store.UsedBytes(db)
				if err != nil {
					return err
				}
				tmp := db + ".compact"
				os.Remove(tmp)
				err = store.Compact(db, tmp)
				if err == nil {
					err = owner(db)(tmp)
				}
				if err != nil {
					os.Remove(tmp)
					return err
				}
				if err := os.Rename(tmp, db); err != nil {
					return err
				}
				// The bytes the pages take: the files' sizes include
				// what bbolt and the store grow them by ahead of use.
				after, err := store.UsedBytes(db)
				if err != nil {
					return err
				}
				// before counts the pages deleted mail left free: what
				// was given back, not mail.
				fmt.Fprintf(c.App.Writer, "compacted %s: %d -> %d bytes (%s of free space given back)\n",
					db, before, after, admin.ByteSize(max(before-after, 0)))
				return nil
			}),
		},
	}
}

// owner returns what gives a new file the owner of the store file db,
// or, if there is none yet, of its directory: the server runs as its
// own user (deploy/posthorn.service), and a store that root restored or
// compacted must stay its. Only root can give a file away; anyone else
// makes files that are already theirs.
func owner(db string) func(path string) error {
	return func(path string) error {
		if os.Geteuid() != 0 {
			return nil
		}
		fi, err := os.Stat(db)
		if err != nil {
			fi, err = os.Stat(filepath.Dir(db))
		}
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if err := os.Lchown(path, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("give %s to the owner of %s: %w", path, db, err)
		}
		return nil
	}
}

// copyFile copies src over dst through a temporary file, fsynced, which
// chown gives its owner before it replaces dst.
// raiseUIDs opens the store restored at path and raises its mailboxes'
// next UIDs (see store.RaiseUIDNext).
func raiseUIDs(path string) error {
	st, err := store.Open(path, store.Options{})
	if err != nil {
		return err
	}
	_, err = store.RaiseUIDNext(st, store.RestoreUIDMargin)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return err
}

// copyFile copies src to dst through a temporary file beside dst, which
// prepare, if not nil, changes before it takes dst's place.
func copyFile(src, dst string, chown, prepare func(string) error) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".restore"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && prepare != nil {
		err = prepare(tmp)
	}
	if err == nil {
		err = chown(tmp)
	}
	if err != nil {
		os.Remove(tmp)
		os.Remove(tmp + "-wal")
		return err
	}
	return os.Rename(tmp, dst)
}

// sameFile tells whether the paths a and b name one file.
func sameFile(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}
