package dkim

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/posthorn/posthorn/store"
)

// fakeStore holds DKIM keys the way the store contract says: AddDKIMKey
// replaces a key of the same selector and makes the new key the active
// one of its algorithm, unless it is pending. The embedded nil interface
// panics if anything else is called.
type fakeStore struct {
	store.Store
	mu   sync.Mutex
	keys []store.DKIMKey
}

func (f *fakeStore) AddDKIMKey(k store.DKIMKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k.Active = !k.Pending
	for i := range f.keys {
		if k.Active && f.keys[i].Domain == k.Domain && f.keys[i].Algorithm == k.Algorithm {
			f.keys[i].Active = false
		}
	}
	for i := range f.keys {
		if f.keys[i].Domain == k.Domain && f.keys[i].Selector == k.Selector {
			f.keys[i] = k
			return nil
		}
	}
	f.keys = append(f.keys, k)
	return nil
}

func (f *fakeStore) DKIMKeys(domain string) ([]store.DKIMKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.DKIMKey
	for _, k := range f.keys {
		if k.Domain == domain {
			out = append(out, k)
		}
	}
	return out, nil
}

var (
	keysOnce sync.Once
	testKeys []store.DKIMKey
)

// keys returns one ed25519 and one RSA key for example.test, made once.
func keys(t testing.TB) []store.DKIMKey {
	t.Helper()
	keysOnce.Do(func() {
		now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		for _, alg := range []string{Ed25519, RSA} {
			k, err := GenerateKey("Example.TEST", alg, NewSelector(alg, now, nil), now)
			if err != nil {
				panic(err)
			}
			testKeys = append(testKeys, k)
		}
	})
	return testKeys
}

// lookup serves the DNS records of keys the way a resolver returns TXT
// records: the strings of one record joined.
func lookup(keys []store.DKIMKey) func(string) ([]string, error) {
	records := map[string]string{}
	for _, k := range keys {
		name, value, err := DNSRecord(k)
		if err != nil {
			panic(err)
		}
		records[name] = value
	}
	return func(name string) ([]string, error) {
		if v, ok := records[strings.TrimSuffix(name, ".")]; ok {
			return []string{v}, nil
		}
		return nil, fmt.Errorf("no TXT for %s", name)
	}
}

const message = "From: Alice <alice@example.test>\r\n" +
	"To: bob@b.test\r\n" +
	"Subject: Hello\r\n" +
	"  folded subject\r\n" +
	"Date: Wed, 25 Nov 2026 22:00:00 +0000\r\n" +
	"Message-ID: <1@example.test>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"X-Mailer: test\r\n" +
	"\r\n" +
	"Hello Bob,\r\n\r\nsee you.\r\n"

