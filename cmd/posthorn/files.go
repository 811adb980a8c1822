package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/posthorn/posthorn/admin"
	"github.com/posthorn/posthorn/mailio"
	"github.com/posthorn/posthorn/store"
)

// The commands that read or write files the user names (backup, import,
// export) open them here, in the CLI, with the rights of the user who runs
// it: the server runs as a user of its own, sandboxed (deploy's systemd
// unit: a private /tmp, a read-only system but for data_dir, no /home),
// and a path that makes sense to the user may name nothing it can reach,
// or something else. The data go over the control socket (see package
// control), or, without a server, through the CLI's own pipes.

func backupCommand() *cli.Command {
	return sub("backup", "write a consistent copy of the store, also while serving", "FILE", backupAction, forceFlag)
}

// backupAction writes the backup through a temporary file beside it,
// checked, fsynced and renamed, so that a crash or a failure never leaves
// half a backup under the name.
func backupAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("usage: posthorn backup FILE")
	}
	dst, err := filepath.Abs(c.Args().First())
	if err != nil {
		return err
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	if admin.OwnFile(dst, cfg.DataPath("posthorn.db")) {
		return fmt.Errorf("%s is one of the store's own files: write the backup elsewhere", dst)
	}
	if _, err := os.Stat(dst); err == nil && !c.Bool("force") {
		return fmt.Errorf("%s exists; use --force to overwrite it", dst)
	}
	// The signal handler goes in first: a Ctrl-C just after the file is
	// made must remove it too.
	setTemp, stop := removeOnSignal()
	defer stop()
	f, err := os.CreateTemp(filepath.Dir(dst), ".posthorn-backup-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	setTemp(tmp)
	defer os.Remove(tmp)
	err = runAdmin(c, admin.Request{Command: "backup", Args: []string{dst}, Download: f})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// What came is a whole store, as restore will want it.
		err = store.Verify(tmp)
	}
	// The copy has every page of the live file, those that deleted mail
	// left free too (a store that once held much mail gave backups of
	// its old size): it is compacted into the file kept, as store
	// compact does.
	var compacted string
	if err == nil {
		if compacted, err = compactTemp(tmp, setTemp); err == nil {
			defer os.Remove(compacted) // once renamed, nothing
		}
	}
	if err == nil {
		err = os.Chmod(compacted, 0o600)
	}
	var fi os.FileInfo
	if err == nil {
		fi, err = os.Stat(compacted)
	}
	if err == nil {
		err = os.Rename(compacted, dst)
	}
	if err != nil {
		return fmt.Errorf("backup to %s: %w", dst, err)
	}
	fmt.Fprintf(c.App.Writer, "backup written to %s (%s)\n", dst, admin.ByteSize(fi.Size()))
	return nil
}

// compactTemp compacts the store file tmp into a new temporary file beside
// it, which it returns, and removes tmp. setTemp is told each file to
// remove at an interruption.
func compactTemp(tmp string, setTemp func(...string)) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(tmp), ".posthorn-backup-*")
	if err != nil {
		return "", err
	}
	out := f.Name()
	f.Close()
	setTemp(tmp, out)
	os.Remove(out) // store.Compact makes it
	if err := store.Compact(tmp, out); err != nil {
		os.Remove(out)
		return "", err
	}
	os.Remove(tmp)
	setTemp(out)
	return out, nil
}

// removeOnSignal removes the paths given to set and exits if the command
// is interrupted (Ctrl-C, SIGTERM, SIGHUP) before the returned stop is
// called: an exit by signal runs no deferred removal, and would leave the
// temporary file.
func removeOnSignal() (set func(paths ...string), stop func()) {
	var mu sync.Mutex
	var paths []string
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			mu.Lock()
			for _, p := range paths {
				os.Remove(p)
			}
			fmt.Fprintf(os.Stderr, "posthorn: interrupted (%s): no backup written\n", sig)
			os.Exit(130)
		case <-done:
		}
	}()
	set = func(p ...string) {
		mu.Lock()
		paths = p
		mu.Unlock()
	}
	return set, func() {
		signal.Stop(sigs)
		close(done)
	}
}

func importCommand() *cli.Command {
	return &cli.Command{
		Name:  "import",
		Usage: "import messages into an account",
		Subcommands: []*cli.Command{
			importMboxCommand(),
			sub("maildir", "import a Maildir, Maildir++ or fs layout (folders, flags, keywords and subscriptions kept)", "DIR", importAction("import maildir", func(w io.Writer, path, _ string) error {
				return mailio.EncodeMaildir(w, path)
			}), userFlag),
		},
	}
}

