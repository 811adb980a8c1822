package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestOpenLocked(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	_ = s
	// flock conflicts between two open file descriptions even within one
	// process, so a second Open behaves as another process's would.
	start := time.Now()
	_, err := Open(path, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error does not name the file: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Open took %v", d)
	}
}

func TestOpenCorrupt(t *testing.T) {
	dir := t.TempDir()
	cases := map[string][]byte{
		"text":   []byte("this is not a database\n"),
		"zeros":  make([]byte, 64*1024),
		"random": bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03}, 10000),
	}
	// A real store with its pages scrambled after the meta pages.
	good := filepath.Join(dir, "good.db")
	st, err := Open(good, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	st.AddDomain("example.test")
	st.Close()
	data, _ := os.ReadFile(good)
	scrambled := append([]byte(nil), data...)
	for i := 2 * 4096; i < len(scrambled); i++ {
		scrambled[i] ^= 0x5a
	}
	cases["scrambled"] = scrambled
	truncated := append([]byte(nil), data[:4096+100]...)
	cases["truncated"] = truncated
	// A valid bbolt file that is not ours.
	other := filepath.Join(dir, "other.db")
	db, _ := bolt.Open(other, 0o600, nil)
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("foreign")); return err })
	db.Close()
	cases["foreign"], _ = os.ReadFile(other)

	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name+".db")
			os.WriteFile(p, content, 0o600)
			st, err := Open(p, Options{NoSync: true})
			if err == nil {
				// Some damage is only found later: it must surface as
				// errors, never as a panic.
				defer st.Close()
				_, err = st.Domains()
				if err == nil {
					_, err = st.Accounts()
				}
				t.Logf("opened; later error: %v", err)
				return
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error does not name the file: %v", err)
			}
			t.Logf("%v", err)
		})
	}
	if _, err := Open(dir, Options{}); err == nil {
		t.Error("Open of a directory succeeded")
	}
}

// TestPreallocation: a synced store keeps written zeros ahead of its
// high-water mark; backups hold only the used part, and the store
// reopens with its data.
func TestPreallocation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posthorn.db")
	st, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.AddDomain("example.test")
	st.AddAccount(alice, "h")
	mustAppend(t, st, "INBOX", testMessage("p", 3*ChunkSize))
	stats, err := StatsOf(st)
	if err != nil {
		t.Fatal(err)
	}
	if stats.FileSize < stats.DataSize+preallocMargin {
		t.Fatalf("file %d bytes, data %d: not preallocated", stats.FileSize, stats.DataSize)
	}
	var buf bytes.Buffer
	if n, err := st.Backup(&buf); err != nil || n != stats.DataSize {
		t.Fatalf("backup %d bytes (%v), data %d", n, err, stats.DataSize)
	}
	st.Close()
	st, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if msgs, _ := st.Messages(alice, "INBOX"); len(msgs) != 1 {
		t.Fatalf("%d messages after reopen", len(msgs))
	}
}

// TestCorruptPagesAfterOpen scrambles every page but the meta pages, the
// freelist and the root: Open may succeed, and each later operation must
// return an error or data, never panic.
func TestCorruptPagesAfterOpen(t *testing.T) {
	s, path := openTest(t, Options{NoSync: true})
	for i := 0; i < 20; i++ {
		mustAppend(t, s, "INBOX", testMessage(fmt.Sprint(i), 5000))
	}
	s.CreateMailbox(alice, "Other", "")
	s.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	meta := func(p int) (root, freelist, txid uint64) {
		b := data[p*page+16:]
		return binary.LittleEndian.Uint64(b[16:]), binary.LittleEndian.Uint64(b[32:]), binary.LittleEndian.Uint64(b[48:])
	}
	r0, f0, t0 := meta(0)
	r1, f1, t1 := meta(1)
	root, free := r0, f0
	if t1 > t0 {
		root, free = r1, f1
	}
	for p := 2; p*page < len(data); p++ {
		if uint64(p) == root || uint64(p) == free {
			continue
		}
		for i := p * page; i < (p+1)*page; i++ {
			data[i] ^= 0xa5
		}
	}
	os.WriteFile(path, data, 0o600)
	st, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Logf("Open: %v", err)
		return
	}
	defer st.Close()
	_, err1 := st.Accounts()
	_, err2 := st.Messages(alice, "INBOX")
	_, err3 := st.Append(context.Background(), alice, "INBOX", NewMessage{Body: testMessage("x", 10)})
	err4 := st.AddDomain("new.test")
	t.Logf("after open: %v / %v / %v / %v", err1, err2, err3, err4)
	if err1 == nil && err2 == nil && err3 == nil {
		t.Error("no operation noticed the corruption")
	}
}

// Reopening must not add another preallocated tail each time: a server
// restarted (or killed) often would otherwise grow its file without bound.
func TestPreallocationNoGrowthOnReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posthorn.db")
	st, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.AddDomain("example.test")
	st.AddAccount(alice, "h")
	mustAppend(t, st, "INBOX", testMessage("p", 1024))
	st.Close()
	first, _ := os.Stat(path)
	for i := 0; i < 5; i++ {
		st, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		mustAppend(t, st, "INBOX", testMessage(fmt.Sprint("r", i), 1024))
		st.Close()
	}
	last, _ := os.Stat(path)
	if last.Size() > first.Size()+preallocStep/2 {
		t.Fatalf("file grew from %d to %d bytes over 5 reopens with 5 small appends", first.Size(), last.Size())
	}
}
