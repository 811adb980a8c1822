package store

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
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
	f.Add([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/pdf; name*0*=iso-8859-1''r%E9; name*1=\"sum.pdf\"\r\n" +
		"Content-Disposition: attachment; filename*=shift_jis''%93%FA%96%7B.txt\r\n\r\nx\r\n--b--\r\n"))
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

// FuzzDecodeAccount: decodeAccount gives what json.Unmarshal gives, for
// records as the store writes them and for anything else.
func FuzzDecodeAccount(f *testing.F) {
	for _, a := range []Account{
		{Address: "alice@example.test", PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA", QuotaBytes: 1 << 30, UsedBytes: 12345, Created: time.Date(2026, 11, 26, 8, 0, 0, 123456789, time.UTC)},
		{Address: "b@example.test", Disabled: true, UsedBytes: -1, Created: time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))},
		{Address: "<é>@example.test", PasswordHash: "a\"b\\c"},
	} {
		v, err := json.Marshal(a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(v)
	}
	f.Add([]byte(`{"Address":"a","PasswordHash":"","QuotaBytes":01,"UsedBytes":0,"Disabled":false,"Created":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"Address":"a","PasswordHash":"","QuotaBytes":99999999999999999999,"UsedBytes":0,"Disabled":false,"Created":"0001-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		got, err := decodeAccount(v)
		var want Account
		wantErr := json.Unmarshal(v, &want)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%q: error %v, json.Unmarshal's %v", v, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: %+v, json.Unmarshal gives %+v", v, got, want)
		}
	})
}

// FuzzDecodeMailbox: decodeMailbox gives what json.Unmarshal gives, for
// records as the store writes them and for anything else.
func FuzzDecodeMailbox(f *testing.F) {
	for _, mb := range []Mailbox{
		{Name: "INBOX", ID: 1, UIDValidity: 1764230400, UIDNext: 42, HighestModSeq: 99, Subscribed: true, Messages: 41, Unseen: 3, Size: 123456},
		{Name: "Archive/2026", ID: 1<<64 - 1, UIDValidity: 1<<32 - 1, UIDNext: 1<<32 - 1, HighestModSeq: 1<<64 - 1, SpecialUse: SpecialArchive, Messages: 1<<32 - 1, Size: -1},
		{Name: "Entwürfe <&>", SpecialUse: SpecialDrafts},
		{Name: "a\"b\\c"},
	} {
		v, err := json.Marshal(mb)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(v)
	}
	f.Add([]byte(`{"Name":"a","ID":01,"UIDValidity":0,"UIDNext":0,"HighestModSeq":0,"SpecialUse":"","Subscribed":false,"Messages":0,"Unseen":0,"Size":0}`))
	f.Add([]byte(`{"Name":"a","ID":0,"UIDValidity":4294967296,"UIDNext":0,"HighestModSeq":0,"SpecialUse":"","Subscribed":false,"Messages":0,"Unseen":0,"Size":0}`))
	f.Add([]byte(`{"Name":"a","ID":18446744073709551616,"UIDValidity":0,"UIDNext":0,"HighestModSeq":0,"SpecialUse":"","Subscribed":false,"Messages":0,"Unseen":0,"Size":0}`))
	f.Add([]byte(`{"Name":"a","ID":-1,"UIDValidity":0,"UIDNext":0,"HighestModSeq":0,"SpecialUse":"","Subscribed":false,"Messages":0,"Unseen":0,"Size":0}`))
	f.Fuzz(func(t *testing.T, v []byte) {
		got, err := decodeMailbox(v)
		var want Mailbox
		wantErr := json.Unmarshal(v, &want)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("%q: error %v, json.Unmarshal's %v", v, err, wantErr)
		}
		if err == nil && got != want {
			t.Fatalf("%q: %+v, json.Unmarshal gives %+v", v, got, want)
		}
	})
}

// TestDecodeMailboxFast: a record as the store writes it takes the direct
// path, with every field, at the edges of its range.
func TestDecodeMailboxFast(t *testing.T) {
	for _, mb := range []Mailbox{
		{Name: "INBOX", ID: 7, UIDValidity: 1764230400, UIDNext: 42, HighestModSeq: 99, SpecialUse: SpecialSent, Subscribed: true, Messages: 41, Unseen: 3, Size: 123456},
		{Name: "Archive/2026", ID: 1<<64 - 1, UIDValidity: 1<<32 - 1, UIDNext: 1<<32 - 1, HighestModSeq: 1<<64 - 1, Messages: 1<<32 - 1, Unseen: 1<<32 - 1, Size: 1<<63 - 1},
		{Name: "x"},
	} {
		v, _ := json.Marshal(mb)
		got, ok := decodeMailboxFast(v)
		if !ok || got != mb {
			t.Fatalf("%s: %+v, %v", v, got, ok)
		}
	}
}

// TestDecodeAccountFast: a record as the store writes it takes the direct
// path (the fuzz target above only checks that both paths agree).
func TestDecodeAccountFast(t *testing.T) {
	a := Account{Address: "alice@example.test", PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA", QuotaBytes: 10, UsedBytes: 5, Created: time.Now()}
	v, _ := json.Marshal(a)
	got, ok := decodeAccountFast(v)
	if !ok || !got.Created.Equal(a.Created) || got.Address != a.Address || got.PasswordHash != a.PasswordHash || got.QuotaBytes != 10 || got.UsedBytes != 5 {
		t.Fatalf("%s: %+v, %v", v, got, ok)
	}
}