func verify(t *testing.T, keys []store.DKIMKey, msg []byte) []*msgdkim.Verification {
	t.Helper()
	v, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{LookupTXT: lookup(keys)})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSignVerify(t *testing.T) {
	ks := keys(t)
	sigs, err := Sign(ks, []byte(message))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(sigs, []byte("DKIM-Signature:")); n != 2 {
		t.Fatalf("%d signatures, want 2:\n%s", n, sigs)
	}
	if !bytes.HasSuffix(sigs, []byte("\r\n")) || bytes.Contains(bytes.ReplaceAll(sigs, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatalf("signature lines not CRLF-terminated:\n%q", sigs)
	}
	for _, want := range []string{"a=rsa-sha256", "a=ed25519-sha256", "c=relaxed/relaxed", "d=example.test", "s=ph20261125r", "s=ph20261125e"} {
		if !bytes.Contains(sigs, []byte(want)) {
			t.Errorf("signatures lack %q", want)
		}
	}
	h := regexp.MustCompile(`[;\s]h=([^;]*);`).FindSubmatch(bytes.ReplaceAll(sigs, []byte("\r\n "), nil))
	if h == nil || strings.ReplaceAll(string(h[1]), " ", "") != "From:Subject:Date:To:Message-ID:MIME-Version:Content-Type:From" {
		t.Errorf("signed headers %q", h)
	}
	signed := append(sigs, message...)
	vs := verify(t, ks, signed)
	if len(vs) != 2 {
		t.Fatalf("%d verifications", len(vs))
	}
	for _, v := range vs {
		if v.Err != nil || v.Domain != "example.test" {
			t.Errorf("verification %+v: %v", v, v.Err)
		}
	}
	// Relaxed canonicalization survives rewrapping and trailing space.
	relaxed := bytes.Replace(signed, []byte("Subject: Hello\r\n  folded"), []byte("Subject:   Hello \r\n\tfolded"), 1)
	for _, v := range verify(t, ks, relaxed) {
		if v.Err != nil {
			t.Errorf("relaxed rewrap: %v", v.Err)
		}
	}
	// A changed body, or a second From, breaks every signature.
	for name, bad := range map[string][]byte{
		"body":        bytes.Replace(signed, []byte("see you"), []byte("see yuo"), 1),
		"second From": append(append([]byte{}, sigs...), append([]byte("From: mallory@evil.test\r\n"), message...)...),
		"subject":     bytes.Replace(signed, []byte("Hello\r\n"), []byte("Hellp\r\n"), 1),
	} {
		for _, v := range verify(t, ks, bad) {
			if v.Err == nil {
				t.Errorf("%s changed: signature %s still verifies", name, v.Domain)
			}
		}
	}
}

func TestSignOneAlgorithm(t *testing.T) {
	for _, k := range keys(t) {
		sigs, err := Sign([]store.DKIMKey{k}, []byte(message))
		if err != nil {
			t.Fatal(err)
		}
		vs := verify(t, []store.DKIMKey{k}, append(sigs, message...))
		if len(vs) != 1 || vs[0].Err != nil {
			t.Fatalf("%s: %+v", k.Algorithm, vs)
		}
	}
}

func TestSignErrors(t *testing.T) {
	ks := keys(t)
	if _, err := Sign(ks, []byte("Subject: no from\r\n\r\nbody\r\n")); err == nil {
		t.Error("message without From signed")
	}
	inactive := []store.DKIMKey{ks[0], ks[1]}
	inactive[0].Active, inactive[1].Active = false, false
	if _, err := NewSigner(inactive); !errors.Is(err, ErrNoKeys) {
		t.Errorf("no active key: %v", err)
	}
	wrongAlg := ks[0]
	wrongAlg.Algorithm = RSA
	if _, err := NewSigner([]store.DKIMKey{wrongAlg}); err == nil {
		t.Error("ed25519 key labelled rsa accepted")
	}
	other := ks[1]
	other.Domain = "other.test"
	if _, err := NewSigner([]store.DKIMKey{ks[0], other}); err == nil {
		t.Error("keys of two domains accepted")
	}
	junk := ks[0]
	junk.PrivateKey = []byte("junk")
	if _, _, err := DNSRecord(junk); err == nil {
		t.Error("junk key gave a record")
	}
}

func TestDNSRecord(t *testing.T) {
	ks := keys(t)
	name, value, err := DNSRecord(ks[0])
	if err != nil {
		t.Fatal(err)
	}
	if name != "ph20261125e._domainkey.example.test" {
		t.Errorf("name %q", name)
	}
	p, ok := strings.CutPrefix(value, "v=DKIM1; k=ed25519; p=")
	if !ok {
		t.Fatalf("value %q", value)
	}
	if raw, err := base64.StdEncoding.DecodeString(p); err != nil || len(raw) != 32 {
		t.Fatalf("ed25519 p= is not 32 raw bytes: %d, %v", len(raw), err)
	}
	name, value, err = DNSRecord(ks[1])
	if err != nil || name != "ph20261125r._domainkey.example.test" || !strings.HasPrefix(value, "v=DKIM1; k=rsa; p=MIIBIjAN") {
		t.Fatalf("rsa record %q %q %v", name, value, err)
	}
	if len(value) <= 255 {
		t.Fatalf("RSA-2048 value only %d bytes", len(value))
	}
}

// TestZoneLinesLoad checks that the zone lines parse as DNS records whose
// strings are at most 255 bytes and join to the record value.
func TestZoneLinesLoad(t *testing.T) {
	ks := keys(t)
	lines, err := ZoneLines(ks)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	for i, line := range lines {
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		txt, ok := rr.(*dns.TXT)
		if !ok {
			t.Fatalf("%T", rr)
		}
		for _, s := range txt.Txt {
			if len(s) > 255 {
				t.Errorf("string of %d bytes", len(s))
			}
		}
		name, value, _ := DNSRecord(ks[i])
		if txt.Hdr.Name != name+"." || strings.Join(txt.Txt, "") != value {
			t.Errorf("line %d: %s %q, want %s %q", i, txt.Hdr.Name, strings.Join(txt.Txt, ""), name, value)
		}
		if ks[i].Algorithm == RSA && len(txt.Txt) < 2 {
			t.Errorf("RSA record not split: %d strings", len(txt.Txt))
		}
	}
	if got := TXTStrings(strings.Repeat("a", 510)); len(got) != 2 || len(got[0]) != 255 || len(got[1]) != 255 {
		t.Errorf("TXTStrings(510) = %d strings", len(got))
	}
	if got := TXTStrings(""); len(got) != 1 || got[0] != "" {
		t.Errorf("TXTStrings(\"\") = %q", got)
	}
}

func TestEnsureAndRotate(t *testing.T) {
	st := &fakeStore{}
	ks, err := Ensure(st, "Example.Test")
	if err != nil {
		t.Fatal(err)
	}
	sel := regexp.MustCompile(`^ph\d{8}[er]$`)
	if len(ks) != 2 {
		t.Fatalf("Ensure made %d keys", len(ks))
	}
	for _, k := range ks {
		if !k.Active || !sel.MatchString(k.Selector) || k.Domain != "example.test" {
			t.Errorf("key %s %s active=%v domain=%s", k.Algorithm, k.Selector, k.Active, k.Domain)
		}
	}
	again, err := Ensure(st, "example.test")
	if err != nil || len(again) != 2 {
		t.Fatalf("second Ensure: %d keys, %v", len(again), err)
	}
	// Rotating on the day the keys were made: selectors stay unique. The
	// new keys wait, and the old ones sign, until Activate.
	if _, err := Rotate(st, "example.test"); err != nil {
		t.Fatal(err)
	}
	all, _ := st.DKIMKeys("example.test")
	if len(all) != 4 || !all[0].Active || !all[1].Active || all[2].Active || all[3].Active || !all[2].Pending || !all[3].Pending {
		t.Fatalf("after Rotate, want the old keys active and the new ones pending: %+v", all)
	}
	if _, err := Rotate(st, "example.test"); err == nil || !strings.Contains(err.Error(), "activate") {
		t.Errorf("a second Rotate before Activate: %v", err)
	}
	if _, err := Activate(st, "example.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := Activate(st, "example.test"); err == nil {
		t.Error("Activate with nothing pending succeeded")
	}
	all, _ = st.DKIMKeys("example.test")
	if len(all) != 4 {
		t.Fatalf("%d keys after a rotation", len(all))
	}
	seen := map[string]bool{}
	var active []store.DKIMKey
	for _, k := range all {
		if seen[k.Selector] {
			t.Errorf("selector %s used twice", k.Selector)
		}
		seen[k.Selector] = true
		if k.Active {
			active = append(active, k)
		}
	}
	if len(active) != 2 || active[0].Selector != all[2].Selector || active[1].Selector != all[3].Selector {
		t.Fatalf("active after rotation: %+v", active)
	}
	// Mail is signed with the new keys and still verifies.
	sigs, err := Sign(all, []byte(message))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range all[:2] {
		if bytes.Contains(sigs, []byte("s="+k.Selector+";")) {
			t.Errorf("signed with retired key %s", k.Selector)
		}
	}
	for _, v := range verify(t, all, append(sigs, message...)) {
		if v.Err != nil {
			t.Error(v.Err)
		}
	}
	// All four stay published until deleted.
	if lines, err := ZoneLines(all); err != nil || len(lines) != 4 {
		t.Fatalf("zone lines: %d, %v", len(lines), err)
	}
}

func TestNewSelector(t *testing.T) {
	day := time.Date(2026, 11, 25, 23, 59, 0, 0, time.FixedZone("x", -3600))
	var taken []store.DKIMKey
	want := []string{"ph20261126e", "ph20261126e2", "ph20261126e3"}
	for _, w := range want {
		s := NewSelector(Ed25519, day, taken)
		if s != w {
			t.Fatalf("selector %q, want %q", s, w)
		}
		taken = append(taken, store.DKIMKey{Selector: s})
	}
	if s := NewSelector(RSA, day, taken); s != "ph20261126r" {
		t.Fatalf("rsa selector %q", s)
	}
}

// TestPythonDKIMVerifies has an independent implementation, Debian's
// python3-dkim (dkimpy), verify both signatures.
func TestPythonDKIMVerifies(t *testing.T) {
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import dkim, nacl").Run(); err != nil {
		t.Skip("python3-dkim (with python3-nacl) not installed")
	}
	ks := keys(t)
	sigs, err := Sign(ks, []byte(message))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	msgPath := dir + "/msg.eml"
	if err := os.WriteFile(msgPath, append(sigs, message...), 0o600); err != nil {
		t.Fatal(err)
	}
	var recs strings.Builder
	for _, k := range ks {
		name, value, _ := DNSRecord(k)
		fmt.Fprintf(&recs, "%q: %q,\n", name+".", value)
	}
	script := `
import dkim, sys
recs = {` + recs.String() + `}
def dns(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    return recs.get(name, "").encode()
msg = open(sys.argv[1], "rb").read()
d = dkim.DKIM(msg)
ok = [d.verify(idx=i, dnsfunc=dns) for i in range(2)]
print(ok)
sys.exit(0 if all(ok) else 1)
`
	out, err := exec.Command(py, "-c", script, msgPath).CombinedOutput()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "[True, True]") {
		t.Fatalf("dkimpy: %s", out)
	}
}

