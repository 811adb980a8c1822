package fuzz

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/internal/storetest"
	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/store"
)

// openStore opens a store without fsync (logic only) with the harness
// domain and one account.
func openStore(f *testing.F) store.Store {
	f.Helper()
	st, err := store.Open(filepath.Join(f.TempDir(), "posthorn.db"), store.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	if err := st.AddDomain("example.test"); err != nil {
		f.Fatal(err)
	}
	if err := st.AddAccount("alice@example.test", "x"); err != nil {
		f.Fatal(err)
	}
	return st
}

// FuzzMessageParse appends arbitrary bytes as a message: the store parses
// its ENVELOPE and BODYSTRUCTURE once, with its limits. Whatever the
// input, nothing panics, and a stored message reads back byte for byte
// with a structure and an envelope.
func FuzzMessageParse(f *testing.F) {
	f.Add([]byte("From: a@b.test\r\nSubject: hi\r\n\r\nbody\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\n--x--\r\n"))
	st := openStore(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := st.Append(context.Background(), "alice@example.test", "INBOX", store.NewMessage{Body: body})
		if err != nil {
			return // refused: fine, as long as it did not panic
		}
		msgs, err := st.Messages("alice@example.test", "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		m := msgs[len(msgs)-1]
		if m.UID != d.UID {
			t.Fatalf("last message has UID %d, Append said %d", m.UID, d.UID)
		}
		info, err := st.BlobInfo(m.BlobID)
		if err != nil {
			t.Fatalf("BlobInfo: %v", err)
		}
		if info.Envelope == nil || info.BodyStructure == nil {
			t.Fatalf("stored message without envelope (%v) or body structure (%v)", info.Envelope, info.BodyStructure)
		}
		if info.HeaderLen < 0 || info.HeaderLen > int64(len(body)) {
			t.Fatalf("header length %d of a %d-byte message", info.HeaderLen, len(body))
		}
		got := storetest.Body(t, st, m)
		if !bytes.Equal(got[len(m.Prefix):], body) {
			t.Fatalf("stored %d bytes read back as %d different ones", len(body), len(got)-len(m.Prefix))
		}
		// Keep the mailbox small.
		if _, err := st.Expunge("alice@example.test", "INBOX", []uint32{d.UID}); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzResolve resolves arbitrary addresses. Nothing panics; an address
// that resolves is in our domain, leads somewhere, and has none of the
// local-part forms that are never routed on (%, !, quotes, source
// routes).
func FuzzResolve(f *testing.F) {
	for _, s := range []string{
		"alice@example.test", "ALICE+tag@Example.Test", "alice%other.test@example.test",
		`"alice"@example.test`, "@example.test:alice@other.test", "other.test!alice@example.test",
		"alice@example.test.", "", "@", "a@", "@b",
	} {
		f.Add(s)
	}
	st := openStore(f)
	if err := st.AddAlias("team@example.test", []string{"alice@example.test", "x@remote.test"}); err != nil {
		f.Fatal(err)
	}
	if err := st.AddAlias("loop1@example.test", []string{"loop2@example.test"}); err != nil {
		f.Fatal(err)
	}
	if err := st.AddAlias("loop2@example.test", []string{"loop1@example.test"}); err != nil {
		f.Fatal(err)
	}
	agent := &mda.Agent{Store: st}
	f.Fuzz(func(t *testing.T, address string) {
		r, err := agent.Resolve(address)
		if err != nil {
			for _, known := range []error{mda.ErrNotOurDomain, mda.ErrUnknownUser, mda.ErrBadAddress, mda.ErrAliasLoop} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("Resolve(%q): unexpected error %v", address, err)
		}
		if len(r.Accounts)+len(r.Remote) == 0 {
			t.Fatalf("Resolve(%q) succeeded but leads nowhere", address)
		}
		at := strings.LastIndexByte(address, '@')
		if at < 0 {
			t.Fatalf("Resolve(%q) succeeded for an address without @", address)
		}
		if local := address[:at]; strings.ContainsAny(local, `%!"@:`) {
			t.Fatalf("Resolve(%q) routed a local part that must never be routed on", address)
		}
		if !strings.EqualFold(strings.TrimSuffix(strings.TrimSpace(address[at+1:]), "."), "example.test") {
			t.Fatalf("Resolve(%q) succeeded for a domain not ours", address)
		}
	})
}

// FuzzConfigParse loads arbitrary configuration text. Nothing panics; an
// accepted configuration written back as TOML loads again to the same
// value.
func FuzzConfigParse(f *testing.F) {
	f.Add([]byte("hostname = \"mail.example.org\"\n[listen]\nsmtp = \":25\"\n"))
	f.Add([]byte("[outbound]\nretry_initial = \"1s\"\nretry_max = \"1h\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse("/etc/posthorn/posthorn.toml", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		out, err := toml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal an accepted configuration: %v", err)
		}
		c2, err := config.Parse("/etc/posthorn/posthorn.toml", out)
		if err != nil {
			t.Fatalf("an accepted configuration, written back, is refused: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip changed the configuration:\n%+v\n%+v", c, c2)
		}
	})
}
