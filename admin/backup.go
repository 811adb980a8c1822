package admin

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// backup writes a consistent copy of the live store (one bbolt read
// transaction) to the file named by the CLI, through a temporary file that
// is fsynced and renamed, so a crash never leaves half a backup.
func backup(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 1, 1, "FILE"); err != nil {
		return err
	}
	dst := req.Args[0]
	if !filepath.IsAbs(dst) {
		return usage("backup needs an absolute path (the CLI makes it so)")
	}
	if env.Config != nil && ownFile(dst, env.Config.DataPath("posthorn.db")) {
		return fmt.Errorf("%s is one of the store's own files: write the backup elsewhere", dst)
	}
	if _, err := os.Stat(dst); err == nil && !req.Force {
		return fmt.Errorf("%s exists; use --force to overwrite it", dst)
	}
	f, err := os.CreateTemp(filepath.Dir(dst), ".posthorn-backup-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	n, err := env.Store.Backup(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		return fmt.Errorf("backup to %s: %w", dst, err)
	}
	fmt.Fprintf(out, "backup written to %s (%s)\n", dst, byteSize(n))
	return nil
}

// ownFile tells whether path is the data file db, or a file of the store
// beside it (its log, a compaction's output), by name or by inode: a
// backup renamed over the live file would leave the server writing to a
// file no longer there, and everything acknowledged since lost at the
// next start.
func ownFile(path, db string) bool {
	if a, err := os.Stat(path); err == nil {
		if b, err := os.Stat(db); err == nil && os.SameFile(a, b) {
			return true
		}
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		dir = filepath.Dir(path)
	}
	dbDir, err := filepath.EvalSymlinks(filepath.Dir(db))
	if err != nil {
		dbDir = filepath.Dir(db)
	}
	if dir != dbDir {
		return false
	}
	// The data file, its log, and the temporary files of store compact
	// and restore; posthorn.db.bak beside them is the user's to use.
	switch base := filepath.Base(db); filepath.Base(path) {
	case base, base + "-wal", base + ".compact", base + ".restore":
		return true
	}
	return false
}
