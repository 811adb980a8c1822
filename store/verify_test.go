package store

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// bigStore makes a closed store of about 2 MB at path, and returns its
// bytes and how many of them its pages take.
func bigStore(t *testing.T, path string) ([]byte, int) {
	t.Helper()
	st, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	st.AddDomain("example.test")
	st.AddAccount(alice, "h")
	for i := range 20 {
		mustAppend(t, st, "INBOX", testMessage("m"+string(rune('a'+i)), 100<<10))
	}
	stats, err := StatsOf(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data, int(stats.DataSize)
}

// TestOpenTruncated: a data file cut short is a clear error naming it,
// where bbolt would read the missing pages through its map and die of
// SIGBUS (which no recover catches); the file is left as it was.
func TestOpenTruncated(t *testing.T) {
	dir := t.TempDir()
	data, used := bigStore(t, filepath.Join(dir, "whole.db"))
	for _, n := range []int{used - 4096, used / 2, 100_000, 5 * 4096} {
		p := filepath.Join(dir, "cut.db")
		os.Remove(p + walSuffix)
		if err := os.WriteFile(p, data[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := Open(p, Options{})
		if err == nil {
			st.Close()
			t.Fatalf("Open of a file cut to %d of %d bytes succeeded", n, len(data))
		}
		if !strings.Contains(err.Error(), "truncated") || !strings.Contains(err.Error(), p) {
			t.Errorf("cut to %d bytes: %v", n, err)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, data[:n]) {
			t.Errorf("cut to %d bytes: the file was changed", n)
		}
		if err := Compact(p, filepath.Join(dir, "out.db")); err == nil || !strings.Contains(err.Error(), "truncated") {
			t.Errorf("Compact of a truncated file: %v", err)
		}
	}
}

// TestVerify: a backup is checked without being created or changed: a
// missing, empty, truncated, damaged or foreign file is refused, a whole
// store passes.
func TestVerify(t *testing.T) {
	dir := t.TempDir()
	whole := filepath.Join(dir, "whole.db")
	data, used := bigStore(t, whole)
	if err := Verify(whole); err != nil {
		t.Fatalf("Verify of a whole store: %v", err)
	}
	if _, err := os.Stat(whole + walSuffix); err == nil {
		t.Error("Verify left a log beside the file")
	}

	missing := filepath.Join(dir, "missing.db")
	if err := Verify(missing); err == nil {
		t.Error("Verify of a missing file succeeded")
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("Verify created the missing file")
	}

	empty := filepath.Join(dir, "empty.db")
	os.WriteFile(empty, nil, 0o600)
	if err := Verify(empty); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("Verify of an empty file: %v", err)
	}
	if fi, _ := os.Stat(empty); fi.Size() != 0 {
		t.Errorf("Verify wrote %d bytes into the empty file", fi.Size())
	}

	cut := filepath.Join(dir, "cut.db")
	os.WriteFile(cut, data[:used/2], 0o600)
	if err := Verify(cut); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("Verify of a truncated file: %v", err)
	}

	// Every page past the meta pages damaged (a few could be free pages,
	// which no check reads): bbolt's open or its check finds it.
	damaged := filepath.Join(dir, "damaged.db")
	bad := append([]byte(nil), data...)
	for i := 2 * 4096; i < used; i++ {
		bad[i] ^= 0x5a
	}
	os.WriteFile(damaged, bad, 0o600)
	if err := Verify(damaged); err == nil {
		t.Error("Verify of a damaged file succeeded")
	}

	foreign := filepath.Join(dir, "foreign.db")
	db, err := bolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
	db.Close()
	if err := Verify(foreign); err == nil || !strings.Contains(err.Error(), "not a Posthorn data file") {
		t.Errorf("Verify of a foreign bbolt file: %v", err)
	}

	text := filepath.Join(dir, "text.db")
	os.WriteFile(text, []byte("not a database\n"), 0o600)
	if err := Verify(text); err == nil {
		t.Error("Verify of a text file succeeded")
	}
}
