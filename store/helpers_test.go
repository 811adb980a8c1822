package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// openTest opens a store in a temp dir with domain example.test and
// account alice@example.test.
func openTest(t testing.TB, opts Options) (*boltStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "posthorn.db")
	st, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := st.(*boltStore)
	if err := s.AddDomain("example.test"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAccount("alice@example.test", "hash"); err != nil {
		t.Fatal(err)
	}
	return s, path
}

func testMessage(subject string, bodyLen int) []byte {
	b := []byte(fmt.Sprintf("From: Bob <bob@example.org>\r\nTo: alice@example.test\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\n", subject, subject))
	for len(b) < bodyLen {
		b = append(b, "0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRS\r\n"...)
	}
	return b
}

func mustAppend(t testing.TB, s Store, mailbox string, body []byte, flags ...string) Delivered {
	t.Helper()
	d, err := s.Append(context.Background(), "alice@example.test", mailbox, NewMessage{Body: body, Flags: flags})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// blobCounts counts the blob records left: infos, refs, chunks.
func blobCounts(t testing.TB, s *boltStore) (infos, refs, chunks int) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		infos = tx.Bucket(bucketBlobInfo).Stats().KeyN
		refs = tx.Bucket(bucketBlobRefs).Stats().KeyN
		chunks = tx.Bucket(bucketBlobData).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return
}

func blobRefCount(t testing.TB, s *boltStore, id uint64) uint32 {
	t.Helper()
	var n uint32
	s.db.View(func(tx *bolt.Tx) error {
		n = (&txn{tx: tx}).blobRefs(id)
		return nil
	})
	return n
}

func writeFile(path string, data []byte) error { return os.WriteFile(path, data, 0o600) }

// appendRecord and deliverRecord are log records in one piece, as the
// log holds them.
func appendRecord(addr, mailbox string, msgs []NewMessage) []byte {
	return bytes.Join(appendRecordParts(addr, mailbox, msgs), nil)
}

func deliverRecord(body []byte, to []Delivery, now time.Time) []byte {
	return bytes.Join(deliverRecordParts(body, to, now), nil)
}
