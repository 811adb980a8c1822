package store

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FuzzParseBlobInfo: any bytes parse without panic, within the limits,
// and the result survives the stored encoding.
func FuzzParseBlobInfo(f *testing.F) {
	files, _ := filepath.Glob("testdata/mime/*.eml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add(nestedMultipart(60))
	f.Fuzz(func(t *testing.T, msg []byte) {
		bi := parseBlobInfo(msg, Options{MaxHeaderFields: 50, MaxMIMEDepth: 8})
		if bi.HeaderLen < 0 || bi.HeaderLen > int64(len(msg)) || bi.Envelope == nil || bi.BodyStructure == nil {
			t.Fatalf("bad info %+v", bi)
		}
		if _, err := decodeBlobInfo(1, encodeBlobInfo(bi)); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzDecodeRecords: corrupt stored records give errors, never panics
// or huge allocations.
func FuzzDecodeRecords(f *testing.F) {
	body, _ := os.ReadFile("testdata/mime/forward.eml")
	f.Add(encodeBlobInfo(parseBlobInfo(body, Options{})))
	f.Add(encodeMessage(Message{Size: 10, Flags: []string{`\Seen`}, Prefix: []byte("X: y\r\n")}))
	f.Fuzz(func(t *testing.T, rec []byte) {
		decodeBlobInfo(1, rec)
		decodeMessage([]byte{0, 0, 0, 1}, rec)
	})
}

// errRollback ends a fuzzed replay without committing it.
var errRollback = errors.New("rollback")

// FuzzReplayRecord: a corrupt log record (one whose checksum happened to
// match) makes the replay fail with an error, never panic, and costs
// memory bounded by its size. Each input runs in a transaction that is
// rolled back.
func FuzzReplayRecord(f *testing.F) {
	f.Add(appendRecord(alice, "INBOX", []NewMessage{{Body: testMessage("a", 300), Flags: []string{`\Seen`}, InternalDate: time.Unix(1e9, 0)}}))
	f.Add(deliverRecord(testMessage("d", 200), []Delivery{{Account: alice, Mailbox: "Junk", Prefix: []byte("X: y\r\n")}}, time.Unix(1e9, 0)))
	f.Add([]byte{opAppend, 0xff, 0xff, 0xff, 0xff, 0x0f})
	s, _ := openTest(f, Options{NoSync: true})
	f.Fuzz(func(t *testing.T, rec []byte) {
		err := s.dbUpdate(func(tx *bolt.Tx) error {
			if err := s.replayRecord(&txn{tx: tx, s: s, cache: newDecodeCache()}, rec); err != nil {
				return err
			}
			return errRollback
		})
		if errors.Is(err, errPanic) {
			t.Fatalf("replay panicked: %v", err)
		}
	})
}
