package admin

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// backup writes a consistent copy of the live store (one bbolt read
// transaction) to the CLI's download stream; the CLI writes it to the
// file named (see cmd/posthorn), where the server may have no right to
// write.
func backup(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 1, 1, "FILE"); err != nil {
		return err
	}
	if req.Download == nil {
		return usage("backup: nowhere to write (the CLI gives the file)")
	}
	if _, err := env.Store.Backup(req.Download); err != nil {
		return fmt.Errorf("backup to %s: %w", req.Args[0], err)
	}
	return nil
}

// OwnFile tells whether path is the data file db, or a file of the store
// beside it (its log, a compaction's output), by name or by inode: a
// backup renamed over the live file would leave the server writing to a
// file no longer there, and everything acknowledged since lost at the
// next start.
func OwnFile(path, db string) bool {
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