// importMboxCommand: how quoted "From " lines are unquoted is a choice
// the user makes, since the file does not say (RFC 4155 appendix A).
func importMboxCommand() *cli.Command {
	cmd := sub("mbox", "import an mbox file", "FILE", importMboxAction, userFlag, mailboxFlag, mboxFormatFlag)
	cmd.Description = `Reads an mbox file as mutt, Dovecot, UW-IMAP, Thunderbird and Postfix's
local delivery write it. A message whose Content-Length field holds is cut
at that length, as Dovecot (which does not quote "From " lines in bodies)
and mutt read it. Otherwise messages are cut at "From " lines after an
empty line, and quoted body lines are unquoted as --format says:
  mboxrd  (the default) one '>' comes off ">From ", ">>From "...: for
          files from tools that say they write mboxrd
  mboxo   only ">From " loses its '>': mutt, Python's mailbox,
          Thunderbird and Postfix's local delivery quote this way
The two cannot be told apart from the file (RFC 4155 appendix A); read as
the wrong one, only lines that start ">>From " differ.
Status:, X-Status: and X-Keywords: become flags and keywords; they and
X-UID:, X-IMAP:, X-IMAPbase: and Content-Length: are removed from the
stored header, and the folder's "FOLDER INTERNAL DATA" pseudo-message is
not imported.`
	return cmd
}

var mboxFormatFlag = &cli.StringFlag{Name: "format", Value: "mboxrd",
	Usage: "`FORMAT` of the quoting of \"From \" lines in bodies: mboxrd (every >*From line got one more '>'; tools that say mboxrd) " +
		"or mboxo (only \"From \" lines were quoted: mutt, Python's mailbox, Thunderbird, Postfix local); the file cannot tell (RFC 4155 appendix A)"}

// importMboxAction checks --format before anything is read or sent, and
// reads the file in that format here, in the CLI: the import stream
// carries the messages as they are to be stored.
func importMboxAction(c *cli.Context) error {
	format, err := mailio.ParseMboxFormat(c.String("format"))
	if err != nil {
		return err
	}
	return importAction("import mbox", func(w io.Writer, path, mailbox string) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return mailio.EncodeMboxFormat(w, f, mailbox, format)
	})(c)
}

// errImportEnded stops the reading of a source whose import has ended.
var errImportEnded = errors.New("the import ended")

// importAction reads the source with encode, here, and has the server
// (or the store, without one) append what it read.
func importAction(command string, encode func(w io.Writer, path, mailbox string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.NArg() != 1 || c.String("user") == "" {
			return fmt.Errorf("usage: posthorn %s PATH --user ADDRESS", command)
		}
		path, err := filepath.Abs(c.Args().First())
		if err != nil {
			return err
		}
		if _, err := os.Stat(path); err != nil {
			return err
		}
		pr, pw := io.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			// A reading error is also in the stream, for the importer to
			// report with what it did.
			encode(pw, path, c.String("mailbox"))
			pw.Close()
		}()
		err = runAdmin(c, admin.Request{Command: command, Args: []string{path},
			User: c.String("user"), Mailbox: c.String("mailbox"), Upload: pr})
		pr.CloseWithError(errImportEnded)
		<-done
		return err
	}
}

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "export an account's mail",
		Subcommands: []*cli.Command{
			sub("maildir", "write every mailbox to a Maildir++ tree", "DIR", exportAction, userFlag),
		},
	}
}

// errExportFailed ends the extraction of an export that failed.
var errExportFailed = errors.New("the export failed")

// exportAction has the server (or the store, without one) archive the
// account's Maildir++ tree and writes its files here.
func exportAction(c *cli.Context) error {
	if c.NArg() != 1 || c.String("user") == "" {
		return errors.New("usage: posthorn export maildir DIR --user ADDRESS")
	}
	dir, err := filepath.Abs(c.Args().First())
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	extracted := make(chan error, 1)
	go func() {
		err := mailio.ExtractMaildir(pr, dir)
		pr.CloseWithError(err) // a failed extraction stops the export
		extracted <- err
	}()
	err = runAdmin(c, admin.Request{Command: "export maildir", Args: []string{dir}, User: c.String("user"), Download: pw})
	if err != nil {
		pw.CloseWithError(errExportFailed)
	} else {
		pw.Close()
	}
	// The extraction's error is the cause when it failed first.
	if xerr := <-extracted; xerr != nil && !errors.Is(xerr, errExportFailed) {
		return xerr
	}
	return err
}