// TestSignObsoleteNames: fields with white space before the colon (RFC
// 5322 section 4.5) are signed as the fields verifiers and readers take
// them for ("Subject : x" was left out of h=), and a header Go's
// textproto refuses (a tab before a colon, a control character) is signed
// (it failed the signing: a 451 every time).
func TestSignObsoleteNames(t *testing.T) {
	ks := keys(t)
	msg := "From: alice@example.test\r\nSubject : spaced\r\nTo\t: bob@example.test\r\nX-Ctl\x01: z\r\n\r\nbody\r\n"
	sigs, err := Sign(ks, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	h := regexp.MustCompile(`[;\s]h=([^;]*);`).FindSubmatch(bytes.ReplaceAll(sigs, []byte("\r\n "), nil))
	if h == nil || strings.ReplaceAll(string(h[1]), " ", "") != "From:Subject:To:From" {
		t.Errorf("signed headers %q", h)
	}
	signed := append(sigs, msg...)
	for _, v := range verify(t, ks, signed) {
		if v.Err != nil {
			t.Errorf("verification %+v: %v", v, v.Err)
		}
	}
	for _, v := range verify(t, ks, bytes.Replace(signed, []byte("spaced"), []byte("spoofed"), 1)) {
		if v.Err == nil {
			t.Errorf("Subject : changed: signature %s still verifies", v.Domain)
		}
	}
}
